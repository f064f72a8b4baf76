"""Evaluation helpers: the operating threshold, per-group scores and calibration bins."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from core.config import OperatingPointConfig
from models.evaluation import (
    OperatingPoint,
    calibration_points,
    choose_threshold,
    score_by_group,
    score_predictions,
)


def _scored(rows: int = 400, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Labels with a 20% positive rate and noisy scores that rank positives higher."""
    rng = np.random.default_rng(seed)
    y = (rng.random(rows) < 0.2).astype(int)
    proba = np.clip(0.35 * y + 0.65 * rng.random(rows), 0, 1)
    return y, proba


def _precision_recall_f1(y: np.ndarray, proba: np.ndarray, threshold: float) -> tuple:
    predicted = proba >= threshold
    true_pos = int((predicted & (y == 1)).sum())
    precision = true_pos / predicted.sum() if predicted.any() else 0.0
    recall = true_pos / (y == 1).sum()
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def _every_threshold(y: np.ndarray, proba: np.ndarray) -> list[tuple[float, float, float, float]]:
    return [(t, *_precision_recall_f1(y, proba, t)) for t in np.unique(proba)]


# --- choose_threshold -----------------------------------------------------------------


def test_recall_goal_keeps_the_floor_with_the_best_precision() -> None:
    y, proba = _scored()
    point = choose_threshold(y, proba, OperatingPointConfig(goal="recall", at_least=0.9))

    assert point.met and point.goal == "recall" and point.at_least == 0.9
    assert point.recall >= 0.9
    feasible = [p for _, p, r, _ in _every_threshold(y, proba) if r >= 0.9]
    assert point.precision == pytest.approx(max(feasible), abs=1e-6)
    assert point.threshold in set(proba)  # an observed score
    assert "recall >= 0.900 met" in point.note


def test_achieved_metrics_are_those_of_the_chosen_threshold() -> None:
    y, proba = _scored(seed=3)
    point = choose_threshold(y, proba, OperatingPointConfig(goal="recall", at_least=0.8))
    scored = score_predictions(y, proba, point.threshold)
    assert (point.precision, point.recall, point.f1) == pytest.approx(
        (scored["precision"], scored["recall"], scored["f1"]), abs=1e-6
    )


def test_recall_goal_does_not_stop_at_a_dominated_threshold() -> None:
    # From the top: a negative, then four positives. The highest threshold with recall >= 0.25
    # (0.8: precision 0.5) is beaten by 0.5, which has precision 0.8 and recall 1.0.
    proba = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3])
    y = np.array([0, 1, 1, 1, 1, 0, 0])
    point = choose_threshold(y, proba, OperatingPointConfig(goal="recall", at_least=0.25))
    assert point.threshold == 0.5
    assert (point.precision, point.recall) == (0.8, 1.0)


def test_precision_goal_keeps_the_floor_with_the_best_recall() -> None:
    y, proba = _scored(seed=1)
    point = choose_threshold(y, proba, OperatingPointConfig(goal="precision", at_least=0.8))

    assert point.met and point.precision >= 0.8
    feasible = [(r, p) for _, p, r, _ in _every_threshold(y, proba) if p >= 0.8]
    best_recall = max(r for r, _ in feasible)
    assert point.recall == pytest.approx(best_recall, abs=1e-6)
    # among equal recall, the higher precision (fewer false alarms) wins
    assert point.precision == pytest.approx(
        max(p for r, p in feasible if r == best_recall), abs=1e-6
    )


def test_unreachable_goal_falls_back_to_the_best_f1() -> None:
    y, proba = _scored(seed=2)
    y, proba = np.append(y, 0), np.append(proba, 1.0)  # the top score is a negative
    point = choose_threshold(y, proba, OperatingPointConfig(goal="precision", at_least=1.0))
    best_f1 = choose_threshold(y, proba, OperatingPointConfig(goal="f1"))

    assert not point.met
    assert point.threshold == best_f1.threshold and point.f1 == best_f1.f1
    assert point.goal == "precision" and point.at_least == 1.0
    assert "no threshold reaches precision >= 1.000" in point.note
    assert "NOT met" in point.note


def test_f1_goal_maximises_f1_over_observed_scores() -> None:
    y, proba = _scored(seed=4)
    point = choose_threshold(y, proba, OperatingPointConfig(goal="f1"))
    assert point.met and point.at_least is None
    assert point.f1 == pytest.approx(max(f for *_, f in _every_threshold(y, proba)), abs=1e-6)


def test_threshold_is_deterministic_under_row_order_and_ties() -> None:
    y, proba = _scored(seed=5)
    proba = np.round(proba, 1)  # many tied scores
    config = OperatingPointConfig(goal="recall", at_least=0.7)
    order = np.random.default_rng(0).permutation(len(y))

    first = choose_threshold(y, proba, config)
    assert choose_threshold(y, proba, config) == first
    assert choose_threshold(y[order], proba[order], config) == first


