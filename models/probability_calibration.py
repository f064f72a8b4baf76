"""Check a model's probability calibration at training time, and fit a calibrator when needed.

Performance estimation before labels (`monitoring.estimation`) reads each calibrated
probability as the chance that the row is positive, so it is only as good as the
calibration. A model trained with `class_weight="balanced"` on a few percent of positives
scores far above the true positive rate; such a model gets an isotonic calibrator, fitted on
the out-of-fold probabilities of its training split. That is what scikit-learn's
`CalibratedClassifierCV(method="isotonic", ensemble=False)` fits (`cross_val_predict`, then
`IsotonicRegression(out_of_bounds="clip")` on the held-out scores); the out-of-fold scores
exist already (the reference data), so the regression is fitted on them directly and only
its knots are kept, a few kilobytes of JSON that travel with the model.
"""

from __future__ import annotations

import logging

import numpy as np
from sklearn.isotonic import IsotonicRegression
from sklearn.metrics import brier_score_loss
from sklearn.model_selection import StratifiedKFold

from core.config import EstimationConfig
from core.records.estimation import CalibrationCheck, ProbabilityCalibration
from models.evaluation import calibration_points

logger = logging.getLogger(__name__)


def measure_calibration_error(labels: np.ndarray, probabilities: np.ndarray, bins: int) -> float:
    """Expected calibration error on quantile bins (equal rows per bin, as far as ties allow)."""
    points = calibration_points(labels, probabilities, bins)
    gaps = (points["mean_predicted"] - points["fraction_positive"]).abs()
    return float((gaps * points["count"]).sum() / points["count"].sum())


def fit_probability_calibration(
    labels: np.ndarray, probabilities: np.ndarray, config: EstimationConfig, seed: int
) -> ProbabilityCalibration:
    """Check the out-of-fold `probabilities` against `labels`; calibrate them when they need it.

    The rule: the probabilities are trusted as they are when their calibration error is at
    most `config.max_calibration_error` of the positive rate. Otherwise an isotonic
    calibrator is fitted, provided it helps: its error, cross-fitted over
    `config.calibration_folds` folds (fitted on the other folds, measured on each), must be
    below the model's own. With fewer positives or negatives than folds nothing can be
    checked: the result is `method="none"`, `trusted=False`.
    """
    y, scores = _check_inputs(labels, probabilities)
    rows, positives = len(y), int(y.sum())
    bins, tolerance = config.calibration_bins, config.max_calibration_error
    if min(positives, rows - positives) < config.calibration_folds:
        reason = (
            f"{positives} positives and {rows - positives} negatives: too few to check the "
            f"calibration over {config.calibration_folds} folds; estimates are not trusted"
        )
        logger.warning("probability calibration: %s", reason)
        check = _check(y, scores, bins, tolerance, None, calibrated=False, reason=reason)
        return ProbabilityCalibration(method="none", trusted=False, check=check)

    error = measure_calibration_error(y, scores, bins)
    relative = error / (positives / rows)
    if relative <= tolerance:
        reason = (
            f"calibration error {error:.4f} is {relative:.1%} of the positive rate, within "
            f"{tolerance:.0%}: the model's probabilities are used as they are"
        )
        check = _check(y, scores, bins, tolerance, None, calibrated=True, reason=reason)
        logger.info("probability calibration: %s", reason)
        return ProbabilityCalibration(method="none", trusted=True, check=check)

    crossfit = _cross_fitted(y, scores, config.calibration_folds, seed)
    calibrated_error = measure_calibration_error(y, crossfit, bins)
    if calibrated_error >= error:
        reason = (
            f"calibration error {error:.4f} is {relative:.1%} of the positive rate, above "
            f"{tolerance:.0%}, but isotonic calibration does not lower it (cross-fitted "
            f"{calibrated_error:.4f}): the model's probabilities are used as they are"
        )
        check = _check(y, scores, bins, tolerance, crossfit, calibrated=False, reason=reason)
        logger.warning("probability calibration: %s", reason)
        return ProbabilityCalibration(method="none", trusted=True, check=check)

    regression = _isotonic().fit(scores, y)
    reason = (
        f"calibration error {error:.4f} is {relative:.1%} of the positive rate, above "
        f"{tolerance:.0%}: isotonic calibration lowers it to {calibrated_error:.4f} "
        f"(cross-fitted over {config.calibration_folds} folds)"
    )
    check = _check(y, scores, bins, tolerance, crossfit, calibrated=False, reason=reason)
    logger.info("probability calibration: %s", reason)
    return ProbabilityCalibration(
        method="isotonic",
        knots_x=tuple(float(x) for x in regression.X_thresholds_),
        knots_y=tuple(float(v) for v in regression.y_thresholds_),
        trusted=True,
        check=check,
    )


