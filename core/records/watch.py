"""One `lifecycle watch` iteration (`reports/watch/iterations.jsonl`, one JSON line each).

The watch appends a `WatchRecord` per iteration and logs the same record to MLflow; the
watch (its history) and the retrain policy read them back with `read_watch_history`.
"""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, PlainSerializer, ValidationError, model_validator

from core.clock import as_utc, format_time
from core.io import append_json_line, read_json_lines
from core.records import Record
from core.records.monitor import Action as VerdictAction
from core.records.monitor import ServingChampion, Signal
from core.records.rollout import RolloutSlot, RolloutVerdict

logger = logging.getLogger(__name__)

# An aware UTC time, written as `format_time` writes it.
Time = Annotated[dt.datetime, AfterValidator(as_utc), PlainSerializer(format_time, return_type=str)]

# What an iteration did: nothing; retrained (or tried to); or wanted to, but had no new
# labelled rows (skipped) or an unusable window (refused).
Action = Literal["none", "retrained", "retrain_failed", "skipped", "refused"]
# Why a `dvc repro` ran: to judge the window, or to retrain on a new feedback batch.
Purpose = Literal["monitor", "retrain"]


class PolicyDecision(Record):
    """Whether to retrain now, every reason for it, and the counts the rules looked at."""

    retrain: bool
    reasons: list[str]
    new_window: bool  # this window's newest prediction is later than any judged before
    streak: int  # consecutive new windows, since the last retrain, whose verdict was retrain
    retrains_last_24h: int
    last_retrain: str | None  # ISO time of the last iteration that started a retrain


class ReproResult(Record):
    """One `dvc repro`: why it ran, how it ended, which stages ran."""

    purpose: Purpose
    returncode: int
    seconds: float
    stages: list[str]
    stderr_tail: list[str]


class FeedbackSummary(Record):
    """A feedback batch as written: where, how many rows, its md5, and what was left out."""

    path: Path
    rows: int
    md5: str
    dropped_known: int  # ids already in an earlier feedback batch
    dropped_duplicate: int  # ids repeated within the window (the newest row was kept)
    dropped_unlabelled: int


class DeployOutcome(Record):
    """What the deploy stage made of a retrain (`ran` is False when it did not run).

    `promoted`: the retrained model became champion. With `deploy.rollout` shadow or canary
    it does not, yet: it passed the gate and became the registry's `candidate`, and
    `rollout` is the rollout that started (`promoted` False, the champion unchanged; the
    next iterations judge it). After an immediate promotion with a rollback window,
    `rollout` is the watch block (`promoted` True). Lines written before this field have
    no `rollout`, and said `promoted` for a candidate too.
    """

    ran: bool
    promoted: bool
    champion_before: int | None
    champion_after: int | None
    reasons: list[str]
    rollout: RolloutSlot | None = None

    @property
    def candidate_started(self) -> bool:
        return self.rollout is not None and self.rollout.kind != "watch"

    def describe(self) -> str:
        """The outcome in a few words, for the watch's log line and `lifecycle status`."""
        after = f"v{self.champion_after}" if self.champion_after is not None else "none"
        if not self.ran:
            return f"did not run (champion {after})"
        if self.rollout is not None and self.candidate_started:
            return (
                f"candidate {self.rollout.model.version} started in {self.rollout.kind} "
                f"beside champion {after} (rollout {self.rollout.id}); not champion until a "
                "watch iteration promotes it"
            )
        if self.promoted:
            before = f"v{self.champion_before}" if self.champion_before is not None else "none"
            watched = (
                f", watched against {self.rollout.model.version}"
                if self.rollout is not None
                else ""
            )
            return f"promoted (champion {before} -> {after}{watched})"
        return f"not promoted (champion {after} unchanged)"


class RolloutStep(Record):
    """What the iteration did to the rollout in progress (`pipelines.edges.rollout_control`).

    `resumed`: a verdict an earlier run had recorded but not finished applying, completed
    now. `verdict`: this iteration's judgement (None: no rollout in progress). `actions`:
    the moves made, one line each. `error`: why judging or applying failed.
    """

    resumed: RolloutVerdict | None = None
    verdict: RolloutVerdict | None = None
    actions: list[str] = Field(default_factory=list)
    error: str | None = None


class WatchWindow(Record):
    """The judged window, in brief (from the monitor's decision)."""

    rows: int
    labelled_rows: int
    first_time: str | None
    last_time: str | None
    missing_columns: list[str] = Field(default_factory=list)


class WatchVerdict(Record):
    """The monitor's verdict on the window, in brief: its action and the signal that decided.

    Lines written before verdicts had an action carry only `retrain`; they read back as
    `retrain` or `keep`, decided by no named signal.
    """

    retrain: bool
    reasons: list[str]
    champion: ServingChampion | None
    action: VerdictAction = "keep"  # keep | drift (reported) | alert (a person looks) | retrain
    decided_by: Signal | None = None  # None: nothing fired (or an older line)

    @model_validator(mode="before")
    @classmethod
    def _action_of_an_older_line(cls, value: object) -> object:
        if isinstance(value, dict) and "action" not in value and value.get("retrain") is True:
            return {**value, "action": "retrain"}
        return value


class WatchRecord(Record):
    """One iteration: what was judged, what the policy said, what was done, how long it took."""

    time: Time  # when the iteration started
    iteration: str
    window: WatchWindow | None = None  # None: the monitor's decision was not read
    verdict: WatchVerdict | None = None
    policy: PolicyDecision | None = None
    action: Action = "none"
    skipped_reason: str | None = None
    feedback: FeedbackSummary | None = None
    deploy: DeployOutcome | None = None
    rollout: RolloutStep | None = None  # None: no rollout in progress (or an older line)
    repro: list[ReproResult] = Field(default_factory=list)
    durations_s: dict[str, float] = Field(default_factory=dict)
    error: str | None = None


def append_watch_record(path: Path, record: WatchRecord) -> None:
    """Append the record as one JSON line (one write, fsynced)."""
    append_json_line(path, record.model_dump(mode="json"))


def read_watch_history(path: Path) -> list[WatchRecord]:
    """The watch log's records, oldest first; unreadable lines are skipped with a warning."""
    if not path.exists():
        return []
    records = []
    for number, value in read_json_lines(path):
        if not isinstance(value, dict):
            logger.warning("%s: line %d is not a JSON object; skipped", path, number)
            continue
        try:
            records.append(WatchRecord.model_validate(value))
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(part) for part in first["loc"]) or "(top level)"
            logger.warning(
                "%s: line %d is not a watch record (%s: %s); skipped",
                path,
                number,
                where,
                first["msg"],
            )
    return records
