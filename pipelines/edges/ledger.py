"""The stage ledger: every attempt of every stage, one JSON line at its start and its end.

`.lifecycle/ledger.jsonl` (relative to the project root, the working directory of a stage)
is appended to, never rewritten; each line is written in one `write` and fsynced. An
attempt writes a `started` record, runs, then a `finished` record:

    {"event": "started", "lifecycle_run": "3f9a1c2b7d4e", "stage": "train", "attempt": 1,
     "max_attempts": 3, "pid": 4242, "pid_start": 1234567, "repro_pid": 4201,
     "repro_pid_start": 1234000, "started_at": "...Z"}
    {"event": "finished", ...the same keys..., "finished_at": "...Z", "duration_s": 12.3,
     "status": "failed", "error": {"class": "TrackingUnavailableError", "message": "..."},
     "retrying": true, "inputs": {"pipelines/train.py": "<md5>", "features": "<md5>.dir",
     "data/validated/dataset.parquet": null}, "mlflow_run_id": null}

`status` is `succeeded`, `failed` or `interrupted` (Ctrl-C); a `started` record with no
`finished` one means the process was killed. `pid_start` (the process's start time in clock
ticks, from /proc) tells a live process from a later one that reuses its pid; `repro_pid`
is the `dvc repro` that started the stage (null outside one), so `lifecycle status` can
tell a repro still on its way to the next stage from one that ended.

`inputs` are the stage's deps in `dvc.yaml` (`${...}` resolved from `params.yaml`) hashed
the way DVC hashes them, so they compare with `dvc.lock`: a file's MD5, a directory's MD5
over its sorted (path, MD5) list plus `.dir`, null for a missing path (`.dvcignore` is not
applied). Hashing runs once per stage, not per attempt: about 0.1 s per 64 MB.

The lifecycle run id is the one the stage's MLflow runs are grouped under
(`lifecycle_run_id`).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from core.hashing import path_md5
from core.io import append_json_line, read_json_lines

logger = logging.getLogger(__name__)

LEDGER = Path(".lifecycle/ledger.jsonl")
DVC_FILE = Path("dvc.yaml")
PARAMS_FILE = Path("params.yaml")
_TEMPLATE = re.compile(r"\$\{\s*([^}\s]+)\s*\}")

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


def dvc_repro_process() -> tuple[int, int] | None:
    """The pid and start time (clock ticks) of the `dvc repro` that started this stage."""
    pid = os.getppid()
    for _ in range(4):  # stage <- sh -c <- dvc repro, give or take a wrapper
        if pid <= 1:
            break
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            stat = _proc_stat(pid)
        except OSError:
            break
        if b"repro" in cmdline and any(part.endswith(b"dvc") for part in cmdline):
            return pid, int(stat[19])  # field 22 of /proc/<pid>/stat, counted after the name
        pid = int(stat[1])  # the parent's pid
    return None


# --- processes ----------------------------------------------------------------------------


def _proc_stat(pid: int) -> list[str]:
    """The fields of /proc/<pid>/stat after the command name (field 3 onwards)."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def process_start(pid: int) -> int | None:
    """When the process started (clock ticks after boot), to tell a reused pid apart."""
    try:
        return int(_proc_stat(pid)[19])
    except (OSError, IndexError, ValueError):
        return None


