"""The default lifecycle on SQLite + local disk beside the production stack, and the time a
promotion takes to reach two serving replicas, side by side in one run.

Part 1, every round (the two sides alternate their order per round, so a busy machine
slows both alike): a fresh copy of HEAD (`bench_lifecycle.fresh_copy`) runs `dvc repro`
from nothing, then a no-op `dvc repro`:

- local: no tracking server, so `sqlite:///mlflow.db`, artifacts and the serving store on disk;
- stack: a new stack per round (PostgreSQL, moto_server, `mlflow server`), started through
  `lifecycle.stack.stack.up()` on free ports under a temporary root, the copy's environment
  from it (`MLFLOW_TRACKING_URI`, `AWS_*`, `LIFECYCLE_SHARED_STORE`), the DVC remote in its
  bucket; after the no-op run, `dvc push` to that remote is timed too.

A new stack per round keeps every stack run fresh (an empty registry, no champion to beat);
starting and stopping it is not timed.

Part 2, on the last round's stack: two `lifecycle serve` replicas in two folders (each its
own params.yaml with the project's serving block and its own BentoML store), following the
shared S3 store. The stack copy then makes v2 (`dvc repro` with train's max_iter changed and
deploy.tolerance raised so v2 is promoted), and `lifecycle rollback` switches v2 / v1 back
and forth `--switches` times. A poller reads the shared pointer object every 50 ms; one
client per replica sends a /predict every 50 ms throughout (the light load, and the probe):
a switch has reached a replica at its first answer with the new version. Failed requests
(any non-200 or transport error) are counted over the whole of part 2.

    python benchmarks/bench_stack.py --rounds 2 --switches 5

Writes benchmarks/results/stack.{json,md}.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.bench_lifecycle import child_env, fresh_copy  # noqa: E402
from lifecycle.stack import stack as stack_control  # noqa: E402
from lifecycle.stack.services import configure_dvc_remote, s3_client  # noqa: E402
from lifecycle.stack.settings import StackError  # noqa: E402
from tests.mlflow_server import free_port  # noqa: E402
from tests.serving.server import request_rows, serve_command  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
BIN = Path(sys.executable).parent
STAGES = ("ingest", "validate", "train", "evaluate", "deploy", "monitor")
TIMEOUT_S = 1800
PROBE_S = 0.05  # the pointer poller's and each replica client's interval
SWITCH_TIMEOUT_S = 60.0
BUCKET = "lifecycle"
POINTER_KEY = "serving/champion.json"


def base_env(**extra: str) -> dict[str, str]:
    """The Makefile's environment (`child_env`) without any tracking server or stack."""
    env = {k: v for k, v in child_env().items() if not k.startswith(("MLFLOW_", "LIFECYCLE_"))}
    env.update(extra)
    return env


def run(argv: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, str]:
    """Run a command to completion; its wall time and output (a failure ends the benchmark)."""
    start = time.perf_counter()
    done = subprocess.run(
        argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=TIMEOUT_S, check=False
    )
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(
            f"{' '.join(argv)} failed in {cwd}:\n{done.stdout[-3000:]}{done.stderr[-3000:]}"
        )
    return elapsed, done.stdout + done.stderr


def project_copy(dest: Path) -> Path:
    """HEAD's files in a new git repo, with the plots template `make install` writes."""
    fresh_copy("HEAD", dest)
    template = ROOT / ".dvc" / "plots_template.html"
    if template.exists():
        (dest / ".dvc" / "plots_template.html").write_bytes(template.read_bytes())
    return dest


def lifecycle_run(project: Path, env: dict[str, str]) -> dict[str, float]:
    """A fresh `dvc repro` (all six stages must run), then a no-op one (none may)."""
    fresh_s, output = run([str(BIN / "dvc"), "repro"], project, env)
    ran = [stage for stage in STAGES if f"Running stage '{stage}'" in output]
    if ran != list(STAGES):
        raise SystemExit(f"the fresh dvc repro in {project} ran {ran}, not all six stages")
    noop_s, output = run([str(BIN / "dvc"), "repro"], project, env)
    if "Running stage" in output:
        raise SystemExit(f"the second dvc repro in {project} ran a stage:\n{output[-2000:]}")
    return {"fresh_s": fresh_s, "noop_s": noop_s}


