"""Stage `deploy`: the champion/challenger gate, then the model registry.

The challenger (the model just trained) and the current champion (alias `champion` of
`deploy.registered_model` in the MLflow Model Registry) are scored on the same holdout.
The challenger is promoted only if it clears every absolute threshold in `deploy.thresholds`
and, when a champion exists, a paired bootstrap shows it is not worse on
`deploy.primary_metric` by more than `deploy.tolerance`. A promoted model becomes a new
registry version (one per content hash) with alias `champion`; the one it replaces keeps
alias `previous`. Anything else leaves the champion exactly as it was.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pandas as pd

from features.contract import load_contract
from models.evaluation import predict_failure_probability, score_predictions
from models.gate import decide_promotion, paired_bootstrap
from pipelines import registry
from pipelines.config import load_params
from pipelines.io import read_json, write_json
from pipelines.model_files import META_FILE, load_model
from pipelines.runtime import run_stage
from pipelines.tracking import start_tracking

logger = logging.getLogger(__name__)

MODEL_DIR = Path("artifacts/model")
HOLDOUT_SPLIT = Path("data/split/holdout.parquet")
EVALUATION = Path("reports/evaluate/metrics.json")
DECISION = Path("reports/deploy/decision.json")
CHAMPION = Path("reports/deploy/champion.json")  # which model serves: monitor depends on it
ALIAS_HISTORY = Path("reports/deploy/alias_history.jsonl")  # every alias move, appended


def main() -> None:
    params = load_params()
    config, name = params.deploy, params.deploy.registered_model
    contract = load_contract(params.data.contract)
    meta = read_json(MODEL_DIR / META_FILE)
    evaluation = read_json(EVALUATION)
    challenger_metrics = evaluation["holdout"]
    content = meta["content_sha256"]
    before = registry.champion(name)

    if before is not None and before.sha256 == content:
        decision: dict[str, Any] = {
            "promote": False,
            "reasons": [
                f"this model (sha256 {content[:12]}) is already champion v{before.version}"
            ],
            "checks": [],
        }
        comparison = champion_metrics = None
    else:
        holdout = pd.read_parquet(HOLDOUT_SPLIT)
        y_true = holdout[contract.label].to_numpy()
        challenger_proba = predict_failure_probability(
            load_model(MODEL_DIR).pipeline, holdout, contract
        )
        comparison = champion_metrics = None
        if before is not None:
            champion_model = registry.load_champion_model(name)
            champion_proba = predict_failure_probability(champion_model, holdout, contract)
            champion_metrics = score_predictions(
                y_true, champion_proba, _champion_threshold(before, challenger_metrics)
            )
            comparison = paired_bootstrap(
                y_true,
                challenger_proba,
                champion_proba,
                config.primary_metric,
                resamples=config.bootstrap.resamples,
                confidence=config.bootstrap.confidence,
                seed=params.data.seed,
            )
        decision = decide_promotion(
            challenger_metrics, champion_metrics, comparison, config
        ).to_dict()

    for reason in decision["reasons"]:
        logger.info("gate: %s", reason)
    record = {
        **decision,
        "registered_model": name,
        "challenger": {
            "content_sha256": content,
            "mlflow_run_id": meta["mlflow_run_id"],
            "family": meta["family"],
            "holdout": challenger_metrics,
        },
        "champion_before": _describe(before),
        "champion_holdout": champion_metrics,
        "comparison": comparison.to_dict() if comparison else None,
    }
    if decision["promote"]:
        version, created = registry.register(
            name,
            meta["mlflow_model_uri"],
            meta["mlflow_run_id"],
            content,
            tags={
                "operating_threshold": challenger_metrics["threshold"],
                "family": meta["family"],
                "data_md5": meta["data_md5"],
            },
        )
        move = registry.promote(name, version.version, _evidence(record), history=ALIAS_HISTORY)
        logger.info("%s", move.describe())
        record["registered_version"] = int(version.version)
        record["version_created"] = created
    else:
        logger.warning(
            "not promoted; the champion is unchanged (%s)",
            f"v{before.version}" if before else "there is none",
        )
    after = registry.champion(name)
    record["champion_after"] = _describe(after)

    tracking = start_tracking(params.tracking.experiment)
    with tracking.stage_run("deploy", promoted=str(decision["promote"]).lower()):
        tracking.mlflow.log_dict(record, "decision.json")
        if comparison is not None:
            tracking.mlflow.log_metrics(
                {
                    f"delta_{comparison.metric}": comparison.delta,
                    "delta_ci_low": comparison.ci_low,
                    "delta_ci_high": comparison.ci_high,
                }
            )
        tracking.mlflow.log_metric("promoted", int(decision["promote"]))
    write_json(record, DECISION)
    write_json(_describe(after) or {}, CHAMPION)


def _champion_threshold(champion: registry.ChampionInfo, challenger: dict[str, Any]) -> float:
    """The champion's own operating threshold, recorded when it was registered."""
    try:
        return float(champion.tags["operating_threshold"])
    except (KeyError, TypeError, ValueError):
        return float(challenger["threshold"])


def _describe(info: registry.ChampionInfo | None) -> dict[str, Any] | None:
    if info is None:
        return None
    return {"version": info.version, "content_sha256": info.sha256, "mlflow_run_id": info.run_id}


def _evidence(record: dict[str, Any]) -> dict[str, Any]:
    """What an alias move records: the reasons, the checks and the comparison."""
    return {key: record[key] for key in ("reasons", "checks", "comparison", "challenger")}


if __name__ == "__main__":
    run_stage("deploy", main)