def test_all_scores_tied_gives_the_one_threshold() -> None:
    y = np.array([0, 1, 0, 1, 0])
    point = choose_threshold(y, np.full(5, 0.3), OperatingPointConfig(goal="recall"))
    assert point.threshold == 0.3 and point.recall == 1.0 and point.precision == 0.4


@pytest.mark.parametrize("labels", [np.zeros(6, dtype=int), np.ones(6, dtype=int)])
def test_single_class_labels_are_a_clear_error(labels: np.ndarray) -> None:
    with pytest.raises(ValueError, match="needs both classes in y_true; got only class"):
        choose_threshold(labels, np.linspace(0, 1, 6), OperatingPointConfig())


def test_operating_point_is_json_ready() -> None:
    y, proba = _scored()
    point = choose_threshold(y, proba, OperatingPointConfig())
    assert isinstance(point, OperatingPoint)
    json.dumps(point.to_dict(), allow_nan=False)


# --- score_by_group -------------------------------------------------------------------


def _grouped_frame() -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    kind = np.array(["L"] * 60 + ["M"] * 30 + ["H"] * 10)
    y = (rng.random(100) < 0.3).astype(int)
    y[kind == "H"] = 0  # a group with one class
    y[:2], y[60:62] = 1, 1
    proba = np.clip(0.4 * y + 0.6 * rng.random(100), 0, 1)
    return pd.DataFrame({"Type": kind, "x": rng.random(100)}), y, proba


def test_score_by_group_scores_each_group_with_counts() -> None:
    frame, y, proba = _grouped_frame()
    groups = score_by_group(frame, y, proba, "Type", 0.5)

    assert list(groups) == ["H", "L", "M"]
    assert {k: groups[k]["rows"] for k in groups} == {"H": 10, "L": 60, "M": 30}
    assert groups["L"]["positives"] == int(y[:60].sum())
    assert groups["L"] == score_predictions(y[:60], proba[:60], 0.5)


def test_single_class_group_gets_none_ranking_metrics_and_stays_json_safe() -> None:
    frame, y, proba = _grouped_frame()
    groups = score_by_group(frame, y, proba, "Type", 0.5)

    assert groups["H"]["positives"] == 0
    assert groups["H"]["roc_auc"] is None and groups["H"]["average_precision"] is None
    assert groups["H"]["brier"] is not None
    json.dumps(groups, allow_nan=False)


def test_score_by_group_does_not_change_its_input_and_collects_missing_values() -> None:
    frame, y, proba = _grouped_frame()
    frame = frame.astype({"Type": "category"})
    frame.loc[0, "Type"] = np.nan
    before = frame.copy()

    groups = score_by_group(frame, y, proba, "Type", 0.5)

    pd.testing.assert_frame_equal(frame, before)
    assert groups["<missing>"]["rows"] == 1
    assert sum(g["rows"] for g in groups.values()) == len(frame)


def test_score_by_group_errors_name_the_problem() -> None:
    frame, y, proba = _grouped_frame()
    with pytest.raises(ValueError, match="no column 'Kind'"):
        score_by_group(frame, y, proba, "Kind", 0.5)
    with pytest.raises(ValueError, match="must align"):
        score_by_group(frame, y[:-1], proba, "Type", 0.5)


# --- calibration_points ---------------------------------------------------------------


def test_calibration_points_use_quantile_bins_with_data() -> None:
    rng = np.random.default_rng(8)
    proba = rng.random(1000)
    y = (rng.random(1000) < proba).astype(int)  # calibrated by construction

    points = calibration_points(y, proba, bins=10)

    assert list(points.columns) == ["mean_predicted", "fraction_positive", "count"]
    assert points["count"].tolist() == [100] * 10
    assert points["mean_predicted"].is_monotonic_increasing
    assert (points["fraction_positive"] - points["mean_predicted"]).abs().max() < 0.15


def test_calibration_points_merge_tied_scores_and_keep_every_row() -> None:
    proba = np.array([0.1] * 50 + [0.5] * 30 + [0.9] * 20)
    y = np.array([0] * 45 + [1] * 5 + [0] * 15 + [1] * 15 + [0] * 2 + [1] * 18)

    points = calibration_points(y, proba, bins=10)

    assert points["count"].tolist() == [50, 30, 20]
    assert points["mean_predicted"].tolist() == [0.1, 0.5, 0.9]
    assert points["fraction_positive"].tolist() == [0.1, 0.5, 0.9]


def test_calibration_points_reject_no_bins() -> None:
    with pytest.raises(ValueError, match="bins must be at least 1"):
        calibration_points(np.array([0, 1]), np.array([0.2, 0.8]), bins=0)