def apply_probability_calibration(
    calibration: ProbabilityCalibration, probabilities: np.ndarray
) -> np.ndarray:
    """Calibrated probabilities for the model's `probabilities` (a new array).

    The isotonic map interpolates linearly between knots and clips outside them, exactly as
    `IsotonicRegression(out_of_bounds="clip").predict` does.
    """
    scores = np.asarray(probabilities, dtype=float).ravel()
    if calibration.method == "none":
        return scores.copy()
    return np.interp(scores, calibration.knots_x, calibration.knots_y)


def _isotonic() -> IsotonicRegression:
    """The regression `CalibratedClassifierCV(method="isotonic")` fits."""
    return IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0)


def _cross_fitted(y: np.ndarray, scores: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """Isotonic-calibrated scores, each predicted by a calibrator fitted on the other folds."""
    calibrated = np.empty(len(y))
    splitter = StratifiedKFold(folds, shuffle=True, random_state=seed)
    for fit_rows, held_rows in splitter.split(scores.reshape(-1, 1), y):
        regression = _isotonic().fit(scores[fit_rows], y[fit_rows])
        calibrated[held_rows] = regression.predict(scores[held_rows])
    return calibrated


def _check(
    y: np.ndarray,
    scores: np.ndarray,
    bins: int,
    tolerance: float,
    crossfit: np.ndarray | None,
    *,
    calibrated: bool,
    reason: str,
) -> CalibrationCheck:
    positives = int(y.sum())
    error = measure_calibration_error(y, scores, bins)
    rate = positives / len(y)
    return CalibrationCheck(
        rows=len(y),
        positives=positives,
        bins=bins,
        error=round(error, 6),
        relative_error=round(error / rate, 6) if rate > 0 else None,
        brier=round(float(brier_score_loss(y, scores)), 6),
        calibrated_error=None
        if crossfit is None
        else round(measure_calibration_error(y, crossfit, bins), 6),
        calibrated_brier=None
        if crossfit is None
        else round(float(brier_score_loss(y, crossfit)), 6),
        tolerance=tolerance,
        calibrated=calibrated,
        reason=reason,
    )


def _check_inputs(labels: np.ndarray, probabilities: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(labels).ravel()
    scores = np.asarray(probabilities, dtype=float).ravel()
    if len(y) != len(scores):
        raise ValueError(f"labels have {len(y)} rows but probabilities {len(scores)}")
    if len(y) == 0:
        raise ValueError("no rows to check the calibration on: the reference data is empty")
    if not np.isin(y, (0, 1)).all():
        raise ValueError(f"labels must hold only 0 and 1, got {np.unique(y)[:5].tolist()}")
    check_probabilities(
        scores, "the reference data's 'probability' column must be the out-of-fold scores"
    )
    return y.astype(np.int64), scores


def check_probabilities(scores: np.ndarray, expected: str) -> np.ndarray:
    """`scores` as floats, refused in one line when any is not a probability; `expected` says
    what the values should have been."""
    scores = np.asarray(scores, dtype=float).ravel()
    bad = int((~np.isfinite(scores)).sum())
    if bad:
        raise ValueError(f"{bad} of {len(scores)} probabilities are NaN or infinite: {expected}")
    if len(scores) and (scores.min() < 0 or scores.max() > 1):
        raise ValueError(
            f"probabilities must lie in [0, 1], got {scores.min():.4g} to {scores.max():.4g}"
        )
    return scores
