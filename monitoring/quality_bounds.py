"""How far the champion's own quality falls by chance on windows of its training period.

A window's realized average precision swings with the few failures it holds and with the
period it covers: on the real AI4I file, 1,000-row blocks of one training period range over
tenths. A floor above the low end of that range retrains on unchanged traffic, and one above
the champion's whole range (a floor the data never reached) retrains on every window. So
contiguous blocks of the training split's out-of-fold predictions, in time order, are scored
at the monitor's window sizes, and each metric gets a lower bound at a stated false-alarm
rate per window: the logit of the block values taken as normal, the spread pooled over the
sizes, a one-sided Student-t prediction bound counting only disjoint blocks as independent,
and never above the lowest block seen. `monitoring.assessment.quality_floors` keeps every
floor at or below it. Pure.
"""

from __future__ import annotations

import numpy as np
from scipy import special

from core.config import MonitorConfig
from core.records.quality_bounds import MetricBound, QualityBounds
from models.evaluation import score_ranking
from monitoring.calibration import block_starts, choose_block_sizes, pooled_prediction_bounds

METRICS = ("roc_auc", "average_precision")
TAIL_MODEL = (
    "normal on the logit of block values, spread pooled over block sizes; one-sided Student-t "
    "prediction bound on disjoint blocks; at most the lowest block value"
)
_EDGE = 1e-6  # block values of exactly 0 or 1 are taken this far inside before the logit


def calibrate_quality(
    labels: np.ndarray, scores: np.ndarray, config: MonitorConfig
) -> QualityBounds:
    """Lower bounds of ROC AUC and average precision per window size, from blocks of the
    out-of-fold `scores` (time order) against their `labels`."""
    rate = config.quality.false_alarm_rate
    sizes, reason = choose_block_sizes(len(labels), config)
    if not config.quality.own_bounds:
        sizes, reason = [], "monitor.quality.own_bounds is false: the floors apply as set"
    blocks = {size: _block_values(labels, scores, size, config) for size in sizes}
    metrics = {}
    for name in METRICS if sizes else ():
        values = {size: found[name] for size, found in blocks.items()}
        bounds = _bounds(values, len(labels), rate / len(METRICS))
        if bounds:
            metrics[name] = bounds
    if sizes and not metrics:
        reason = "no block of the training period holds both classes"
    return QualityBounds(
        calibrated=bool(metrics),
        reason=reason,
        false_alarm_rate=rate,
        tail_model=TAIL_MODEL,
        metrics=metrics,
    )


def _bounds(values: dict[int, np.ndarray], rows: int, alpha: float) -> tuple[MetricBound, ...]:
    """One metric's bound per block size, from its block values (`rows`: the period's)."""
    values = {size: found for size, found in values.items() if len(found) >= 2}
    if not values:
        return ()
    logits = {
        size: special.logit(np.clip(found, _EDGE, 1 - _EDGE)) for size, found in values.items()
    }
    sd, bounds = pooled_prediction_bounds(logits, rows, alpha)
    out = []
    for size, found in values.items():
        bound = min(float(special.expit(bounds[size])), float(found.min()))
        out.append(
            MetricBound(
                block_rows=size,
                blocks=len(found),
                disjoint_blocks=rows // size,
                mean=float(found.mean()),
                lowest=float(found.min()),
                logit_mean=float(logits[size].mean()),
                logit_sd=sd,
                bound=round(bound, 6),
            )
        )
    return tuple(out)


def _block_values(
    labels: np.ndarray, scores: np.ndarray, size: int, config: MonitorConfig
) -> dict[str, np.ndarray]:
    """Each metric on every sliding block that holds both classes (one scoring per block)."""
    found: dict[str, list[float]] = {name: [] for name in METRICS}
    for start in block_starts(len(labels), size, config):
        y = labels[start : start + size]
        if 0 < y.sum() < size:
            ranking = score_ranking(y, scores[start : start + size])
            for name in METRICS:
                found[name].append(ranking[name])
    return {name: np.array(values, dtype=float) for name, values in found.items()}
