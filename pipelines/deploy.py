"""Stage `deploy`: promote the evaluated model to the champion store when it clears the bar.

The champion store keeps every promoted version under `versions/<sha256>/` and a pointer,
`current.json`, that is replaced atomically: a failure at any point leaves the previous
champion serving.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from pipelines.config import load_params
from pipelines.io import read_json, write_json
from pipelines.model_files import META_FILE, MODEL_FILE, load_model
from pipelines.runtime import run_stage

logger = logging.getLogger(__name__)

MODEL_DIR = Path("artifacts/model")
EVALUATION = Path("reports/evaluate/metrics.json")
CHAMPION_STORE = Path("artifacts/champion")
DECISION = Path("reports/deploy/decision.json")
CHAMPION = Path("reports/deploy/champion.json")  # which model serves: monitor depends on it


def current_champion(store: Path = CHAMPION_STORE) -> dict | None:
    """The pointer to the serving model, or None before the first promotion."""
    pointer = store / "current.json"
    return read_json(pointer) if pointer.exists() else None


def promote(model_dir: Path, store: Path, evidence: dict) -> Path:
    """Copy a model into the store under its hash, check it loads, then move the pointer."""
    loaded = load_model(model_dir)
    digest = loaded.meta["sha256"]
    version_dir = store / "versions" / digest
    if not (version_dir / MODEL_FILE).exists():
        staging = store / "versions" / f".{digest}.staging"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        for name in (MODEL_FILE, META_FILE):
            shutil.copy2(model_dir / name, staging / name)
        load_model(staging)  # the copy must load the way serving loads it
        staging.rename(version_dir)
    write_json({"sha256": digest, "path": str(version_dir), **evidence}, store / "current.json")
    return version_dir


def main() -> None:
    params = load_params()
    metrics = read_json(EVALUATION)
    meta = read_json(MODEL_DIR / META_FILE)
    champion = current_champion()
    auc = metrics["roc_auc"]
    evidence = {
        "holdout_roc_auc": auc,
        "min_roc_auc": params.deploy.min_roc_auc,
        "mlflow_run_id": meta["mlflow_run_id"],
    }
    if not auc >= params.deploy.min_roc_auc:
        reason = (
            f"holdout ROC AUC {auc:.4f} is below deploy.min_roc_auc {params.deploy.min_roc_auc}"
        )
        decision = {
            "promoted": False,
            "reason": reason,
            "model_sha256": meta["sha256"],
            **evidence,
            "champion_sha256": champion["sha256"] if champion else None,
        }
        logger.warning("not promoted: %s; the champion is unchanged", reason)
    else:
        promote(MODEL_DIR, CHAMPION_STORE, evidence)
        reason = f"holdout ROC AUC {auc:.4f} clears deploy.min_roc_auc {params.deploy.min_roc_auc}"
        decision = {
            "promoted": True,
            "reason": reason,
            "model_sha256": meta["sha256"],
            **evidence,
            "champion_sha256": meta["sha256"],
        }
        logger.info("promoted model %s to champion: %s", meta["sha256"][:12], reason)
    write_json(decision, DECISION)
    serving = current_champion()
    write_json({k: serving[k] for k in ("sha256", "mlflow_run_id")} if serving else {}, CHAMPION)


if __name__ == "__main__":
    run_stage("deploy", main)