@contextlib.contextmanager
def started_stack(root: Path) -> Iterator[stack_control.RunningStack]:
    """A new stack on free ports under `root` (user postgres must reach it), stopped after."""
    root.mkdir(mode=0o755)
    root.chmod(0o755)
    options = stack_control.StackOptions(
        root=root,
        postgres_port=free_port(),
        s3_port=free_port(),
        mlflow_port=free_port(),
        bucket=BUCKET,
    )
    try:
        try:
            yield stack_control.up(options, environ={})
        except StackError as exc:
            raise SystemExit(f"the stack did not come up: {exc}") from None
    finally:
        if (root / "state.json").is_file():
            stack_control.down(root, purge=True)


def stack_round(workdir: Path, running: stack_control.RunningStack) -> dict[str, float]:
    project = project_copy(workdir)
    configure_dvc_remote(project, BUCKET, running.env["AWS_ENDPOINT_URL"])
    env = base_env(**running.env)
    measured = lifecycle_run(project, env)
    measured["push_s"], _ = run([str(BIN / "dvc"), "push"], project, env)
    return measured


# ---- part 2: a promotion and rollbacks reaching two replicas ----------------------------


@dataclass
class Answers:
    """One replica client's answers: (monotonic time, status or 0 for an error, version)."""

    name: str
    got: list[tuple[float, int, str]] = field(default_factory=list)


def client(url: str, record: dict[str, Any], answers: Answers, stop: threading.Event) -> None:
    with httpx.Client(base_url=url, timeout=10) as http:
        while not stop.is_set():
            started = time.monotonic()
            try:
                answer = http.post("/predict", json=record)
                version = answer.json().get("model_version", "?") if answer.is_success else "?"
                answers.got.append((time.monotonic(), answer.status_code, version))
            except httpx.HTTPError:
                answers.got.append((time.monotonic(), 0, "?"))
            time.sleep(max(0.0, PROBE_S - (time.monotonic() - started)))


def pointer_poller(s3: Any, changes: list[tuple[float, str]], stop: threading.Event) -> None:
    """Every 50 ms: the pointer object's version; each change is recorded with its time."""
    last = None
    while not stop.is_set():
        with contextlib.suppress(Exception):
            body = s3.get_object(Bucket=BUCKET, Key=POINTER_KEY)["Body"].read()
            version = str(json.loads(body)["tag"]).rsplit(":", 1)[-1]  # name:vN
            if version != last:
                changes.append((time.monotonic(), version))
                last = version
        time.sleep(PROBE_S)


def replica_folder(root: Path, name: str, project: Path) -> Path:
    """A folder holding only params.yaml: the project's serving block, its own store."""
    folder = root / name
    folder.mkdir()
    params = yaml.safe_load((project / "params.yaml").read_text())
    serving = params["serving"]
    contract = (project / params["data"]["contract"]).resolve()
    mine = {"data": {"contract": str(contract)}, "serving": serving}
    (folder / "params.yaml").write_text(yaml.safe_dump(mine, sort_keys=False))
    return folder


def make_v2(project: Path) -> None:
    """params.yaml: a changed hyperparameter, and a tolerance that lets v2 be promoted."""
    path = project / "params.yaml"
    text = path.read_text()
    text, n1 = re.subn(r"(\n    max_iter: )200\b", r"\g<1>150", text, count=1)
    text, n2 = re.subn(r"(\n  tolerance: )0\.01\b", r"\g<1>1.0", text, count=1)
    if (n1, n2) != (1, 1):
        raise SystemExit("params.yaml changed shape: cannot set max_iter / tolerance for v2")
    path.write_text(text)


def first_answer(answers: Answers, version: str, after: float) -> float | None:
    for at, status, got in answers.got:
        if at >= after and status == 200 and got == version:
            return at
    return None


def wait_for_both(clients: list[Answers], version: str, after: float) -> list[float]:
    deadline = time.monotonic() + SWITCH_TIMEOUT_S
    while True:
        reached = [first_answer(c, version, after) for c in clients]
        if all(t is not None for t in reached):
            return [t for t in reached if t is not None]
        if time.monotonic() > deadline:
            raise SystemExit(f"the replicas did not reach {version} in {SWITCH_TIMEOUT_S} s")
        time.sleep(PROBE_S)


def pointer_change(changes: list[tuple[float, str]], version: str, after: float) -> float:
    deadline = time.monotonic() + SWITCH_TIMEOUT_S
    while True:
        for at, got in changes:
            if at >= after and got == version:
                return at
        if time.monotonic() > deadline:
            raise SystemExit(f"the shared pointer never named {version}")
        time.sleep(PROBE_S)


