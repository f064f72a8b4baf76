"""The per-window snapshot and the dashboard panels, with a real Evidently drift report."""

from __future__ import annotations

import datetime as dt
import re

import numpy as np
import pandas as pd
import pytest

from core.config import MonitorConfig
from core.records.monitor import QualitySummary
from features.contract import DataContract
from monitoring.dashboard import (
    QUALITY_METRICS,
    WindowSnapshotError,
    build_dashboard_panels,
    build_window_snapshot,
    value_name,
    window_values,
)
from monitoring.drift import DriftResult, detect_drift
from tests.monitoring.test_drift import make_window

WINDOW_TIME = dt.datetime(2026, 11, 5, 9, 30, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def drift(contract: DataContract) -> DriftResult:
    rng = np.random.default_rng(0)
    reference, current = make_window(1500, 1), make_window(1500, 2, shift_sd={"Torque [Nm]": 1})
    return detect_drift(
        reference,
        current,
        contract,
        MonitorConfig(),
        reference_scores=pd.Series(rng.beta(0.5, 8, 1500)),
        current_scores=pd.Series(rng.beta(0.5, 6, 1500)),
    )


def _mean_values(snapshot) -> dict[str, float]:
    """Our numbers as the dashboard reads them: MeanValue results by column."""
    return {
        result.metric_value_location.metric.params["column"]: result.value
        for result in snapshot.to_snapshot_model().metric_results.values()
        if result.metric_value_location.metric.params["type"].endswith(":MeanValue")
    }


def _types(snapshot) -> list[str]:
    results = snapshot.to_snapshot_model().metric_results.values()
    return [r.metric_value_location.metric.params["type"].split(":")[-1] for r in results]


def test_snapshot_holds_drift_results_and_our_values_at_the_window_time(drift) -> None:
    values = {"estimated_roc_auc": 0.91, "realized_roc_auc": None, "floor_roc_auc": 0.85}
    snapshot = build_window_snapshot(
        drift.snapshot, values, WINDOW_TIME, metadata={"champion": "failure-model:v3"}
    )
    model = snapshot.to_snapshot_model()
    assert model.timestamp == dt.datetime(2026, 11, 5, 9, 30)  # naive UTC, as Evidently's
    assert model.metadata["champion"] == "failure-model:v3"
    assert _mean_values(snapshot) == {"estimated_roc_auc": 0.91, "floor_roc_auc": 0.85}
    types = _types(snapshot)
    assert types.count("DriftedColumnsCount") == 1
    assert types.count("ValueDrift") == len(drift.columns) + 1  # the features and the scores
    # the drift verdicts read back from the merged snapshot are the window's own
    drifted = next(r for r in model.metric_results.values() if hasattr(r, "share"))
    assert drifted.share.value == pytest.approx(drift.drifted_share)
    assert drifted.count.value == drift.drifted_count
    # compact by default: the tests' widgets and one counter of our numbers, no histograms
    assert len(model.widgets) == 1 and model.tests_widgets
    assert all(result.widget is None for result in model.metric_results.values())
    # the drift result's own snapshot is left as it was
    assert drift.snapshot.to_snapshot_model().timestamp != model.timestamp


def test_full_report_is_kept_on_request_and_is_much_larger(drift) -> None:
    compact = build_window_snapshot(drift.snapshot, {"estimated_roc_auc": 0.9}, WINDOW_TIME)
    full = build_window_snapshot(
        drift.snapshot, {"estimated_roc_auc": 0.9}, WINDOW_TIME, include_report=True
    )
    assert (
        len(full.to_snapshot_model().widgets) == len(drift.snapshot.to_snapshot_model().widgets) + 1
    )
    assert len(full.dumps()) > 5 * len(compact.dumps())


def test_missing_and_non_finite_values_leave_a_gap(drift) -> None:
    snapshot = build_window_snapshot(
        drift.snapshot, {"estimated_roc_auc": float("nan"), "realized_roc_auc": None}, WINDOW_TIME
    )
    assert _mean_values(snapshot) == {}
    assert "DriftedColumnsCount" in _types(snapshot)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"Estimated AUC": 0.9}, "value name 'Estimated AUC' is not a lower-case identifier"),
        ({"estimated_roc_auc": "0.9"}, "value estimated_roc_auc is '0.9', not a number or None"),
        ({"estimated_roc_auc": True}, "value estimated_roc_auc is True, not a number or None"),
    ],
)
def test_bad_values_are_refused_by_name(drift, values, message) -> None:
    with pytest.raises(WindowSnapshotError, match=f"^{re.escape(message)}"):
        build_window_snapshot(drift.snapshot, values, WINDOW_TIME)


