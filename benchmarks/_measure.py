"""Shared benchmark plumbing: each measurement runs in a fresh child process.

A fresh process per (task, size) gives an honest peak memory (`ru_maxrss`) and keeps one
measurement's caches from helping the next. Times are medians over repeats in the child.
"""

from __future__ import annotations

import json
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def peak_rss_mib() -> float:
    """This process's peak resident memory so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def time_repeats(call: Callable[[], Any], repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return times


def child_report(times: list[float], baseline_mib: float, **extra: Any) -> None:
    """Print the child's result as the last line of stdout, for the parent to read."""
    print(
        json.dumps(
            {
                "median_s": round(statistics.median(times), 4),
                "min_s": round(min(times), 4),
                "max_s": round(max(times), 4),
                "repeats": len(times),
                "peak_rss_mib": round(peak_rss_mib(), 1),
                "rss_before_task_mib": round(baseline_mib, 1),
                **extra,
            }
        )
    )


def run_child(script: Path, *args: str, timeout: int = 1800) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, str(script), "--child", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"benchmark child {args} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def machine() -> dict[str, Any]:
    import os

    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "note": "shared, noisy machine: compare medians side by side within one run",
    }


def write_results(name: str, results: dict[str, Any], table: str) -> None:
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(results, indent=2) + "\n")
    (RESULTS / f"{name}.md").write_text(table)
