"""`lifecycle watch`: run the monitor on an interval, and retrain when the policy says so.

One iteration, in the project root:

1. `dvc repro`: DVC reruns only what changed; the monitor stage reruns when the prediction
   log or the labels changed, and writes `reports/monitor/decision.json` (one window's
   verdict) and `data/monitor/window_labelled.parquet`.
2. The verdict is weighed against the earlier iterations (`monitoring.policy`).
3. To retrain: the window's labelled rows whose ids no earlier feedback batch holds are
   written as `<ingest.feedback.directory>/batch-<UTC time>.parquet`, and `dvc repro` runs
   again (ingest appends the batch; train, evaluate, deploy and monitor follow). The deploy
   stage's `reports/deploy/decision.json` says whether the new model was promoted.
4. One JSON line is appended to `monitor.watch.log` (see `build_record`), and the same
   record goes to MLflow as a run named `watch` (a warning, not a failure, when MLflow is
   unreachable).

A failed `dvc repro` is recorded with its exit code and the end of its stderr; the loop goes
on at the next interval. One watch at a time: `monitor.watch.lock` is held for the life of
the process. SIGTERM or Ctrl-C finishes the current iteration, then exits; a second one
stops the running `dvc repro` as well.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from types import FrameType
from typing import Any

import pandas as pd
from filelock import FileLock, Timeout

from core.config import Params
from core.hashing import file_md5
from core.io import append_json_line, read_json, read_json_lines, write_parquet
from core.paths import CHAMPION, DEPLOY_DECISION, LABELLED_WINDOW, MONITOR_DECISION
from features.contract import DataContract, load_contract
from monitoring.policy import PolicyDecision, apply_retrain_policy, format_time
from pipelines.edges import feedback as feedback_files
from pipelines.edges.mlflow_connection import bounded_http_retries, redacted_tracking_uri

logger = logging.getLogger(__name__)

BIN = Path(sys.executable).parent
STDERR_TAIL_LINES = 20
# what an iteration did: nothing; retrained (or tried to); or wanted to, but had no new
# labelled rows (skipped) or an unusable window (refused)
ACTIONS = ("none", "retrained", "retrain_failed", "skipped", "refused")
WINDOW_KEYS = ("rows", "labelled_rows", "first_time", "last_time")


class WatchError(RuntimeError):
    """An iteration that could not complete; the message is meant for the user."""


class FeedbackError(WatchError):
    """The window's labelled rows cannot become a feedback batch."""


class WatchLockedError(WatchError):
    """Another `lifecycle watch` holds the lock."""


# --- pure: records, rows, names ----------------------------------------------------------


@dataclass(frozen=True)
class ReproResult:
    """One `dvc repro`: why it ran, how it ended, which stages ran."""

    purpose: str  # "monitor" or "retrain"
    returncode: int
    seconds: float
    stages: list[str]
    stderr_tail: list[str]

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "seconds": round(self.seconds, 3)}


@dataclass(frozen=True)
class FeedbackBatch:
    """A written feedback batch and what was left out of it."""

    path: Path
    rows: int
    md5: str
    dropped_known: int  # ids already in an earlier feedback batch
    dropped_duplicate: int  # ids repeated within the window (the newest row was kept)
    dropped_unlabelled: int

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "path": str(self.path)}


@dataclass
class IterationOutcome:
    """What one iteration gathered; `build_record` turns it into the watch-log line."""

    iteration: str
    started: dt.datetime
    repros: list[ReproResult] = field(default_factory=list)
    verdict: Mapping[str, Any] | None = None
    policy: PolicyDecision | None = None
    action: str = "none"  # one of ACTIONS
    feedback: FeedbackBatch | None = None
    skipped_reason: str | None = None
    deploy: dict[str, Any] | None = None
    error: str | None = None


def key_column(contract: DataContract) -> str:
    """The row id feedback batches are matched on (ingest and deploy use the same one)."""
    try:
        return feedback_files.row_id_column(contract)
    except feedback_files.FeedbackError as exc:
        raise FeedbackError(str(exc)) from None


