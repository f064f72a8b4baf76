"""The default lifecycle under each orchestrator beside plain `dvc repro`, side by side in one run.

For each engine (and `dvc repro` itself) a fresh copy of the repository (`git archive` of
HEAD in a new git repo, so no lifecycle products) is exported with `lifecycle export --to
ENGINE` and run twice through the engine's own local runner:

- fresh: the whole default lifecycle from nothing (all six stages);
- no-op: the same again, nothing changed: no engine may run a stage DVC would skip.

The engines take turns within every round, so a busy machine slows all alike; the result is
each engine's median and its ratio to `dvc repro`'s median. Which stages ran comes from each
copy's stage ledger (`.lifecycle/ledger.jsonl`): a stage that ran in the no-op run is a
failure of the benchmark, not a number.

    python benchmarks/bench_orchestrators.py --rounds 1
    python benchmarks/bench_orchestrators.py --only dvc,prefect --rounds 3

Local runners (what a user runs on a laptop; the engines' servers are not started):
Airflow `airflow dags test` on SQLite; Prefect its ephemeral server; Dagster `dagster job
execute` on a temporary DAGSTER_HOME; Kubeflow Pipelines `kfp.local` (SubprocessRunner);
Step Functions moto's interpreter with the exported worker
(`tests/orchestrators/stepfunctions_moto.py`). Each needs `make orchestrators`.

Writes benchmarks/results/orchestrators.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.bench_lifecycle import child_env, fresh_copy  # noqa: E402
from core.records.ledger import AttemptFinished, read_ledger  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
BIN = Path(sys.executable).parent
ENGINES = ("dvc", "airflow", "prefect", "dagster", "kubeflow", "stepfunctions")
TIMEOUT_S = 3600
STAGES = ("ingest", "validate", "train", "evaluate", "deploy", "monitor")
NAME = "milling-failure"  # deploy.registered_model in params.yaml: the DAG's and flow's name


def engine_bin(engine: str, program: str = "python") -> str:
    path = ROOT / f".venv-{engine}" / "bin" / program
    if not path.exists():
        raise SystemExit(f"error: {path} is missing: run `make orchestrators` first")
    return str(path)


def project_copy(dest: Path) -> Path:
    """HEAD's files in a new git repository (`bench_lifecycle.fresh_copy`), with the page
    template `dvc plots show` needs (written by `make install`, not committed)."""
    fresh_copy("HEAD", dest)
    template = ROOT / ".dvc" / "plots_template.html"
    if template.exists():
        (dest / ".dvc" / "plots_template.html").write_bytes(template.read_bytes())
    return dest


def base_env(**extra: str) -> dict[str, str]:
    """`bench_lifecycle.child_env` (the Makefile's environment), without a tracking server
    or an orchestrator's run id (each copy keeps its own mlflow.db), plus `extra`."""
    env = {
        k: v for k, v in child_env().items() if not k.startswith(("MLFLOW_TRACKING", "LIFECYCLE_"))
    }
    env.update(extra)
    return env


def run(
    argv: list[str],
    cwd: Path,
    env: dict[str, str],
    stdin: str | None = None,
    check_output: Callable[[str], str | None] = lambda _: None,
) -> float:
    """Run a command to its end; its wall time. A failure (its exit code, or what
    `check_output` finds wrong in its stdout) stops the benchmark, with its output's tail."""
    start = time.perf_counter()
    done = subprocess.run(
        argv,
        cwd=cwd,
        env=env,
        input=stdin,
        stdin=None if stdin is not None else subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
    )
    seconds = time.perf_counter() - start
    problem = check_output(done.stdout) if done.returncode == 0 else f"exit code {done.returncode}"
    if problem is not None:
        tail = "\n".join((done.stdout + done.stderr).splitlines()[-40:])
        raise SystemExit(f"error: {' '.join(argv)}: {problem} in {cwd}:\n{tail}")
    return seconds


@dataclass
class Engine:
    """One engine on one copy: `prepare` (not timed: export, databases) and `lifecycle`."""

    name: str
    copy: Path
    prepare: Callable[[], None]
    lifecycle: Callable[[], float]


def export(copy: Path, engine: str) -> Path:
    out = copy / "orchestrators" / engine
    # kubeflow: export compiles the pipeline with kfp, which only the engine's venv has
    env = base_env(LIFECYCLE_KUBEFLOW_PYTHON=str(ROOT / ".venv-kubeflow" / "bin" / "python"))
    run([str(BIN / "lifecycle"), "export", "--to", engine, "--out", str(out)], copy, env)
    return out


def make_engine(name: str, copy: Path) -> Engine:
    work = copy.parent / f"{name}-home"
    work.mkdir(exist_ok=True)
    out = copy / "orchestrators" / name
    if name == "dvc":
        return Engine(
            name, copy, lambda: None, lambda: run([str(BIN / "dvc"), "repro"], copy, base_env())
        )
    if name == "airflow":
        env = base_env(
            AIRFLOW_HOME=str(work),
            AIRFLOW__CORE__DAGS_FOLDER=str(out),
            AIRFLOW__CORE__LOAD_EXAMPLES="False",
            AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION="True",
        )
        airflow = engine_bin("airflow", "airflow")

        def prepare() -> None:
            export(copy, name)
            run([airflow, "db", "migrate"], work, env)

        return Engine(name, copy, prepare, lambda: run([airflow, "dags", "test", NAME], work, env))
    if name == "prefect":
        env = base_env(
            PREFECT_HOME=str(work),
            PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="600",
            PREFECT_SERVER_ANALYTICS_ENABLED="false",
            PREFECT_SERVER_UI_ENABLED="false",
            PREFECT_SERVER_LOGGING_LEVEL="WARNING",
        )
        for key in ("PREFECT_API_URL", "PREFECT_API_KEY", "PREFECT_PROFILE"):
            env.pop(key, None)
        command = [engine_bin("prefect"), "lifecycle_flow.py", "run"]
        return Engine(name, copy, lambda: export(copy, name), lambda: run(command, out, env))
    if name == "dagster":
        env = base_env(DAGSTER_HOME=str(work))
        command = [engine_bin("dagster", "dagster"), "job", "execute", "-f", "definitions.py"]
        command += ["-j", f"{NAME.replace('-', '_')}_lifecycle"]

        def prepare() -> None:
            export(copy, name)
            (work / "dagster.yaml").write_text(
                (out / "dagster.yaml").read_text() + "\ntelemetry:\n  enabled: false\n"
            )

        return Engine(name, copy, prepare, lambda: run(command, out, env))
    if name == "kubeflow":
        command = [engine_bin("kubeflow"), "lifecycle_pipeline.py", "--run", "lifecycle"]
        return Engine(name, copy, lambda: export(copy, name), lambda: run(command, out, base_env()))
    if name == "stepfunctions":
        driver = ROOT / "tests" / "orchestrators" / "stepfunctions_moto.py"
        rounds = iter(range(1, 1000))

        def lifecycle() -> float:
            """One execution on moto, a new driver (a fresh in-memory AWS) each time."""
            argv = [engine_bin("stepfunctions"), str(driver), str(out)]
            stdin = f"lifecycle bench-{next(rounds)}\n"
            return run(argv, copy, base_env(), stdin=stdin, check_output=_execution_failed)

        return Engine(name, copy, lambda: export(copy, name), lifecycle)
    raise SystemExit(f"error: unknown engine {name!r}; choose from {', '.join(ENGINES)}")


def _execution_failed(stdout: str) -> str | None:
    """The driver's `SUMMARY {json}` line: None when the execution succeeded."""
    for line in stdout.splitlines():
        if line.startswith("SUMMARY "):
            status = json.loads(line.removeprefix("SUMMARY "))["status"]
            return None if status == "SUCCEEDED" else f"the execution ended {status}"
    return "the driver wrote no SUMMARY line"


def attempts(copy: Path) -> list[AttemptFinished]:
    """Every finished stage attempt in the copy's ledger, in order."""
    path = copy / ".lifecycle" / "ledger.jsonl"
    return [e for e in read_ledger(path) if isinstance(e, AttemptFinished)] if path.exists() else []


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=1, help="fresh + no-op runs per engine")
    parser.add_argument("--only", default=",".join(ENGINES), help="comma-separated engines")
    args = parser.parse_args()
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = sorted(set(names) - set(ENGINES))
    if unknown or args.rounds < 1:
        parser.error(f"--only: unknown {unknown}" if unknown else "--rounds must be at least 1")
    fresh: dict[str, list[float]] = {n: [] for n in names}
    noop: dict[str, list[float]] = {n: [] for n in names}
    with tempfile.TemporaryDirectory(prefix="bench-orchestrators-") as tmp:
        for round_ in range(args.rounds):
            for name in names:
                copy = project_copy(Path(tmp) / f"{name}-{round_}" / "project")
                engine = make_engine(name, copy)
                engine.prepare()
                seconds = engine.lifecycle()
                first = attempts(copy)
                succeeded = {a.stage for a in first if a.status == "succeeded"}
                if succeeded != set(STAGES):
                    raise SystemExit(f"error: {name}: the fresh run completed {sorted(succeeded)}")
                fresh[name].append(seconds)
                seconds = engine.lifecycle()
                ran = [a.stage for a in attempts(copy)[len(first) :]]
                if ran:
                    raise SystemExit(f"error: {name}: the no-op run ran {ran}: DVC would skip them")
                noop[name].append(seconds)
                print(
                    f"{name}: fresh {fresh[name][-1]:.1f} s, no-op {noop[name][-1]:.1f} s",
                    flush=True,
                )
    write_results(names, fresh, noop, args.rounds)
    return 0