def replicas_part(
    tmp: Path, project: Path, running: stack_control.RunningStack, switches: int
) -> dict[str, Any]:
    env = base_env(**running.env)
    s3 = s3_client(
        running.env["AWS_ENDPOINT_URL"],
        running.env["AWS_ACCESS_KEY_ID"],
        running.env["AWS_SECRET_ACCESS_KEY"],
    )
    replica_env = {k: v for k, v in running.env.items() if not k.startswith("MLFLOW_")}
    record = request_rows(1, seed=3).iloc[0].to_dict()
    stop = threading.Event()
    changes: list[tuple[float, str]] = []
    clients = [Answers("a"), Answers("b")]
    switches_done: list[dict[str, Any]] = []
    with contextlib.ExitStack() as servers:
        urls = []
        for answers in clients:
            folder = replica_folder(tmp, f"replica-{answers.name}", project)
            port = free_port()
            argv = [str(BIN / "lifecycle"), "serve", "--port", str(port)]
            server = servers.enter_context(
                serve_command(
                    argv, folder, port, {**replica_env, "LIFECYCLE_REPLICA_ID": answers.name}
                )
            )
            urls.append(server.url)
        threads = [threading.Thread(target=pointer_poller, args=(s3, changes, stop))]
        threads += [
            threading.Thread(target=client, args=(url, record, answers, stop))
            for url, answers in zip(urls, clients, strict=True)
        ]
        for thread in threads:
            thread.start()
        try:
            wait_for_both(clients, "v1", 0.0)
            make_v2(project)
            started = time.monotonic()
            run([str(BIN / "dvc"), "repro"], project, env)
            returned = time.monotonic()
            switches_done.append(
                measure_switch("promotion v1 -> v2", "v2", started, returned, changes, clients)
            )
            current, other = "v2", "v1"
            for number in range(switches):
                started = time.monotonic()
                run(
                    [str(BIN / "lifecycle"), "rollback", "--reason", f"bench {number}"],
                    project,
                    env,
                )
                returned = time.monotonic()
                label = f"rollback {current} -> {other}"
                switches_done.append(
                    measure_switch(label, other, started, returned, changes, clients)
                )
                current, other = other, current
        finally:
            stop.set()
            for thread in threads:
                thread.join()
    add_settled(switches_done, clients)
    answers = [a for c in clients for a in c.got]
    failed = [a for a in answers if a[1] != 200]
    return {
        "switches": switches_done,
        "requests": len(answers),
        "failed_requests": len(failed),
        "failed_statuses": sorted({a[1] for a in failed}),
        "reload_poll_s": yaml.safe_load((project / "params.yaml").read_text())["serving"][
            "reload_poll_s"
        ],
        "replica_workers": yaml.safe_load((project / "params.yaml").read_text())["serving"][
            "workers"
        ],
    }


def measure_switch(
    label: str,
    version: str,
    started: float,
    returned: float,
    changes: list[tuple[float, str]],
    clients: list[Answers],
) -> dict[str, Any]:
    changed = pointer_change(changes, version, started)
    reached = wait_for_both(clients, version, changed)
    both = max(reached)
    print(f"{label}: both replicas {both - changed:.2f} s after the pointer moved", flush=True)
    return {
        "what": label,
        "version": version,
        "changed_at": changed,
        "command_s": round(returned - started, 2),
        "pointer_to_both_s": round(both - changed, 3),
        "pointer_to_each_s": [round(t - changed, 3) for t in reached],
        "return_to_both_s": round(both - returned, 3),
    }


def add_settled(switches: list[dict[str, Any]], clients: list[Answers]) -> None:
    """Per switch: when every worker of both replicas answers with the new version (the
    first answer after the last old one before the next switch), and how many old answers
    came after a replica's first new one (another worker not yet switched)."""
    for number, switch in enumerate(switches):
        start = switch.pop("changed_at")
        end = switches[number + 1]["changed_at"] if number + 1 < len(switches) else float("inf")
        settled, stale = [], 0
        for answers in clients:
            window = [a for a in answers.got if start <= a[0] < end and a[1] == 200]
            old = [i for i, a in enumerate(window) if a[2] != switch["version"]]
            after = old[-1] + 1 if old else 0
            settled.append(window[after][0] - start if after < len(window) else float("nan"))
            first_new = next((i for i, a in enumerate(window) if a[2] == switch["version"]), 0)
            stale += sum(1 for i in old if i > first_new)
        switch["pointer_to_all_workers_s"] = round(max(settled), 3)
        switch["old_answers_after_first_new"] = stale


# ---- results ------------------------------------------------------------------------------


def median(values: list[float]) -> float:
    return round(statistics.median(values), 2)


def machine() -> dict[str, Any]:
    load = os.getloadavg()
    return {
        "arch": platform.machine(),
        "cores": os.cpu_count(),
        "load_at_start": [round(x, 2) for x in load],
        "python": platform.python_version(),
    }


