"""Stage `train`: split, optionally search, cross-validate, fit, save, and log the run to MLflow.

Writes the train/holdout splits, the fitted pipeline (`artifacts/model/`), its reference
data beside it (the training split's ids and features with the label and the out-of-fold
probability: validation data for choosing the operating threshold in `evaluate`, and the
baseline the monitor compares production traffic with), and train and cross-validation
metrics.
"""

from __future__ import annotations

import logging
import warnings
from typing import Any

import numpy as np
import pandas as pd
import sklearn

from core.columns import REFERENCE_LABEL, REFERENCE_PROBABILITY
from core.config import load_params
from core.hashing import file_md5
from core.io import write_json, write_parquet, write_text
from core.model_files import model_content_hash, save_model
from core.paths import (
    HOLDOUT_SPLIT,
    MODEL_DIR,
    MONITOR_PROFILE,
    TRAIN_METRICS,
    TRAIN_SPLIT,
    VALIDATED_DATA,
    VALIDATION_PREDICTIONS,
)
from core.records import record_json
from core.records.profile import MonitorProfile
from features.contract import DataContract, load_contract
from models.evaluation import predict_probability, score_ranking
from models.training import (
    SKOPS_TRUSTED_TYPES,
    family_params,
    fit_model,
    predict_out_of_fold,
    search_hyperparameters,
    split_data,
)
from monitoring.profile import build_monitor_profile
from pipelines.edges.runtime import run_stage, timed
from pipelines.edges.tracking import flatten, start_tracking

logger = logging.getLogger(__name__)

# The reference data's own columns, beside the contract's ids and features.


def main() -> None:
    params = load_params()
    config, seed = params.train, params.data.seed
    # Reach the tracking server before any work: when it is down the stage fails (and is
    # retried) in seconds, instead of after each attempt's cross-validation and fit.
    tracking = start_tracking(params.tracking.experiment)
    contract = load_contract(params.data.contract)
    frame = pd.read_parquet(VALIDATED_DATA)
    train, holdout = split_data(frame, contract, config.holdout_size, seed)
    logger.info("split %d rows into %d train and %d holdout", len(frame), len(train), len(holdout))
    write_parquet(train, TRAIN_SPLIT)
    write_parquet(holdout, HOLDOUT_SPLIT)

    overrides: dict[str, Any] = {}
    search = None
    if config.search.enabled:
        with timed(
            f"randomized search, {config.search.n_iter} settings x {config.search.cv_folds} folds"
        ):
            search = search_hyperparameters(train, contract, config, seed)
        overrides = search.best_params
    with timed(f"{config.cv_folds}-fold out-of-fold predictions"):
        oof = predict_out_of_fold(train, contract, config, seed, overrides)
    with timed(f"fit {config.model}"):
        model = fit_model(train, contract, config, seed, overrides)

    y_train = train[contract.label].to_numpy()
    metrics = {
        "train": score_ranking(y_train, predict_probability(model, train, contract)),
        "cv": score_ranking(y_train, oof),
    }
    if search is not None:
        metrics["search"] = {
            "best_cv_average_precision": round(search.best_score, 6),
            "settings_tried": search.tried,
        }
    logger.info(
        "ROC AUC train %.4f, cross-validated %.4f; average precision train %.4f, CV %.4f",
        metrics["train"]["roc_auc"],
        metrics["cv"]["roc_auc"],
        metrics["train"]["average_precision"],
        metrics["cv"]["average_precision"],
    )
    hyperparameters = {**family_params(config), **overrides}
    reference = reference_data(train, oof, contract)
    write_parquet(reference, VALIDATION_PREDICTIONS)
    with timed("monitor profile: drift calibration, probability calibration, importance"):
        profile = build_monitor_profile(model, reference, holdout, contract, params)
    write_text(record_json(profile), MONITOR_PROFILE)
    _log_profile(profile)

    data_md5 = file_md5(VALIDATED_DATA)
    content = model_content_hash(model)
    with tracking.stage_run(
        "train", data_md5=data_md5, model_family=config.model, model_content_sha256=content
    ) as run:
        mlflow = tracking.mlflow
        mlflow.log_params(flatten("train", config.model_dump(mode="json", exclude={"search"})))
        mlflow.log_params(
            {
                "data.seed": seed,
                "data.rows": len(frame),
                "data.md5": data_md5,
                "search.enabled": config.search.enabled,
            }
        )
        mlflow.log_params({f"effective.{k}": v for k, v in hyperparameters.items()})
        mlflow.log_metrics(
            {f"{part}_{k}": v for part, values in metrics.items() for k, v in values.items()}
        )
        # the dataset's schema has integer ids and labels on purpose: MLflow's hint is noise
        warnings.filterwarnings("ignore", message="Hint: Inferred schema contains integer")
        mlflow.log_input(
            mlflow.data.from_pandas(
                train, name="train-split", targets=contract.label, digest=data_md5[:8]
            ),
            context="training",
        )
        model_info = _log_model(mlflow, model, train[contract.features], config.model)
        mlflow.log_artifact(str(MONITOR_PROFILE))
        mlflow.log_metrics(_profile_metrics(profile))
        run_id = run.info.run_id

    meta = {
        "family": config.model,
        "hyperparameters": hyperparameters,
        "features": contract.features,
        "label": contract.label,
        "contract": contract.name,
        "sklearn_version": sklearn.__version__,
        "mlflow_run_id": run_id,
        "mlflow_model_uri": model_info.model_uri,
        "data_md5": data_md5,
        "train_rows": len(train),
    }
    save_model(model, MODEL_DIR, meta, SKOPS_TRUSTED_TYPES[config.model])
    write_json(metrics, TRAIN_METRICS)
    logger.info("saved model %s (content %s) from MLflow run %s", MODEL_DIR, content[:12], run_id)


