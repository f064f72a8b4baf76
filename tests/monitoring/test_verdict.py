"""The window's verdict and the records the monitor stage writes, on hand-made evidence."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

from core.config import MonitorConfig, VerdictConfig
from core.records import record_json
from core.records.data_quality import DataQualitySummary
from core.records.monitor import MonitorDecision, QualitySummary, ServingChampion
from monitoring.drift import ColumnDrift, DriftResult, PredictionDrift
from monitoring.verdict import (
    RetrainDecision,
    WindowEvidence,
    build_monitor_decision,
    build_monitor_metrics,
    decide_window,
    render_plain_page,
    run_metrics,
    summarise_window,
)
from tests.factories import make_valid_frame
from tests.monitoring.traffic import make_log

CONFIG = MonitorConfig(window={"rows": 5000, "min_rows": 500}, labels={"min_rows": 200})


def drift(dataset: bool = False, prediction: bool | None = False) -> DriftResult:
    columns = tuple(
        ColumnDrift(name, "numerical", "Wasserstein distance (normed)", score, 0.1, score >= 0.1)
        for name, score in [("Torque [Nm]", 0.3 if dataset else 0.02), ("Tool wear [min]", 0.01)]
    )
    scores = None
    if prediction is not None:
        score = 0.4 if prediction else 0.03
        scores = PredictionDrift("Wasserstein distance (normed)", score, 0.1, prediction, 1000, 900)
    return DriftResult(
        dataset_drift=dataset,
        drift_share=0.15,
        drifted_share=0.5 if dataset else 0.0,
        drifted_count=1 if dataset else 0,
        columns=columns,
        reference_rows=1000,
        current_rows=900,
        snapshot=None,  # type: ignore[arg-type]
        prediction=scores,
    )


def quality(breached: tuple[str, ...] = ()) -> QualitySummary:
    return QualitySummary(
        judged=True,
        rows=300,
        positives=12,
        roc_auc=0.7 if breached else 0.9,
        threshold=0.4,
        floors={"roc_auc": 0.85},
        breached=breached,
        reason="quality sentence",
    )


def evidence(**changes) -> WindowEvidence:
    base = WindowEvidence(
        champion="milling-failure:v1", rows=900, labelled_rows=300, drift=drift(), quality=quality()
    )
    return dataclasses.replace(base, **changes)


NO_DRIFT = "no dataset drift: 0 of 2 feature columns drifted (0%, below monitor.drift_share 15%)"
NO_PREDICTION_DRIFT = (
    "no prediction drift: Wasserstein distance (normed) 0.03 on 900 served "
    "probabilities against 1000 reference ones (threshold 0.1, Evidently's default; "
    "monitor.prediction_drift_threshold is null)"
)


def test_no_champion_is_no_verdict():
    decision = decide_window(evidence(champion=None, drift=None, quality=None), CONFIG)
    assert decision.retrain is False
    assert decision.reasons == ("no champion yet: nothing to monitor",)


def test_too_little_traffic_is_no_verdict():
    decision = decide_window(evidence(rows=120, drift=drift(dataset=True)), CONFIG)
    assert decision.retrain is False
    assert decision.reasons == (
        "not enough traffic: 120 of 500 rows needed for a verdict (monitor.window.min_rows) "
        "in the newest prediction log window",
    )


KEEP = "keep the champion: no drift, no quality breach and clean data in this window"


def data_quality(failed: tuple[str, ...] = ()) -> DataQualitySummary:
    return DataQualitySummary(
        judged=True,
        passed=not failed,
        rows=900,
        failed=failed,
        checks=(),
        reason="data quality sentence",
    )


def test_quiet_window_keeps_the_champion():
    decision = decide_window(evidence(), CONFIG)
    assert (decision.retrain, decision.action, decision.decided_by) == (False, "keep", None)
    assert decision.reasons == (KEEP, NO_DRIFT, NO_PREDICTION_DRIFT, "quality sentence")


def test_feature_drift_with_quality_holding_is_reported_not_retrained():
    decision = decide_window(evidence(drift=drift(dataset=True)), CONFIG)
    assert (decision.retrain, decision.action, decision.decided_by) == (
        False,
        "drift",
        "feature_drift",
    )
    assert decision.reasons[:3] == (
        "drift, no retrain: Torque [Nm] drift (50% of the champion's importance); the "
        "estimated and realized quality hold",
        "dataset drift: 1 of 2 feature columns drifted (50%, at or above monitor.drift_share "
        "15%): Torque [Nm]",
        "the drifted columns carry 50% of the champion's importance (material from 25%, "
        "monitor.verdict.drift_importance)",
    )


def test_material_drift_retrains_when_configured_to():
    config = CONFIG.model_copy(update={"verdict": VerdictConfig(on_material_drift="retrain")})
    decision = decide_window(evidence(drift=drift(dataset=True)), config)
    assert (decision.retrain, decision.decided_by) == (True, "feature_drift")
    assert decision.reasons[0] == ("retrain: Torque [Nm] drift (50% of the champion's importance)")


def test_drift_on_an_unimportant_feature_is_not_material():
    config = CONFIG.model_copy(update={"verdict": VerdictConfig(on_material_drift="retrain")})
    unimportant = {"Torque [Nm]": 0.05, "Tool wear [min]": 0.95}
    decision = decide_window(evidence(drift=drift(dataset=True), importance=unimportant), config)
    assert (decision.retrain, decision.action) == (False, "drift")
    assert decision.reasons[0].startswith(
        "drift, no retrain: Torque [Nm] drift (5% of the champion's importance, not material)"
    )


def test_prediction_drift_alone_is_reported():
    decision = decide_window(evidence(drift=drift(prediction=True)), CONFIG)
    assert (decision.action, decision.decided_by) == ("drift", "prediction_drift")
    assert decision.reasons[0].startswith("drift, no retrain: the predictions drift")
    assert decision.reasons[2].startswith("prediction drift: Wasserstein distance (normed) 0.4")


def test_quality_breach_calls_for_a_retrain():
    decision = decide_window(evidence(quality=quality(("roc_auc",))), CONFIG)
    assert (decision.retrain, decision.decided_by) == (True, "realized_quality")
    assert decision.reasons[0] == "retrain: quality is below its floor on roc_auc"


def test_an_estimated_breach_retrains_before_the_labels_say_so():
    decision = decide_window(evidence(estimated_breaches=("average_precision",)), CONFIG)
    assert (decision.retrain, decision.decided_by) == (True, "estimated_quality")
    assert decision.reasons[0] == (
        "retrain: the estimated quality is below its floor on average_precision"
    )


def test_every_retrain_trigger_is_named():
    both = evidence(
        drift=drift(dataset=True, prediction=True),
        quality=quality(("roc_auc",)),
        estimated_breaches=("roc_auc",),
    )
    decision = decide_window(both, CONFIG)
    assert decision.decided_by == "realized_quality"  # the first signal asking for a retrain
    assert decision.reasons[0] == (
        "retrain: quality is below its floor on roc_auc and the estimated quality is below its "
        "floor on roc_auc"
    )


def test_a_data_quality_failure_alerts_and_holds_back_a_retrain():
    broken = evidence(
        data_quality=data_quality(("stuck:Torque [Nm]",)), quality=quality(("roc_auc",))
    )
    decision = decide_window(broken, CONFIG)
    assert (decision.retrain, decision.action, decision.decided_by) == (
        False,
        "alert",
        "data_quality",
    )
    assert decision.reasons[0] == "alert: data quality fails on stuck:Torque [Nm]"
    assert decision.reasons[1] == "data quality sentence"
    config = CONFIG.model_copy(update={"verdict": VerdictConfig(on_data_quality="retrain")})
    assert decide_window(broken, config).retrain is True


def test_a_retrain_waits_for_labels_when_they_are_required():
    waiting = evidence(estimated_breaches=("roc_auc",), labelled_rows=50, quality=None)
    decision = decide_window(waiting, CONFIG)
    assert (decision.retrain, decision.action) == (False, "alert")
    assert decision.reasons[0] == (
        "alert, waiting for labels to retrain: the estimated quality is below its floor on "
        "roc_auc; 50 of 200 labelled rows (monitor.labels.min_rows; monitor.labels.required is "
        "true)"
    )
    optional = MonitorConfig(
        window={"rows": 5000, "min_rows": 500}, labels={"min_rows": 200, "required": False}
    )
    assert decide_window(waiting, optional).retrain is True


def test_without_scores_prediction_drift_is_not_judged():
    decision = decide_window(evidence(drift=drift(prediction=None)), CONFIG)
    assert decision.reasons[2] == (
        "prediction drift not judged: the window has no served probabilities to compare"
    )


# --- the records --------------------------------------------------------------------------

CHAMPION = ServingChampion(tag="milling-failure:v1", version=1)


def window_summary(contract, rows: int = 900):
    window = make_log(make_valid_frame(rows=rows, seed=1), contract)
    return summarise_window(window, labelled_rows=300, champion_rows=rows, missing_columns=[])


def test_the_decision_record_holds_the_verdict_and_the_evidence_in_brief(contract):
    window = window_summary(contract)
    found = evidence(drift=drift(dataset=True), quality=quality(("roc_auc",)))
    verdict = decide_window(found, CONFIG)
    record = build_monitor_decision(verdict, CHAMPION, window, found, CONFIG)
    assert record.retrain is True and record.reasons == list(verdict.reasons)
    assert (record.action, record.decided_by) == ("retrain", "realized_quality")
    assert record.drift is not None and record.drift.material is True
    assert record.drift.importance_share == 0.5
    assert record.champion == CHAMPION and CHAMPION.label == "v1"
    assert (record.window.rows, record.window.model_versions) == (900, {"v1": 900})
    assert record.drift is not None and record.drift.drifted_columns == ["Torque [Nm]"]
    assert record.drift.prediction_drift is False and record.drift.prediction_drift_score == 0.03
    assert record.quality is not None and record.quality.reason == "quality sentence"
    assert MonitorDecision.model_validate_json(record_json(record)) == record
    metrics = run_metrics(record)
    assert metrics["retrain"] == 1.0 and metrics["drifted_share"] == 0.5
    assert metrics["quality_roc_auc"] == 0.7 and "quality_precision" not in metrics


def test_without_a_champion_the_records_say_so(contract):
    window = window_summary(contract, rows=40)
    nothing = evidence(champion=None, rows=40, drift=None, quality=None)
    verdict = decide_window(nothing, CONFIG)
    record = build_monitor_decision(verdict, None, window, nothing, CONFIG)
    assert json.loads(record_json(record))["drift"] is None and record.champion is None
    assert build_monitor_metrics(record, None) == {
        "retrain": False,
        "action": "keep",
        "decided_by": None,
        "window": {"rows": 40, "labelled_rows": 300, "champion_rows": 40},
        "drift": None,
        "quality": None,
        "estimate": None,
        "data_quality": None,
    }
    assert run_metrics(record) == {
        "retrain": 0.0,
        "alert": 0.0,
        "window_rows": 40.0,
        "labelled_rows": 300.0,
        "champion_rows": 40.0,
    }


def test_the_plain_page_lists_the_reasons_escaped():
    page = render_plain_page(RetrainDecision(False, ("a < b",)))
    assert page.startswith("<!DOCTYPE html>") and "<li>a &lt; b</li>" in page


def test_the_window_and_the_verdict_do_not_import_evidently():
    code = (
        "import sys, monitoring.window, monitoring.verdict; "
        "assert 'evidently' not in sys.modules and 'monitoring.drift' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[2])