def write_results(names: list[str], fresh: dict, noop: dict, rounds: int) -> None:
    base_fresh = statistics.median(fresh["dvc"]) if "dvc" in fresh else None
    base_noop = statistics.median(noop["dvc"]) if "dvc" in noop else None
    rows = []
    for name in names:
        f, n = statistics.median(fresh[name]), statistics.median(noop[name])
        rows.append(
            {
                "engine": name,
                "fresh_median_s": round(f, 1),
                "noop_median_s": round(n, 1),
                "fresh_vs_dvc": round(f / base_fresh, 2) if base_fresh else None,
                "noop_vs_dvc": round(n / base_noop, 2) if base_noop else None,
                "fresh_s": [round(s, 1) for s in fresh[name]],
                "noop_s": [round(s, 1) for s in noop[name]],
                "noop_stages_run": 0,
            }
        )
    machine = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "rounds": rounds,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "orchestrators.json").write_text(
        json.dumps({"machine": machine, "rows": rows}, indent=2) + "\n"
    )
    lines = [
        "# The default lifecycle under each orchestrator, beside plain `dvc repro`",
        "",
        f"{machine['date']}, {machine['cpus']} cores, Python {machine['python']}, "
        f"{rounds} round(s), load average at the end {machine['load_average']}. "
        "`python benchmarks/bench_orchestrators.py` (its docstring says how each engine runs).",
        "",
        "| engine | fresh lifecycle (median s) | vs dvc repro | no-op run (median s) "
        "| vs dvc repro | stages run in the no-op |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        lines.append(
            f"| {row['engine']} | {row['fresh_median_s']} | {row['fresh_vs_dvc']}× | "
            f"{row['noop_median_s']} | {row['noop_vs_dvc']}× | {row['noop_stages_run']} |"
        )
    lines += [
        "",
        "Every no-op run ran no stage (the benchmark stops with an error otherwise): each engine's",
        "tasks run `dvc repro --single-item`, and DVC skips what did not change. What an engine",
        "adds to a no-op run is its own start-up and one `lifecycle task` process per stage.",
    ]
    (RESULTS / "orchestrators.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    sys.exit(main())
