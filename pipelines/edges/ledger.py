"""The stage ledger: every attempt of every stage, one JSON line at its start and its end.

`.lifecycle/ledger.jsonl` (relative to the project root, the working directory of a stage)
is appended to, never rewritten; each line is written in one `write` and fsynced. Each line
is a `core.records.ledger` entry (`AttemptStarted`, `AttemptFinished`), the models every
reader uses too, so `lifecycle status` can tell what ran, failed or was killed. The
lifecycle run id is the one the stage's MLflow runs are grouped under (`lifecycle_run_id`).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import yaml

from core.clock import now_text
from core.config import DEFAULT_PARAMS
from core.hashing import path_md5
from core.io import append_json_line
from core.paths import DVC_FILE, LEDGER
from core.records.ledger import (
    AttemptError,
    AttemptFinished,
    AttemptStarted,
    LedgerEntry,
    Status,
    ledger_line,
)

logger = logging.getLogger(__name__)

_TEMPLATE = re.compile(r"\$\{\s*([^}\s]+)\s*\}")
_SAME_START_S = 0.01  # start times this close are one process (a float read twice)

# Set by `run_stage` for the duration of a stage, so every part of it agrees on one id.
_current_run_id: str | None = None
# Set by `pipelines.edges.tracking` when the stage's MLflow run starts; read when the attempt ends.
_attempt_mlflow_run_id: str | None = None


# --- the lifecycle run id ---------------------------------------------------------------


def lifecycle_run_id() -> str:
    """The id shared by the stages of one lifecycle run.

    `LIFECYCLE_RUN_ID` when set (the `watch` loop sets it); else the id the running stage
    already chose; else one derived from the `dvc repro` process that started this one
    (its pid and start time, so every stage of one repro derives the same id); else a fresh
    one.
    """
    explicit = os.environ.get("LIFECYCLE_RUN_ID")
    if explicit:
        return explicit
    if _current_run_id is not None:
        return _current_run_id
    return _dvc_repro_id() or uuid.uuid4().hex[:12]


@contextlib.contextmanager
def lifecycle_run(run_id: str) -> Iterator[str]:
    """Make `lifecycle_run_id()` answer `run_id` inside the block (one stage's lifetime)."""
    global _current_run_id
    before, _current_run_id = _current_run_id, run_id
    try:
        yield run_id
    finally:
        _current_run_id = before


def _dvc_repro_id() -> str | None:
    found = dvc_repro_process()
    if found is None:
        return None
    pid, start_time = found
    return hashlib.sha256(f"{pid}:{start_time}".encode()).hexdigest()[:12]


def dvc_repro_process() -> tuple[int, float] | None:
    """The pid and start time of the `dvc repro` that started this stage."""
    try:
        # stage <- sh -c <- dvc repro, give or take a wrapper
        for parent in psutil.Process().parents()[:4]:
            if parent.pid > 1 and _is_dvc_repro(parent.cmdline()):
                return parent.pid, parent.create_time()
    except psutil.Error:
        pass  # gone meanwhile, or not ours to inspect
    return None


# --- processes ----------------------------------------------------------------------------


def _is_dvc_repro(cmdline: Sequence[str] | None) -> bool:
    """A command line that runs `dvc repro` (possibly through a wrapper such as `time`)."""
    return bool(cmdline) and "repro" in cmdline and any(part.endswith("dvc") for part in cmdline)


def process_start(pid: int) -> float | None:
    """When the process started (seconds since the epoch), to tell a reused pid apart."""
    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return None


def process_alive(pid: int, start: float | None) -> bool:
    """True when `pid` runs and is the process that started at `start` (when known)."""
    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return False  # exited, not yet reaped
        return start is None or abs(process.create_time() - start) < _SAME_START_S
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        return True  # someone else's process: it exists


def other_dvc_repros(root: Path | None = None) -> list[tuple[int, str]]:
    """`dvc repro` processes working on the project at `root` (default: the working
    directory), other than this process and its ancestors (the repro that started this
    stage, and any wrapper around it such as `time dvc repro`): (pid, command line) each.

    Processes whose command line or working directory we may not read are not found.
    """
    mine = _project_root(Path.cwd() if root is None else root)
    ours = {os.getpid(), *(parent.pid for parent in psutil.Process().parents())}
    found = []
    for process in psutil.process_iter(["cmdline", "cwd", "status"]):
        info = process.info
        if process.pid in ours or not _is_dvc_repro(info["cmdline"]):
            continue
        if info["status"] == psutil.STATUS_ZOMBIE or not info["cwd"]:
            continue  # exited, or not ours to inspect
        if _project_root(Path(info["cwd"])) == mine:
            found.append((process.pid, " ".join(part for part in info["cmdline"] if part)))
    return sorted(found)


def _project_root(path: Path) -> Path:
    """The DVC project `path` lies in: the nearest folder holding `.dvc`, else `path`."""
    path = path.resolve()
    return next((folder for folder in (path, *path.parents) if (folder / ".dvc").is_dir()), path)


# --- the MLflow run of the current attempt ------------------------------------------------


def note_mlflow_run(run_id: str) -> None:
    """Record the MLflow run the current attempt started (called by `pipelines.edges.tracking`)."""
    global _attempt_mlflow_run_id
    _attempt_mlflow_run_id = run_id


# --- attempts -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Attempt:
    """One running attempt of a stage: its `started` entry and when it began (monotonic)."""

    entry: AttemptStarted
    started: float  # time.monotonic() at the start


def start_attempt(
    lifecycle_run: str, stage: str, attempt: int, max_attempts: int, ledger: Path = LEDGER
) -> Attempt:
    """Append the attempt's `started` entry (a failure to write is logged, not raised).

    For example:

        {"event": "started", "lifecycle_run": "3f9a1c2b7d4e", "stage": "train", "attempt": 1,
         "max_attempts": 3, "pid": 4242, "pid_start": 1796136087.9, "repro_pid": 4201,
         "repro_pid_start": 1796136080.25, "started_at": "...Z"}

    `pid_start` (the process's start time, from psutil) tells a live process from a later one
    that reuses its pid; `repro_pid` is the `dvc repro` that started the stage (null outside
    one), so `lifecycle status` can tell a repro still on its way to the next stage from one
    that ended.
    """
    global _attempt_mlflow_run_id
    _attempt_mlflow_run_id = None
    pid = os.getpid()
    repro_pid, repro_pid_start = dvc_repro_process() or (None, None)
    entry = AttemptStarted(
        lifecycle_run=lifecycle_run,
        stage=stage,
        attempt=attempt,
        max_attempts=max_attempts,
        pid=pid,
        pid_start=process_start(pid),
        repro_pid=repro_pid,
        repro_pid_start=repro_pid_start,
        started_at=now_text(),
    )
    _append_safely(ledger, entry)
    return Attempt(entry, time.monotonic())


def finish_attempt(
    attempt: Attempt,
    status: Status,
    error: BaseException | None,
    inputs: Mapping[str, str | None] | None,
    *,
    retrying: bool = False,
    ledger: Path = LEDGER,
) -> AttemptFinished:
    """Append the attempt's `finished` entry (a failure to write is logged, not raised).

    The `started` keys again, then how it ended, for example:

        {"event": "finished", ..., "finished_at": "...Z", "duration_s": 12.3,
         "status": "failed", "error": {"class": "TrackingUnavailableError", "message": "..."},
         "retrying": true, "inputs": {"pipelines/train.py": "<md5>", "features": "<md5>.dir",
         "data/validated/dataset.parquet": null}, "mlflow_run_id": null}

    `status` is `succeeded`, `failed` or `interrupted` (Ctrl-C); a `started` record with no
    `finished` one means the process was killed.
    """
    entry = AttemptFinished(
        **attempt.entry.model_dump(exclude={"event"}),
        finished_at=now_text(),
        duration_s=round(time.monotonic() - attempt.started, 3),
        status=status,
        error=None
        if error is None
        else AttemptError(error_class=type(error).__name__, message=str(error) or repr(error)),
        retrying=retrying,
        inputs=None if inputs is None else dict(inputs),
        mlflow_run_id=_attempt_mlflow_run_id,
    )
    _append_safely(ledger, entry)
    return entry


def _append_safely(path: Path, entry: LedgerEntry) -> None:
    try:
        append_json_line(path, ledger_line(entry))
    except Exception as exc:  # the ledger must never fail the stage
        logger.warning(
            "ledger %s: could not record %s %s of stage %s (%s: %s); the stage goes on",
            path,
            entry.event,
            f"attempt {entry.attempt}",
            entry.stage,
            type(exc).__name__,
            exc,
        )


# --- input hashes -------------------------------------------------------------------------


def stage_inputs(
    stage: str, dvc_file: Path = DVC_FILE, params_file: Path = DEFAULT_PARAMS
) -> dict[str, str | None]:
    """The stage's deps in `dvc.yaml`, `${...}` resolved from `params.yaml`, each hashed.

    Hashed the way DVC hashes them (`core.hashing.path_md5`), so they compare with
    `dvc.lock`: a file's MD5, a directory's MD5 over its sorted (path, MD5) list plus `.dir`,
    None for a missing path (`.dvcignore` is not applied). Called once per stage, not per
    attempt: hashing takes about 0.1 s per 64 MB.

    Paths are relative to the folder of `dvc_file`, as DVC reads them. Raises KeyError for
    a stage `dvc.yaml` does not declare, OSError or ValueError for files that cannot be
    read or parsed.
    """
    stages = yaml.safe_load(dvc_file.read_text(encoding="utf-8"))["stages"]
    params_text = params_file.read_text(encoding="utf-8") if params_file.exists() else ""
    params = yaml.safe_load(params_text) or {}
    hashes: dict[str, str | None] = {}
    for dep in stages[stage].get("deps") or []:
        path = _resolve(next(iter(dep)) if isinstance(dep, dict) else str(dep), params)
        hashes[path] = path_md5(dvc_file.parent / path)
    return hashes


def _resolve(template: str, params: Mapping[str, Any]) -> str:
    """Replace `${a.b}` with params.yaml's value at a.b; an unknown key is left as written."""

    def lookup(match: re.Match[str]) -> str:
        value: Any = params
        for part in match.group(1).split("."):
            if not isinstance(value, Mapping) or part not in value:
                return match.group(0)
            value = value[part]
        return str(value)

    return _TEMPLATE.sub(lookup, template)
