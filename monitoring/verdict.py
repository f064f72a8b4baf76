"""One window's verdict: retrain or not, why, and the records the monitor stage writes.

`decide_window` turns the evidence (drift, quality, how much traffic and how many labels)
into a verdict with reasons a person reads; `build_monitor_decision` and
`build_monitor_metrics` make `decision.json` (`lifecycle watch` reads it) and the DVC
metric. Pure, and Evidently is imported only when there is a drift result to describe, so
a window with no champion or too little traffic stays cheap.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import pandas as pd

from core.config import MonitorConfig
from core.records.data_quality import DataQualitySummary
from core.records.estimation import PerformanceEstimate
from core.records.monitor import (
    Action,
    DriftSummary,
    MonitorDecision,
    QualitySummary,
    ServingChampion,
    Signal,
    WindowSummary,
)
from monitoring.window import describe_window

if TYPE_CHECKING:
    from monitoring.drift import DriftResult

_DECIMALS = 6
_QUALITY_METRICS = ("rows", "positives", "roc_auc", "average_precision", "precision", "recall")


@dataclass(frozen=True)
class RetrainDecision:
    """The window's action, the signal that decided it, and sentences a person reads."""

    retrain: bool
    reasons: tuple[str, ...]
    action: Action = "keep"
    decided_by: Signal | None = None


@dataclass(frozen=True)
class WindowEvidence:
    """What one window showed; `None` for a check that was not run."""

    champion: str | None  # the champion's tag, e.g. "milling-failure:v3"; None: no champion
    rows: int  # rows in the window
    labelled_rows: int  # window rows with a label (after de-duplication by id)
    labels_unjoinable: str | None = None  # why labels cannot be joined (no row id); None: they can
    drift: DriftResult | None = None
    quality: QualitySummary | None = None  # realized, on the labelled rows
    estimate: PerformanceEstimate | None = None  # estimated, before labels
    estimated_breaches: tuple[str, ...] = ()  # metrics whose whole estimate interval is low
    data_quality: DataQualitySummary | None = None
    importance: dict[str, float] | None = None  # feature -> share of the champion's importance


_RANK: dict[Action, int] = {"keep": 0, "drift": 1, "alert": 2, "retrain": 3}


def decide_window(evidence: WindowEvidence, config: MonitorConfig) -> RetrainDecision:
    """Combine the window's signals into one action; the first reason is the decisive one.

    No verdict without a champion or with fewer than `monitor.window.min_rows` rows. Then, in
    this order: a data-quality failure (`monitor.verdict.on_data_quality`, an alert by default,
    and it holds back any retrain: the model would learn the fault); the realized quality below
    a floor (retrain); the estimated quality below a floor (`on_estimated_breach`); material
    drift, on features carrying `drift_importance` of the champion's importance or on the
    served probabilities (`on_material_drift`, reported by default); other drift is reported.
    A retrain needs `monitor.labels.min_rows` labelled rows when `monitor.labels.required`:
    until then it is an alert that waits for them. When labels cannot be joined (the
    contract has no unique id column), the last reason says so, whatever the verdict.
    """
    decision = _decide(evidence, config)
    if evidence.labels_unjoinable is None:
        return decision
    return replace(decision, reasons=(*decision.reasons, evidence.labels_unjoinable))


def _decide(evidence: WindowEvidence, config: MonitorConfig) -> RetrainDecision:
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
    triggers = _triggers(evidence, config)
    action: Action = "keep"
    decided_by: Signal | None = None
    for signal, wanted, _ in triggers:
        if _RANK[wanted] > _RANK[action]:
            action, decided_by = wanted, signal
    data_failed = any(signal == "data_quality" for signal, _, _ in triggers)
    if action == "retrain" and data_failed and config.verdict.on_data_quality != "retrain":
        action, decided_by = "alert", "data_quality"
    evidence_lines = _evidence_lines(evidence, config)
    labels_needed = config.labels.min_rows
    if action == "retrain" and config.labels.required and evidence.labelled_rows < labels_needed:
        waiting = (
            f"alert, waiting for labels to retrain: {_named(triggers, 'retrain')}; "
            f"{evidence.labelled_rows} of {labels_needed} labelled rows (monitor.labels.min_rows; "
            "monitor.labels.required is true)"
        )
        if evidence.labels_unjoinable is not None:
            waiting = (
                f"alert, no retrain without labels: {_named(triggers, 'retrain')}; labels "
                "cannot be joined and monitor.labels.required is true"
            )
        return RetrainDecision(False, (waiting, *evidence_lines), "alert", decided_by)
    if action == "keep":
        first = "keep the champion: no drift, no quality breach and clean data in this window"
    elif action == "drift":
        first = (
            f"drift, no retrain: {_named(triggers, 'drift')}; the estimated and realized "
            "quality hold"
        )
    else:
        first = f"{action}: {_named(triggers, action)}"
    return RetrainDecision(action == "retrain", (first, *evidence_lines), action, decided_by)


