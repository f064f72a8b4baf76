"""The monitor stage's verdict on the current window (`reports/monitor/decision.json`).

`lifecycle watch` reads it to decide whether to retrain; `lifecycle status` shows it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from core.paths import MONITOR_DECISION
from core.records import Record, read_record

WRITER = "the monitor stage (dvc repro monitor)"


class ServingChampion(Record):
    tag: str  # e.g. "milling-failure:v3"
    version: int


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


class MonitorDecision(Record):
    """Whether to retrain, the reasons in sentences, and the evidence in brief."""

    retrain: bool
    reasons: list[str]
    champion: ServingChampion | None
    window: WindowSummary
    drift: DriftSummary | None
    quality: dict[str, Any] | None


def read_monitor_decision(path: Path = MONITOR_DECISION) -> MonitorDecision:
    return read_record(path, MonitorDecision, writer=WRITER)
