"""The champion/challenger gate: a paired bootstrap of a holdout metric, the recent-window
check and the promotion rule.

The bootstrap scores both models on the same resampled rows, so the noise they share (hard
rows, lucky rows) cancels in the difference and the interval measures only how they differ.

The recent window applies when labelled feedback joined the training data and there is a
champion: the holdout rows from the newest feedback batch are production data neither model
trained on, from the process as it is now. There the challenger must beat the champion by
more than a margin; with too few such rows or positives it cannot be judged, and is not
promoted.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from core.config import DeployConfig, RankingMetric, RecentWindowConfig

# Resamples are drawn in chunks of about this many row indices (32 MB of int64) per class.
_CHUNK_ELEMENTS = 1 << 22


@dataclass(frozen=True)
class BootstrapComparison:
    """Challenger vs champion on one holdout: the observed difference and its bootstrap CI."""

    metric: str
    challenger: float
    champion: float
    delta: float  # challenger - champion
    ci_low: float
    ci_high: float
    confidence: float
    resamples: int
    seed: int

    def to_dict(self) -> dict[str, Any]:
        return _fields_rounded(self)


@dataclass(frozen=True)
class GateCheck:
    """One rule of the gate: the value it judged and the bound it had to reach."""

    name: str
    passed: bool
    value: float | None
    bound: float


@dataclass(frozen=True)
class PromotionDecision:
    """Whether the challenger replaces the champion, with a sentence for every check."""

    promote: bool
    reasons: tuple[str, ...]
    checks: tuple[GateCheck, ...]

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-safe values (NaN becomes None, numbers rounded to 6 places)."""
        return {
            "promote": self.promote,
            "reasons": list(self.reasons),
            "checks": [
                {**asdict(check), "value": _rounded_or_none(check.value)} for check in self.checks
            ],
        }


@dataclass(frozen=True)
class RecentWindowComparison:
    """Challenger vs champion on the newest feedback batch's rows in the holdout.

    `judged` is False when there were too few rows or positives (or no negatives) to judge;
    then the metric values are those that could be computed (None without both classes)
    and `passed` is False.
    """

    batch: str
    rows: int
    positives: int
    metric: str
    challenger: float | None
    champion: float | None
    delta: float | None  # challenger - champion
    margin: float
    min_rows: int
    min_positives: int
    judged: bool
    passed: bool

    def to_dict(self) -> dict[str, Any]:
        return _fields_rounded(self)

    def reason(self) -> str:
        """One sentence for the decision's reasons."""
        where = f"the newest feedback batch ({self.batch})"
        if not self.judged:
            return (
                f"recent window cannot be judged: {self.rows} rows / {self.positives} positives "
                f"of {where} in the holdout, need at least {self.min_rows} rows, "
                f"{self.min_positives} positives and one negative"
            )
        verdict = "exceeds" if self.passed else "does not exceed"
        return (
            f"recent window, {self.rows} rows / {self.positives} positives of {where} in the "
            f"holdout: challenger {self.metric} {_fmt(self.challenger)} vs champion "
            f"{_fmt(self.champion)}, difference {_fmt(self.delta)} {verdict} the margin "
            f"{_fmt(self.margin)}"
        )


# --- the paired bootstrap -------------------------------------------------------------