def reference_data(train: pd.DataFrame, oof: np.ndarray, contract: DataContract) -> pd.DataFrame:
    """The model's reference data: the training split's ids and features (contract names),
    its label as `label` and its out-of-fold probability as `probability`."""
    columns = [*contract.ids, *contract.features]
    clash = sorted({REFERENCE_LABEL, REFERENCE_PROBABILITY} & set(columns))
    if clash:
        raise ValueError(
            f"the contract names an id or feature {clash}, which the reference data uses "
            "for the label and the probability; rename it in the contract"
        )
    if len(oof) != len(train):
        raise ValueError(f"{len(oof)} out-of-fold probabilities for {len(train)} training rows")
    reference = train[columns].reset_index(drop=True)
    reference[REFERENCE_LABEL] = train[contract.label].to_numpy()
    reference[REFERENCE_PROBABILITY] = np.asarray(oof, dtype=float)
    return reference


def _log_profile(profile: MonitorProfile) -> None:
    drift = profile.drift
    if drift.calibrated:
        logger.info(
            "drift thresholds at a %.1f%% false-alarm rate per window (%s), windows of %s rows:",
            100 * drift.false_alarm_rate,
            drift.tail_model,
            ", ".join(str(rows) for rows in drift.block_rows),
        )
        for name, column in drift.columns.items():
            logger.info(
                "  %-28s %s %s", name, column.method,
                " / ".join(f"{s.threshold:.3g}" for s in column.sizes),
            )  # fmt: skip
    else:
        logger.warning("drift thresholds not calibrated: %s", drift.reason)
    quality = profile.quality
    if quality is not None and quality.calibrated:
        logger.info(
            "own quality bounds at a %.0f%% false-alarm rate per window: %s",
            100 * quality.false_alarm_rate,
            "; ".join(
                f"{name} " + " / ".join(f"{s.bound:.3f} ({s.block_rows} rows)" for s in sizes)
                for name, sizes in quality.metrics.items()
            ),
        )
    elif quality is not None:
        logger.warning("no own quality bounds: %s", quality.reason)
    logger.info("probability calibration: %s", profile.probabilities.check.reason)
    logger.info(
        "permutation importance (%s): %s",
        profile.importance.scoring,
        ", ".join(f"{f.name} {f.share:.0%}" for f in profile.importance.features),
    )


def _profile_metrics(profile: MonitorProfile) -> dict[str, float]:
    """The profile's headline numbers as MLflow metrics; the whole record is an artifact."""
    metrics = {
        "calibration_error": profile.probabilities.check.error,
        "probabilities_calibrated": float(profile.probabilities.method != "none"),
    }
    for feature in profile.importance.features:
        metrics[f"importance_{_metric_key(feature.name)}"] = feature.share
    if profile.drift.calibrated:
        rows = max(profile.drift.block_rows)
        for name, column in profile.drift.columns.items():
            metrics[f"drift_threshold_{_metric_key(name)}"] = column.threshold_at(rows)
    if profile.quality is not None and profile.quality.calibrated:
        for name, sizes in profile.quality.metrics.items():
            metrics[f"quality_bound_{name}"] = sizes[0].bound  # at the smallest window
    return metrics


def _metric_key(name: str) -> str:
    """An MLflow metric key from a column name: 'Torque [Nm]' -> 'torque_nm'."""
    return "_".join("".join(c if c.isalnum() else " " for c in name.lower()).split())


def _log_model(mlflow: Any, model: Any, inputs: pd.DataFrame, family: str) -> Any:
    """Log the fitted pipeline with skops, its signature and an input example."""
    from mlflow.models import infer_signature

    # numbers as float64: an integer column in a signature rejects a later missing value
    example = inputs.head(5).astype({c: "float64" for c in inputs.select_dtypes("number").columns})
    return mlflow.sklearn.log_model(
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
