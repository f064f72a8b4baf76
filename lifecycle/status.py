"""`lifecycle status`: what the latest lifecycle run did, stage by stage, and what serves.

Built from the stage ledger (`core.records.ledger`), `dvc.yaml` (the stages, in order), the
serving store's champion pointer, the deploy stage's `reports/deploy/champion.json`
(`core.records.deploy.read_champion`), the monitor's last verdict (`lifecycle.monitor_status`)
and the last readable watch iteration. Reading only: nothing here changes a file or a process.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from core.clock import format_time, now_text, parse_time
from core.paths import CHAMPION, DVC_FILE, LEDGER, MONITOR_DECISION, ROLLOUT_HISTORY
from core.records import RecordError, RecordMissingError
from core.records.deploy import read_champion
from core.records.ledger import AttemptFinished, AttemptStarted, LedgerEntry, read_ledger
from core.records.watch import read_watch_history
from lifecycle.monitor_status import format_monitor_status, read_monitor_status
from lifecycle.rollout_status import format_rollout_status, rollout_status, status_pointer
from pipelines.edges.ledger import process_alive


class StatusError(RuntimeError):
    """No status can be given (no ledger, an unknown run); the message says why."""


@dataclass(frozen=True)
class StageStatus:
    """One stage in one lifecycle run.

    `state` is `succeeded`, `failed` or `interrupted` (Ctrl-C, or a `started` record without
    a `finished` one: the process was killed), `running` (its process is alive), or `not run`,
    and then `note` says why: DVC skipped it because nothing it depends on changed
    (`unchanged`, shown with the last run where it succeeded), or an earlier stage failed or
    was interrupted (`not reached`), or an earlier stage or the run's `dvc repro` still runs
    (`pending`).
    """

    stage: str
    state: str  # succeeded | failed | interrupted | running | not run
    note: str  # e.g. "unchanged; last succeeded ...", "retried once"
    attempts: int  # in the stage's latest invocation in this run; 0 when not run
    duration_s: float | None  # first start to last finish of that invocation (or so far)
    started_at: str | None
    finished_at: str | None
    error: dict[str, str] | None  # {"class": ..., "message": ...} of the last attempt
    mlflow_run_id: str | None
    pid: int | None
    last_succeeded: dict[str, Any] | None  # {"lifecycle_run", "finished_at"} before this run


@dataclass(frozen=True)
class RunStatus:
    """A lifecycle run as the ledger saw it, plus what serves now."""

    lifecycle_run: str
    state: str  # succeeded | failed | interrupted | running
    repro_pid: int | None  # the run's `dvc repro`, while it still runs
    started_at: str
    ledger: str
    stages: list[StageStatus]
    serving: dict[str, Any] = field(default_factory=dict)
    registry_champion: dict[str, Any] | None = None
    monitor: dict[str, Any] | None = None  # the monitor's last verdict (None: none yet)
    watch: dict[str, Any] | None = None
    rollout: dict[str, Any] = field(default_factory=dict)  # in progress, and the last verdict
    recent_runs: list[str] = field(default_factory=list)  # newest first, at most 10

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def lifecycle_status(
    run: str | None = None,
    *,
    ledger: Path = LEDGER,
    dvc_file: Path = DVC_FILE,
    store: Path | None = None,
    champion: Path = CHAMPION,
    watch_log: Path | None = None,
    monitor_decision: Path = MONITOR_DECISION,
    rollout_history: Path = ROLLOUT_HISTORY,
    quality_floors: Mapping[str, float] | None = None,
) -> RunStatus:
    """The status of lifecycle run `run` (default: the latest in the ledger).

    `quality_floors` (`monitor.quality.thresholds`) are shown when the monitor's decision
    holds no quality summary to take its floors from.
    """
    try:
        entries = read_ledger(ledger)
    except FileNotFoundError:
        raise StatusError(f"no lifecycle run recorded yet in {ledger}; run dvc repro") from None
    runs = _runs_newest_first(entries)
    if not runs:
        raise StatusError(f"no lifecycle run recorded yet in {ledger}; run dvc repro")
    chosen = run or runs[0]
    if chosen not in runs:
        raise StatusError(
            f"no lifecycle run {chosen!r} in {ledger}; recent runs: {', '.join(runs[:10])}"
        )
    repro = _running_repro(entries, chosen)
    stages = _stage_statuses(entries, chosen, _dvc_stages(dvc_file), repro)
    return RunStatus(
        lifecycle_run=chosen,
        state="running" if repro is not None else _run_state(stages),
        repro_pid=repro,
        started_at=min(e.started_at for e in entries if e.lifecycle_run == chosen),
        ledger=str(ledger),
        stages=stages,
        serving=_serving(store),
        registry_champion=_registry_champion(champion),
        monitor=read_monitor_status(monitor_decision, store, quality_floors),
        watch=_last_watch(watch_log),
        rollout=rollout_status(status_pointer(store), rollout_history),
        recent_runs=runs[:10],
    )


def format_status(status: RunStatus) -> list[str]:
    """The status as lines of text for a terminal."""
    repro = f", dvc repro pid {status.repro_pid}" if status.repro_pid is not None else ""
    lines = [
        f"lifecycle run {status.lifecycle_run}: {status.state}{repro} "
        f"(started {_shown_time(status.started_at)}; ledger {status.ledger})",
        "",
    ]
    rows = [("stage", "state", "attempts", "duration", "mlflow run", "note")]
    for stage in status.stages:
        rows.append(
            (
                stage.stage,
                stage.state,
                str(stage.attempts) if stage.attempts else "-",
                "-" if stage.duration_s is None else f"{stage.duration_s:.1f} s",
                stage.mlflow_run_id or "-",
                stage.note,
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        lines.append("  ".join([*cells, row[-1]]).rstrip())
    failures = [s for s in status.stages if s.error is not None and s.state != "succeeded"]
    if failures:
        lines.append("")
    for stage in failures:
        assert stage.error is not None
        lines.append(
            f"{stage.stage} {stage.state}: {stage.error['class']}: {stage.error['message']}"
        )
    lines.append("")
    lines.extend(_format_serving(status))
    return lines


# --- the ledger -------------------------------------------------------------------------


def _runs_newest_first(entries: Sequence[LedgerEntry]) -> list[str]:
    """Lifecycle run ids, the one with the newest entry first."""
    order = {entry.lifecycle_run: position for position, entry in enumerate(entries)}
    return sorted(order, key=order.__getitem__, reverse=True)


def _dvc_stages(dvc_file: Path) -> list[str]:
    try:
        stages = yaml.safe_load(dvc_file.read_text(encoding="utf-8"))["stages"]
    except (OSError, yaml.YAMLError, KeyError, TypeError) as exc:
        raise StatusError(f"{dvc_file}: cannot read its stages ({exc})") from None
    return list(stages)


def _stage_statuses(
    entries: Sequence[LedgerEntry], run: str, stages: Sequence[str], repro: int | None
) -> list[StageStatus]:
    """Every stage's status in `run`; `repro` is the pid of its `dvc repro` when that still
    runs (then the stages after the last one recorded are yet to come, not skipped)."""
    mine = {
        name: [e for e in entries if e.lifecycle_run == run and e.stage == name] for name in stages
    }
    last_recorded = max((i for i, name in enumerate(stages) if mine[name]), default=-1)
    statuses: list[StageStatus] = []
    blocked: str | None = None  # a note for stages after one that failed or still runs
    for position, name in enumerate(stages):
        before = _last_success(entries, name, run)
        if mine[name]:
            status = _invocation_status(name, _latest_invocation(mine[name]), before)
            statuses.append(status)
            if status.state in ("failed", "interrupted"):
                blocked = f"not reached ({name} {status.state})"
            elif status.state == "running":
                blocked = f"pending ({name} is running)"
            continue
        if blocked is None and repro is not None and position > last_recorded:
            blocked = f"pending (dvc repro, pid {repro}, is still running)"
        if blocked is not None:
            note = blocked
        elif before is not None:
            note = (
                f"unchanged (skipped by DVC); last succeeded {_shown_time(before['finished_at'])}"
                f" in run {before['lifecycle_run']}"
            )
        else:
            note = "unchanged (skipped by DVC); never succeeded"
        statuses.append(
            StageStatus(name, "not run", note, 0, None, None, None, None, None, None, before)
        )
    return statuses


def _running_repro(entries: Sequence[LedgerEntry], run: str) -> int | None:
    """The pid of the run's `dvc repro` (from its newest entry) if that process still runs."""
    newest = next((e for e in reversed(entries) if e.lifecycle_run == run), None)
    if newest is None or not newest.repro_pid:
        return None
    alive = process_alive(newest.repro_pid, newest.repro_pid_start)
    return newest.repro_pid if alive else None