def test_naive_timestamp_is_taken_as_utc_and_a_date_or_nat_is_refused(drift) -> None:
    naive = dt.datetime(2026, 11, 5, 9, 30)
    snapshot = build_window_snapshot(drift.snapshot, {}, naive)
    assert snapshot.to_snapshot_model().timestamp == naive
    with pytest.raises(
        WindowSnapshotError,
        match=r"^the window's timestamp is datetime\.date\(2026, 11, 5\), not a datetime$",
    ):
        build_window_snapshot(drift.snapshot, {}, dt.date(2026, 11, 5))  # type: ignore[arg-type]
    with pytest.raises(WindowSnapshotError, match=r"^the window's timestamp is NaT, not a"):
        build_window_snapshot(drift.snapshot, {}, pd.NaT)


def test_a_pandas_timestamp_from_the_prediction_log_is_stored_as_naive_utc(drift) -> None:
    last_logged = pd.Timestamp("2026-11-05T10:30:00+01:00")  # the log's `time` column type
    snapshot = build_window_snapshot(drift.snapshot, {}, last_logged)
    stored = snapshot.to_snapshot_model().timestamp
    assert stored == dt.datetime(2026, 11, 5, 9, 30) and type(stored) is dt.datetime


def test_window_values_name_estimated_realized_and_floor() -> None:
    judged = QualitySummary(
        judged=True, rows=400, positives=20, roc_auc=0.93, average_precision=0.61,
        precision=0.5, recall=0.7, threshold=0.5, floors={"roc_auc": 0.85},
        breached=(), reason="quality within floors",
    )  # fmt: skip
    values = window_values({"roc_auc": 0.9, "average_precision": None}, judged, {"roc_auc": 0.85})
    assert set(values) == {
        value_name(k, m) for k in ("estimated", "realized", "floor") for m in QUALITY_METRICS
    }
    assert values["estimated_roc_auc"] == 0.9 and values["estimated_average_precision"] is None
    assert values["realized_roc_auc"] == 0.93 and values["realized_recall"] == 0.7
    assert values["floor_roc_auc"] == 0.85 and values["floor_average_precision"] is None
    # too few labels: the realized numbers are not plotted, as the verdict does not count them
    unjudged = judged.model_copy(update={"judged": False})
    assert window_values(None, unjudged, {})["realized_roc_auc"] is None


def test_panels_plot_drift_and_every_quality_value_with_unique_titles() -> None:
    tabs = build_dashboard_panels()
    assert list(tabs) == ["Drift", "Quality"]
    panels = [panel for tab in tabs.values() for panel in tab]
    assert len({panel.title for panel in panels}) == len(panels)
    series = {
        (v.metric.split(":")[-1], tuple(sorted(v.metric_labels.items())))
        for p in panels
        for v in p.values
    }
    assert ("DriftedColumnsCount", (("value_type", "share"),)) in series
    assert ("DriftedColumnsCount", (("value_type", "count"),)) in series
    assert ("ValueDrift", ()) in series  # every column's score, one line per column
    for metric in QUALITY_METRICS:
        for kind in ("estimated", "realized", "floor"):
            assert ("MeanValue", (("column", value_name(kind, metric)),)) in series
    assert all(panel.plot_params["plot_type"] == "line" for panel in panels)
