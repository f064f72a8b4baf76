"""`lifecycle task STAGE`: one stage as an orchestrator's task, in the project's environment.

The engine's task (in the engine's own virtual environment) runs this by subprocess. It runs
`dvc repro --single-item STAGE` (the engine owns the order; DVC still skips a stage whose
deps, params and outs are unchanged), or, on a share-nothing worker, `dvc repro --pull STAGE`
then `dvc push`. The stage gets the orchestrator's run id (`LIFECYCLE_RUN_ID`: the ledger,
MLflow's parent run and `lifecycle status` group by it) and makes one attempt
(`LIFECYCLE_RETRY_OWNER=orchestrator`): the engine retries, on exit code 75 only. For an
engine whose retries cannot tell exit code 75 from 1 or 2 (Kubeflow Pipelines retries any
failure), `stage_retries` leaves the retries to the stage itself (`retry` in params.yaml,
transient errors only) and the engine sets none: one owner of retries either way.

The exit code is the stage's (`core.exit_codes`): 0, 75 transient, 1 permanent, 2 bad config.
The last line of stdout is a JSON `TaskResult`: whether the stage ran or DVC skipped it.
"""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

from core import exit_codes
from core.io import write_text
from core.paths import DVC_LOCK, LEDGER
from core.records.ledger import AttemptFinished, read_ledger
from lifecycle.dvc_repro import BIN, ran_stages

logger = logging.getLogger(__name__)

_EXITED = re.compile(r"exited with (-?\d+)")
_DVC_LOCKED = "Unable to acquire lock"
TAIL_LINES = 20


@dataclass(frozen=True)
class TaskResult:
    stage: str
    run_id: str
    outcome: Literal["ran", "skipped", "failed"]
    exit_code: int
    seconds: float
    error_class: str | None = None  # the stage's error, from its ledger attempt
    message: str | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


def run_task(
    stage: str,
    root: Path,
    run_id: str,
    *,
    pull: bool = False,
    push: bool = False,
    upstream_locks: Sequence[Path] = (),
    stage_retries: bool = False,
) -> TaskResult:
    """Run one stage under DVC in `root` and say how it ended.

    `upstream_locks` (a worker's) are the upstream tasks' dvc.lock files, merged into
    `root`'s dvc.lock first (`merge_locks`), so DVC sees what they produced. With
    `stage_retries` the stage retries its transient errors itself (the engine must not)."""
    if upstream_locks:
        lock = root / DVC_LOCK
        texts = [lock.read_text(encoding="utf-8")] if lock.exists() else []
        texts += [path.read_text(encoding="utf-8") for path in upstream_locks]
        write_text(merge_locks(texts), lock)
    before = _finished_attempts(root, stage, run_id)
    dvc = [str(BIN / "dvc")] if (BIN / "dvc").exists() else [sys.executable, "-m", "dvc"]
    argv = [*dvc, "repro", "--pull", stage] if pull else [*dvc, "repro", "--single-item", stage]
    env = {
        **os.environ,
        "LIFECYCLE_RUN_ID": run_id,
        exit_codes.RETRY_OWNER_ENV: exit_codes.ORCHESTRATOR,
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",  # stages run `python -m`
    }
    if stage_retries:
        del env[exit_codes.RETRY_OWNER_ENV]
    start = time.perf_counter()
    code, stdout, tail = _run(argv, root, env)
    if code == 0 and push:
        code, _, tail = _run([*dvc, "push", "--quiet"], root, env)
        if code != 0:  # the stage's outs are in the local cache only: worth another attempt
            return _result(stage, run_id, "failed", exit_codes.TRANSIENT, start, None, tail)
    attempts = _finished_attempts(root, stage, run_id)[len(before) :]
    last = attempts[-1] if attempts else None
    if code == 0:
        ran = stage in ran_stages(stdout) or bool(attempts)
        return _result(stage, run_id, "ran" if ran else "skipped", 0, start, None, None)
    error_class = last.error.error_class if last is not None and last.error else None
    message = last.error.message if last is not None and last.error else None
    return _result(
        stage, run_id, "failed", _stage_exit_code(tail), start, error_class, message or tail
    )


def merge_locks(texts: Sequence[str]) -> str:
    """dvc.lock texts merged: every stage's entry, a later text's winning. Pure.

    Each text is a whole dvc.lock (`schema: '2.0'`, `stages:`); a worker's own (its clone's
    committed one) comes first, then the upstream tasks' in the order given."""
    merged: dict[str, Any] = {}
    schema = "2.0"
    for text in texts:
        loaded = yaml.safe_load(text) or {}
        if not isinstance(loaded, dict) or not isinstance(loaded.get("stages", {}), dict):
            raise ValueError("an upstream dvc.lock is not a DVC lock file (no `stages:` mapping)")
        schema = str(loaded.get("schema", schema))
        merged.update(loaded.get("stages") or {})
    return yaml.safe_dump({"schema": schema, "stages": merged}, sort_keys=False)


def _stage_exit_code(tail: list[str]) -> int:
    """The stage's own exit code, from DVC's "failed to run: ..., exited with N" line.

    DVC itself exits 255 whatever the stage's code. DVC's lock held by another run is
    transient; any other DVC failure (a bad dvc.yaml, a missing dep) is permanent."""
    for line in reversed(tail):
        found = _EXITED.search(line)
        if found:
            code = int(found.group(1))
            known = (exit_codes.TRANSIENT, exit_codes.FAILED, exit_codes.BAD_CONFIG)
            return code if code in known else exit_codes.FAILED
        if _DVC_LOCKED in line:
            return exit_codes.TRANSIENT
    return exit_codes.FAILED


def _run(argv: list[str], root: Path, env: dict[str, str]) -> tuple[int, str, list[str]]:
    """Run `argv`, its output streamed to our stderr (the engine's task log) as it comes."""
    logger.info("%s", " ".join(argv))
    process = subprocess.Popen(
        argv,
        cwd=root,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
    )
    assert process.stdout is not None
    lines: list[str] = []
    tail: deque[str] = deque(maxlen=TAIL_LINES)
    for line in process.stdout:
        sys.stderr.write(line)
        lines.append(line)
        if line.strip():
            tail.append(line.rstrip())
    return process.wait(), "".join(lines), list(tail)


def _finished_attempts(root: Path, stage: str, run_id: str) -> list[AttemptFinished]:
    path = root / LEDGER
    if not path.exists():
        return []
    return [
        entry
        for entry in read_ledger(path)
        if isinstance(entry, AttemptFinished)
        and entry.stage == stage
        and entry.lifecycle_run == run_id
    ]


def _result(
    stage: str,
    run_id: str,
    outcome: Literal["ran", "skipped", "failed"],
    code: int,
    start: float,
    error_class: str | None,
    message: str | list[str] | None,
) -> TaskResult:
    if isinstance(message, list):
        message = message[-1] if message else None
    return TaskResult(
        stage=stage,
        run_id=run_id,
        outcome=outcome,
        exit_code=code,
        seconds=round(time.perf_counter() - start, 3),
        error_class=error_class,
        message=message,
    )