def _latest_invocation(entries: Sequence[LedgerEntry]) -> list[LedgerEntry]:
    """The entries of the stage's latest invocation (its attempts start again at 1)."""
    starts = [i for i, e in enumerate(entries) if isinstance(e, AttemptStarted) and e.attempt == 1]
    return list(entries[starts[-1] :] if starts else entries)


def _invocation_status(
    name: str, entries: Sequence[LedgerEntry], before: dict[str, Any] | None
) -> StageStatus:
    starts: dict[int, AttemptStarted] = {}
    finishes: dict[int, AttemptFinished] = {}
    for entry in entries:
        if isinstance(entry, AttemptStarted):
            starts[entry.attempt] = entry
        else:
            finishes[entry.attempt] = entry
    last = max([*starts, *finishes])
    finished = finishes.get(last)
    started: LedgerEntry = starts.get(last) or finishes[last]
    first_start = min(entry.started_at for entry in entries)
    if finished is not None:
        state: str = finished.status
        end: str | None = finished.finished_at
        duration = _seconds_between(first_start, finished.finished_at)
    elif process_alive(started.pid, started.pid_start):
        state, end = "running", None
        duration = _seconds_between(first_start, now_text())
    else:
        state, end, duration = "interrupted", None, None
    ended = [finishes[number] for number in sorted(finishes)]
    failed_before = sum(1 for f in ended if f.status == "failed") - (state == "failed")
    notes = []
    if state == "interrupted" and finished is None:
        notes.append(f"killed: no finish recorded (pid {started.pid} is gone)")
    elif state == "running":
        notes.append(f"pid {started.pid}")
    if failed_before:
        notes.append(f"{failed_before} failed attempt(s) retried")
    return StageStatus(
        stage=name,
        state=state,
        note="; ".join(notes),
        attempts=len({*starts, *finishes}),
        duration_s=duration,
        started_at=first_start,
        finished_at=end,
        error=None if finished is None or finished.error is None else finished.error.model_dump(),
        mlflow_run_id=next((f.mlflow_run_id for f in reversed(ended) if f.mlflow_run_id), None),
        pid=started.pid or None,
        last_succeeded=before,
    )


