"""What the deploy stage decided (`reports/deploy/decision.json`) and which model it left as
champion (`reports/deploy/champion.json`, `{}` before the first promotion).

The monitor stage, `lifecycle watch` and `lifecycle status` read them, each through
`read_champion` / `read_deploy_decision`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, TypeVar

from pydantic import Field, PlainSerializer

from core.paths import CHAMPION, DEPLOY_DECISION
from core.records import Record, RecordMissingError, read_record
from core.records.rollout import RolloutSlot

WRITER = "the deploy stage (dvc repro deploy)"

R = TypeVar("R", bound=Record)

Metrics = dict[str, float | int | None]  # holdout metrics by name, as evaluation scores them

# A measured value: kept exact in memory (the gate judges it), written rounded to 6 places
# so the same evidence gives the same JSON.
Rounded = Annotated[float, PlainSerializer(lambda value: round(value, 6), return_type=float)]


class ChampionRecord(Record):
    """The registry version that serves, as the deploy stage last recorded it."""

    version: int = Field(ge=1)
    content_sha256: str | None = None
    mlflow_run_id: str | None = None


class _ChampionFile(Record):
    """The file's shape: a `ChampionRecord`, or `{}` when nothing was promoted yet."""

    version: int | None = Field(None, ge=1)
    content_sha256: str | None = None
    mlflow_run_id: str | None = None


class GateCheck(Record):
    """One rule of the gate: the value it judged (None: not available) and its bound."""

    name: str
    value: Rounded | None
    bound: float
    passed: bool


class Challenger(Record):
    family: str
    content_sha256: str
    mlflow_run_id: str | None
    holdout: Metrics


class Comparison(Record):
    """Challenger vs champion on the holdout: the paired bootstrap CI of the difference."""

    metric: str
    challenger: Rounded
    champion: Rounded
    delta: Rounded  # challenger - champion
    ci_low: Rounded
    ci_high: Rounded
    confidence: Rounded
    resamples: int
    seed: int


class ComparisonRows(Record):
    """How many holdout rows the models were compared on, and how many were left out
    because the champion trained on them (None: its training rows could not be told)."""

    rows: int
    champion_training_rows_left_out: int | None


class RecentWindow(Record):
    """Challenger vs champion on the holdout rows of the newest feedback batch.

    `judged` is False when there were too few rows or positives (or no negatives) to judge;
    then the metric values are those that could be computed (None without both classes)
    and `passed` is False.
    """

    batch: str
    rows: int
    positives: int
    metric: str
    challenger: Rounded | None
    champion: Rounded | None
    delta: Rounded | None  # challenger - champion
    margin: Rounded
    min_rows: int
    min_positives: int
    judged: bool
    passed: bool


class InfraCheck(Record):
    """The candidate loaded as the service loads it, with holdout rows replayed through it."""

    tag: str
    rows: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    budget_ms: float
    rejected_rows: int
    mismatched_rows: int
    passed: bool
    message: str


class DeployDecision(Record):
    """The gate's verdict on the challenger, with every piece of evidence it used."""

    promote: bool
    reasons: list[str]
    registered_model: str
    registered_version: int | None = None
    version_created: bool | None = None
    bento: str | None = None
    challenger: Challenger
    champion_before: ChampionRecord | None = None
    champion_after: ChampionRecord | None = None
    champion_holdout: Metrics | None = None
    checks: tuple[GateCheck, ...] = ()
    comparison: Comparison | None = None
    comparison_rows: ComparisonRows | None = None
    recent_window: RecentWindow | None = None
    infra_check: InfraCheck | None = None
    # with deploy.rollout shadow|canary and a champion: the promoted challenger became the
    # `candidate` and this rollout started (the champion is unchanged); with `immediate` and
    # a rollback window, the `watch` of the new champion against previous. None: neither
    # (and in decisions written before rollouts existed).
    rollout: RolloutSlot | None = None


def read_champion(path: Path = CHAMPION) -> ChampionRecord | None:
    """The recorded champion; None before the first promotion. Raises `RecordError`."""
    found = _read(path, _ChampionFile)
    if found.version is None:
        return None
    return ChampionRecord(**found.model_dump())


def read_deploy_decision(path: Path = DEPLOY_DECISION) -> DeployDecision:
    return _read(path, DeployDecision)


def _read(path: Path, model: type[R]) -> R:
    try:
        return read_record(path, model, writer=WRITER)
    except RecordMissingError:
        raise RecordMissingError(
            f"{path}: not found; the deploy stage writes it (dvc repro deploy)"
        ) from None
