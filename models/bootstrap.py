"""The paired bootstrap of a holdout ranking metric: challenger vs champion on the same rows.

Both models are scored on the same resampled rows, so the noise they share (hard rows, lucky
rows) cancels in the difference and the interval measures only how they differ. Scores are
bucketed once per model, so a resample costs one counting pass instead of a sort.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from core.config import RankingMetric
from core.records.deploy import Comparison

# Resamples are drawn in chunks of about this many row indices (32 MB of int64) per class.
_CHUNK_ELEMENTS = 1 << 22


def paired_bootstrap(
    y_true: np.ndarray,
    challenger_proba: np.ndarray,
    champion_proba: np.ndarray,
    metric: RankingMetric,
    resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> Comparison:
    """Percentile CI of `metric(challenger) - metric(champion)` over paired bootstrap resamples.

    Each resample draws rows with replacement, stratified by class (as many positives and
    negatives as the holdout has), so every resample has both classes and the metric is
    always defined; both models are scored on the same drawn rows. The result depends only
    on the inputs and `seed`.
    """
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie strictly between 0 and 1, got {confidence}")
    y = _binary_labels(y_true)
    models = [
        check_scores(challenger_proba, y, "challenger"),
        check_scores(champion_proba, y, "champion"),
    ]
    observed = observed_metrics(y, models, metric)
    values = _resampled_metrics(y, models, metric, resamples, seed)
    deltas = values[:, 0] - values[:, 1]
    alpha = 1 - confidence
    low, high = np.quantile(deltas, [alpha / 2, 1 - alpha / 2])
    return Comparison(
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
    return _resampled_metrics(y, [check_scores(proba, y, "proba")], metric, resamples, seed)[:, 0]


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


def check_scores(proba: np.ndarray, y: np.ndarray, name: str) -> np.ndarray:
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


def observed_metrics(y: np.ndarray, models: Sequence[np.ndarray], metric: str) -> np.ndarray:
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
