"""The training-time calibration check and the isotonic calibrator."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.calibration import CalibratedClassifierCV
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LogisticRegression

from core.config import EstimationConfig
from core.records import record_json
from core.records.estimation import ProbabilityCalibration
from models.probability_calibration import (
    apply_probability_calibration,
    fit_probability_calibration,
    measure_calibration_error,
)

CONFIG = EstimationConfig()


def _calibrated_sample(rows: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities with labels drawn from them: calibrated by construction (~4 % positive)."""
    rng = np.random.default_rng(seed)
    p = rng.beta(0.4, 9.0, size=rows)
    return (rng.random(rows) < p).astype(int), p


def _inflated(p: np.ndarray) -> np.ndarray:
    """What class_weight="balanced" does to rare positives: odds multiplied by about 25."""
    odds = 25 * p / (1 - p)
    return odds / (1 + odds)


def test_calibrated_probabilities_are_used_as_they_are() -> None:
    y, p = _calibrated_sample(20_000, seed=1)
    calibration = fit_probability_calibration(y, p, CONFIG, seed=0)
    assert calibration.method == "none"
    assert calibration.trusted and calibration.check.calibrated
    assert calibration.check.relative_error <= CONFIG.max_calibration_error
    assert "used as they are" in calibration.check.reason
    np.testing.assert_array_equal(apply_probability_calibration(calibration, p), p)


def test_inflated_probabilities_get_an_isotonic_calibrator_that_fixes_them() -> None:
    y, p = _calibrated_sample(20_000, seed=2)
    scores = _inflated(p)
    calibration = fit_probability_calibration(y, scores, CONFIG, seed=0)
    check = calibration.check
    assert calibration.method == "isotonic" and calibration.trusted
    assert not check.calibrated
    assert check.relative_error > 1  # the error exceeds the positive rate itself
    assert check.calibrated_error < check.error / 10
    assert check.calibrated_brier < check.brier
    # fresh rows from the same process: the calibrated scores are calibrated
    y_new, p_new = _calibrated_sample(20_000, seed=3)
    fixed = apply_probability_calibration(calibration, _inflated(p_new))
    assert measure_calibration_error(y_new, fixed, 10) < 0.1 * y_new.mean()
    assert abs(fixed.mean() - y_new.mean()) < 0.1 * y_new.mean()


def test_the_knots_reproduce_calibrated_classifier_cv_isotonic() -> None:
    """What CalibratedClassifierCV(method="isotonic") fits on the same held-out scores."""
    rng = np.random.default_rng(4)
    x = rng.normal(size=(6000, 1))
    y = (rng.random(6000) < 1 / (1 + np.exp(-(2.5 * x[:, 0] - 3)))).astype(int)
    fitted = LogisticRegression(class_weight="balanced").fit(x[:3000], y[:3000])
    held_scores = fitted.predict_proba(x[3000:])[:, 1]
    calibration = fit_probability_calibration(y[3000:], held_scores, CONFIG, seed=0)
    assert calibration.method == "isotonic"
    # the fitted estimator has a decision function, so sklearn calibrates on it; isotonic
    # regression depends only on the order of its inputs, so give it the probabilities
    sklearn = CalibratedClassifierCV(
        _ProbabilityOnly(fitted), method="isotonic", ensemble=False
    ).fit(x[3000:], y[3000:])
    expected = sklearn.predict_proba(x[3000:])[:, 1]
    np.testing.assert_allclose(apply_probability_calibration(calibration, held_scores), expected)


class _ProbabilityOnly(FrozenEstimator):
    """A frozen estimator without `decision_function`, so sklearn calibrates probabilities."""

    def __getattr__(self, name: str) -> object:
        if name == "decision_function":
            raise AttributeError(name)
        return super().__getattr__(name)


def test_the_record_is_small_json_that_round_trips() -> None:
    y, p = _calibrated_sample(20_000, seed=5)
    calibration = fit_probability_calibration(y, _inflated(p), CONFIG, seed=0)
    text = record_json(calibration)
    assert len(text) < 20_000
    again = ProbabilityCalibration.model_validate_json(text)
    probe = np.linspace(0, 1, 101)
    np.testing.assert_array_equal(
        apply_probability_calibration(again, probe),
        apply_probability_calibration(calibration, probe),
    )


def test_too_few_positives_are_not_trusted() -> None:
    y = np.zeros(500, dtype=int)
    y[:3] = 1
    calibration = fit_probability_calibration(y, np.linspace(0, 1, 500), CONFIG, seed=0)
    assert calibration.method == "none" and not calibration.trusted
    assert "too few to check" in calibration.check.reason


@pytest.mark.parametrize(
    ("labels", "probabilities", "message"),
    [
        ([0, 1], [0.1, np.nan], "1 of 2 probabilities are NaN or infinite"),
        ([0, 1], [0.1, 1.5], "probabilities must lie in [0, 1]"),
        ([0, 2], [0.1, 0.2], "labels must hold only 0 and 1"),
        ([0, 1, 0], [0.1, 0.2], "labels have 3 rows but probabilities 2"),
        ([], [], "the reference data is empty"),
    ],
)
def test_bad_input_says_what_is_wrong(labels: list, probabilities: list, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        fit_probability_calibration(np.array(labels), np.array(probabilities), CONFIG, seed=0)
