"""A rollout in progress, as the champion pointer carries it, and the verdicts on it.

The pointer (`champion.json` in the serving store, and the shared store's) names the
champion; during a rollout it also holds a `rollout` block (`RolloutSlot`): the other model
every worker loads beside the champion, what it does with it, and since when. Deploy writes
the block (shadow, canary), `lifecycle watch` and `lifecycle rollout` end it; the service
only reads it. `kind` says the other model's role:

- `shadow`: the candidate scores every request after the champion answered;
- `canary`: the candidate answers `share` of the ids; the champion scores those in shadow;
- `watch`: after a promotion, `previous` scores every request in shadow, so the new
  champion can be judged against it and rolled back.

Each judgement is a `RolloutVerdict`, appended to `reports/deploy/rollout_history.jsonl`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError

from core.io import append_json_line, read_json_lines
from core.records import Record

logger = logging.getLogger(__name__)

RolloutKind = Literal["shadow", "canary", "watch"]
Outcome = Literal["continue", "promote", "abort", "rollback", "keep"]


class SlotModel(Record):
    """A model as the pointer names it (the champion's own keys, without `updated_at`)."""

    tag: str  # e.g. milling-failure:v4
    version: str  # label, e.g. v4
    run_id: str | None = None
    content_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    threshold: float = Field(ge=0, le=1)


class RolloutSlot(Record):
    """The pointer's `rollout` block: the other model and what the service does with it."""

    id: str  # unique per rollout; the prediction log's rollout_id column
    kind: RolloutKind
    model: SlotModel  # the candidate (shadow, canary) or the previous champion (watch)
    share: float = Field(0.0, ge=0, lt=1)  # canary: share of ids it answers; else 0
    started_at: str  # UTC, core.clock's format


class GuardResult(Record):
    """One live guard: its value on the period, its limit, and whether it holds.

    `holds` is None while the guard cannot be judged yet (too few rows or labels).
    """

    name: str
    value: float | None
    limit: float | None
    holds: bool | None
    detail: str


class RolloutVerdict(Record):
    """One judgement of a rollout on its logged traffic."""

    rollout_id: str
    kind: RolloutKind
    model: str  # the registered model
    champion_version: int
    other_version: int  # the candidate, or `previous` for kind=watch
    judged_at: str
    since: str  # the period judged: from the rollout's start...
    until: str  # ...to the newest logged row
    rows: int  # rows both models scored
    labelled_rows: int
    elapsed_s: float
    guards: list[GuardResult]
    outcome: Outcome
    reasons: list[str]  # one line each: why this outcome


def append_verdict(path: Path, verdict: RolloutVerdict) -> None:
    """Append the verdict to the rollout history as one JSON line (one write, fsynced)."""
    append_json_line(path, verdict.model_dump(mode="json"))


def read_verdicts(path: Path) -> list[RolloutVerdict]:
    """The rollout history's verdicts, oldest first; unreadable lines skipped with a warning."""
    if not Path(path).exists():
        return []
    verdicts = []
    for number, value in read_json_lines(path):
        try:
            verdicts.append(RolloutVerdict.model_validate(value))
        except ValidationError:
            logger.warning("%s: line %d is not a rollout verdict; skipped", path, number)
    return verdicts