def process_alive(pid: int, start: int | None) -> bool:
    """True when `pid` runs and is the process that started at `start` (when known)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # someone else's process: it exists
    try:
        fields = _proc_stat(pid)
    except OSError:
        return True  # no /proc: the signal check is all there is
    if fields[0] == "Z":
        return False  # exited, not yet reaped
    return start is None or int(fields[19]) == start


def other_dvc_repros(root: Path | None = None) -> list[tuple[int, str]]:
    """`dvc repro` processes working on the project at `root` (default: the working
    directory), other than the one that started this process: (pid, command line) each.

    Linux only (reads /proc); elsewhere, and for processes /proc does not let us inspect,
    nothing is found.
    """
    mine = _project_root(Path.cwd() if root is None else root)
    ours = dvc_repro_process()
    found = []
    for name in os.listdir("/proc"):  # one read: processes may come and go meanwhile
        if not name.isdigit():
            continue
        pid, entry = int(name), Path("/proc", name)
        if pid == os.getpid() or (ours is not None and pid == ours[0]):
            continue
        try:
            cmdline = [part for part in (entry / "cmdline").read_bytes().split(b"\0") if part]
            if b"repro" not in cmdline or not any(part.endswith(b"dvc") for part in cmdline):
                continue
            if _proc_stat(pid)[0] == "Z":
                continue
            cwd = Path(os.readlink(entry / "cwd"))
        except (OSError, IndexError):
            continue  # gone meanwhile, or not ours to inspect
        if _project_root(cwd) == mine:
            found.append((pid, b" ".join(cmdline).decode(errors="replace")))
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
    """One attempt of a stage, as its `started` record describes it."""

    lifecycle_run: str
    stage: str
    attempt: int
    max_attempts: int
    pid: int
    pid_start: int | None
    repro_pid: int | None  # the `dvc repro` that started the stage, if one did
    repro_pid_start: int | None
    started_at: str
    started: float  # time.monotonic() at the start

    def record(self) -> dict[str, Any]:
        return {
            "event": "started",
            "lifecycle_run": self.lifecycle_run,
            "stage": self.stage,
            "attempt": self.attempt,
            "max_attempts": self.max_attempts,
            "pid": self.pid,
            "pid_start": self.pid_start,
            "repro_pid": self.repro_pid,
            "repro_pid_start": self.repro_pid_start,
            "started_at": self.started_at,
        }


def start_attempt(
    lifecycle_run: str, stage: str, attempt: int, max_attempts: int, ledger: Path = LEDGER
) -> Attempt:
    """Append the attempt's `started` record (a failure to write is logged, not raised)."""
    global _attempt_mlflow_run_id
    _attempt_mlflow_run_id = None
    pid = os.getpid()
    repro_pid, repro_pid_start = dvc_repro_process() or (None, None)
    started = Attempt(
        lifecycle_run=lifecycle_run,
        stage=stage,
        attempt=attempt,
        max_attempts=max_attempts,
        pid=pid,
        pid_start=process_start(pid),
        repro_pid=repro_pid,
        repro_pid_start=repro_pid_start,
        started_at=_now(),
        started=time.monotonic(),
    )
    _append_safely(ledger, started.record())
    return started


def finish_attempt(
    attempt: Attempt,
    status: str,
    error: BaseException | None,
    inputs: Mapping[str, str | None] | None,
    *,
    retrying: bool = False,
    ledger: Path = LEDGER,
) -> dict[str, Any]:
    """Append the attempt's `finished` record (a failure to write is logged, not raised)."""
    record = {
        **attempt.record(),
        "event": "finished",
        "finished_at": _now(),
        "duration_s": round(time.monotonic() - attempt.started, 3),
        "status": status,
        "error": None
        if error is None
        else {"class": type(error).__name__, "message": str(error) or repr(error)},
        "retrying": retrying,
        "inputs": None if inputs is None else dict(inputs),
        "mlflow_run_id": _attempt_mlflow_run_id,
    }
    _append_safely(ledger, record)
    return record


def _append_safely(path: Path, record: Mapping[str, Any]) -> None:
    try:
        append_json_line(path, record)
    except Exception as exc:  # the ledger must never fail the stage
        logger.warning(
            "ledger %s: could not record %s %s of stage %s (%s: %s); the stage goes on",
            path,
            record.get("event"),
            f"attempt {record.get('attempt')}",
            record.get("stage"),
            type(exc).__name__,
            exc,
        )


def read_ledger(path: Path = LEDGER) -> list[dict[str, Any]]:
    """Every record, oldest first; a line that is not a JSON object is skipped with a warning.

    Raises FileNotFoundError when there is no ledger.
    """
    records = []
    for number, record in read_json_lines(path):
        if not isinstance(record, dict) or "stage" not in record:
            logger.warning("%s line %d: not a ledger record; skipped", path, number)
            continue
        records.append(record)
    return records


# --- input hashes -------------------------------------------------------------------------


def stage_inputs(
    stage: str, dvc_file: Path = DVC_FILE, params_file: Path = PARAMS_FILE
) -> dict[str, str | None]:
    """The stage's deps in `dvc.yaml`, `${...}` resolved from `params.yaml`, each hashed.

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


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
