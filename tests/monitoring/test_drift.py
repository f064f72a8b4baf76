"""Drift detection on small synthetic windows built from the contract's column names."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest

from core.config import MonitorConfig
from features.contract import DataContract
from monitoring.drift import (
    PREDICTION_COLUMN,
    DriftInputError,
    DriftResult,
    describe_drift,
    describe_prediction_drift,
    detect_drift,
    drift_summary,
    sample_window,
)
from monitoring.verdict import RetrainDecision, add_verdict_to_report

ROWS = 3000
BASE_MIX = (0.6, 0.3, 0.1)  # L, M, H
# Mean and standard deviation of each numeric feature in the synthetic windows.
NUMERIC = {
    "Air temperature [K]": (300.0, 2.0),
    "Process temperature [K]": (310.0, 1.5),
    "Rotational speed [rpm]": (1540.0, 180.0),
    "Torque [Nm]": (40.0, 10.0),
    "Tool wear [min]": (108.0, 63.0),
}
SHIFTED = ["Air temperature [K]", "Process temperature [K]", "Torque [Nm]"]  # 3 of 6 features


def make_window(
    rows: int,
    seed: int,
    *,
    mix: tuple[float, float, float] = BASE_MIX,
    shift_sd: dict[str, float] | None = None,
    with_label: bool = True,
) -> pd.DataFrame:
    """A window shaped like the milling data; `shift_sd` moves a column's mean by that many sd."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "UDI": np.arange(1, rows + 1),
            "Type": rng.choice(["L", "M", "H"], size=rows, p=mix),
            **{
                name: rng.normal(mean + (shift_sd or {}).get(name, 0.0) * sd, sd, rows)
                for name, (mean, sd) in NUMERIC.items()
            },
        }
    )
    if with_label:
        frame["Machine failure"] = (rng.random(rows) < 0.03).astype(int)
    return frame


@pytest.fixture(scope="module")
def reference() -> pd.DataFrame:
    return make_window(ROWS, seed=1)


@pytest.fixture(scope="module")
def config() -> MonitorConfig:
    return MonitorConfig(drift_share=0.5)  # Evidently's default, as the asserts say


@pytest.fixture(scope="module")
def no_drift(reference, contract, config) -> DriftResult:
    return detect_drift(reference, make_window(ROWS, seed=2), contract, config)


@pytest.fixture(scope="module")
def numeric_shift(reference, contract, config) -> DriftResult:
    current = make_window(ROWS, seed=2, shift_sd=dict.fromkeys(SHIFTED, 3.0))
    return detect_drift(reference, current, contract, config)


@pytest.fixture(scope="module")
def mix_change(reference, contract, config) -> DriftResult:
    current = make_window(ROWS, seed=2, mix=(0.2, 0.3, 0.5))
    return detect_drift(reference, current, contract, config)


# --- detect_drift -------------------------------------------------------------------------


def test_same_distribution_has_no_dataset_drift(no_drift: DriftResult, config):
    assert not no_drift.dataset_drift
    assert no_drift.drifted_count == 0
    assert no_drift.drifted_columns == ()
    assert no_drift.prediction is None  # no scores given, none compared
    assert describe_drift(no_drift, config) == (
        "no dataset drift: 0 of 6 feature columns drifted (0%, below monitor.drift_share 50%)"
    )


def test_columns_follow_the_contract(no_drift: DriftResult, contract: DataContract):
    assert [c.name for c in no_drift.columns] == contract.features
    kinds = {c.name: c.kind for c in no_drift.columns}
    assert kinds == {
        **dict.fromkeys(contract.numeric_features, "numerical"),
        **dict.fromkeys(contract.categorical_features, "categorical"),
    }
    assert "Machine failure" not in kinds and "UDI" not in kinds
    assert no_drift.reference_rows == no_drift.current_rows == ROWS


def test_numeric_shift_is_detected_and_named(numeric_shift: DriftResult, config):
    assert numeric_shift.dataset_drift  # 3 of 6 columns reach drift_share 0.5
    assert set(numeric_shift.drifted_columns) == set(SHIFTED)
    assert numeric_shift.drifted_count == 3
    assert numeric_shift.drifted_share == pytest.approx(0.5)
    for column in numeric_shift.columns:
        if column.kind == "numerical":
            assert column.method == "Wasserstein distance (normed)"  # over 1,000 rows
        assert (column.score >= column.threshold) == column.drifted
    assert describe_drift(numeric_shift, config) == (
        "dataset drift: 3 of 6 feature columns drifted (50%, at or above monitor.drift_share "
        "50%): Air temperature [K], Process temperature [K], Torque [Nm]"
    )


def test_category_mix_change_is_detected_on_that_column(mix_change: DriftResult):
    assert mix_change.drifted_columns == ("Type",)
    (type_drift,) = [c for c in mix_change.columns if c.name == "Type"]
    assert type_drift.kind == "categorical"
    assert type_drift.method == "Jensen-Shannon distance"
    assert type_drift.score > type_drift.threshold
    assert not mix_change.dataset_drift  # 1 of 6 is below drift_share 0.5


