"""The monitor stage's verdict on the current window (`reports/monitor/decision.json`).

`lifecycle watch` reads it to decide whether to retrain; `lifecycle status` shows it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from core.paths import MONITOR_DECISION
from core.records import Record, read_record
from core.records.data_quality import DataQualitySummary
from core.records.estimation import PerformanceEstimate

WRITER = "the monitor stage (dvc repro monitor)"

# keep: nothing found; drift: drift reported, no retrain (quality holds); alert: a person
# should look (broken data, or a breach waiting for labels); retrain: quality breached.
Action = Literal["keep", "drift", "alert", "retrain"]
# the signal that decided the action
Signal = Literal[
    "data_quality", "realized_quality", "estimated_quality", "feature_drift", "prediction_drift"
]


class ServingChampion(Record):
    """The serving model as deploy left it: registry version and serving-store tag."""

    tag: str  # e.g. "milling-failure:v3"
    version: int

    @property
    def label(self) -> str:
        """How the prediction log names its version: "v3"."""
        return f"v{self.version}"


class WindowSummary(Record):
    rows: int
    labelled_rows: int
    champion_rows: int
    first_time: str | None
    last_time: str | None
    model_versions: dict[str, int]
    missing_columns: list[str]


class DriftSummary(Record):
    dataset_drift: bool
    drifted_share: float
    drifted_columns: list[str]
    prediction_drift: bool | None
    prediction_drift_score: float | None
    calibrated: bool = False  # thresholds calibrated on the champion's training period
    importance_share: float | None = None  # of the champion's importance, in drifted columns
    material: bool = False  # importance_share at or above monitor.verdict.drift_importance


class QualitySummary(Record):
    """The champion's quality on the window's labelled rows, against its floors.

    `monitoring.quality.assess_quality` builds it with each metric rounded to 6 places when
    measured (None where undefined), so the floors judge the values the files show.
    """

    judged: bool
    rows: int
    positives: int
    roc_auc: float | None = None
    average_precision: float | None = None
    brier: float | None = None
    precision: float | None = None
    recall: float | None = None
    f1: float | None = None
    threshold: float | None  # the logged operating threshold (None when rows differ)
    floors: dict[str, float]  # monitor.quality.thresholds
    intervals: dict[str, tuple[float, float]] = {}  # noqa: RUF012  # bootstrap, per floored metric
    confidence: float | None = None  # of the intervals (None: the point values judge)
    breached: tuple[str, ...]  # the metrics whose whole interval lies below their floor
    reason: str


class MonitorDecision(Record):
    """Whether to retrain, the reasons in sentences, and the evidence in brief."""

    retrain: bool
    reasons: list[str]
    champion: ServingChampion | None
    window: WindowSummary
    drift: DriftSummary | None
    quality: QualitySummary | None
    action: Action = "keep"
    decided_by: Signal | None = None
    estimate: PerformanceEstimate | None = None  # before labels: CBPE on the champion's rows
    data_quality: DataQualitySummary | None = None


def read_monitor_decision(path: Path = MONITOR_DECISION) -> MonitorDecision:
    return read_record(path, MonitorDecision, writer=WRITER)