def paired_bootstrap(
    y_true: np.ndarray,
    challenger_proba: np.ndarray,
    champion_proba: np.ndarray,
    metric: RankingMetric,
    resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> BootstrapComparison:
    """Percentile CI of `metric(challenger) - metric(champion)` over paired bootstrap resamples.

    Each resample draws rows with replacement, stratified by class (as many positives and
    negatives as the holdout has), so every resample has both classes and the metric is
    always defined; both models are scored on the same drawn rows. The result depends only
    on the inputs and `seed`.
    """
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie strictly between 0 and 1, got {confidence}")
    y = _binary_labels(y_true)
    models = [_scores(challenger_proba, y, "challenger"), _scores(champion_proba, y, "champion")]
    observed = _observed_metrics(y, models, metric)
    values = _resampled_metrics(y, models, metric, resamples, seed)
    deltas = values[:, 0] - values[:, 1]
    alpha = 1 - confidence
    low, high = np.quantile(deltas, [alpha / 2, 1 - alpha / 2])
    return BootstrapComparison(
        metric=metric,
        challenger=float(observed[0]),
        champion=float(observed[1]),
        delta=float(observed[0] - observed[1]),
        ci_low=float(low),
        ci_high=float(high),
        confidence=confidence,
        resamples=resamples,
        seed=seed,
    )


def bootstrap_metric(
    y_true: np.ndarray,
    proba: np.ndarray,
    metric: RankingMetric,
    resamples: int = 1000,
    seed: int = 0,
) -> np.ndarray:
    """The metric of one model on each of `resamples` class-stratified bootstrap resamples."""
    y = _binary_labels(y_true)
    return _resampled_metrics(y, [_scores(proba, y, "proba")], metric, resamples, seed)[:, 0]


def _binary_labels(y_true: np.ndarray) -> np.ndarray:
    y = np.asarray(y_true).ravel()
    if not np.isin(y, (0, 1)).all():
        raise ValueError(f"y_true must hold only 0 and 1, got {np.unique(y)[:5].tolist()}")
    counts = np.bincount(y.astype(np.int64), minlength=2)
    if counts.min() == 0:
        raise ValueError(
            f"the bootstrap needs both classes in y_true; got {counts[0]} negatives "
            f"and {counts[1]} positives"
        )
    return y.astype(np.int64)


def _scores(proba: np.ndarray, y: np.ndarray, name: str) -> np.ndarray:
    scores = np.asarray(proba, dtype=float).ravel()
    if len(scores) != len(y):
        raise ValueError(f"{name} scores have {len(scores)} rows but y_true has {len(y)}")
    if not np.isfinite(scores).all():
        raise ValueError(f"{name} scores hold NaN or infinite values")
    return scores


@dataclass(frozen=True)
class _Buckets:
    """One model's scores reduced to what ROC AUC and average precision depend on.

    With `m` distinct scores among the positives, a positive row's bucket is the rank of its
    score among them; a negative row's bucket is 2k for a score between the (k-1)th and kth
    distinct positive score, and 2k + 1 for a score tied with the kth. Per-resample counts
    then live in m and 2m + 1 columns however many distinct scores the negatives have.
    """

    positive: np.ndarray
    negative: np.ndarray
    size: int


def _bucket_scores(scores: np.ndarray, y: np.ndarray) -> _Buckets:
    distinct = np.unique(scores[y == 1])
    negative_scores = scores[y == 0]
    below = np.searchsorted(distinct, negative_scores, side="left")
    tied = distinct[np.minimum(below, len(distinct) - 1)] == negative_scores
    return _Buckets(
        positive=np.searchsorted(distinct, scores[y == 1]).astype(np.intp),
        negative=(2 * below + tied).astype(np.intp),
        size=len(distinct),
    )


def _count_buckets(buckets: np.ndarray, size: int) -> np.ndarray:
    """Rows per bucket for each resample: (resamples, rows) buckets -> (resamples, size)."""
    resamples = buckets.shape[0]
    offsets = (np.arange(resamples, dtype=np.intp) * size)[:, None]
    counts = np.bincount((buckets + offsets).ravel(), minlength=resamples * size)
    return counts.reshape(resamples, size)


def _negatives_below(negatives: np.ndarray, size: int) -> np.ndarray:
    """Negatives scored strictly below each distinct positive score: (resamples, size)."""
    return np.cumsum(negatives, axis=1)[:, 0 : 2 * size : 2]


def _roc_auc(positives: np.ndarray, negatives: np.ndarray) -> np.ndarray:
    """ROC AUC from bucket counts: the Mann-Whitney statistic, ties counting one half, which
    equals scikit-learn's `roc_auc_score`."""
    size = positives.shape[1]
    wins = _negatives_below(negatives, size) + 0.5 * negatives[:, 1::2]
    pairs = positives.sum(axis=1) * negatives.sum(axis=1)
    return (positives * wins).sum(axis=1) / pairs


def _average_precision(positives: np.ndarray, negatives: np.ndarray) -> np.ndarray:
    """Average precision from bucket counts: the precision at each positive's score, averaged
    over positives, as scikit-learn's `average_precision_score` computes it."""
    size = positives.shape[1]
    total_pos = positives.sum(axis=1, keepdims=True)
    true_pos = total_pos - np.cumsum(positives, axis=1) + positives  # positives at or above
    false_pos = negatives.sum(axis=1, keepdims=True) - _negatives_below(negatives, size)
    flagged = true_pos + false_pos
    precision = np.divide(
        true_pos, flagged, out=np.zeros(true_pos.shape, dtype=float), where=flagged > 0
    )
    return (positives * precision).sum(axis=1) / total_pos[:, 0]


_METRICS: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "roc_auc": _roc_auc,
    "average_precision": _average_precision,
}