def commit() -> str:
    return subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--switches", type=int, default=5, help="rollbacks after the promotion")
    args = parser.parse_args()
    started_info = machine()
    runs: dict[str, list[dict[str, float]]] = {"local": [], "stack": []}
    tmp = Path(tempfile.mkdtemp(prefix="bench-stack-"))
    tmp.chmod(0o755)
    try:
        replicas: dict[str, Any] = {}
        for number in range(args.rounds):
            order = ("local", "stack") if number % 2 == 0 else ("stack", "local")
            last = number == args.rounds - 1
            with started_stack(tmp / f"stack-root-{number}") as running:
                for side in order:
                    workdir = tmp / f"{side}-{number}"
                    if side == "local":
                        runs[side].append(lifecycle_run(project_copy(workdir), base_env()))
                    else:
                        runs[side].append(stack_round(workdir, running))
                    print(f"round {number + 1}/{args.rounds} {side}: {runs[side][-1]}", flush=True)
                if last:
                    replicas = replicas_part(tmp, tmp / f"stack-{number}", running, args.switches)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    result = summarise(args, started_info, runs, replicas)
    write_results(result)
    print(json.dumps(result["summary"], indent=2))


def summarise(
    args: argparse.Namespace,
    info: dict[str, Any],
    runs: dict[str, list[dict[str, float]]],
    replicas: dict[str, Any],
) -> dict[str, Any]:
    local, stack = runs["local"], runs["stack"]
    follow = [s["pointer_to_both_s"] for s in replicas["switches"]]
    settled = [s["pointer_to_all_workers_s"] for s in replicas["switches"]]
    summary = {
        "fresh_local_median_s": median([r["fresh_s"] for r in local]),
        "fresh_stack_median_s": median([r["fresh_s"] for r in stack]),
        "noop_local_median_s": median([r["noop_s"] for r in local]),
        "noop_stack_median_s": median([r["noop_s"] for r in stack]),
        "push_median_s": median([r["push_s"] for r in stack]),
        "follow_median_s": round(statistics.median(follow), 3),
        "follow_max_s": round(max(follow), 3),
        "settled_median_s": round(statistics.median(settled), 3),
        "settled_max_s": round(max(settled), 3),
        "failed_requests": replicas["failed_requests"],
        "requests": replicas["requests"],
    }
    summary["fresh_ratio"] = round(
        summary["fresh_stack_median_s"] / summary["fresh_local_median_s"], 2
    )
    summary["noop_ratio"] = round(
        summary["noop_stack_median_s"] / summary["noop_local_median_s"], 2
    )
    return {
        "rounds": args.rounds,
        "switches": args.switches,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "commit": commit(),
        "machine": {**info, "load_at_end": [round(x, 2) for x in os.getloadavg()]},
        "runs": {
            side: [{k: round(v, 2) for k, v in r.items()} for r in rs] for side, rs in runs.items()
        },
        "replicas": replicas,
        "summary": summary,
    }


