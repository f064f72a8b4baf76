"""`lifecycle watch`: run the monitor on an interval, and retrain when the policy says so.

One iteration, in the project root: `dvc repro` (the monitor stage reruns when the log or
the labels changed and writes its verdict); the verdict weighed against earlier iterations
(`monitoring.policy`); to retrain, the window's new labelled rows written as a feedback
batch (`pipelines.edges.feedback`) and `dvc repro` again, whose deploy stage says whether
the new model was promoted. A rollout in progress (`deploy.rollout`) is judged and its
verdict applied first, before the monitor's `dvc repro`
(`pipelines.edges.rollout_control`). Each iteration appends one `WatchRecord` to
`monitor.watch.log`
and goes to MLflow (`lifecycle.iteration_tracking`); a failure is recorded, and the loop
goes on. One watch at a time, stopped gently (`lifecycle.process_guard`).
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from core.clock import format_time, utc_now
from core.config import Params
from core.paths import CHAMPION, DEPLOY_DECISION, LABELLED_WINDOW, MONITOR_DECISION
from core.records import RecordError, RecordMissingError
from core.records.deploy import DeployDecision, read_champion, read_deploy_decision
from core.records.monitor import MonitorDecision, read_monitor_decision
from core.records.watch import (
    Action,
    DeployOutcome,
    FeedbackSummary,
    PolicyDecision,
    Purpose,
    ReproResult,
    RolloutStep,
    WatchRecord,
    WatchVerdict,
    WatchWindow,
    append_watch_record,
    read_watch_history,
)
from features.contract import DataContract, load_contract
from lifecycle.dvc_repro import describe_failure, run_dvc_repro
from lifecycle.iteration_tracking import record_in_mlflow
from lifecycle.process_guard import StopSignal, acquire_watch_lock
from monitoring.policy import apply_retrain_policy
from pipelines.edges.feedback import FeedbackError, write_feedback_batch

logger = logging.getLogger(__name__)


class WatchError(RuntimeError):
    """An iteration that could not complete; the message is meant for the user."""


@dataclass
class IterationOutcome:
    """What one iteration gathered; `build_record` turns it into the watch-log line."""

    iteration: str
    started: dt.datetime
    repros: list[ReproResult] = field(default_factory=list)
    verdict: MonitorDecision | None = None
    policy: PolicyDecision | None = None
    action: Action = "none"
    feedback: FeedbackSummary | None = None
    skipped_reason: str | None = None
    deploy: DeployOutcome | None = None
    rollout: RolloutStep | None = None
    error: str | None = None


def summarize_deploy(decision: DeployDecision | None, champion_before: int | None) -> DeployOutcome:
    """The deploy outcome of a retrain; `decision` is None when the deploy stage did not run."""
    if decision is None:
        return DeployOutcome(
            ran=False,
            promoted=False,
            champion_before=champion_before,
            champion_after=champion_before,
            reasons=[
                "The deploy stage did not run in the retrain's `dvc repro`: nothing it "
                "depends on changed (the retrained model is the one deployed last)."
            ],
        )
    before, after = decision.champion_before, decision.champion_after
    rollout = decision.rollout
    started = decision.promote and rollout is not None and rollout.kind != "watch"
    reasons = list(decision.reasons)
    if started:
        reasons.append(
            f"{rollout.model.version} passed the gate and started a "
            f"{rollout.kind} rollout ({rollout.id}) as candidate; the champion is unchanged "
            "until the rollout's verdict promotes it"
        )
    return DeployOutcome(
        ran=True,
        promoted=decision.promote and not started,
        champion_before=before.version if before else None,
        champion_after=after.version if after else None,
        reasons=reasons,
        rollout=rollout if decision.promote else None,
    )


def build_record(outcome: IterationOutcome, finished: dt.datetime) -> WatchRecord:
    """The watch log's record of one iteration (also the MLflow run's `record.json`)."""
    verdict = outcome.verdict
    durations = {f"{r.purpose}_repro": round(r.seconds, 3) for r in outcome.repros}
    durations["total"] = round((finished - outcome.started).total_seconds(), 3)
    return WatchRecord(
        time=outcome.started,
        iteration=outcome.iteration,
        window=None
        if verdict is None
        else WatchWindow(
            rows=verdict.window.rows,
            labelled_rows=verdict.window.labelled_rows,
            first_time=verdict.window.first_time,
            last_time=verdict.window.last_time,
            missing_columns=verdict.window.missing_columns,
        ),
        verdict=None
        if verdict is None
        else WatchVerdict(
            retrain=verdict.retrain,
            reasons=verdict.reasons,
            champion=verdict.champion,
            action=verdict.action,
            decided_by=verdict.decided_by,
        ),
        policy=outcome.policy,
        action=outcome.action,
        skipped_reason=outcome.skipped_reason,
        feedback=outcome.feedback,
        deploy=outcome.deploy,
        rollout=outcome.rollout,
        repro=outcome.repros,
        durations_s=durations,
        error=outcome.error,
    )


def read_verdict(path: Path) -> MonitorDecision:
    """The monitor stage's verdict on the current window, or a WatchError saying why not."""
    try:
        return read_monitor_decision(path)
    except RecordMissingError:
        raise WatchError(
            f"{path}: not found after `dvc repro` (the monitor stage writes it)"
        ) from None
    except RecordError as exc:
        raise WatchError(str(exc)) from None