def test_drift_share_sets_the_dataset_verdict(reference, contract):
    current = make_window(ROWS, seed=2, mix=(0.2, 0.3, 0.5))
    strict = MonitorConfig(drift_share=0.1)
    result = detect_drift(reference, current, contract, strict)
    assert result.dataset_drift and result.drift_share == 0.1
    assert describe_drift(result, strict).startswith("dataset drift: 1 of 6")


def test_current_without_label_gives_the_same_result(reference, contract, config, no_drift):
    unlabelled = make_window(ROWS, seed=2, with_label=False).drop(columns="UDI")
    assert "Machine failure" not in unlabelled
    result = detect_drift(reference, unlabelled, contract, config)
    assert result == no_drift  # the snapshot is left out of equality


def test_small_windows_use_p_values_and_keep_the_verdict_direction(contract, config):
    reference = make_window(500, seed=1)
    current = make_window(500, seed=2, shift_sd={"Torque [Nm]": 3.0})
    result = detect_drift(reference, current, contract, config)
    (torque,) = [c for c in result.columns if c.name == "Torque [Nm]"]
    assert torque.method == "K-S p_value"
    assert torque.drifted and torque.score < torque.threshold  # small p-value means drift


def test_inputs_are_not_changed(reference, contract, config):
    current = make_window(ROWS, seed=2, mix=(0.2, 0.3, 0.5))
    before_reference, before_current = reference.copy(), current.copy()
    detect_drift(reference, current, contract, config)
    pd.testing.assert_frame_equal(reference, before_reference)
    pd.testing.assert_frame_equal(current, before_current)


def test_missing_feature_column_is_named(reference, contract, config):
    current = make_window(ROWS, seed=2).drop(columns="Torque [Nm]")
    with pytest.raises(DriftInputError, match=r"current window .*'Torque \[Nm\]'"):
        detect_drift(reference, current, contract, config)
    with pytest.raises(DriftInputError, match=r"reference window .*'Type'"):
        detect_drift(reference.drop(columns="Type"), reference, contract, config)


def test_empty_window_is_refused(reference, contract, config):
    with pytest.raises(DriftInputError, match="current window has no rows"):
        detect_drift(reference, reference.iloc[:0], contract, config)


# --- drift_summary ------------------------------------------------------------------------


def test_summary_is_json_ready_rounded_and_without_the_snapshot(numeric_shift: DriftResult):
    summary = drift_summary(numeric_shift)
    text = json.dumps(summary, sort_keys=True)
    assert json.loads(text) == summary
    assert "snapshot" not in text and "timestamp" not in text
    assert summary["dataset_drift"] is True
    assert summary["drifted_columns"] == SHIFTED
    assert summary["column_count"] == 6
    torque = summary["columns"]["Torque [Nm]"]
    assert set(torque) == {"kind", "method", "score", "threshold", "drifted"}
    assert torque["score"] == round(torque["score"], 6)


def test_summary_is_deterministic(reference, contract, config, numeric_shift):
    current = make_window(ROWS, seed=2, shift_sd=dict.fromkeys(SHIFTED, 3.0))
    again = detect_drift(reference, current, contract, config)
    assert json.dumps(drift_summary(again)) == json.dumps(drift_summary(numeric_shift))


# --- sample_window ------------------------------------------------------------------------


def test_sampling_is_bounded_seeded_and_keeps_order():
    frame = make_window(5000, seed=3)
    sample = sample_window(frame, 1000, seed=7)
    assert len(sample) == 1000
    assert sample.index.is_unique and sample.index.is_monotonic_increasing
    pd.testing.assert_frame_equal(sample, frame.loc[sample.index])
    pd.testing.assert_frame_equal(sample, sample_window(frame, 1000, seed=7))
    assert not sample.index.equals(sample_window(frame, 1000, seed=8).index)


def test_small_window_is_returned_unchanged():
    frame = make_window(500, seed=3)
    assert sample_window(frame, 500, seed=7) is frame
    with pytest.raises(ValueError, match="max_rows"):
        sample_window(frame, 0, seed=7)


# --- thresholds from params.yaml ----------------------------------------------------------


def test_threshold_params_reach_evidently(reference, contract):
    current = make_window(ROWS, seed=2, shift_sd=dict.fromkeys(SHIFTED, 3.0))
    config = MonitorConfig(
        drift_share=0.5,
        num_threshold=0.5,
        cat_threshold=0.3,
        per_column_threshold={"Torque [Nm]": 5.0},
    )
    result = detect_drift(reference, current, contract, config)
    thresholds = {c.name: c.threshold for c in result.columns}
    assert thresholds == {
        "Type": 0.3,
        "Air temperature [K]": 0.5,
        "Process temperature [K]": 0.5,
        "Rotational speed [rpm]": 0.5,
        "Torque [Nm]": 5.0,
        "Tool wear [min]": 0.5,
    }
    # a 3-sd shift is a normed Wasserstein distance of about 3: above 0.5, below 5
    assert result.drifted_columns == ("Air temperature [K]", "Process temperature [K]")