def _last_success(
    entries: Iterable[LedgerEntry], stage: str, other_than: str
) -> dict[str, Any] | None:
    """The stage's last successful finish in another run than `other_than`."""
    found = None
    for entry in entries:
        if (
            isinstance(entry, AttemptFinished)
            and entry.stage == stage
            and entry.status == "succeeded"
            and entry.lifecycle_run != other_than
        ):
            found = entry
    if found is None:
        return None
    return {"lifecycle_run": found.lifecycle_run, "finished_at": found.finished_at}


def _run_state(stages: Sequence[StageStatus]) -> str:
    states = {stage.state for stage in stages}
    for state in ("running", "failed", "interrupted"):
        if state in states:
            return state
    return "succeeded"


# --- what serves ------------------------------------------------------------------------


def _serving(store: Path | None) -> dict[str, Any]:
    """The serving store's champion pointer (what `lifecycle serve` loads)."""
    from serving.model_store import ModelStoreError, read_champion_pointer

    if store is None:
        return {"store": None, "pointer": None, "error": "params.yaml cannot be used"}
    try:
        pointer = read_champion_pointer(store)
    except ModelStoreError as exc:
        return {"store": str(store), "pointer": None, "error": str(exc)}
    return {"store": str(store), "pointer": pointer, "error": None}


