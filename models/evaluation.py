"""Scores, the operating threshold and plot data for a fitted classifier on labelled data."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import (
    average_precision_score,
    brier_score_loss,
    confusion_matrix,
    f1_score,
    precision_recall_curve,
    precision_score,
    recall_score,
    roc_auc_score,
    roc_curve,
)
from sklearn.pipeline import Pipeline

from core.config import OperatingPointConfig
from features.contract import DataContract
from models.training import feature_frame

MISSING_GROUP = "<missing>"
_FLOOR_SLACK = 1e-12  # so a share that equals the floor (9/10 vs 0.9) counts as meeting it


def predict_probability(model: Pipeline, frame: pd.DataFrame, contract: DataContract) -> np.ndarray:
    """Probability of the positive class for each row."""
    return model.predict_proba(feature_frame(frame, contract))[:, 1]


def score_ranking(y_true: np.ndarray, proba: np.ndarray) -> dict[str, float]:
    """Threshold-free metrics: how well the scores rank and how well they are calibrated."""
    both_classes = len(np.unique(y_true)) == 2
    metrics = {
        "rows": len(y_true),
        "positives": int(np.sum(y_true)),
        "roc_auc": roc_auc_score(y_true, proba) if both_classes else float("nan"),
        "average_precision": average_precision_score(y_true, proba)
        if both_classes
        else float("nan"),
        "brier": brier_score_loss(y_true, proba),
    }
    return _rounded(metrics)


def score_predictions(y_true: np.ndarray, proba: np.ndarray, threshold: float) -> dict[str, float]:
    """Ranking, threshold and calibration metrics, rounded for stable metric files."""
    y_pred = (proba >= threshold).astype(int)
    metrics = {
        **score_ranking(y_true, proba),
        "f1": f1_score(y_true, y_pred, zero_division=0),
        "precision": precision_score(y_true, y_pred, zero_division=0),
        "recall": recall_score(y_true, y_pred, zero_division=0),
        "threshold": threshold,
    }
    return _rounded(metrics)


def _rounded(metrics: dict[str, float]) -> dict[str, float]:
    return {k: (round(float(v), 6) if isinstance(v, float) else v) for k, v in metrics.items()}


def curve_points(
    y_true: np.ndarray, proba: np.ndarray, max_points: int = 200
) -> dict[str, pd.DataFrame]:
    """ROC and precision-recall curves, thinned to at most `max_points` rows each for DVC plots."""
    fpr, tpr, _ = roc_curve(y_true, proba)
    precision, recall, _ = precision_recall_curve(y_true, proba)
    roc = pd.DataFrame({"fpr": fpr, "tpr": tpr})
    pr = pd.DataFrame({"recall": recall, "precision": precision})
    return {"roc": _thin(roc, max_points), "precision_recall": _thin(pr, max_points)}


def confusion_rows(y_true: np.ndarray, proba: np.ndarray, threshold: float) -> pd.DataFrame:
    """Actual/predicted pairs in the long form DVC's confusion template reads."""
    y_pred = (proba >= threshold).astype(int)
    matrix = confusion_matrix(y_true, y_pred, labels=[0, 1])
    rows = [
        {"actual": actual, "predicted": predicted}
        for actual in (0, 1)
        for predicted in (0, 1)
        for _ in range(int(matrix[actual, predicted]))
    ]
    return pd.DataFrame(rows, columns=["actual", "predicted"])


def _thin(frame: pd.DataFrame, max_points: int) -> pd.DataFrame:
    if len(frame) <= max_points:
        return frame.round(6)
    keep = np.unique(np.linspace(0, len(frame) - 1, max_points).round().astype(int))
    return frame.iloc[keep].reset_index(drop=True).round(6)


# --- the operating threshold ----------------------------------------------------------


@dataclass(frozen=True)
class OperatingPoint:
    """The chosen label threshold and what it achieves on the predictions it was chosen on."""

    threshold: float
    goal: str
    at_least: float | None  # the floor for a recall/precision goal; None for f1
    recall: float
    precision: float
    f1: float
    met: bool
    note: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def choose_threshold(
    y_true: np.ndarray, proba: np.ndarray, config: OperatingPointConfig
) -> OperatingPoint:
    """Pick the threshold (one of the observed scores) that meets the configured goal.

    - `recall`: the highest precision among thresholds with recall >= `at_least`;
    - `precision`: the highest recall among thresholds with precision >= `at_least`;
    - `f1`: the highest F1.
    Ties go to the other metric (precision, for f1), then to the higher threshold, so the
    choice is never dominated and is deterministic. An unreachable floor falls back to the
    F1 choice with `met=False`. A row is positive when `proba >= threshold`.
    """
    y, scores = _binary_inputs(y_true, proba)
    precision, recall, thresholds = precision_recall_curve(y, scores)
    precision, recall = precision[:-1], recall[:-1]  # the last point (recall 0) has no threshold
    f1 = _f1(precision, recall)
    best_f1 = _pick(f1, precision, thresholds, np.ones_like(f1, dtype=bool))

    if config.goal == "f1":
        note = "the highest F1 over all observed thresholds"
        return _operating_point(best_f1, thresholds, precision, recall, f1, "f1", None, True, note)

    achieved, other = (recall, precision) if config.goal == "recall" else (precision, recall)
    other_name = "precision" if config.goal == "recall" else "recall"
    feasible = achieved >= config.at_least - _FLOOR_SLACK
    if feasible.any():
        index = _pick(other, achieved, thresholds, feasible)
        note = (
            f"{config.goal} >= {config.at_least:.3f} met, with the highest {other_name} "
            f"that keeps it"
        )
        return _operating_point(
            index, thresholds, precision, recall, f1, config.goal, config.at_least, True, note
        )
    note = (
        f"no threshold reaches {config.goal} >= {config.at_least:.3f} (the best is "
        f"{achieved.max():.3f}), so the goal is NOT met; fell back to the highest F1"
    )
    return _operating_point(
        best_f1, thresholds, precision, recall, f1, config.goal, config.at_least, False, note
    )