def select_feedback_rows(
    window: pd.DataFrame, known_ids: set[Any], contract: DataContract
) -> tuple[pd.DataFrame, dict[str, int]]:
    """The window's labelled rows that are new to the feedback data, in the contract's columns.

    Rows without a label, rows whose id an earlier batch holds, and all but the newest row
    of a repeated id are left out; the counts say how many of each.
    """
    missing = [name for name in contract.column_names if name not in window.columns]
    if missing:
        raise FeedbackError(
            f"{LABELLED_WINDOW} lacks contract column(s) {missing}; a feedback batch needs "
            "every column of the contract (are the label batches complete? see "
            "monitor.labels.directory)"
        )
    key = key_column(contract)
    rows = window.loc[:, contract.column_names]
    labelled = rows[rows[contract.label].notna()]
    gaps = {
        column.name: int(labelled[column.name].isna().sum())
        for column in contract.columns
        if not column.nullable and column.role != "id" and labelled[column.name].isna().any()
    }
    if gaps:
        shown = ", ".join(f"'{name}' ({count} rows)" for name, count in gaps.items())
        raise FeedbackError(
            f"{LABELLED_WINDOW} has labelled rows without a value in required column(s) "
            f"{shown}; a feedback batch needs them all (are the label batches complete? see "
            "monitor.labels.directory)"
        )
    unique = labelled.drop_duplicates(subset=key, keep="last")
    new = unique[~unique[key].isin(known_ids)].reset_index(drop=True)
    counts = {
        "dropped_unlabelled": len(rows) - len(labelled),
        "dropped_duplicate": len(labelled) - len(unique),
        "dropped_known": len(unique) - len(new),
    }
    return new, counts


def batch_file_name(moment: dt.datetime, suffix: str = "") -> str:
    """`batch-20261125T063700123Z[-suffix].parquet`: UTC to the millisecond, sorts by time."""
    moment = moment.astimezone(dt.UTC)
    stamp = f"{moment:%Y%m%dT%H%M%S}{moment.microsecond // 1000:03d}Z"
    return f"batch-{stamp}{f'-{suffix}' if suffix else ''}.parquet"


def ran_stages(stdout: str) -> list[str]:
    """The stages `dvc repro` ran, from its "Running stage 'name':" lines."""
    return [
        line.split("'")[1]
        for line in stdout.splitlines()
        if line.startswith("Running stage '") and line.count("'") >= 2
    ]


def summarize_deploy(
    decision: Mapping[str, Any] | None, champion_before: int | None
) -> dict[str, Any]:
    """The deploy outcome of a retrain; `decision` is None when the deploy stage did not run."""
    if decision is None:
        return {
            "ran": False,
            "promoted": False,
            "champion_before": champion_before,
            "champion_after": champion_before,
            "reasons": [
                "The deploy stage did not run in the retrain's `dvc repro`: nothing it "
                "depends on changed (the retrained model is the one deployed last)."
            ],
        }
    return {
        "ran": True,
        "promoted": decision.get("promote") is True,
        "champion_before": _version(decision.get("champion_before")),
        "champion_after": _version(decision.get("champion_after")),
        "reasons": [str(reason) for reason in decision.get("reasons") or []],
    }


def build_record(outcome: IterationOutcome, finished: dt.datetime) -> dict[str, Any]:
    """The watch log's JSON line for one iteration (also the MLflow run's `record.json`)."""
    verdict = outcome.verdict or {}
    window = verdict.get("window")
    if isinstance(window, Mapping):
        shown = {key: window.get(key) for key in WINDOW_KEYS}
        if "missing_columns" in window:
            shown["missing_columns"] = window["missing_columns"]
    durations = {f"{r.purpose}_repro": round(r.seconds, 3) for r in outcome.repros}
    durations["total"] = round((finished - outcome.started).total_seconds(), 3)
    return {
        "time": format_time(outcome.started),
        "iteration": outcome.iteration,
        "window": shown if isinstance(window, Mapping) else None,
        "verdict": None
        if outcome.verdict is None
        else {
            "retrain": verdict.get("retrain"),
            "reasons": list(verdict.get("reasons") or []),
            "champion": verdict.get("champion"),
        },
        "policy": None if outcome.policy is None else outcome.policy.to_dict(),
        "action": outcome.action,
        "skipped_reason": outcome.skipped_reason,
        "feedback": None if outcome.feedback is None else outcome.feedback.to_dict(),
        "deploy": outcome.deploy,
        "repro": [r.to_dict() for r in outcome.repros],
        "durations_s": durations,
        "error": outcome.error,
    }