def write_results(result: dict[str, Any]) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "stack.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    s, m, rep = result["summary"], result["machine"], result["replicas"]
    runs = result["runs"]

    def each(side: str, key: str) -> str:
        return ", ".join(f"{r[key]:.1f}" for r in runs[side])

    lines = [
        "# The lifecycle on the production stack, and a promotion reaching two replicas",
        "",
        f"`python benchmarks/bench_stack.py --rounds {result['rounds']} --switches "
        f"{result['switches']}` at commit {result['commit']}, {result['date']}, on "
        f"{m['arch']} with {m['cores']} cores (load average {m['load_at_start'][0]} at the "
        f"start, {m['load_at_end'][0]} at the end; the machine is shared with other sessions).",
        "",
        "## The default lifecycle: SQLite + local disk vs the stack",
        "",
        "Each round: a fresh copy of HEAD per side (after install), `dvc repro` from nothing (all "
        "six stages on the embedded default data), then a no-op `dvc repro`; the sides alternate "
        "their order per round. The stack side runs on a new stack per round (PostgreSQL 15, "
        "moto_server S3, `mlflow server --workers 1` with artifacts served through it, started "
        "by `lifecycle.stack.stack.up()` on free ports, not timed), with the environment "
        "`lifecycle stack env` gives and the DVC remote in its bucket; deploy also publishes "
        "the champion to the shared S3 store there.",
        "",
        "| | SQLite + local disk | stack | stack / local |",
        "| --- | ---: | ---: | ---: |",
        f"| fresh `dvc repro`, median (s) | {s['fresh_local_median_s']:.2f} | "
        f"{s['fresh_stack_median_s']:.2f} | {s['fresh_ratio']:.2f} |",
        f"| each round (s) | {each('local', 'fresh_s')} | {each('stack', 'fresh_s')} | |",
        f"| no-op `dvc repro`, median (s) | {s['noop_local_median_s']:.2f} | "
        f"{s['noop_stack_median_s']:.2f} | {s['noop_ratio']:.2f} |",
        f"| `dvc push` to the stack's remote, median (s) | - | {s['push_median_s']:.2f} | |",
        "",
        "## A promotion reaching both replicas",
        "",
        "Two `lifecycle serve` replicas, each in its own folder with its own BentoML store and "
        "the project's serving block unchanged (`serving.reload_poll_s` = "
        f"{rep['reload_poll_s']} s, {rep['replica_workers']} workers each), following the "
        "stack's shared store `s3://lifecycle/serving`. v2 comes from `dvc repro` in the stack "
        "copy with train's `max_iter` 200 -> 150 and `deploy.tolerance` 1.0 (so it is "
        "promoted); then `lifecycle rollback` switches back and forth. A poller reads the "
        "pointer object every 50 ms; one client per replica sends one `/predict` every 50 ms "
        "(the light load and the probe). Time = the first answer with the new version from "
        "the later of the two replicas, minus when the poller saw the pointer change (each "
        "side has up to 50 ms of probe resolution).",
        "",
        "| switch | command (s) | pointer -> first new answer, both replicas (s) | per "
        "replica (s) | pointer -> every answer new (s) | old answers after the first new | "
        "both replicas, from the command's return (s) |",
        "| --- | ---: | ---: | --- | ---: | ---: | ---: |",
    ]
    for sw in rep["switches"]:
        lines.append(
            f"| {sw['what']} | {sw['command_s']:.1f} | {sw['pointer_to_both_s']:.2f} | "
            f"{', '.join(f'{t:.2f}' for t in sw['pointer_to_each_s'])} | "
            f"{sw['pointer_to_all_workers_s']:.2f} | {sw['old_answers_after_first_new']} | "
            f"{sw['return_to_both_s']:.2f} |"
        )
    lines += [
        "",
        f"Median {s['follow_median_s']:.2f} s, max {s['follow_max_s']:.2f} s from the pointer "
        f"moving to both replicas answering with the new version, with `reload_poll_s` = "
        f"{rep['reload_poll_s']} s; until every answer of both replicas is new (all workers "
        f"switched): median {s['settled_median_s']:.2f} s, max {s['settled_max_s']:.2f} s. "
        "A negative time from the command's return means both replicas served the new "
        "version before the command had finished (it moves the pointer, then returns). "
        f"Failed requests during part 2: **{s['failed_requests']}** "
        f"of {s['requests']}"
        + (f" (statuses {rep['failed_statuses']})" if s["failed_requests"] else "")
        + ".",
        "",
        "## Caveats",
        "",
        "- Everything runs on one machine: PostgreSQL, moto and MLflow share the cores with "
        "the stages, and their network is loopback. A real S3 or a remote database adds "
        "round trips that moto on loopback does not have; the stack's cost here is mostly "
        "the tracking server's HTTP calls and PostgreSQL instead of in-process SQLite.",
        "- The local side's first MLflow run creates `mlflow.db` (several seconds of table "
        "migration); the stack's database is migrated when the server starts, which is not "
        "timed.",
        "- moto keeps objects in memory; `dvc push` to it measures DVC and the S3 protocol, "
        "not a disk.",
        "- The follow time is bounded by the poll interval: each replica worker polls the "
        "pointer every `reload_poll_s`, then fetches the model (hash-checked) into its own "
        "store the first time it sees a version and loads it. Rollbacks after the first two "
        "switches find both versions already in the replica's store.",
        "- Which worker of a replica answers a request is up to BentoML's load balancing: "
        "the first new answer may come from one worker while another still serves the old "
        "model; the 'every answer new' column and the count of old answers after the first "
        "new one measure that.",
        "- The switch commands' own times (the command column: a `lifecycle rollback` "
        "included) hold the CLI's imports and the registry calls through the tracking server on "
        "a loaded machine; they are reported, not part of the follow time.",
        "- The machine is shared with other sessions (see the load averages): quote the "
        "ratio and the follow time relative to `reload_poll_s`, not the absolute seconds.",
    ]
    if result["rounds"] < 2:
        lines.append(
            "- Run with `--rounds 1` for lack of time: one sample per side, no alternation."
        )
    (RESULTS / "stack.md").write_text("\n".join(lines) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
