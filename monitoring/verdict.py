"""One window's verdict: retrain or not, why, and the records the monitor stage writes.

`decide_window` turns the evidence (drift, quality, how much traffic and how many labels)
into a verdict with reasons a person reads; `build_monitor_decision` and
`build_monitor_metrics` make `decision.json` (`lifecycle watch` reads it) and the DVC
metric. Pure, and Evidently is imported only when there is a drift result to describe, so
a window with no champion or too little traffic stays cheap.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pandas as pd

from core.config import MonitorConfig
from core.records.monitor import (
    DriftSummary,
    MonitorDecision,
    QualitySummary,
    ServingChampion,
    WindowSummary,
)
from monitoring.window import describe_window

if TYPE_CHECKING:
    from monitoring.drift import DriftResult

_DECIMALS = 6
_QUALITY_METRICS = ("rows", "positives", "roc_auc", "average_precision", "precision", "recall")


@dataclass(frozen=True)
class RetrainDecision:
    """Whether to retrain, and why, in sentences a person reads in the stage log."""

    retrain: bool
    reasons: tuple[str, ...]


@dataclass(frozen=True)
class WindowEvidence:
    """What one window showed; `None` for a check that was not run."""

    champion: str | None  # the champion's tag, e.g. "milling-failure:v3"; None: no champion
    rows: int  # rows in the window
    labelled_rows: int  # window rows with a label (after de-duplication by id)
    drift: DriftResult | None = None
    quality: QualitySummary | None = None


def decide_window(evidence: WindowEvidence, config: MonitorConfig) -> RetrainDecision:
    """Retrain when the features drift, the predictions drift or the quality breaks a floor.

    No verdict without a champion or with fewer than `monitor.window.min_rows` rows. With
    `monitor.labels.required`, drift alone waits for `monitor.labels.min_rows` labelled rows
    (a retrain needs labelled recent data to learn from). The first reason is the decisive one.
    """
    if evidence.champion is None:
        return RetrainDecision(False, ("no champion yet: nothing to monitor",))
    needed = config.window.min_rows
    if evidence.rows < needed:
        return RetrainDecision(
            False,
            (
                f"not enough traffic: {evidence.rows} of {needed} rows needed for a verdict "
                f"(monitor.window.min_rows) in the newest prediction log window",
            ),
        )
    from monitoring.drift import describe_drift, describe_prediction_drift

    reasons: list[str] = []
    drifted = False
    if evidence.drift is not None:
        drifted = evidence.drift.dataset_drift or bool(
            evidence.drift.prediction and evidence.drift.prediction.drifted
        )
        reasons.append(describe_drift(evidence.drift, config))
        reasons.append(describe_prediction_drift(evidence.drift, config))
    breached = bool(evidence.quality and evidence.quality.breached)
    if evidence.quality is not None:
        reasons.append(evidence.quality.reason)
    retrain = drifted or breached
    labels_needed = config.labels.min_rows
    if retrain and config.labels.required and evidence.labelled_rows < labels_needed:
        waiting = (
            f"drift detected; waiting for labels: {evidence.labelled_rows} of {labels_needed} "
            "labelled rows (monitor.labels.min_rows; monitor.labels.required is true)"
        )
        return RetrainDecision(False, (waiting, *reasons))
    first = (
        f"retrain: {_triggers(evidence, drifted, breached)}"
        if retrain
        else "keep the champion: no drift and no quality breach in this window"
    )
    return RetrainDecision(retrain, (first, *reasons))


def summarise_window(
    window: pd.DataFrame, labelled_rows: int, champion_rows: int, missing_columns: list[str]
) -> WindowSummary:
    """The window in brief: its rows, times and served versions, and what its labels gave."""
    return WindowSummary(
        **describe_window(window),
        labelled_rows=labelled_rows,
        champion_rows=champion_rows,
        missing_columns=missing_columns,
    )


def build_monitor_decision(
    decision: RetrainDecision,
    champion: ServingChampion | None,
    window: WindowSummary,
    drift: DriftResult | None,
    quality: QualitySummary | None,
) -> MonitorDecision:
    """decision.json: the verdict, its reasons and the evidence in brief."""
    drift_summary = None
    if drift is not None:
        prediction = drift.prediction
        drift_summary = DriftSummary(
            dataset_drift=drift.dataset_drift,
            drifted_share=round(drift.drifted_share, _DECIMALS),
            drifted_columns=list(drift.drifted_columns),
            prediction_drift=prediction.drifted if prediction else None,
            prediction_drift_score=round(prediction.score, _DECIMALS) if prediction else None,
        )
    return MonitorDecision(
        retrain=decision.retrain,
        reasons=list(decision.reasons),
        champion=champion,
        window=window,
        drift=drift_summary,
        quality=quality,
    )


def build_monitor_metrics(
    decision: RetrainDecision,
    window: WindowSummary,
    drift: DriftResult | None,
    quality: QualitySummary | None,
) -> dict[str, Any]:
    """metrics.json (DVC metric): deterministic, rounded, no timestamps."""
    summary = None
    if drift is not None:
        from monitoring.drift import drift_summary

        summary = drift_summary(drift)
    return {
        "retrain": decision.retrain,
        "window": window.model_dump(include={"rows", "labelled_rows", "champion_rows"}),
        "drift": summary,
        "quality": quality.model_dump(mode="json", exclude={"reason"}) if quality else None,
    }


def run_metrics(record: MonitorDecision) -> dict[str, float]:
    """The tracking run's metrics: numbers only, booleans as 0/1, absent checks left out."""
    window, drift, quality = record.window, record.drift, record.quality
    metrics: dict[str, float] = {
        "retrain": int(record.retrain),
        "window_rows": window.rows,
        "labelled_rows": window.labelled_rows,
        "champion_rows": window.champion_rows,
    }
    if drift is not None:
        metrics["dataset_drift"] = int(drift.dataset_drift)
        metrics["drifted_share"] = drift.drifted_share
        if drift.prediction_drift is not None and drift.prediction_drift_score is not None:
            metrics["prediction_drift"] = int(drift.prediction_drift)
            metrics["prediction_drift_score"] = drift.prediction_drift_score
    if quality is not None:
        metrics["quality_judged"] = int(quality.judged)
        metrics["quality_breached"] = len(quality.breached)
        for name in _QUALITY_METRICS:
            value = getattr(quality, name)
            if value is not None:
                metrics[f"quality_{name}"] = value
    return {key: float(value) for key, value in metrics.items()}


def render_plain_page(decision: RetrainDecision) -> str:
    """The report when there is nothing to compare: a short page that says why."""
    reasons = "".join(f"<li>{html.escape(reason)}</li>" for reason in decision.reasons)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        "<title>Monitor: no drift report</title></head>\n<body><h1>No drift report</h1>"
        f"<p>The monitor compared nothing in this window:</p><ul>{reasons}</ul></body></html>\n"
    )


def _triggers(evidence: WindowEvidence, drifted: bool, breached: bool) -> str:
    found = []
    drift = evidence.drift
    if drifted and drift is not None:
        if drift.dataset_drift:
            found.append("the features drift")
        if drift.prediction is not None and drift.prediction.drifted:
            found.append("the predictions drift")
    if breached and evidence.quality is not None:
        found.append(f"quality is below its floor on {', '.join(evidence.quality.breached)}")
    return " and ".join(found)
