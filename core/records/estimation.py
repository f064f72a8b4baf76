"""Records of performance estimation before labels: the model's probability calibration, and
the estimated quality of one window.

`ProbabilityCalibration` is built at training time (`models.probability_calibration`) and
travels with the model (in its monitor profile), so the monitor turns the served scores into
probabilities it can trust. `PerformanceEstimate` is the monitor's estimate for one window
(`monitoring.estimation`): point values as NannyML's CBPE defines them, and intervals for
the sampling noise of a window of that size.
"""

from __future__ import annotations

from typing import Literal

from pydantic import model_validator

from core.records import Record

CalibrationMethod = Literal["none", "isotonic"]


class CalibrationCheck(Record):
    """How well the out-of-fold probabilities of the training split are calibrated.

    Errors are expected calibration errors (ECE) on quantile bins: the row-weighted mean of
    |mean probability - share of positives| per bin. `relative_error` divides it by the
    positive rate, so one tolerance means the same for rare and common positives.
    """

    rows: int
    positives: int
    bins: int
    error: float  # ECE of the model's own probabilities
    relative_error: float | None  # error / positive rate (None: no positives)
    brier: float
    calibrated_error: float | None  # ECE after isotonic calibration, cross-fitted (None: none)
    calibrated_brier: float | None
    tolerance: float  # monitor.estimation.max_calibration_error (relative)
    calibrated: bool  # the model's own probabilities are trusted as they are
    reason: str


class ProbabilityCalibration(Record):
    """The map from the model's scores to calibrated probabilities, small enough for JSON.

    `isotonic`: a non-decreasing step function given by its knots (what scikit-learn's
    `IsotonicRegression.predict` interpolates between; scores outside are clipped to the
    end knots). `none`: the scores are used as they are. `trusted` is False when the scores
    could be neither checked nor calibrated (too few positives): estimates made from them
    say so and judge nothing.
    """

    method: CalibrationMethod
    knots_x: tuple[float, ...] = ()
    knots_y: tuple[float, ...] = ()
    trusted: bool
    check: CalibrationCheck

    @model_validator(mode="after")
    def _knots_fit_the_method(self) -> ProbabilityCalibration:
        if len(self.knots_x) != len(self.knots_y):
            raise ValueError(
                f"knots_x has {len(self.knots_x)} values but knots_y {len(self.knots_y)}"
            )
        if (self.method == "isotonic") != bool(self.knots_x):
            raise ValueError(f"method '{self.method}' with {len(self.knots_x)} knots")
        return self


class MetricEstimate(Record):
    """One estimated metric: the CBPE point value and the interval of its sampling noise.

    The interval holds `confidence` of the realized values this window would show if the
    calibrated probabilities are right (labels drawn as Bernoulli(p), seeded). None where
    the metric is undefined (e.g. ROC AUC with no expected positives) or the window is too
    small for the interval.
    """

    value: float | None
    low: float | None
    high: float | None


class PerformanceEstimate(Record):
    """The champion's estimated quality on one window, before its labels arrive."""

    rows: int
    threshold: float  # the operating threshold, on the model's own scores
    flagged: int  # rows at or above the threshold
    expected_positives: float  # sum of calibrated probabilities
    calibration: CalibrationMethod
    trusted: bool  # False: the calibration could not be checked; judge nothing by this
    roc_auc: MetricEstimate
    average_precision: MetricEstimate
    precision: MetricEstimate
    recall: MetricEstimate
    f1: MetricEstimate
    confidence: float
    resamples: int
    seed: int
