"""Stage `evaluate`: score the trained model on the stratified holdout.

The operating threshold is chosen on validation data (the training split's out-of-fold
predictions) for the goal in `evaluate.operating_point`, then applied to the holdout.
Writes metrics (overall and per categorical feature, e.g. product `Type`) that
`dvc metrics diff` reads, and ROC, precision-recall, confusion and calibration plots for
`dvc plots` and MLflow.
"""

from __future__ import annotations

import logging
from dataclasses import asdict

import pandas as pd

from core.columns import REFERENCE_LABEL, REFERENCE_PROBABILITY
from core.config import load_params
from core.io import write_atomic, write_json
from core.model_files import load_model
from core.paths import (
    EVALUATION,
    HOLDOUT_SPLIT,
    MODEL_DIR,
    PLOTS_DIR,
    VALIDATION_PREDICTIONS,
)
from core.records.evaluation import segment_key
from features.contract import load_contract
from models.evaluation import (
    calibration_points,
    choose_threshold,
    confusion_rows,
    curve_points,
    predict_probability,
    score_by_group,
    score_predictions,
)
from pipelines.edges.runtime import run_stage
from pipelines.edges.tracking import start_tracking

logger = logging.getLogger(__name__)


def main() -> None:
    params = load_params()
    contract = load_contract(params.data.contract)
    loaded = load_model(MODEL_DIR)
    validation = pd.read_parquet(VALIDATION_PREDICTIONS)
    point = choose_threshold(
        validation[REFERENCE_LABEL].to_numpy(),
        validation[REFERENCE_PROBABILITY].to_numpy(),
        params.evaluate.operating_point,
    )
    logger.info("operating threshold %.4f: %s", point.threshold, point.note)

    holdout = pd.read_parquet(HOLDOUT_SPLIT)
    y_true = holdout[contract.label].to_numpy()
    proba = predict_probability(loaded.pipeline, holdout, contract)
    metrics = {
        "holdout": score_predictions(y_true, proba, point.threshold),
        "operating_point": asdict(point),
        **{
            segment_key(name): score_by_group(holdout, y_true, proba, name, point.threshold)
            for name in contract.categorical_features
        },
    }
    overall = metrics["holdout"]
    logger.info(
        "holdout of %d rows: ROC AUC %.4f, average precision %.4f, recall %.3f, precision %.3f",
        len(holdout),
        overall["roc_auc"],
        overall["average_precision"],
        overall["recall"],
        overall["precision"],
    )
    write_json(metrics, EVALUATION)
    plots = {
        **curve_points(y_true, proba),
        "confusion": confusion_rows(y_true, proba, point.threshold),
        "calibration": calibration_points(y_true, proba),
    }
    for name, frame in plots.items():
        write_atomic(
            PLOTS_DIR / f"{name}.csv", lambda tmp, frame=frame: frame.to_csv(tmp, index=False)
        )

    # the holdout scores belong with the model: log them into its training run
    tracking = start_tracking(params.tracking.experiment)
    with tracking.mlflow.start_run(run_id=loaded.meta["mlflow_run_id"]):
        tracking.mlflow.log_metrics(
            {f"holdout_{k}": v for k, v in overall.items() if isinstance(v, int | float)}
        )
        tracking.mlflow.log_metric("operating_threshold", point.threshold)
        tracking.mlflow.log_artifact(str(EVALUATION), artifact_path="evaluation")
        tracking.mlflow.log_artifacts(str(PLOTS_DIR), artifact_path="evaluation/plots")
        tracking.mlflow.log_figure(_figure(plots), "evaluation/plots.png")


def _figure(plots: dict[str, pd.DataFrame]):
    """ROC, precision-recall and calibration side by side, for the MLflow UI.

    A bare `Figure` (no pyplot): no global figure registry to leak into, no GUI backend to
    choose, and pyplot's import is not paid.
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=(13, 4))
    axes = fig.subplots(1, 3)
    roc, pr, cal = plots["roc"], plots["precision_recall"], plots["calibration"]
    axes[0].plot(roc["fpr"], roc["tpr"])
    axes[0].set(title="ROC (holdout)", xlabel="false positive rate", ylabel="true positive rate")
    axes[1].plot(pr["recall"], pr["precision"])
    axes[1].set(title="Precision-recall (holdout)", xlabel="recall", ylabel="precision")
    axes[2].plot(cal["mean_predicted"], cal["fraction_positive"], marker="o")
    axes[2].plot([0, 1], [0, 1], linestyle=":")
    axes[2].set(title="Calibration", xlabel="mean predicted", ylabel="fraction positive")
    fig.tight_layout()
    return fig


if __name__ == "__main__":
    run_stage("evaluate", main)