def _triggers(evidence: WindowEvidence, config: MonitorConfig) -> list[tuple[Signal, Action, str]]:
    """Each signal that fired: (signal, the action it asks for, a short phrase)."""
    verdict = config.verdict
    found: list[tuple[Signal, Action, str]] = []
    quality_data = evidence.data_quality
    if quality_data is not None and quality_data.judged and not quality_data.passed:
        found.append(
            (
                "data_quality",
                verdict.on_data_quality,
                f"data quality fails on {', '.join(quality_data.failed)}",
            )
        )
    if evidence.quality is not None and evidence.quality.breached:
        found.append(
            (
                "realized_quality",
                "retrain",
                f"quality is below its floor on {', '.join(evidence.quality.breached)}",
            )
        )
    if evidence.estimated_breaches:
        found.append(
            (
                "estimated_quality",
                verdict.on_estimated_breach,
                "the estimated quality is below its floor on "
                + ", ".join(evidence.estimated_breaches),
            )
        )
    drift = evidence.drift
    if drift is not None:
        share, material = weigh_drift(drift, evidence.importance, config)
        drift_action: Action = (
            "drift" if verdict.on_material_drift == "report" else verdict.on_material_drift
        )
        if drift.drifted_columns:
            found.append(
                (
                    "feature_drift",
                    drift_action if material else "drift",
                    f"{', '.join(drift.drifted_columns)} drift ({share:.0%} of the champion's "
                    f"importance{'' if material else ', not material'})",
                )
            )
        if drift.prediction is not None and drift.prediction.drifted:
            found.append(("prediction_drift", drift_action, "the predictions drift"))
    return found


def weigh_drift(
    drift: DriftResult, importance: dict[str, float] | None, config: MonitorConfig
) -> tuple[float, bool]:
    """The drifted columns' share of the champion's importance, and whether that drift is
    material (at least `monitor.verdict.drift_importance`)."""
    share = drifted_importance(drift, importance)
    return share, bool(drift.drifted_columns) and share >= config.verdict.drift_importance


def drifted_importance(drift: DriftResult, importance: dict[str, float] | None) -> float:
    """The share of the champion's importance held by the drifted columns (equal shares
    when the importance is unknown)."""
    columns = [column.name for column in drift.columns]
    if not columns:
        return 0.0
    if importance is None:
        return len(drift.drifted_columns) / len(columns)
    return float(sum(importance.get(name, 0.0) for name in drift.drifted_columns))


def _named(triggers: list[tuple[Signal, Action, str]], action: Action) -> str:
    return " and ".join(phrase for _, wanted, phrase in triggers if wanted == action)


def _evidence_lines(evidence: WindowEvidence, config: MonitorConfig) -> tuple[str, ...]:
    from monitoring.drift import describe_drift, describe_prediction_drift

    lines: list[str] = []
    if evidence.data_quality is not None:
        lines.append(evidence.data_quality.reason)
    if evidence.drift is not None:
        lines.append(describe_drift(evidence.drift, config))
        share = drifted_importance(evidence.drift, evidence.importance)
        if evidence.drift.drifted_columns:
            lines.append(
                f"the drifted columns carry {share:.0%} of the champion's importance (material "
                f"from {config.verdict.drift_importance:.0%}, monitor.verdict.drift_importance)"
            )
        lines.append(describe_prediction_drift(evidence.drift, config))
    if evidence.estimate is not None:
        lines.append(describe_estimate(evidence.estimate, evidence.estimated_breaches))
    if evidence.quality is not None:
        lines.append(evidence.quality.reason)
    return tuple(lines)


