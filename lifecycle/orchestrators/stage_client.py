"""The engine's side of every generated task: run `lifecycle task STAGE` in the project.

Copied by `lifecycle export` beside the generated definitions as `lifecycle_tasks.py`, and
imported by them. Standard library only: it runs in the orchestrator's own environment,
which shares no package with the project's. Where the project and its Python live is
baked in at export and can be overridden with LIFECYCLE_PROJECT and LIFECYCLE_PYTHON (a
worker whose checkout lives elsewhere).

Exit codes map to exceptions (`core.exit_codes` in the project): 75 `TransientStageFailure`
(the engine retries it), 1 `PermanentStageFailure` and 2 `BadConfigFailure` (never retried).

Two modes: `shared` runs the stage in the project folder (every task on one machine or
volume); `workers` runs it in a fresh clone of the project's Git repository, with the
upstream tasks' `dvc.lock` merged into it, `dvc repro --pull STAGE` and `dvc push`, and
returns the new `dvc.lock` for the next tasks (a share-nothing worker; it needs a DVC remote).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

# Filled in by `lifecycle export`.
PROJECT = "@PROJECT@"
PYTHON = "@PYTHON@"
REPOSITORY = "@REPOSITORY@"  # workers mode: what a worker clones (a URL or a path)
MODE = "@MODE@"

TRANSIENT, FAILED, BAD_CONFIG = 75, 1, 2


class StageFailure(Exception):
    """A stage failed; `code` is its exit code, `result` what `lifecycle task` reported."""

    def __init__(self, stage: str, code: int, result: dict) -> None:
        self.stage, self.code, self.result = stage, code, result
        error = result.get("error_class") or "error"
        super().__init__(
            f"stage {stage} failed with exit code {code} ({error}): {result.get('message')}"
        )


class TransientStageFailure(StageFailure):
    """Exit code 75: the outside world failed; worth another attempt."""


class PermanentStageFailure(StageFailure):
    """Exit code 1: retrying will not help; fix the cause, then re-run the failed task."""


class BadConfigFailure(PermanentStageFailure):
    """Exit code 2: params.yaml or the data contract is invalid."""


def project() -> Path:
    return Path(os.environ.get("LIFECYCLE_PROJECT", PROJECT))


def python() -> str:
    return os.environ.get("LIFECYCLE_PYTHON", PYTHON)


def run_stage(
    stage: str,
    run_id: str,
    upstream_locks: Sequence[str | None] = (),
    *,
    stage_retries: bool = False,
) -> dict:
    """Run one stage; its `lifecycle task` result, or the `StageFailure` for its exit code.

    In workers mode the result carries `dvc_lock`, the text of dvc.lock after the stage, to
    hand to the next tasks; `upstream_locks` are the upstream tasks' (merged into the
    worker's dvc.lock before the stage runs, so DVC knows what they produced).
    `stage_retries`: the stage retries its transient errors itself, for an engine that
    cannot retry on `TransientStageFailure` only (it then sets no retries of its own).
    """
    retries = ["--stage-retries"] if stage_retries else []
    if os.environ.get("LIFECYCLE_MODE", MODE) != "workers":
        return _task([stage, "--run-id", run_id, *retries], project())
    worker = Path(tempfile.mkdtemp(prefix=f"lifecycle-{stage}-"))
    try:
        repository = os.environ.get("LIFECYCLE_REPOSITORY", REPOSITORY)
        _checked(["git", "clone", "--quiet", repository, str(worker / "clone")], stage)
        arguments = [stage, "--run-id", run_id, "--pull", "--push", *retries]
        for number, text in enumerate(lock for lock in upstream_locks if lock):
            path = worker / f"upstream-{number}.lock"
            path.write_text(text, encoding="utf-8")
            arguments += ["--upstream-lock", str(path)]
        result = _task(arguments, worker / "clone")
        lock = worker / "clone" / "dvc.lock"
        result["dvc_lock"] = lock.read_text(encoding="utf-8") if lock.exists() else None
        return result
    finally:
        shutil.rmtree(worker, ignore_errors=True)


def run_watch_once(run_id: str) -> dict:
    """One `lifecycle watch --once` iteration in the project: its lock, cooldown and daily
    budget are the iteration's own. A failed iteration is a `PermanentStageFailure`."""
    env = {**os.environ, "LIFECYCLE_RUN_ID": run_id}
    process = subprocess.run(
        [python(), "-m", "lifecycle", "watch", "--once"],
        cwd=project(),
        env=env,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    result = {"stage": "watch", "run_id": run_id, "exit_code": process.returncode}
    if process.returncode != 0:
        raise PermanentStageFailure("watch", process.returncode, result)
    return result


def _task(arguments: list[str], cwd: Path) -> dict:
    process = subprocess.run(
        [python(), "-m", "lifecycle", "task", *arguments],
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        text=True,
        check=False,
    )  # stderr (the stage's log) goes straight to the engine's task log
    lines = [line for line in process.stdout.splitlines() if line.strip()]
    try:
        result = json.loads(lines[-1]) if lines else {}
    except json.JSONDecodeError:
        result = {"message": lines[-1]}
    print(json.dumps(result), file=sys.stderr)
    code = process.returncode
    stage = arguments[0]
    if code == 0:
        return result
    if code == TRANSIENT:
        raise TransientStageFailure(stage, code, result)
    if code == BAD_CONFIG:
        raise BadConfigFailure(stage, code, result)
    raise PermanentStageFailure(stage, code, result)


def _checked(argv: list[str], stage: str) -> None:
    process = subprocess.run(argv, stdin=subprocess.DEVNULL, check=False)
    if process.returncode != 0:  # a clone that fails is the network or the remote
        raise TransientStageFailure(stage, TRANSIENT, {"message": " ".join(argv) + " failed"})