def read_champion_version(path: Path = CHAMPION) -> int | None:
    """The serving champion's version as the deploy stage last recorded it."""
    try:
        champion = read_champion(path)
    except RecordError:
        return None
    return champion.version if champion else None


@dataclass
class Watch:
    """The watch loop's settings and state: the history grows by one record per iteration."""

    params: Params
    contract: DataContract
    root: Path
    history: list[WatchRecord]
    stop: StopSignal = field(default_factory=StopSignal)
    clock: Callable[[], dt.datetime] = utc_now

    def run_iteration(self) -> WatchRecord:
        """One iteration, recorded in the watch log and MLflow; never raises for a failure."""
        started = self.clock()
        # under an orchestrator (`lifecycle watch --once` as its task) the iteration carries
        # the engine's run id, so its stage attempts group under it in the ledger and MLflow
        orchestrated = os.environ.get("LIFECYCLE_RUN_ID", "").strip()
        stamp = f"{started:%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:6]}"
        outcome = IterationOutcome(
            iteration=f"{orchestrated}-{stamp}" if orchestrated else stamp, started=started
        )
        logger.info("iteration %s: started", outcome.iteration)
        try:
            self._iterate(outcome)
        except (WatchError, FeedbackError) as exc:
            outcome.error = str(exc)
        except Exception as exc:  # the loop must outlive surprises; the record says what
            logger.exception("iteration %s: unexpected error", outcome.iteration)
            outcome.error = f"unexpected {type(exc).__name__}: {exc}"
        record = build_record(outcome, self.clock())
        append_watch_record(self.root / self.params.monitor.watch.log, record)
        self.history.append(record)
        _log_summary(record)
        record_in_mlflow(record, self.params.tracking.experiment)
        return record

    def _iterate(self, outcome: IterationOutcome) -> None:
        self._sync_shared_log()
        outcome.rollout = self._control_rollout()
        repro = self._repro("monitor", outcome)
        if repro.returncode != 0:
            raise WatchError(describe_failure(repro))
        outcome.verdict = verdict = read_verdict(self.root / MONITOR_DECISION)
        outcome.policy = policy = apply_retrain_policy(
            verdict, self.history, outcome.started, self.params.monitor.policy
        )
        if not policy.retrain:
            return
        if self.contract.row_id is None:
            outcome.action = "skipped"
            outcome.skipped_reason = (
                f"Nothing new to train on: the data contract '{self.contract.name}' has no "
                "unique id column, so no labels are joined to the window."
            )
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
        batch = batch.model_copy(update={"path": _relative(batch.path, self.root)})
        outcome.feedback = batch
        logger.info("feedback batch %s: %d rows (md5 %s)", batch.path, batch.rows, batch.md5)
        repro = self._repro("retrain", outcome)
        if repro.returncode != 0:
            outcome.action = "retrain_failed"
            raise WatchError(describe_failure(repro))
        outcome.action = "retrained"
        decision = None
        if "deploy" in repro.stages:
            try:
                decision = read_deploy_decision(self.root / DEPLOY_DECISION)
            except RecordError as exc:
                raise WatchError(str(exc)) from None
        outcome.deploy = summarize_deploy(decision, champion_before)

    def _control_rollout(self) -> RolloutStep | None:
        """Judge the rollout in progress and apply the verdict; a failure is recorded in the
        step (the monitor still runs): an abort must not wait for the next iteration's luck."""
        from pipelines.edges.rollout_control import RolloutContext, control_rollout

        try:
            return control_rollout(
                RolloutContext.from_params(self.params, self.contract, self.root),
                self.contract,
                self.root / self.params.serving.prediction_log.directory,
                self.root / self.params.monitor.labels.directory,
                self.clock(),
            )
        except Exception as exc:  # registry, stores, log: the record says which
            logger.error("rollout: %s: %s", type(exc).__name__, exc)
            return RolloutStep(error=f"{type(exc).__name__}: {exc}")

    def _sync_shared_log(self) -> None:
        """Copy the replicas' new log objects into the local log, the monitor's DVC dep.

        Only with `serving.prediction_log.to_shared_store` and a shared store configured.
        An unreachable store fails the iteration (its record says so): judging a window
        that lacks the replicas' traffic would look like a quiet hour.
        """
        from serving.model_store import ModelStoreError
        from serving.prediction_log.shared import sync_shared_log
        from serving.shared_store import open_shared_store, shared_store_url

        serving = self.params.serving
        if not serving.prediction_log.to_shared_store:
            return
        try:
            url = shared_store_url(serving.shared_store_env)
            if url is not None:
                directory = self.root / serving.prediction_log.directory
                sync_shared_log(open_shared_store(url), directory)
        except ModelStoreError as exc:
            raise WatchError(f"cannot sync the shared prediction log: {exc}") from None

    def _repro(self, purpose: Purpose, outcome: IterationOutcome) -> ReproResult:
        result = run_dvc_repro(
            self.root, purpose, f"watch-{outcome.iteration}-{purpose}", self.stop.watch_child
        )
        outcome.repros.append(result)
        return result


