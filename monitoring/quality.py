"""The champion's quality on the window's labelled rows, against the floors in params.yaml.

Judged only on rows the champion served (their logged probability and threshold are its
own), and only with at least `monitor.labels.min_rows` such rows holding both classes: on
fewer, or on one class, a ranking metric says nothing and the quality is "not judged".
Precision, recall and F1 use each row's logged threshold, the operating point it was served at.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from sklearn.metrics import f1_score, precision_score, recall_score

from core.columns import PROBABILITY, THRESHOLD
from core.config import MonitorConfig
from core.records.monitor import QualitySummary
from models.evaluation import score_ranking

# Metrics are rounded to 6 places when measured: the floors judge the values the records show.
_DECIMALS = 6


def assess_quality(labelled: pd.DataFrame, label: str, config: MonitorConfig) -> QualitySummary:
    """Score the champion's labelled rows and name every metric below its floor.

    `labelled` needs the label, `failure_probability` and `threshold` columns (the log's).
    """
    floors = dict(config.quality.thresholds)
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
    breached = tuple(
        name for name, floor in sorted(floors.items()) if (metrics.get(name) or 0.0) < floor
    )
    compared = "; ".join(
        f"{name} {metrics.get(name) or 0.0:.3f} {'<' if name in breached else '>='} {floor:.3f}"
        for name, floor in sorted(floors.items())
    )
    on = f"on {rows} labelled rows served by the champion ({positives} failures)"
    if breached:
        reason = (
            f"quality below its floor {on}: {compared} (monitor.quality.thresholds); "
            f"breached: {', '.join(breached)}"
        )
    else:
        reason = f"quality holds {on}: {compared} (monitor.quality.thresholds)"
    return QualitySummary(judged=True, **measured, floors=floors, breached=breached, reason=reason)


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
