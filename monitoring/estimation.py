"""Estimate the champion's quality on a window before its labels arrive (CBPE).

Confidence-based performance estimation, as NannyML implements it
(`nannyml/performance_estimation/confidence_based/metrics.py`): when the calibrated
probability p of a row is right, the row is a positive with chance p, so the expected
confusion matrix at any threshold on the model's own scores sums p (true positives) and
1 - p (false positives) over the rows above it. ROC AUC and average precision come from the
expected curves over all thresholds; precision, recall and F1 from the expected counts at the
operating threshold. Ties in the scores are one threshold, as in scikit-learn's curves.

The estimate holds only under covariate shift (the inputs move, P(label | inputs) does not):
concept drift is invisible to it, and realized quality must catch that once labels arrive.
A window of n rows also has sampling noise: each metric gets the interval that the realized
value would fall in if the probabilities are right (labels drawn as Bernoulli(p), seeded),
so a verdict against a floor can allow for it (`find_estimated_breaches`).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from core.columns import PROBABILITY
from core.config import EstimationConfig
from core.records.estimation import MetricEstimate, PerformanceEstimate, ProbabilityCalibration
from models.probability_calibration import apply_probability_calibration, check_probabilities

ESTIMATED_METRICS = ("roc_auc", "average_precision", "precision", "recall", "f1")
DIGITS = 6  # as monitoring.quality rounds the realized metrics
_CHUNK_ELEMENTS = 1 << 22  # label draws are made in chunks of about this many (rows x draws)


def estimate_performance(
    probabilities: np.ndarray,
    threshold: float,
    calibration: ProbabilityCalibration,
    config: EstimationConfig,
    seed: int,
) -> PerformanceEstimate:
    """The estimated quality of a window from the model's own `probabilities` (no labels).

    `probabilities` are the scores as served (the prediction log's `probability` column);
    `threshold` is the operating threshold on them; `calibration` (fitted at training time)
    turns them into the probabilities the estimate trusts.
    """
    scores = _check_scores(probabilities)
    if not (np.isfinite(threshold) and 0 <= threshold <= 1):
        raise ValueError(f"the operating threshold must lie in [0, 1], got {threshold}")
    calibrated = np.clip(apply_probability_calibration(calibration, scores), 0.0, 1.0)
    curve = _Curve.of(scores, calibrated, threshold)
    values = curve.metrics()
    draws = _draw_realized_metrics(curve, config.resamples, seed)
    alpha = 1 - config.confidence
    estimates = {
        name: _metric_estimate(values[name], draws[name], alpha) for name in ESTIMATED_METRICS
    }
    return PerformanceEstimate(
        rows=len(scores),
        threshold=float(threshold),
        flagged=curve.flagged,
        expected_positives=round(float(calibrated.sum()), DIGITS),
        calibration=calibration.method,
        trusted=calibration.trusted,
        confidence=config.confidence,
        resamples=config.resamples,
        seed=seed,
        **estimates,
    )


def estimate_metrics(
    calibrated: np.ndarray, scores: np.ndarray, threshold: float
) -> dict[str, float | None]:
    """CBPE point values from calibrated probabilities, ordered and thresholded by `scores`.

    NannyML's `estimate_roc_auc`, `estimate_ap`, `estimate_precision`, `estimate_recall` and
    `estimate_f1`, unrounded; None where a metric is undefined (no expected positives or
    negatives for ROC AUC, none expected positive for average precision).
    """
    scores = _check_scores(scores)
    calibrated = _check_scores(calibrated)
    if len(calibrated) != len(scores):
        raise ValueError(f"{len(calibrated)} calibrated probabilities for {len(scores)} scores")
    return _Curve.of(scores, calibrated, threshold).metrics()


def find_estimated_breaches(
    estimate: PerformanceEstimate, floors: Mapping[str, float]
) -> tuple[str, ...]:
    """The metrics whose estimate lies below its floor even at the top of its noise interval.

    An untrusted estimate judges nothing; a metric without an interval is judged by its
    point value; floors on metrics the estimate lacks are ignored.
    """
    if not estimate.trusted:
        return ()
    breached = []
    for name, floor in floors.items():
        if name not in ESTIMATED_METRICS:
            continue
        metric: MetricEstimate = getattr(estimate, name)
        top = metric.high if metric.high is not None else metric.value
        if top is not None and top < floor:
            breached.append(name)
    return tuple(breached)


class _Curve:
    """The window sorted by score, highest first, with the ends of each group of tied scores."""

    def __init__(self, calibrated: np.ndarray, ends: np.ndarray, flagged: int):
        self.calibrated = calibrated  # in descending score order
        self.ends = ends  # index of the last row of each tie group
        self.flagged = flagged  # rows at or above the threshold: a prefix of the order

    @classmethod
    def of(cls, scores: np.ndarray, calibrated: np.ndarray, threshold: float) -> _Curve:
        order = np.argsort(-scores, kind="stable")
        ordered = scores[order]
        ends = np.r_[np.flatnonzero(np.diff(ordered) != 0), len(ordered) - 1]
        return cls(calibrated[order], ends, int((scores >= threshold).sum()))

    def metrics(self) -> dict[str, float | None]:
        p, ends = self.calibrated, self.ends
        true_pos = np.cumsum(p)[ends]
        false_pos = (ends + 1) - true_pos
        positives, negatives = float(true_pos[-1]), float(false_pos[-1])
        roc_auc = average_precision = None
        if positives > 0 and negatives > 0:
            tpr = np.r_[0.0, true_pos / positives]
            fpr = np.r_[0.0, false_pos / negatives]
            roc_auc = float(np.trapezoid(tpr, fpr))
        if positives > 0:
            recall_steps = np.diff(np.r_[0.0, true_pos / positives])
            average_precision = float(np.sum(recall_steps * true_pos / (ends + 1)))
        hits = np.array([p[: self.flagged].sum()])
        at_threshold = _threshold_metrics(hits, self.flagged, np.array([positives]))
        return {
            "roc_auc": roc_auc,
            "average_precision": average_precision,
            **{name: float(values[0]) for name, values in at_threshold.items()},
        }


def _draw_realized_metrics(curve: _Curve, resamples: int, seed: int) -> dict[str, np.ndarray]:
    """Each metric as realized on `resamples` label sets drawn as Bernoulli(p); NaN where a
    draw leaves the metric undefined (one class only, for ROC AUC and average precision)."""
    rng = np.random.default_rng(seed)
    p, ends, rows = curve.calibrated, curve.ends, len(curve.calibrated)
    chunk = max(1, _CHUNK_ELEMENTS // rows)
    group_sizes = np.diff(ends, prepend=-1)
    out = {name: np.empty(resamples) for name in ESTIMATED_METRICS}
    for start in range(0, resamples, chunk):
        size = min(chunk, resamples - start)
        labels = rng.random((size, rows), dtype=np.float32) < p
        cumulative = np.cumsum(labels, axis=1, dtype=np.int32)
        at_ends = cumulative[:, ends].astype(float)  # positives at or above each tie group
        positives = at_ends[:, -1]
        negatives = rows - positives
        steps = np.diff(at_ends, axis=1, prepend=0.0)  # positives in each tie group
        negatives_below = negatives[:, None] - ((ends + 1) - at_ends)
        negatives_tied = group_sizes - steps
        with np.errstate(divide="ignore", invalid="ignore"):
            wins = (steps * (negatives_below + 0.5 * negatives_tied)).sum(axis=1)
            auc = wins / (positives * negatives)
            ap = (steps * (at_ends / (ends + 1))).sum(axis=1) / positives
        defined = (positives > 0) & (negatives > 0)
        block = slice(start, start + size)
        out["roc_auc"][block] = np.where(defined, auc, np.nan)
        out["average_precision"][block] = np.where(positives > 0, ap, np.nan)
        hits = cumulative[:, curve.flagged - 1] if curve.flagged else np.zeros(size)
        for name, values in _threshold_metrics(hits, curve.flagged, positives).items():
            out[name][block] = values
    return out


def _threshold_metrics(
    hits: np.ndarray, flagged: int, positives: np.ndarray
) -> dict[str, np.ndarray]:
    """Precision, recall and F1 from (expected or drawn) counts; 0 where a denominator is 0,
    as NannyML's estimates and scikit-learn's `zero_division=0` give."""
    hits = hits.astype(float)
    misses, false_alarms = positives - hits, flagged - hits
    f1_denominator = hits + 0.5 * (false_alarms + misses)
    return {
        "precision": _share(hits, np.full_like(hits, flagged)),
        "recall": _share(hits, positives),
        "f1": _share(hits, f1_denominator),
    }


def _share(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    return np.divide(numerator, denominator, out=np.zeros_like(numerator), where=denominator > 0)


def _metric_estimate(value: float | None, draws: np.ndarray, alpha: float) -> MetricEstimate:
    """The point value and the central `1 - alpha` interval of the defined draws; no interval
    when more than `alpha` of the draws leave the metric undefined (too small a window)."""
    defined = draws[np.isfinite(draws)]
    if value is None or len(defined) < (1 - alpha) * len(draws):
        return MetricEstimate(value=_round(value), low=None, high=None)
    low, high = np.quantile(defined, [alpha / 2, 1 - alpha / 2])
    return MetricEstimate(value=_round(value), low=_round(low), high=_round(high))


def _round(value: float | None) -> float | None:
    return None if value is None else round(float(value), DIGITS)


def _check_scores(probabilities: np.ndarray) -> np.ndarray:
    scores = np.asarray(probabilities, dtype=float).ravel()
    if len(scores) == 0:
        raise ValueError("no probabilities to estimate on: the window has no champion rows")
    return check_probabilities(
        scores, f"the prediction log's '{PROBABILITY}' must hold the served scores"
    )