def describe_estimate(estimate: PerformanceEstimate, breached: tuple[str, ...]) -> str:
    """The estimated quality (CBPE) in one sentence: values, intervals, breaches."""
    if not estimate.trusted:
        return (
            f"estimated quality not judged: the champion's probabilities could not be checked "
            f"for calibration at training time ({estimate.rows} rows)"
        )
    parts = []
    for name in ("roc_auc", "average_precision"):
        metric = getattr(estimate, name)
        if metric.value is None:
            continue
        noise = (
            f" ({estimate.confidence:.0%} noise {metric.low:.3f}-{metric.high:.3f})"
            if metric.low is not None and metric.high is not None
            else ""
        )
        parts.append(f"{name} {metric.value:.3f}{noise}")
    verdict = f"below its floor on {', '.join(breached)}" if breached else "holds"
    return f"estimated quality (CBPE, before labels) {verdict} on {estimate.rows} rows: " + (
        "; ".join(parts) or "undefined"
    )


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
    evidence: WindowEvidence,
    config: MonitorConfig,
) -> MonitorDecision:
    """decision.json: the action, the signal that decided it, the reasons and the evidence."""
    drift, drift_summary = evidence.drift, None
    if drift is not None:
        prediction = drift.prediction
        share, material = weigh_drift(drift, evidence.importance, config)
        drift_summary = DriftSummary(
            dataset_drift=drift.dataset_drift,
            drifted_share=round(drift.drifted_share, _DECIMALS),
            drifted_columns=list(drift.drifted_columns),
            prediction_drift=prediction.drifted if prediction else None,
            prediction_drift_score=round(prediction.score, _DECIMALS) if prediction else None,
            calibrated=any(column.calibrated for column in drift.columns),
            importance_share=round(share, _DECIMALS),
            material=material,
        )
    return MonitorDecision(
        retrain=decision.retrain,
        reasons=list(decision.reasons),
        champion=champion,
        window=window,
        drift=drift_summary,
        quality=evidence.quality,
        action=decision.action,
        decided_by=decision.decided_by,
        estimate=evidence.estimate,
        data_quality=evidence.data_quality,
    )


def build_monitor_metrics(record: MonitorDecision, drift: DriftResult | None) -> dict[str, Any]:
    """metrics.json (DVC metric): deterministic, rounded, no timestamps."""
    summary = None
    if drift is not None:
        from monitoring.drift import drift_summary

        summary = drift_summary(drift)
    quality, estimate, data = record.quality, record.estimate, record.data_quality
    return {
        "retrain": record.retrain,
        "action": record.action,
        "decided_by": record.decided_by,
        "window": record.window.model_dump(include={"rows", "labelled_rows", "champion_rows"}),
        "drift": summary,
        "quality": quality.model_dump(mode="json", exclude={"reason"}) if quality else None,
        "estimate": estimate.model_dump(mode="json") if estimate else None,
        "data_quality": data.model_dump(mode="json", include={"passed", "failed"})
        if data
        else None,
    }


def run_metrics(record: MonitorDecision) -> dict[str, float]:
    """The tracking run's metrics: numbers only, booleans as 0/1, absent checks left out."""
    window, drift, quality = record.window, record.drift, record.quality
    metrics: dict[str, float] = {
        "retrain": int(record.retrain),
        "alert": int(record.action == "alert"),
        "window_rows": window.rows,
        "labelled_rows": window.labelled_rows,
        "champion_rows": window.champion_rows,
    }
    if drift is not None:
        metrics["dataset_drift"] = int(drift.dataset_drift)
        metrics["drifted_share"] = drift.drifted_share
        if drift.importance_share is not None:
            metrics["drifted_importance"] = drift.importance_share
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
    if record.estimate is not None:
        for name in ("roc_auc", "average_precision", "precision", "recall"):
            value = getattr(record.estimate, name).value
            if value is not None:
                metrics[f"estimated_{name}"] = value
    if record.data_quality is not None:
        metrics["data_quality_failed"] = len(record.data_quality.failed)
    return {key: float(value) for key, value in metrics.items()}


def add_verdict_to_report(page: str, decision: RetrainDecision, drift: DriftResult) -> str:
    """Evidently's drift page with the window's verdict (its reasons) and, when the thresholds
    were calibrated, their calibration, at the top of the body."""
    from monitoring.calibration import render_calibration

    reasons = "".join(f"<li>{html.escape(reason)}</li>" for reason in decision.reasons)
    section = (
        '<section style="font-family: sans-serif; margin: 1em 2em">'
        f"<h1>Monitor verdict: {html.escape(decision.action)}</h1><ul>{reasons}</ul>"
        + (render_calibration(drift.calibration) if drift.calibration is not None else "")
        + "</section>"
    )
    at = page.find("<body")
    if at < 0:
        return page + section
    end = page.find(">", at) + 1
    return page[:end] + section + page[end:]


def render_plain_page(decision: RetrainDecision) -> str:
    """The report when there is nothing to compare: a short page that says why."""
    reasons = "".join(f"<li>{html.escape(reason)}</li>" for reason in decision.reasons)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        "<title>Monitor: no drift report</title></head>\n<body><h1>No drift report</h1>"
        f"<p>The monitor compared nothing in this window:</p><ul>{reasons}</ul></body></html>\n"
    )
