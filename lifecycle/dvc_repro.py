"""`dvc repro` as the watch runs it: in the project root, in its own process group, timed.

DVC reruns only what changed. The result says which stages ran (from DVC's "Running stage"
lines) and keeps the end of its stderr, so a failed run can be recorded and the loop goes on.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from core.records.watch import Purpose, ReproResult

logger = logging.getLogger(__name__)

BIN = Path(sys.executable).parent
STDERR_TAIL_LINES = 20


def ran_stages(stdout: str) -> list[str]:
    """The stages `dvc repro` ran, from its "Running stage 'name':" lines."""
    return [
        line.split("'")[1]
        for line in stdout.splitlines()
        if line.startswith("Running stage '") and line.count("'") >= 2
    ]


def run_dvc_repro(
    root: Path,
    purpose: Purpose,
    run_id: str,
    on_start: Callable[[subprocess.Popen[str] | None], None] = lambda _: None,
) -> ReproResult:
    """`dvc repro` in `root`, in its own process group (Ctrl-C reaches only the watch).

    `on_start` is called with the running process, then with None when it has ended.
    """
    dvc = BIN / "dvc"
    argv = [str(dvc), "repro"] if dvc.exists() else [sys.executable, "-m", "dvc", "repro"]
    env = {**os.environ, "LIFECYCLE_RUN_ID": run_id}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"  # stages run `python -m ...`
    logger.info("dvc repro (%s): started", purpose)
    start = time.perf_counter()
    process = subprocess.Popen(
        argv,
        cwd=root,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        errors="replace",
        start_new_session=True,
    )
    on_start(process)
    try:
        stdout, stderr = process.communicate()
    finally:
        on_start(None)
    seconds = time.perf_counter() - start
    result = ReproResult(
        purpose=purpose,
        returncode=process.returncode,
        seconds=round(seconds, 3),
        stages=ran_stages(stdout),
        stderr_tail=[line for line in stderr.splitlines() if line.strip()][-STDERR_TAIL_LINES:],
    )
    if result.returncode == 0:
        logger.info(
            "dvc repro (%s): done in %.1f s; stages run: %s",
            purpose,
            seconds,
            ", ".join(result.stages) or "none (up to date)",
        )
    else:
        logger.error(
            "dvc repro (%s): exit code %d after %.1f s; its stderr ends with:\n  %s",
            purpose,
            result.returncode,
            seconds,
            "\n  ".join(result.stderr_tail) or "(nothing)",
        )
    return result


def describe_failure(repro: ReproResult) -> str:
    """The one-line message of a failed run: its purpose, exit code and last stderr line."""
    last = repro.stderr_tail[-1] if repro.stderr_tail else "(no stderr)"
    return f"dvc repro ({repro.purpose}) failed with exit code {repro.returncode}: {last}"
