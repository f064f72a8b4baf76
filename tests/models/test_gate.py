"""The champion/challenger gate: the promotion rule and the recent-window check."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from core.config import DeployConfig, RecentWindowConfig
from core.records.deploy import Comparison, RecentWindow
from models.bootstrap import paired_bootstrap
from models.gate import compare_recent_window, decide_promotion, describe_recent_window

# primary metric average_precision; thresholds roc_auc 0.85 and average_precision 0.5;
# tolerance 0.01
CONFIG = DeployConfig()
SKLEARN = {"roc_auc": roc_auc_score, "average_precision": average_precision_score}


def _labels(rows: int = 600, rate: float = 0.2, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).random(rows) < rate).astype(int)


def _model(y: np.ndarray, signal: float, seed: int) -> np.ndarray:
    """Scores whose separation of the classes grows with `signal`."""
    return signal * y + np.random.default_rng(seed).normal(size=len(y))


# --- decide_promotion -----------------------------------------------------------------

GOOD = {"roc_auc": 0.93, "average_precision": 0.801, "f1": 0.7}


def _comparison(low: float, high: float, challenger: float = 0.801, champion: float = 0.845):
    return Comparison(
        metric="average_precision",
        challenger=challenger,
        champion=champion,
        delta=challenger - champion,
        ci_low=low,
        ci_high=high,
        confidence=0.95,
        resamples=1000,
        seed=0,
    )


def test_a_weak_challenger_fails_the_thresholds_with_a_readable_reason() -> None:
    decision = decide_promotion({"roc_auc": 0.9, "average_precision": 0.412}, None, None, CONFIG)
    assert not decision.promote
    assert "average_precision 0.412 is below the threshold 0.500" in decision.reasons
    assert "roc_auc 0.900 meets the threshold 0.850" in decision.reasons
    failed = [c for c in decision.checks if not c.passed]
    assert [(c.name, c.value, c.bound) for c in failed] == [("min_average_precision", 0.412, 0.5)]


def test_no_champion_lets_the_thresholds_decide() -> None:
    decision = decide_promotion(GOOD, None, None, CONFIG)
    assert decision.promote
    assert decision.reasons[-1] == "no champion yet: the absolute thresholds decide"
    assert [c.name for c in decision.checks] == ["min_roc_auc", "min_average_precision"]


def test_a_challenger_worse_beyond_tolerance_is_refused_despite_passing_thresholds() -> None:
    decision = decide_promotion(
        GOOD, {"average_precision": 0.845}, _comparison(-0.071, -0.018), CONFIG
    )
    assert not decision.promote
    assert all(c.passed for c in decision.checks if c.name.startswith("min_"))
    assert decision.reasons[-1] == (
        "challenger average_precision 0.801 vs champion 0.845: the 95% CI of the difference "
        "[-0.071, -0.018] falls below -0.010 (tolerance)"
    )
    gate_check = decision.checks[-1]
    assert (gate_check.name, gate_check.passed, gate_check.value, gate_check.bound) == (
        "non_inferior_average_precision",
        False,
        -0.071,
        -0.01,
    )


def test_an_interval_reaching_past_the_tolerance_is_not_non_inferior() -> None:
    decision = decide_promotion(GOOD, {"average_precision": 0.81}, _comparison(-0.02, 0.01), CONFIG)
    assert not decision.promote
    assert "[-0.020, 0.010] reaches below -0.010 (tolerance)" in decision.reasons[-1]


def test_slightly_worse_within_tolerance_is_promoted() -> None:
    decision = decide_promotion(
        GOOD, {"average_precision": 0.805}, _comparison(-0.009, 0.004, 0.801, 0.805), CONFIG
    )
    assert decision.promote
    assert "stays at or above -0.010 (tolerance)" in decision.reasons[-1]


def test_a_better_challenger_is_promoted_end_to_end() -> None:
    y = _labels(rows=1000)
    challenger_scores, champion_scores = _model(y, 3.0, seed=1), _model(y, 2.0, seed=2)
    comparison = paired_bootstrap(
        y, challenger_scores, champion_scores, CONFIG.primary_metric, 1000, 0.95, seed=0
    )
    challenger = {m: f(y, challenger_scores) for m, f in SKLEARN.items()}
    champion = {m: f(y, champion_scores) for m, f in SKLEARN.items()}

    decision = decide_promotion(challenger, champion, comparison, CONFIG)

    assert decision.promote, decision.reasons
    assert comparison.ci_low > 0
    assert len(decision.reasons) == len(decision.checks) == 3


def test_missing_or_nan_metrics_fail_their_threshold() -> None:
    decision = decide_promotion({"roc_auc": float("nan")}, None, None, CONFIG)
    assert not decision.promote
    assert decision.reasons[0] == (
        "roc_auc is not available for the challenger (got nan), so the threshold 0.850 is not met"
    )
    assert "average_precision is not available" in decision.reasons[1]


def test_the_champion_and_the_comparison_go_together() -> None:
    with pytest.raises(ValueError, match="needs a bootstrap comparison"):
        decide_promotion(GOOD, {"average_precision": 0.8}, None, CONFIG)
    with pytest.raises(ValueError, match="no champion"):
        decide_promotion(GOOD, None, _comparison(0.0, 0.1), CONFIG)
    roc = DeployConfig(primary_metric="roc_auc")
    with pytest.raises(ValueError, match="primary metric is roc_auc"):
        decide_promotion(GOOD, {"roc_auc": 0.9}, _comparison(0.0, 0.1), roc)


def test_zero_tolerance_reads_without_a_negative_zero() -> None:
    strict = DeployConfig(tolerance=0.0)
    decision = decide_promotion(GOOD, {"average_precision": 0.8}, _comparison(-1e-9, 0.01), strict)
    assert not decision.promote
    assert decision.reasons[-1].endswith("[0.000, 0.010] reaches below 0.000 (tolerance)")


def test_decision_to_dict_is_plain_json() -> None:
    decision = decide_promotion(
        {"roc_auc": float("nan"), "average_precision": 0.9},
        {"average_precision": 0.845},
        _comparison(-0.071, -0.018),
        CONFIG,
    )
    data = json.loads(json.dumps(decision.to_dict(), allow_nan=False))
    assert data["promote"] is False
    assert data["checks"][0] == {
        "name": "min_roc_auc",
        "passed": False,
        "value": None,
        "bound": 0.85,
    }
    assert data["reasons"] == list(decision.reasons)
    json.dumps(_comparison(-0.071, -0.018).model_dump(mode="json"), allow_nan=False)


# --- the recent window ----------------------------------------------------------------

WINDOW = CONFIG.recent_window  # min_rows 100, min_positives 5, margin 0.0
BATCH = "batch-20260301T1200.parquet"


def _window(
    rows: int = 300, rate: float = 0.1, challenger: float = 2.0, champion: float = 0.5
) -> RecentWindow:
    y = _labels(rows=rows, rate=rate, seed=7)
    return compare_recent_window(
        BATCH,
        y,
        _model(y, challenger, seed=1),
        _model(y, champion, seed=2),
        "average_precision",
        WINDOW,
    )


def test_recent_window_scores_both_models_as_scikit_learn_does() -> None:
    y = _labels(rows=300, rate=0.1, seed=7)
    challenger, champion = np.round(_model(y, 2.0, seed=1), 1), _model(y, 0.5, seed=2)
    result = compare_recent_window(BATCH, y, challenger, champion, "roc_auc", WINDOW)
    assert result.challenger == pytest.approx(roc_auc_score(y, challenger), abs=1e-12)
    assert result.champion == pytest.approx(roc_auc_score(y, champion), abs=1e-12)
    assert result.delta == pytest.approx(result.challenger - result.champion)
    assert (result.rows, result.positives) == (300, int(y.sum()))


def test_a_challenger_better_on_the_recent_window_passes() -> None:
    window = _window()
    assert window.judged and window.passed and window.delta > 0
    decision = decide_promotion(
        GOOD, {"average_precision": 0.8}, _comparison(0.0, 0.05), CONFIG, window
    )
    assert decision.promote
    assert decision.reasons[-1] == (
        f"recent window, 300 rows / {window.positives} positives of the newest feedback batch "
        f"({BATCH}) in the holdout: challenger average_precision {window.challenger:.3f} vs "
        f"champion {window.champion:.3f}, difference {window.delta:.3f} exceeds the margin 0.000"
    )
    check = decision.checks[-1]
    assert (check.name, check.passed, check.value, check.bound) == (
        "recent_window_average_precision",
        True,
        window.delta,
        0.0,
    )


def test_a_challenger_not_better_on_the_recent_window_is_refused() -> None:
    window = _window(challenger=0.5, champion=2.0)
    assert window.judged and not window.passed and window.delta < 0
    decision = decide_promotion(
        GOOD, {"average_precision": 0.8}, _comparison(0.0, 0.05), CONFIG, window
    )
    assert not decision.promote
    assert decision.reasons[-1].endswith(
        f"difference {window.delta:.3f} does not exceed the margin 0.000"
    )


def test_the_margin_must_be_exceeded_not_just_reached() -> None:
    y = _labels(rows=300, rate=0.1, seed=7)
    scores = _model(y, 1.0, seed=1)
    tie = compare_recent_window(BATCH, y, scores, scores.copy(), "roc_auc", WINDOW)
    assert tie.judged and tie.delta == 0.0 and not tie.passed

    better = _window()
    above = RecentWindowConfig(margin=round(better.delta + 0.001, 3))
    below = RecentWindowConfig(margin=round(better.delta - 0.001, 3))
    y = _labels(rows=300, rate=0.1, seed=7)
    challenger, champion = _model(y, 2.0, seed=1), _model(y, 0.5, seed=2)
    refused = compare_recent_window(BATCH, y, challenger, champion, "average_precision", above)
    passed = compare_recent_window(BATCH, y, challenger, champion, "average_precision", below)
    assert not refused.passed and passed.passed
    assert describe_recent_window(refused).endswith(
        f"does not exceed the margin {above.margin:.3f}"
    )


@pytest.mark.parametrize(
    ("rows", "rate", "expected"),
    [
        (60, 0.2, "60 rows / 11 positives"),  # too few rows
        (400, 0.01, "400 rows / 3 positives"),  # too few positives
    ],
)
def test_a_window_too_small_to_judge_is_not_promoted(rows: int, rate: float, expected: str) -> None:
    window = _window(rows=rows, rate=rate)
    assert not window.judged and not window.passed
    decision = decide_promotion(
        GOOD, {"average_precision": 0.8}, _comparison(0.0, 0.05), CONFIG, window
    )
    assert not decision.promote
    assert decision.reasons[-1] == (
        f"recent window cannot be judged: {expected} of the newest feedback batch ({BATCH}) "
        "in the holdout, need at least 100 rows, 5 positives and one negative"
    )
    assert decision.checks[-1].passed is False


def test_a_window_with_one_class_cannot_be_judged_and_has_no_metric() -> None:
    y = np.ones(150, dtype=int)
    window = compare_recent_window(
        BATCH, y, np.linspace(0, 1, 150), np.linspace(0, 1, 150), "roc_auc", WINDOW
    )
    assert (window.judged, window.passed, window.challenger, window.delta) == (
        False,
        False,
        None,
        None,
    )
    assert describe_recent_window(window).startswith(
        "recent window cannot be judged: 150 rows / 150 positives"
    )
    empty = compare_recent_window(
        BATCH, np.array([]), np.array([]), np.array([]), "roc_auc", WINDOW
    )
    assert (empty.rows, empty.positives, empty.judged) == (0, 0, False)
    data = json.loads(json.dumps(empty.model_dump(mode="json"), allow_nan=False))
    assert data == {
        "batch": BATCH,
        "rows": 0,
        "positives": 0,
        "metric": "roc_auc",
        "challenger": None,
        "champion": None,
        "delta": None,
        "margin": 0.0,
        "min_rows": 100,
        "min_positives": 5,
        "judged": False,
        "passed": False,
    }


def test_without_a_recent_window_the_check_does_not_apply() -> None:
    without = decide_promotion(GOOD, {"average_precision": 0.8}, _comparison(0.0, 0.05), CONFIG)
    assert without.promote
    assert [c.name for c in without.checks] == [
        "min_roc_auc",
        "min_average_precision",
        "non_inferior_average_precision",
    ]
    assert not any("recent window" in reason for reason in without.reasons)


def test_the_recent_window_needs_a_champion_and_the_primary_metric() -> None:
    with pytest.raises(ValueError, match="recent-window comparison was given but there is no"):
        decide_promotion(GOOD, None, None, CONFIG, _window())
    roc = DeployConfig(primary_metric="roc_auc")
    roc_comparison = _comparison(0.0, 0.1).model_copy(update={"metric": "roc_auc"})
    with pytest.raises(ValueError, match="judged on average_precision but the gate's primary"):
        decide_promotion(GOOD, {"roc_auc": 0.9}, roc_comparison, roc, _window())


def test_recent_window_inputs_are_checked() -> None:
    with pytest.raises(ValueError, match="champion scores have 2 rows but y_true has 3"):
        compare_recent_window(
            BATCH, np.array([0, 1, 0]), np.zeros(3), np.zeros(2), "roc_auc", WINDOW
        )
    with pytest.raises(ValueError, match="y_true must hold only 0 and 1"):
        compare_recent_window(BATCH, np.array([0, 2]), np.zeros(2), np.zeros(2), "roc_auc", WINDOW)
