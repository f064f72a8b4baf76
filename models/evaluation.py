"""Scores and plot data for a fitted classifier on labelled data."""

from __future__ import annotations

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

from features.contract import DataContract
from models.training import feature_frame


def predict_failure_probability(
    model: Pipeline, frame: pd.DataFrame, contract: DataContract
) -> np.ndarray:
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
