"""Stage `evaluate`: score the model on the holdout; metrics and plots for DVC and MLflow."""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from features.contract import load_contract
from models.evaluation import (
    confusion_rows,
    curve_points,
    predict_failure_probability,
    score_predictions,
)
from pipelines.config import load_params
from pipelines.io import write_atomic, write_json
from pipelines.model_files import load_model
from pipelines.runtime import run_stage
from pipelines.tracking import start_tracking

logger = logging.getLogger(__name__)

HOLDOUT_SPLIT = Path("data/split/holdout.parquet")
MODEL_DIR = Path("artifacts/model")
METRICS = Path("reports/evaluate/metrics.json")
PLOTS_DIR = Path("reports/evaluate/plots")


def main() -> None:
    params = load_params()
    contract = load_contract(params.data.contract)
    loaded = load_model(MODEL_DIR)
    holdout = pd.read_parquet(HOLDOUT_SPLIT)
    y_true = holdout[contract.label].to_numpy()
    proba = predict_failure_probability(loaded.pipeline, holdout, contract)
    metrics = score_predictions(y_true, proba, params.evaluate.threshold)
    logger.info(
        "holdout of %d rows: ROC AUC %.4f, average precision %.4f, recall %.3f at threshold %.2f",
        len(holdout),
        metrics["roc_auc"],
        metrics["average_precision"],
        metrics["recall"],
        params.evaluate.threshold,
    )
    write_json(metrics, METRICS)
    plots = {
        **curve_points(y_true, proba),
        "confusion": confusion_rows(y_true, proba, params.evaluate.threshold),
    }
    for name, frame in plots.items():
        write_atomic(
            PLOTS_DIR / f"{name}.csv", lambda tmp, frame=frame: frame.to_csv(tmp, index=False)
        )

    mlflow = start_tracking(params.tracking.experiment)
    with mlflow.start_run(run_id=loaded.meta["mlflow_run_id"]):
        mlflow.log_metrics({f"holdout_{k}": v for k, v in metrics.items()})
        mlflow.log_artifacts(str(PLOTS_DIR), artifact_path="evaluation")


if __name__ == "__main__":
    run_stage("evaluate", main)