def _registry_champion(path: Path) -> dict[str, Any] | None:
    """What the deploy stage last recorded as the registry's champion (None: no file yet;
    just the path: none promoted yet)."""
    try:
        champion = read_champion(path)
    except RecordMissingError:
        return None
    except RecordError as exc:
        return {"path": str(path), "error": str(exc)}
    return {"path": str(path), **(champion.model_dump() if champion is not None else {})}


def _last_watch(log: Path | None) -> dict[str, Any] | None:
    """The last iteration of `lifecycle watch` that its log holds (damaged lines skipped)."""
    if log is None:
        return None
    records = read_watch_history(log)
    if not records:
        return None
    last = records[-1]
    return {
        "path": str(log),
        "time": format_time(last.time),
        "iteration": last.iteration,
        "action": last.action,
        "verdict": last.verdict.action if last.verdict else None,
        "decided_by": last.verdict.decided_by if last.verdict else None,
        "skipped_reason": last.skipped_reason,
        "deploy": last.deploy.describe() if last.deploy is not None else None,
        "error": last.error,
    }


def _format_serving(status: RunStatus) -> list[str]:
    lines = []
    serving = status.serving
    pointer = serving.get("pointer")
    if serving.get("error"):
        lines.append(f"serving store {serving.get('store') or '-'}: {serving['error']}")
    elif pointer is None:
        lines.append(f"serving store {serving['store']}: no champion deployed yet")
    else:
        lines.append(
            f"serving store {serving['store']}: {pointer['tag']} (mlflow run "
            f"{pointer.get('run_id') or '-'}, since {_shown_time(pointer.get('updated_at'))})"
        )
    champion = status.registry_champion
    if champion is None:
        lines.append(f"registry champion ({CHAMPION}): none recorded yet")
    elif "error" in champion:
        lines.append(f"registry champion ({champion['path']}): {champion['error']}")
    elif set(champion) == {"path"}:
        lines.append(f"registry champion ({champion['path']}): none promoted yet")
    else:
        version = champion["version"]
        sha = champion["content_sha256"] or "-"
        shown = f"v{version}"
        agreement = ""
        if pointer is not None:
            agreement = (
                "; the serving store agrees"
                if pointer.get("version") == f"v{version}"
                else f"; the serving store serves {pointer.get('version')}"
            )
        lines.append(
            f"registry champion ({champion['path']}): {shown}, sha256 {sha[:12]}, "
            f"mlflow run {champion['mlflow_run_id'] or '-'}{agreement}"
        )
    lines.extend(format_rollout_status(status.rollout))
    lines.extend(format_monitor_status(status.monitor))
    watch = status.watch
    if watch is None:
        lines.append("watch: no iteration recorded")
    else:
        detail = f": {watch['error']}" if watch["error"] else ""
        verdict = (
            f" (verdict {watch['verdict']}, decided by {watch['decided_by'] or 'no signal'})"
            if watch["verdict"]
            else ""
        )
        deploy = f"; deploy: {watch['deploy']}" if watch.get("deploy") else ""
        lines.append(
            f"last watch iteration ({watch['path']}): #{watch['iteration']} at "
            f"{_shown_time(watch['time'])}, {watch['action']}{verdict}{deploy}{detail}"
        )
    return lines


# --- time -------------------------------------------------------------------------------


def _seconds_between(start: str, end: str) -> float | None:
    began, ended = parse_time(start), parse_time(end)
    if began is None or ended is None:
        return None
    return round((ended - began).total_seconds(), 3)


def _shown_time(text: Any) -> str:
    """An ISO time as `YYYY-MM-DD HH:MM:SS UTC`; anything unparsable as written."""
    if not text:
        return "-"
    moment = parse_time(str(text))
    return str(text) if moment is None else moment.strftime("%Y-%m-%d %H:%M:%S UTC")
