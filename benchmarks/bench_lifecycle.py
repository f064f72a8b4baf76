"""The default lifecycle, fresh and no-op, for two commits side by side in one run.

Each run takes a fresh copy of each commit (`git archive` into a new git repo, so no
lifecycle products), times `dvc repro` from nothing (all six stages on the embedded default
data), then times a second `dvc repro` that has nothing to do. The two commits alternate
within every run, so a busy machine slows both alike; the result is the median per commit
and the ratio of the medians. Stage durations come from each copy's stage ledger.

    python benchmarks/bench_lifecycle.py --before 0cb3339 --after HEAD --runs 3

Writes benchmarks/results/lifecycle.{json,md}.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
BIN = Path(sys.executable).parent
STAGES = ("ingest", "validate", "train", "evaluate", "deploy", "monitor")
NOOP_REPEATS = 3


def resolve(ref: str) -> str:
    return subprocess.run(
        ["git", "rev-parse", "--short", ref], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()


def fresh_copy(commit: str, dest: Path) -> Path:
    """The commit's files in a new git repository (DVC needs one), nothing else."""
    archive = subprocess.run(["git", "archive", commit], cwd=ROOT, capture_output=True, check=True)
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(dest, filter="data")
    git = ["git", "-c", "user.name=bench", "-c", "user.email=bench@example.com"]
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-qm", f"copy of {commit}"]):
        subprocess.run([*git, *args], cwd=dest, check=True, capture_output=True)
    return dest


def child_env() -> dict[str, str]:
    """The Makefile's environment: the venv first, usage tracking off, no tracking server."""
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "PYTHONPATH")}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env.update(
        DO_NOT_TRACK="true",
        MLFLOW_DISABLE_TELEMETRY="true",
        BENTOML_DO_NOT_TRACK="true",
        GX_ANALYTICS_ENABLED="false",
        DVC_NO_ANALYTICS="1",
    )
    return env


def timed_repro(project: Path) -> tuple[float, str]:
    start = time.perf_counter()
    done = subprocess.run(
        [str(BIN / "dvc"), "repro"],
        cwd=project,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        tail = done.stdout[-3000:] + done.stderr[-3000:]
        raise SystemExit(f"dvc repro failed in {project}:\n{tail}")
    return elapsed, done.stdout


def stage_durations(project: Path) -> dict[str, float]:
    """Each stage's last successful attempt, from the ledger (its body, after imports)."""
    durations: dict[str, float] = {}
    ledger = project / ".lifecycle" / "ledger.jsonl"
    for line in ledger.read_text(encoding="utf-8").splitlines():
        entry = json.loads(line)
        if entry.get("event") == "finished" and entry.get("status") == "succeeded":
            durations[entry["stage"]] = float(entry["duration_s"])
    return durations


def measure(commit: str, workdir: Path) -> dict[str, Any]:
    project = fresh_copy(commit, workdir)
    fresh_s, output = timed_repro(project)
    ran = [stage for stage in STAGES if f"Running stage '{stage}'" in output]
    if ran != list(STAGES):
        raise SystemExit(f"{commit}: the fresh dvc repro ran {ran}, not all six stages")
    noop = []
    for _ in range(NOOP_REPEATS):
        seconds, output = timed_repro(project)
        if "Running stage" in output:
            raise SystemExit(f"{commit}: the second dvc repro ran a stage:\n{output}")
        noop.append(seconds)
    noop_s = statistics.median(noop)
    return {"fresh_s": fresh_s, "noop_s": noop_s, "stages": stage_durations(project)}


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "fresh_median_s": round(statistics.median(r["fresh_s"] for r in runs), 2),
        "fresh_s": [round(r["fresh_s"], 2) for r in runs],
        "noop_median_s": round(statistics.median(r["noop_s"] for r in runs), 2),
        "noop_s": [round(r["noop_s"], 2) for r in runs],
        "stage_body_median_s": {
            stage: round(statistics.median(r["stages"].get(stage, float("nan")) for r in runs), 2)
            for stage in STAGES
        },
    }


def write_results(result: dict[str, Any]) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "lifecycle.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    before, after = result["before"], result["after"]
    lines = [
        "# The default lifecycle: fresh `dvc repro` and no-op `dvc repro`",
        "",
        f"`python benchmarks/bench_lifecycle.py --before {before['commit']} --after "
        f"{after['commit']} --runs {result['runs']}`, on {result['machine']} "
        f"({result['date']}). Each run times both commits one after the other, each in a fresh "
        "copy (all six stages on the embedded default data, after install); medians over the "
        f"runs, the no-op time being the median of {NOOP_REPEATS} repeats per run.",
        "",
        "| | before | after | after / before |",
        "| --- | ---: | ---: | ---: |",
        f"| commit | {before['commit']} | {after['commit']} | |",
        f"| fresh `dvc repro`, median (s) | {before['fresh_median_s']:.2f} | "
        f"{after['fresh_median_s']:.2f} | {result['fresh_ratio']:.2f} |",
        f"| each run (s) | {', '.join(f'{s:.1f}' for s in before['fresh_s'])} | "
        f"{', '.join(f'{s:.1f}' for s in after['fresh_s'])} | |",
        f"| no-op `dvc repro`, median (s) | {before['noop_median_s']:.2f} | "
        f"{after['noop_median_s']:.2f} | {result['noop_ratio']:.2f} |",
    ]
    for stage in STAGES:
        b, a = before["stage_body_median_s"][stage], after["stage_body_median_s"][stage]
        lines.append(f"| {stage}: stage body (s, ledger) | {b:.2f} | {a:.2f} | |")
    lines += [
        "",
        "The stage body is what the ledger times (after the stage's imports); the fresh time "
        "also holds each stage's interpreter start and imports and DVC's own work between "
        "stages.",
        "",
    ]
    (RESULTS / "lifecycle.md").write_text("\n".join(lines), encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", required=True, help="the commit to compare against")
    parser.add_argument("--after", default="HEAD")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    commits = {"before": resolve(args.before), "after": resolve(args.after)}
    runs: dict[str, list[dict[str, Any]]] = {"before": [], "after": []}
    with tempfile.TemporaryDirectory(prefix="bench-lifecycle-") as tmp:
        for number in range(args.runs):
            order = ("before", "after") if number % 2 == 0 else ("after", "before")
            for side in order:
                workdir = Path(tmp) / f"{side}-{number}"
                runs[side].append(measure(commits[side], workdir))
                print(
                    f"run {number + 1}/{args.runs} {side} ({commits[side]}): fresh "
                    f"{runs[side][-1]['fresh_s']:.1f} s, no-op {runs[side][-1]['noop_s']:.2f} s",
                    flush=True,
                )
    before = {"commit": commits["before"], **summarise(runs["before"])}
    after = {"commit": commits["after"], **summarise(runs["after"])}
    result = {
        "runs": args.runs,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "date": time.strftime("%Y-%m-%d"),
        "before": before,
        "after": after,
        "fresh_ratio": round(after["fresh_median_s"] / before["fresh_median_s"], 3),
        "noop_ratio": round(after["noop_median_s"] / before["noop_median_s"], 3),
    }
    write_results(result)
    print(json.dumps({k: result[k] for k in ("fresh_ratio", "noop_ratio")}))


if __name__ == "__main__":
    main()