def run_watch(
    params: Params, root: Path, once: bool = False, interval_s: float | None = None
) -> WatchRecord | None:
    """Hold the lock and iterate until stopped (once, with `once`); the last record."""
    watch = params.monitor.watch
    interval = interval_s if interval_s is not None else watch.interval_s
    contract = load_contract(root / params.data.contract)
    if contract.row_id is None:
        logger.warning(
            "the data contract '%s' has no unique id column (role id, unique: true): windows "
            "are judged, but no labels are joined and no feedback batches are written",
            contract.name,
        )
    lock = acquire_watch_lock(root / watch.lock)
    loop = Watch(params=params, contract=contract, root=root, history=[])
    record = None
    try:
        loop.history = read_watch_history(root / watch.log)
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
                format_time(utc_now() + dt.timedelta(seconds=interval)),
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


def _log_summary(record: WatchRecord) -> None:
    """The iteration in a few log lines; an alert verdict is a WARNING (a person is paged by
    it) with the monitor's first reason, which names what failed."""
    window, verdict, policy = record.window, record.verdict, record.policy
    logger.info(
        "iteration %s: window %s rows (%s labelled, newest %s); verdict %s (decided by %s); "
        "policy retrain=%s; action %s",
        record.iteration,
        window.rows if window else "-",
        window.labelled_rows if window else "-",
        window.last_time if window else "-",
        verdict.action if verdict else "-",
        (verdict.decided_by or "no signal") if verdict else "-",
        policy.retrain if policy else "-",
        record.action,
    )
    if verdict is not None and verdict.reasons:
        if verdict.action == "alert":
            logger.warning(
                "iteration %s: ALERT (%s), no retrain: %s",
                record.iteration,
                verdict.decided_by or "no signal",
                verdict.reasons[0],
            )
        else:
            logger.info("  monitor: %s", verdict.reasons[0])
    for reason in policy.reasons if policy else []:
        logger.info("  policy: %s", reason)
    if record.skipped_reason:
        logger.info("  %s", record.skipped_reason)
    if record.deploy:
        logger.info("  deploy: %s", record.deploy.describe())
    step = record.rollout
    if step is not None and step.verdict is not None:
        level = logging.INFO if step.verdict.outcome == "continue" else logging.WARNING
        logger.log(
            level,
            "  rollout %s: %s (%d rows, %d labelled)",
            step.verdict.rollout_id,
            step.verdict.outcome,
            step.verdict.rows,
            step.verdict.labelled_rows,
        )
    if step is not None and step.error:
        logger.error("  rollout: %s", step.error)
    if record.error:
        logger.error("iteration %s failed: %s", record.iteration, record.error)