def test_per_column_threshold_for_an_unknown_column_is_refused(reference, contract):
    config = MonitorConfig(per_column_threshold={"Torque": 0.2})
    with pytest.raises(DriftInputError) as error:
        detect_drift(reference, reference, contract, config)
    assert str(error.value) == (
        "monitor.per_column_threshold names ['Torque'], which are not features of the data "
        "contract (features: ['Type', 'Air temperature [K]', 'Process temperature [K]', "
        "'Rotational speed [rpm]', 'Torque [Nm]', 'Tool wear [min]'])"
    )


# --- prediction drift ---------------------------------------------------------------------


def scores(frame: pd.DataFrame, seed: int, a: float = 1.0, b: float = 20.0) -> pd.Series:
    return pd.Series(np.random.default_rng(seed).beta(a, b, len(frame)), index=frame.index)


def test_shifted_scores_are_prediction_drift(reference, contract, config):
    current = make_window(ROWS, seed=2)
    result = detect_drift(
        reference,
        current,
        contract,
        config,
        reference_scores=scores(reference, 1),
        current_scores=scores(current, 2, a=3.0, b=10.0),
    )
    prediction = result.prediction
    assert prediction is not None and prediction.drifted
    assert prediction.method == "Wasserstein distance (normed)"
    assert prediction.score > prediction.threshold == 0.1
    assert (prediction.reference_rows, prediction.current_rows) == (ROWS, ROWS)
    assert not result.dataset_drift  # the features did not move
    assert [c.name for c in result.columns] == contract.features  # scores are not a feature
    assert describe_prediction_drift(result, config) == (
        f"prediction drift: Wasserstein distance (normed) {prediction.score:.4g} on 3000 served "
        "probabilities against 3000 reference ones (threshold 0.1, Evidently's "
        "default; monitor.prediction_drift_threshold is null)"
    )
    assert drift_summary(result)["prediction"] == {
        "method": "Wasserstein distance (normed)",
        "score": round(prediction.score, 6),
        "threshold": 0.1,
        "drifted": True,
        "reference_rows": ROWS,
        "current_rows": ROWS,
    }


def test_scores_of_some_rows_are_compared_alone_with_the_configured_threshold(reference, contract):
    current = make_window(ROWS, seed=2)
    champion_rows = current.index[::2]  # the other rows were served by another version
    config = MonitorConfig(drift_share=0.5, prediction_drift_threshold=5.0)
    result = detect_drift(
        reference,
        current,
        contract,
        config,
        reference_scores=scores(reference, 1),
        current_scores=scores(current, 2, a=3.0, b=10.0).loc[champion_rows],
    )
    prediction = result.prediction
    assert prediction is not None and not prediction.drifted  # about 3.9: below the 5 asked for
    assert prediction.threshold == 5.0 and prediction.current_rows == ROWS // 2
    assert result.current_rows == ROWS  # the features still use every row
    assert describe_prediction_drift(result, config).endswith(
        "(threshold 5, monitor.prediction_drift_threshold)"
    )


def test_same_scores_are_no_prediction_drift_and_html_shows_them(reference, contract, config):
    current = make_window(ROWS, seed=2)
    result = detect_drift(
        reference,
        current,
        contract,
        config,
        reference_scores=scores(reference, 1),
        current_scores=scores(current, 2),
    )
    assert result.prediction is not None and not result.prediction.drifted
    html = result.snapshot.get_html_str(as_iframe=False)
    assert f"Value Drift for column {PREDICTION_COLUMN}" in html


def test_without_current_scores_prediction_drift_is_not_judged(reference, contract, config):
    current = make_window(ROWS, seed=2)
    no_scores = pd.Series(np.nan, index=current.index)
    result = detect_drift(
        reference,
        current,
        contract,
        config,
        reference_scores=scores(reference, 1),
        current_scores=no_scores,
    )
    assert result.prediction is None
    assert describe_prediction_drift(result, config) == (
        "prediction drift not judged: the window has no served probabilities to compare"
    )
    assert drift_summary(result)["prediction"] is None


def test_the_monitors_drift_page_needs_no_network(numeric_shift: DriftResult, tmp_path) -> None:
    """reports/monitor/drift.html as the monitor writes it: Evidently's page with its
    JavaScript and icon font inline (no <script src>, no <link href>, no external font)."""
    out = tmp_path / "drift.html"
    numeric_shift.snapshot.save_html(str(out))  # as pipelines.monitor does
    decision = RetrainDecision(False, ("drift on Torque",), action="drift")
    page = add_verdict_to_report(out.read_text(encoding="utf-8"), decision, numeric_shift)

    assert not re.search(r"<(?:script|link|img|iframe)\b[^>]*\b(?:src|href)\s*=", page, re.I)
    assert "url(data:font/ttf;base64," in page  # the Material Icons font, embedded
    assert "window.drawDashboard(" in page and len(page) > 1_000_000  # the inlined UI bundle
    assert "<h1>Monitor verdict: drift</h1>" in page