def mlflow_tags(record: Mapping[str, Any]) -> dict[str, str]:
    """String tags for the iteration's MLflow run: what a search in the UI filters on."""
    deploy = record.get("deploy") or {}
    verdict = record.get("verdict") or {}
    policy = record.get("policy") or {}
    tags = {
        "kind": "watch",
        "watch_iteration": str(record["iteration"]),
        "action": str(record["action"]),
        "verdict_retrain": _flag(verdict.get("retrain")),
        "policy_retrain": _flag(policy.get("retrain")),
        "promoted": _flag(deploy.get("promoted")),
        "failed": _flag(record.get("error") is not None),
    }
    if record.get("error"):
        tags["error"] = str(record["error"])[:5000]
    if record.get("feedback"):
        tags["feedback_batch"] = str(record["feedback"]["path"])
        tags["feedback_md5"] = str(record["feedback"]["md5"])
    return tags


def mlflow_metrics(record: Mapping[str, Any]) -> dict[str, float]:
    """Numeric facts of the iteration, for charts across iterations."""
    window = record.get("window") or {}
    deploy = record.get("deploy") or {}
    policy = record.get("policy") or {}
    metrics: dict[str, Any] = {
        "window_rows": window.get("rows"),
        "labelled_rows": window.get("labelled_rows"),
        "verdict_retrain": _number((record.get("verdict") or {}).get("retrain")),
        "policy_retrain": _number(policy.get("retrain")),
        "retrain_streak": policy.get("streak"),
        "retrains_last_24h": policy.get("retrains_last_24h"),
        "retrained": _number(record["action"] in ("retrained", "retrain_failed")),
        "feedback_rows": (record.get("feedback") or {}).get("rows", 0),
        "promoted": _number(deploy.get("promoted")),
        "champion_version_after": deploy.get("champion_after"),
        "failed": _number(record.get("error") is not None),
    }
    metrics.update({f"{k}_seconds": v for k, v in (record.get("durations_s") or {}).items()})
    return {k: float(v) for k, v in metrics.items() if isinstance(v, int | float)}


def _version(described: Any) -> int | None:
    if isinstance(described, Mapping) and described.get("version") is not None:
        return int(described["version"])
    return None


def _flag(value: Any) -> str:
    return "true" if value is True else "false"


def _number(value: Any) -> int:
    return 1 if value is True else 0


# --- edges: files, subprocesses, MLflow ---------------------------------------------------


def read_history(path: Path) -> list[dict[str, Any]]:
    """The watch log's records, oldest first; unreadable lines are skipped with a warning."""
    if not path.exists():
        return []
    records = []
    for number, record in read_json_lines(path):
        if isinstance(record, dict):
            records.append(record)
        else:
            logger.warning("%s: line %d is not a JSON object; skipped", path, number)
    return records


def read_monitor_decision(path: Path = MONITOR_DECISION) -> dict[str, Any]:
    """The monitor stage's verdict on the current window."""
    try:
        decision = read_json(path)
    except FileNotFoundError:
        raise WatchError(
            f"{path}: not found after `dvc repro` (the monitor stage writes it)"
        ) from None
    except ValueError as exc:
        raise WatchError(f"{path}: not valid JSON: {exc}") from None
    if not isinstance(decision, dict) or not isinstance(decision.get("retrain"), bool):
        raise WatchError(f"{path}: no boolean 'retrain'; is the monitor stage up to date?")
    return decision


def read_known_ids(directory: Path, key: str) -> set[Any]:
    """Every id in the feedback batches already written."""
    known: set[Any] = set()
    try:
        for batch in feedback_files.list_batches(directory):
            known.update(feedback_files.read_ids(batch, key).dropna().tolist())
    except feedback_files.FeedbackError as exc:
        raise FeedbackError(str(exc)) from None
    return known


def write_feedback_batch(
    window_path: Path, directory: Path, contract: DataContract, moment: dt.datetime
) -> tuple[FeedbackBatch | None, dict[str, int]]:
    """Write the window's new labelled rows as a feedback batch; None when there are none."""
    try:
        window = pd.read_parquet(window_path)
    except FileNotFoundError:
        raise FeedbackError(
            f"{window_path}: not found; the monitor stage writes the window's labelled rows there"
        ) from None
    rows, counts = select_feedback_rows(
        window, read_known_ids(directory, key_column(contract)), contract
    )
    if rows.empty:
        return None, counts
    path = directory / batch_file_name(moment)
    if path.exists():
        raise FeedbackError(f"{path} exists already; not overwritten")
    write_parquet(rows, path)
    batch = FeedbackBatch(path=path, rows=len(rows), md5=file_md5(path), **counts)
    return batch, counts


