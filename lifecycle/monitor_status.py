"""The monitor's last verdict as `lifecycle status` shows it: what it did and which signal decided.

Read from `reports/monitor/decision.json` (`core.records.monitor`): the action and the
deciding signal, the estimated (CBPE, before labels) and realized quality side by side
against their floors, the data-quality result, and the drifted columns with their share of
the champion's importance (from the monitor profile kept with the champion in the serving
store). Reading only.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from core.records import RecordError, RecordMissingError, read_record
from core.records.estimation import PerformanceEstimate
from core.records.monitor import MonitorDecision, QualitySummary, read_monitor_decision
from core.records.profile import WRITER as PROFILE_WRITER
from core.records.profile import MonitorProfile
from monitoring.estimation import find_estimated_breaches

# the metrics with a floor that both the estimate and the realized quality report
_METRICS = ("roc_auc", "average_precision")


def read_monitor_status(
    path: Path, store: Path | None, floors: Mapping[str, float] | None = None
) -> dict[str, Any] | None:
    """The last monitor verdict in brief (None: the monitor has not run yet).

    `floors` (`monitor.quality.thresholds`) stand in when the decision holds no quality
    summary to take them from; `store` is where the champion's importance is read.
    """
    try:
        decision = read_monitor_decision(path)
    except RecordMissingError:
        return None
    except RecordError as exc:
        return {"path": str(path), "error": str(exc)}
    shown_floors = dict(decision.quality.floors if decision.quality else floors or {})
    return {
        "path": str(path),
        "error": None,
        "action": decision.action,
        "decided_by": decision.decided_by,
        "retrain": decision.retrain,
        "reason": decision.reasons[0] if decision.reasons else None,
        "champion": decision.champion.tag if decision.champion else None,
        "window": decision.window.model_dump(include={"rows", "labelled_rows", "last_time"}),
        "quality": _quality_rows(decision, shown_floors),
        "estimate": _estimate_brief(decision.estimate),
        "realized": _realized_brief(decision.quality),
        "data_quality": None
        if decision.data_quality is None
        else decision.data_quality.model_dump(include={"judged", "passed", "failed", "reason"}),
        "drift": _drift_brief(decision, store),
    }


def format_monitor_status(monitor: dict[str, Any] | None) -> list[str]:
    """The monitor's last verdict as terminal lines."""
    if monitor is None:
        return ["monitor: no verdict yet (dvc repro monitor writes reports/monitor/decision.json)"]
    if monitor["error"]:
        return [f"monitor ({monitor['path']}): {monitor['error']}"]
    window = monitor["window"]
    decided = monitor["decided_by"] or "no signal fired"
    lines = [
        f"monitor ({monitor['path']}): {monitor['action']}, decided by {decided}; champion "
        f"{monitor['champion'] or '-'}; window {window['rows']} rows ({window['labelled_rows']} "
        f"labelled, newest {window['last_time'] or '-'})",
    ]
    if monitor["reason"]:
        lines.append(f"  {monitor['reason']}")
    lines.extend(_format_quality(monitor))
    lines.append(_format_data_quality(monitor["data_quality"]))
    lines.append(_format_drift(monitor["drift"]))
    return lines


# --- reading ------------------------------------------------------------------------------


def _interval(value: float | None, low: float | None, high: float | None) -> dict[str, Any]:
    return {"value": value, "low": low, "high": high}


def _quality_rows(decision: MonitorDecision, floors: dict[str, float]) -> dict[str, Any]:
    """Per floored metric: its floor, the estimate and the realized value, each with its
    interval and whether the verdict's rule counts it below the floor."""
    estimate, quality = decision.estimate, decision.quality
    estimated_low = find_estimated_breaches(estimate, floors) if estimate is not None else ()
    rows: dict[str, Any] = {}
    for name in dict.fromkeys([*_METRICS, *floors]):
        row: dict[str, Any] = {"floor": floors.get(name), "estimated": None, "realized": None}
        if estimate is not None and hasattr(estimate, name):
            metric = getattr(estimate, name)
            row["estimated"] = {
                **_interval(metric.value, metric.low, metric.high),
                "below": name in estimated_low,
            }
        if quality is not None and hasattr(quality, name):
            low, high = quality.intervals.get(name, (None, None))
            row["realized"] = {
                **_interval(getattr(quality, name), low, high),
                "below": name in quality.breached,
            }
        rows[name] = row
    return rows