def _binary_inputs(y_true: np.ndarray, proba: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Labels as 0/1 integers and scores as floats, with both classes present."""
    y = np.asarray(y_true).ravel()
    scores = np.asarray(proba, dtype=float).ravel()
    if len(y) != len(scores):
        raise ValueError(f"y_true has {len(y)} rows but proba has {len(scores)}")
    if not np.isin(y, (0, 1)).all():
        raise ValueError(f"y_true must hold only 0 and 1, got {np.unique(y)[:5].tolist()}")
    if not np.isfinite(scores).all():
        raise ValueError("proba holds NaN or infinite scores")
    y = y.astype(np.int64)
    present = np.unique(y)
    if len(present) != 2:
        only = f"only class {present[0]}" if len(present) else "no rows"
        raise ValueError(f"choosing a threshold needs both classes in y_true; got {only}")
    return y, scores


def _f1(precision: np.ndarray, recall: np.ndarray) -> np.ndarray:
    total = precision + recall
    return np.divide(2 * precision * recall, total, out=np.zeros_like(total), where=total > 0)


def _pick(
    primary: np.ndarray, secondary: np.ndarray, thresholds: np.ndarray, feasible: np.ndarray
) -> int:
    """Index of the feasible point with the highest primary, then secondary, then threshold."""
    candidates = np.flatnonzero(feasible)
    order = np.lexsort((thresholds[candidates], secondary[candidates], primary[candidates]))
    return int(candidates[order[-1]])


def _operating_point(
    index: int,
    thresholds: np.ndarray,
    precision: np.ndarray,
    recall: np.ndarray,
    f1: np.ndarray,
    goal: str,
    at_least: float | None,
    met: bool,
    note: str,
) -> OperatingPoint:
    threshold = float(thresholds[index])
    return OperatingPoint(
        threshold=threshold,
        goal=goal,
        at_least=at_least,
        recall=round(float(recall[index]), 6),
        precision=round(float(precision[index]), 6),
        f1=round(float(f1[index]), 6),
        met=met,
        note=(
            f"{note}: threshold {threshold:.4g} gives recall {recall[index]:.3f}, "
            f"precision {precision[index]:.3f}, F1 {f1[index]:.3f}"
        ),
    )


# --- slices and calibration -----------------------------------------------------------


def score_by_group(
    frame: pd.DataFrame,
    y_true: np.ndarray,
    proba: np.ndarray,
    group_column: str,
    threshold: float,
) -> dict[str, dict[str, float | int | None]]:
    """`score_predictions` for each value of `group_column` (e.g. product `Type`).

    `y_true` and `proba` align with `frame` by position. Each entry carries the group's
    `rows` and `positives`; a group with one class gets None for its ranking metrics, and
    every NaN becomes None so the result can be written as JSON. Missing group values are
    collected under "<missing>".
    """
    if group_column not in frame.columns:
        raise ValueError(f"no column '{group_column}' to group by; columns: {list(frame.columns)}")
    y = np.asarray(y_true).ravel()
    scores = np.asarray(proba, dtype=float).ravel()
    if not len(frame) == len(y) == len(scores):
        raise ValueError(
            f"frame has {len(frame)} rows, y_true {len(y)} and proba {len(scores)}: they must align"
        )
    labels = frame[group_column].astype("string").fillna(MISSING_GROUP).to_numpy(dtype=object)
    groups: dict[str, dict[str, float | int | None]] = {}
    for name in sorted(set(labels)):
        rows = labels == name
        metrics = score_predictions(y[rows], scores[rows], threshold)
        groups[str(name)] = {k: _none_if_nan(v) for k, v in metrics.items()}
    return groups


def _none_if_nan(value: float | int) -> float | int | None:
    return None if isinstance(value, float) and math.isnan(value) else value


def calibration_points(y_true: np.ndarray, proba: np.ndarray, bins: int = 10) -> pd.DataFrame:
    """Reliability-curve points: mean score vs observed positive rate in quantile bins.

    Quantile edges put about the same number of rows in each bin; tied scores can merge
    bins, and empty bins are dropped, so there may be fewer than `bins` rows (each has data).
    """
    if bins < 1:
        raise ValueError(f"bins must be at least 1, got {bins}")
    y = np.asarray(y_true, dtype=float).ravel()
    scores = np.asarray(proba, dtype=float).ravel()
    if len(y) != len(scores) or len(y) == 0:
        raise ValueError(f"need as many labels as scores, and some: got {len(y)} and {len(scores)}")
    edges = np.unique(np.quantile(scores, np.linspace(0, 1, bins + 1)))
    bin_of_row = np.searchsorted(edges[1:-1], scores, side="right")
    size = len(edges) - 1 if len(edges) > 1 else 1
    count = np.bincount(bin_of_row, minlength=size)
    used = count > 0
    score_sum = np.bincount(bin_of_row, weights=scores, minlength=size)
    positive_sum = np.bincount(bin_of_row, weights=y, minlength=size)
    return pd.DataFrame(
        {
            "mean_predicted": score_sum[used] / count[used],
            "fraction_positive": positive_sum[used] / count[used],
            "count": count[used],
        }
    ).round(6)
