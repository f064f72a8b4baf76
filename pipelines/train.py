"""Stage `train`: split the validated data, fit the pipeline, save it, log the run to MLflow."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import pandas as pd
import sklearn

from features.contract import load_contract
from models.evaluation import predict_failure_probability, score_ranking
from models.training import SKOPS_TRUSTED_TYPES, fit_model, split_data
from pipelines.config import load_params
from pipelines.io import file_sha256, write_json, write_parquet
from pipelines.model_files import save_model
from pipelines.runtime import run_stage, timed
from pipelines.tracking import flatten, git_commit, start_tracking

logger = logging.getLogger(__name__)

VALIDATED_DATA = Path("data/validated/dataset.parquet")
TRAIN_SPLIT = Path("data/split/train.parquet")
HOLDOUT_SPLIT = Path("data/split/holdout.parquet")
MODEL_DIR = Path("artifacts/model")
METRICS = Path("reports/train/metrics.json")


def main() -> None:
    params = load_params()
    contract = load_contract(params.data.contract)
    frame = pd.read_parquet(VALIDATED_DATA)
    train, holdout = split_data(frame, contract, params.train.holdout_size, params.data.seed)
    logger.info("split %d rows into %d train and %d holdout", len(frame), len(train), len(holdout))
    write_parquet(train, TRAIN_SPLIT)
    write_parquet(holdout, HOLDOUT_SPLIT)

    with timed(f"fit {params.train.model}"):
        model = fit_model(train, contract, params.train, params.data.seed)
    metrics = score_ranking(
        train[contract.label].to_numpy(), predict_failure_probability(model, train, contract)
    )
    logger.info(
        "train ROC AUC %.4f, average precision %.4f",
        metrics["roc_auc"],
        metrics["average_precision"],
    )

    mlflow = start_tracking(params.tracking.experiment)
    with mlflow.start_run(run_name=f"train-{params.train.model}") as run:
        mlflow.set_tags(
            {
                "stage": "train",
                "git_commit": git_commit(),
                "data_sha256": file_sha256(VALIDATED_DATA),
            }
        )
        mlflow.log_params(flatten("train", params.train.model_dump(mode="json")))
        mlflow.log_params({"data.seed": params.data.seed, "data.rows": len(frame)})
        mlflow.log_metrics({f"train_{k}": v for k, v in metrics.items()})
        # the dataset's schema has integer ids and labels on purpose: MLflow's hint is noise
        warnings.filterwarnings("ignore", message="Hint: Inferred schema contains integer")
        mlflow.log_input(
            mlflow.data.from_pandas(train, name="train-split", targets=contract.label),
            context="training",
        )
        _log_model(mlflow, model, train[contract.features], params.train.model)
        run_id = run.info.run_id

    meta = {
        "family": params.train.model,
        "features": contract.features,
        "label": contract.label,
        "contract": contract.name,
        "sklearn_version": sklearn.__version__,
        "mlflow_run_id": run_id,
        "train_rows": len(train),
    }
    digest = save_model(model, MODEL_DIR, meta, SKOPS_TRUSTED_TYPES[params.train.model])
    write_json(metrics, METRICS)
    logger.info("saved model %s (sha256 %s) from MLflow run %s", MODEL_DIR, digest[:12], run_id)


def _log_model(mlflow, model, inputs: pd.DataFrame, family: str) -> None:
    """Log the fitted pipeline with skops, its signature and an input example."""
    from mlflow.models import infer_signature

    # numbers as float64: an integer column in a signature rejects a later missing value
    example = inputs.head(5).astype({c: "float64" for c in inputs.select_dtypes("number").columns})
    mlflow.sklearn.log_model(
        model,
        name="model",
        serialization_format="skops",
        skops_trusted_types=SKOPS_TRUSTED_TYPES[family],
        signature=infer_signature(example, model.predict_proba(example)[:, 1]),
        input_example=example,
        # explicit requirements: inferring them spawns a slow subprocess
        pip_requirements=[f"scikit-learn=={sklearn.__version__}", f"pandas=={pd.__version__}"],
    )


if __name__ == "__main__":
    run_stage("train", main)