def read_champion_version(path: Path = CHAMPION) -> int | None:
    """The serving champion's version as the deploy stage last recorded it."""
    try:
        return _version(read_json(path))
    except (FileNotFoundError, ValueError):
        return None


def run_dvc_repro(
    root: Path,
    purpose: str,
    run_id: str,
    on_start: Callable[[subprocess.Popen[str] | None], None] = lambda _: None,
) -> ReproResult:
    """`dvc repro` in `root`, in its own process group (Ctrl-C reaches only the watch)."""
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
        seconds=seconds,
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


def record_in_mlflow(record: Mapping[str, Any], experiment: str) -> str | None:
    """Log the iteration as an MLflow run named `watch`; a warning (None) if MLflow fails."""
    try:
        with bounded_http_retries():
            from pipelines.edges.tracking import start_tracking

            tracking = start_tracking(experiment)
            mlflow = tracking.mlflow
            if mlflow.active_run() is not None:  # left over from a failed call
                mlflow.end_run()
            with mlflow.start_run(run_name="watch", tags=mlflow_tags(record)) as run:
                mlflow.log_metrics(mlflow_metrics(record))
                mlflow.log_dict(dict(record), "record.json")
            return str(run.info.run_id)
    except Exception as exc:  # the loop must outlive the tracking server
        logger.warning(
            "iteration %s was not recorded in MLflow at %s (%s); the watch log has it",
            record.get("iteration"),
            redacted_tracking_uri(),
            _mlflow_reason(exc),
        )
        return None


def _mlflow_reason(exc: Exception) -> str:
    text = str(getattr(exc, "message", exc))
    if "Connection refused" in text:
        return "connection refused"
    if "timed out" in text.lower() or "timeout" in text.lower():
        return "timed out"
    first_line = (text.strip().splitlines() or [""])[0]
    return f"{type(exc).__name__}: {first_line[:300]}"


def acquire_watch_lock(path: Path) -> FileLock:
    """Hold `path` exclusively, or fail at once naming it: one watch at a time."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(path, blocking=False)
    try:
        lock.acquire()
    except Timeout:
        raise WatchLockedError(
            f"another lifecycle watch is running (lock {path.resolve()})"
        ) from None
    return lock


# --- the loop ---------------------------------------------------------------------------


class StopSignal:
    """SIGTERM/SIGINT: the first asks to stop after this iteration, the second stops dvc too."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.child: subprocess.Popen[str] | None = None
        self._previous: dict[int, Any] = {}

    def install(self) -> None:
        for signum in (signal.SIGTERM, signal.SIGINT):
            self._previous[signum] = signal.signal(signum, self._handle)

    def restore(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def watch_child(self, child: subprocess.Popen[str] | None) -> None:
        self.child = child

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if not self.event.is_set():
            self.event.set()
            logger.warning(
                "%s: finishing the current iteration, then exiting (send it again to stop now)",
                name,
            )
            return
        child = self.child
        if child is not None and child.poll() is None:
            logger.warning("%s again: stopping the running dvc repro", name)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.pid, signal.SIGTERM)