def _metric_function(metric: str) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    if metric not in _METRICS:
        raise ValueError(f"unknown metric '{metric}'; known: {sorted(_METRICS)}")
    return _METRICS[metric]


def _observed_metrics(y: np.ndarray, models: Sequence[np.ndarray], metric: str) -> np.ndarray:
    score = _metric_function(metric)
    values = []
    for scores in models:
        buckets = _bucket_scores(scores, y)
        positives = np.bincount(buckets.positive, minlength=buckets.size)[None, :]
        negatives = np.bincount(buckets.negative, minlength=2 * buckets.size + 1)[None, :]
        values.append(score(positives, negatives)[0])
    return np.array(values)


def _resampled_metrics(
    y: np.ndarray, models: Sequence[np.ndarray], metric: str, resamples: int, seed: int
) -> np.ndarray:
    """(resamples, models) metric values; every model sees the same drawn rows.

    Scores are bucketed once per model; a resample is then a count of drawn rows per bucket,
    so each metric costs one pass over the drawn rows instead of a sort.
    """
    if resamples < 1:
        raise ValueError(f"resamples must be at least 1, got {resamples}")
    score = _metric_function(metric)
    buckets = [_bucket_scores(scores, y) for scores in models]
    positives, negatives = int(y.sum()), int(len(y) - y.sum())
    rng = np.random.default_rng(seed)
    chunk = max(1, _CHUNK_ELEMENTS // len(y))
    values = np.empty((resamples, len(models)))
    for start in range(0, resamples, chunk):
        draws = min(chunk, resamples - start)
        positive_draw = rng.integers(0, positives, size=(draws, positives))
        negative_draw = rng.integers(0, negatives, size=(draws, negatives))
        for column, bucket in enumerate(buckets):
            drawn_pos = _count_buckets(bucket.positive[positive_draw], bucket.size)
            drawn_neg = _count_buckets(bucket.negative[negative_draw], 2 * bucket.size + 1)
            values[start : start + draws, column] = score(drawn_pos, drawn_neg)
    return values


# --- the recent window ----------------------------------------------------------------


def compare_recent_window(
    batch: str,
    y_true: np.ndarray,
    challenger_proba: np.ndarray,
    champion_proba: np.ndarray,
    metric: RankingMetric,
    config: RecentWindowConfig,
) -> RecentWindowComparison:
    """Score both models on the recent window's rows and judge challenger - champion > margin.

    The rows are the holdout rows of the newest feedback batch `batch`. Fewer than
    `config.min_rows` rows, fewer than `config.min_positives` positives, or no negatives:
    the window cannot be judged and the check fails.
    """
    y = np.asarray(y_true).ravel()
    if not np.isin(y, (0, 1)).all():
        raise ValueError(f"y_true must hold only 0 and 1, got {np.unique(y)[:5].tolist()}")
    y = y.astype(np.int64)
    models = [_scores(challenger_proba, y, "challenger"), _scores(champion_proba, y, "champion")]
    rows, positives = len(y), int(y.sum())
    both_classes = 0 < positives < rows
    challenger = champion = delta = None
    if both_classes:
        observed = _observed_metrics(y, models, metric)
        challenger, champion = float(observed[0]), float(observed[1])
        delta = challenger - champion
    judged = both_classes and rows >= config.min_rows and positives >= config.min_positives
    return RecentWindowComparison(
        batch=batch,
        rows=rows,
        positives=positives,
        metric=metric,
        challenger=challenger,
        champion=champion,
        delta=delta,
        margin=config.margin,
        min_rows=config.min_rows,
        min_positives=config.min_positives,
        judged=judged,
        passed=judged and delta is not None and delta > config.margin,
    )


# --- the promotion rule ---------------------------------------------------------------


def decide_promotion(
    challenger: Mapping[str, Any],
    champion: Mapping[str, Any] | None,
    comparison: BootstrapComparison | None,
    config: DeployConfig,
    recent_window: RecentWindowComparison | None = None,
) -> PromotionDecision:
    """Promote when every absolute threshold passes and, with a champion, the challenger is
    not worse on the primary metric beyond the tolerance and, when a recent window applies,
    beats the champion there by more than the margin.

    `challenger` and `champion` are holdout metrics (as `score_predictions` returns). The
    champion comparison is a non-inferiority test: the lower bound of the CI of
    (challenger - champion) must be >= -tolerance. With no champion, the thresholds decide.
    `recent_window` is None when the check does not apply (no feedback, or no champion); it
    then adds neither a check nor a reason.
    """
    checks: list[GateCheck] = []
    reasons: list[str] = []
    for metric, minimum in config.thresholds.items():
        check, reason = _threshold_check(metric, challenger.get(metric), minimum)
        checks.append(check)
        reasons.append(reason)

    if champion is None:
        if comparison is not None:
            raise ValueError("a bootstrap comparison was given but there is no champion")
        reasons.append("no champion yet: the absolute thresholds decide")
    else:
        if comparison is None:
            raise ValueError("a champion needs a bootstrap comparison to be judged against")
        if comparison.metric != config.primary_metric:
            raise ValueError(
                f"the comparison is on {comparison.metric} but the gate's primary metric is "
                f"{config.primary_metric}"
            )
        check, reason = _non_inferiority_check(comparison, config.tolerance)
        checks.append(check)
        reasons.append(reason)

    if recent_window is not None:
        if champion is None:
            raise ValueError("a recent-window comparison was given but there is no champion")
        if recent_window.metric != config.primary_metric:
            raise ValueError(
                f"the recent window is judged on {recent_window.metric} but the gate's "
                f"primary metric is {config.primary_metric}"
            )
        checks.append(
            GateCheck(
                f"recent_window_{recent_window.metric}",
                recent_window.passed,
                recent_window.delta,
                recent_window.margin,
            )
        )
        reasons.append(recent_window.reason())

    return PromotionDecision(
        promote=all(check.passed for check in checks),
        reasons=tuple(reasons),
        checks=tuple(checks),
    )


def _threshold_check(metric: str, value: Any, minimum: float) -> tuple[GateCheck, str]:
    number = _finite_or_none(value)
    name = f"min_{metric}"
    if number is None:
        reason = (
            f"{metric} is not available for the challenger (got {value!r}), "
            f"so the threshold {_fmt(minimum)} is not met"
        )
        return GateCheck(name, False, number, minimum), reason
    passed = number >= minimum
    verdict = "meets" if passed else "is below"
    return GateCheck(name, passed, number, minimum), (
        f"{metric} {_fmt(number)} {verdict} the threshold {_fmt(minimum)}"
    )


def _non_inferiority_check(
    comparison: BootstrapComparison, tolerance: float
) -> tuple[GateCheck, str]:
    bound = 0.0 - tolerance
    passed = comparison.ci_low >= bound
    if passed:
        verdict = "stays at or above"
    elif comparison.ci_high < bound:
        verdict = "falls below"
    else:
        verdict = "reaches below"
    reason = (
        f"challenger {comparison.metric} {_fmt(comparison.challenger)} vs champion "
        f"{_fmt(comparison.champion)}: the {_percent(comparison.confidence)} CI of the "
        f"difference [{_fmt(comparison.ci_low)}, {_fmt(comparison.ci_high)}] {verdict} "
        f"{_fmt(bound)} (tolerance)"
    )
    check = GateCheck(f"non_inferior_{comparison.metric}", passed, comparison.ci_low, bound)
    return check, reason


def _fmt(value: float | None) -> str:
    """Three decimals, without the '-0.000' a tiny negative rounding error would print."""
    if value is None:
        return "n/a"
    text = f"{value:.3f}"
    return "0.000" if text == "-0.000" else text


def _percent(share: float) -> str:
    return f"{share * 100:g}%"


def _fields_rounded(record: Any) -> dict[str, Any]:
    """A dataclass's fields as a dict, floats rounded to 6 places (stable JSON)."""
    return {k: round(v, 6) if isinstance(v, float) else v for k, v in asdict(record).items()}


def _rounded_or_none(value: Any) -> float | None:
    number = _finite_or_none(value)
    return None if number is None else round(number, 6)


def _finite_or_none(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
        return None
    number = float(value)
    return number if math.isfinite(number) else None
