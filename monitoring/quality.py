"""The champion's quality on the window's labelled rows, against the floors in params.yaml.

Judged only on rows the champion served (their logged probability and threshold are its
own), and only with at least `monitor.labels.min_rows` such rows holding both classes: on
fewer, or on one class, a ranking metric says nothing and the quality is "not judged".
Precision, recall and F1 use each row's logged threshold, the operating point it was served at.
A window's metrics are noisy, so a floor is breached only when the metric's whole bootstrap
interval (class-stratified, `monitor.quality.confidence`) lies below it.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from sklearn.metrics import f1_score, precision_score, recall_score

from core.columns import PROBABILITY, THRESHOLD
from core.config import MonitorConfig
from core.records.monitor import QualitySummary
from models.bootstrap import bootstrap_metric
from models.evaluation import score_ranking

# Metrics are rounded to 6 places when measured: the floors judge the values the records show.
_DECIMALS = 6


def assess_quality(
    labelled: pd.DataFrame,
    label: str,
    config: MonitorConfig,
    seed: int = 0,
    floors: dict[str, float] | None = None,
    source: str = "monitor.quality.thresholds",
) -> QualitySummary:
    """Score the champion's labelled rows and name every metric below its floor.

    `labelled` needs the label, `probability` and `threshold` columns (the log's).
    `floors` default to `monitor.quality.thresholds`; `source` says where they come from (the
    reason names it). The bootstrap intervals depend only on
    the rows and `seed`.
    """
    floors = dict(config.quality.thresholds if floors is None else floors)
    y_true = labelled[label].to_numpy(dtype=np.int64)
    proba = labelled[PROBABILITY].to_numpy(dtype=float)
    rows, positives = len(y_true), int(y_true.sum())
    metrics, threshold = _score(y_true, proba, labelled[THRESHOLD].to_numpy(dtype=float))
    measured = {"rows": rows, "positives": positives, **metrics, "threshold": threshold}
    needed = config.labels.min_rows
    if rows < needed:
        reason = (
            f"quality not judged: {rows} labelled row(s) served by the champion, fewer than "
            f"monitor.labels.min_rows ({needed})"
        )
        return QualitySummary(judged=False, **measured, floors=floors, breached=(), reason=reason)
    if positives in (0, rows):
        only = "failures" if positives else "non-failures"
        reason = (
            f"quality not judged: the {rows} labelled rows served by the champion hold only "
            f"{only}, so ranking metrics are undefined"
        )
        return QualitySummary(judged=False, **measured, floors=floors, breached=(), reason=reason)
    intervals = _intervals(
        y_true, proba, labelled[THRESHOLD].to_numpy(dtype=float), floors, config, seed
    )
    breached = tuple(
        name
        for name, floor in sorted(floors.items())
        if (intervals[name][1] if name in intervals else (metrics.get(name) or 0.0)) < floor
    )
    compared = "; ".join(
        f"{name} {metrics.get(name) or 0.0:.3f}{_shown(intervals.get(name), config)} "
        f"{'<' if name in breached else '>='} {floor:.3f}"
        for name, floor in sorted(floors.items())
    )
    on = f"on {rows} labelled rows served by the champion ({positives} failures)"
    if breached:
        reason = (
            f"quality below its floor {on}: {compared} ({source}); breached: {', '.join(breached)}"
        )
    else:
        reason = f"quality holds {on}: {compared} ({source})"
    return QualitySummary(
        judged=True,
        **measured,
        floors=floors,
        intervals=intervals,
        confidence=config.quality.confidence,
        breached=breached,
        reason=reason,
    )


def _intervals(
    y_true: np.ndarray,
    proba: np.ndarray,
    thresholds: np.ndarray,
    floors: dict[str, float],
    config: MonitorConfig,
    seed: int,
) -> dict[str, tuple[float, float]]:
    """Each floored metric's bootstrap interval: rows drawn with replacement within each class.

    Ranking metrics go through `models.bootstrap`; for the threshold metrics such a draw
    flags a Binomial count of each class (its flagged share), so they are drawn directly.
    """
    confidence = config.quality.confidence
    if confidence is None:
        return {}
    resamples, alpha = config.quality.resamples, 1 - confidence
    rng = np.random.default_rng(seed)
    flagged = proba >= thresholds
    positives, negatives = int(y_true.sum()), int(len(y_true) - y_true.sum())
    tp = rng.binomial(positives, flagged[y_true == 1].mean(), resamples)
    fp = rng.binomial(negatives, flagged[y_true == 0].mean(), resamples)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(tp + fp > 0, tp / (tp + fp), 0.0)
        recall = tp / positives
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    drawn = {"precision": precision, "recall": recall, "f1": f1}
    intervals = {}
    for name in sorted(floors):
        values = (
            bootstrap_metric(y_true, proba, name, resamples, seed)  # type: ignore[arg-type]
            if name in ("roc_auc", "average_precision")
            else drawn[name]
        )
        low, high = np.quantile(values, [alpha / 2, 1 - alpha / 2])
        intervals[name] = (_round(low) or 0.0, _round(high) or 0.0)
    return intervals


def _shown(interval: tuple[float, float] | None, config: MonitorConfig) -> str:
    if interval is None or config.quality.confidence is None:
        return ""
    return f" ({config.quality.confidence:.0%} interval {interval[0]:.3f}-{interval[1]:.3f})"


def _score(
    y_true: np.ndarray, proba: np.ndarray, thresholds: np.ndarray
) -> tuple[dict[str, float | None], float | None]:
    if len(y_true) == 0:
        empty = dict.fromkeys(
            ("roc_auc", "average_precision", "brier", "precision", "recall", "f1")
        )
        return empty, None
    ranking = score_ranking(y_true, proba)
    y_pred = (proba >= thresholds).astype(np.int64)  # each row at the threshold it was served at
    metrics = {
        "roc_auc": ranking["roc_auc"],
        "average_precision": ranking["average_precision"],
        "brier": ranking["brier"],
        "precision": precision_score(y_true, y_pred, zero_division=0),
        "recall": recall_score(y_true, y_pred, zero_division=0),
        "f1": f1_score(y_true, y_pred, zero_division=0),
    }
    distinct = np.unique(thresholds)
    threshold = float(distinct[0]) if len(distinct) == 1 else None
    return {k: _round(v) for k, v in metrics.items()}, threshold


def _round(value: float) -> float | None:
    value = float(value)
    return round(value, _DECIMALS) if math.isfinite(value) else None