@dataclass
class Watch:
    """The watch loop's settings and state: the history grows by one record per iteration."""

    params: Params
    contract: DataContract
    root: Path
    history: list[dict[str, Any]]
    stop: StopSignal = field(default_factory=StopSignal)
    clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC)

    def run_iteration(self) -> dict[str, Any]:
        """One iteration, recorded in the watch log and MLflow; never raises for a failure."""
        started = self.clock()
        outcome = IterationOutcome(
            iteration=f"{started:%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:6]}", started=started
        )
        logger.info("iteration %s: started", outcome.iteration)
        try:
            self._iterate(outcome)
        except WatchError as exc:
            outcome.error = str(exc)
        except Exception as exc:  # the loop must outlive surprises; the record says what
            logger.exception("iteration %s: unexpected error", outcome.iteration)
            outcome.error = f"unexpected {type(exc).__name__}: {exc}"
        record = build_record(outcome, self.clock())
        watch = self.params.monitor.watch
        append_json_line(self.root / watch.log, record)  # fsynced, one write
        self.history.append(record)
        _log_summary(record)
        record_in_mlflow(record, self.params.tracking.experiment)
        return record

    def _iterate(self, outcome: IterationOutcome) -> None:
        repro = self._repro("monitor", outcome)
        if repro.returncode != 0:
            raise WatchError(_repro_failure(repro))
        outcome.verdict = verdict = read_monitor_decision(self.root / MONITOR_DECISION)
        outcome.policy = policy = apply_retrain_policy(
            verdict, self.history, outcome.started, self.params.monitor.policy
        )
        if not policy.retrain:
            return
        champion_before = read_champion_version(self.root / CHAMPION)
        feedback_dir = self.root / self.params.ingest.feedback.directory
        try:
            batch, counts = write_feedback_batch(
                self.root / LABELLED_WINDOW, feedback_dir, self.contract, outcome.started
            )
        except FeedbackError:
            outcome.action = "refused"
            raise
        if batch is None:
            outcome.action = "skipped"
            outcome.skipped_reason = (
                f"Nothing new to train on: of the window's labelled rows, "
                f"{counts['dropped_known']} are in earlier feedback batches, "
                f"{counts['dropped_duplicate']} repeat an id and "
                f"{counts['dropped_unlabelled']} have no label."
            )
            return
        outcome.feedback = batch = replace(batch, path=_relative(batch.path, self.root))
        logger.info("feedback batch %s: %d rows (md5 %s)", batch.path, batch.rows, batch.md5)
        repro = self._repro("retrain", outcome)
        if repro.returncode != 0:
            outcome.action = "retrain_failed"
            raise WatchError(_repro_failure(repro))
        outcome.action = "retrained"
        decision = read_json(self.root / DEPLOY_DECISION) if "deploy" in repro.stages else None
        outcome.deploy = summarize_deploy(decision, champion_before)

    def _repro(self, purpose: str, outcome: IterationOutcome) -> ReproResult:
        result = run_dvc_repro(
            self.root, purpose, f"watch-{outcome.iteration}-{purpose}", self.stop.watch_child
        )
        outcome.repros.append(result)
        return result


def run_watch(
    params: Params, root: Path, once: bool = False, interval_s: float | None = None
) -> dict[str, Any] | None:
    """Hold the lock and iterate until stopped (once, with `once`); the last record."""
    watch = params.monitor.watch
    interval = interval_s if interval_s is not None else watch.interval_s
    contract = load_contract(root / params.data.contract)
    key_column(contract)  # fail now, not at the first retrain, if the contract has no row id
    lock = acquire_watch_lock(root / watch.lock)
    loop = Watch(params=params, contract=contract, root=root, history=[])
    record = None
    try:
        loop.history = read_history(root / watch.log)
        loop.stop.install()
        logger.info(
            "watching %s: %s; log %s, lock %s",
            root,
            "one iteration" if once else f"every {interval:g} s",
            watch.log,
            watch.lock,
        )
        while True:
            record = loop.run_iteration()
            if once or loop.stop.event.is_set():
                break
            logger.info(
                "next iteration at %s",
                format_time(dt.datetime.now(dt.UTC) + dt.timedelta(seconds=interval)),
            )
            if loop.stop.event.wait(interval):
                break
        if not once:
            logger.info("watch stopped")
        return record
    finally:
        loop.stop.restore()
        lock.release()


def _relative(path: Path, root: Path) -> Path:
    """`path` relative to the project root when it lies inside it: how the record shows it."""
    try:
        return path.relative_to(root)
    except ValueError:
        return path


def _repro_failure(repro: ReproResult) -> str:
    last = repro.stderr_tail[-1] if repro.stderr_tail else "(no stderr)"
    return f"dvc repro ({repro.purpose}) failed with exit code {repro.returncode}: {last}"


def _log_summary(record: Mapping[str, Any]) -> None:
    window = record.get("window") or {}
    policy = record.get("policy") or {}
    logger.info(
        "iteration %s: window %s rows (%s labelled, newest %s); verdict retrain=%s; "
        "policy retrain=%s; action %s",
        record["iteration"],
        window.get("rows", "-"),
        window.get("labelled_rows", "-"),
        window.get("last_time", "-"),
        (record.get("verdict") or {}).get("retrain", "-"),
        policy.get("retrain", "-"),
        record["action"],
    )
    for reason in policy.get("reasons") or []:
        logger.info("  policy: %s", reason)
    if record.get("skipped_reason"):
        logger.info("  %s", record["skipped_reason"])
    deploy = record.get("deploy")
    if deploy:
        logger.info(
            "  deploy: %s (champion v%s -> v%s)",
            "promoted" if deploy["promoted"] else "not promoted",
            deploy["champion_before"],
            deploy["champion_after"],
        )
    if record.get("error"):
        logger.error("iteration %s failed: %s", record["iteration"], record["error"])