def _estimate_brief(estimate: PerformanceEstimate | None) -> dict[str, Any] | None:
    if estimate is None:
        return None
    return estimate.model_dump(include={"rows", "trusted", "calibration", "confidence"})


def _realized_brief(quality: QualitySummary | None) -> dict[str, Any] | None:
    if quality is None:
        return None
    return quality.model_dump(include={"judged", "rows", "positives", "confidence", "reason"})


def _drift_brief(decision: MonitorDecision, store: Path | None) -> dict[str, Any] | None:
    drift = decision.drift
    if drift is None:
        return None
    shares = _importance_shares(decision, store)
    return {
        "columns": [
            {"name": name, "importance": shares.get(name) if shares else None}
            for name in drift.drifted_columns
        ],
        "importance_share": drift.importance_share,
        "material": drift.material,
        "calibrated": drift.calibrated,
        "prediction_drift": drift.prediction_drift,
    }


def _importance_shares(decision: MonitorDecision, store: Path | None) -> dict[str, float] | None:
    """Each feature's share of the champion's importance, from its stored monitor profile;
    None when there is no champion, no store or no profile."""
    from serving.model_store import ModelStoreError, monitor_profile_path

    if decision.champion is None or store is None or not decision.drift:
        return None
    try:
        path = monitor_profile_path(decision.champion.tag, store)
        profile = read_record(path, MonitorProfile, writer=PROFILE_WRITER)
    except (ModelStoreError, RecordError):
        return None
    return profile.importance.shares


# --- formatting ---------------------------------------------------------------------------


def _shown(cell: dict[str, Any] | None) -> str:
    if cell is None or cell["value"] is None:
        return "-"
    text = f"{cell['value']:.3f}"
    if cell["low"] is not None and cell["high"] is not None:
        text += f" ({cell['low']:.3f}-{cell['high']:.3f})"
    return f"{text} BELOW" if cell["below"] else text


def _format_quality(monitor: dict[str, Any]) -> list[str]:
    estimate, realized = monitor["estimate"], monitor["realized"]
    if estimate is None:
        estimated_head = "estimated: not made"
    elif not estimate["trusted"]:
        estimated_head = (
            f"estimated: untrusted calibration, judges nothing ({estimate['rows']} rows)"
        )
    else:
        estimated_head = f"estimated (CBPE, {estimate['rows']} rows, before labels)"
    if realized is None:
        realized_head = "realized: not measured"
    elif not realized["judged"]:
        realized_head = f"realized: not judged ({realized['rows']} labelled rows)"
    else:
        realized_head = f"realized ({realized['rows']} labelled, {realized['positives']} failures)"
    rows = [("quality", "floor", estimated_head, realized_head)]
    for name, row in monitor["quality"].items():
        floor = "-" if row["floor"] is None else f"{row['floor']:.3f}"
        rows.append((name, floor, _shown(row["estimated"]), _shown(row["realized"])))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = [
        "  " + "  ".join([*(c.ljust(w) for c, w in zip(row[:3], widths, strict=True)), row[3]])
        for row in rows
    ]
    if realized is not None and not realized["judged"]:
        lines.append(f"  {realized['reason']}")
    return [line.rstrip() for line in lines]


def _format_data_quality(data: dict[str, Any] | None) -> str:
    if data is None:
        return "  data quality: not checked (the champion has no training profile)"
    return f"  {data['reason']}"  # "data quality: all ... pass" or "data quality fails on ..."


def _format_drift(drift: dict[str, Any] | None) -> str:
    if drift is None:
        return "  drift: not measured"
    predictions = {True: "the predictions drift", False: "the predictions hold", None: ""}[
        drift["prediction_drift"]
    ]
    thresholds = "calibrated thresholds" if drift["calibrated"] else "Evidently's thresholds"
    if not drift["columns"]:
        return f"  drift ({thresholds}): no column drifted; {predictions}".rstrip("; ")
    columns = ", ".join(
        f"{column['name']} ({_share(column['importance'])} of the importance)"
        for column in drift["columns"]
    )
    material = "material" if drift["material"] else "not material"
    return (
        f"  drift ({thresholds}): {columns}; together {_share(drift['importance_share'])}, "
        f"{material}; {predictions}"
    ).rstrip("; ")


def _share(value: float | None) -> str:
    return "?" if value is None else f"{value:.0%}"
