"""DVC stage `monitor`: drift of the current window against the training data, and a decision.

    python -m pipelines.monitor

For now the current window is the holdout split; a later version reads the production
prediction log instead. Reads `params.yaml` (`monitor`, and `data.contract`, `data.seed`),
`data/split/train.parquet` (reference) and `data/split/holdout.parquet` (current); writes
`reports/monitor/drift.html` (the Evidently report), `reports/monitor/metrics.json` (DVC metric)
and `reports/monitor/decision.json` (retrain or not, and why). Paths are relative to the
working directory, the project root under `dvc repro`.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import pandas as pd

from features.contract import load_contract
from monitoring.drift import decide_retrain, detect_drift, drift_summary, sample_window
from pipelines.config import DEFAULT_PARAMS, load_params
from pipelines.io import atomic_path, read_table, write_json
from pipelines.runtime import run_stage, timed

logger = logging.getLogger(__name__)

REFERENCE_PATH = Path("data/split/train.parquet")
CURRENT_PATH = Path("data/split/holdout.parquet")
REPORT_DIR = Path("reports/monitor")
HTML_PATH = REPORT_DIR / "drift.html"
METRICS_PATH = REPORT_DIR / "metrics.json"
DECISION_PATH = REPORT_DIR / "decision.json"


class MonitorInputError(FileNotFoundError):
    """An input window is absent; the message names the file and the stage that writes it."""


def monitor() -> None:
    """Read both windows, compare them, write the report, the metric and the decision."""
    params = load_params(DEFAULT_PARAMS)
    config = params.monitor
    contract = load_contract(params.data.contract)
    reference = _read_window(REFERENCE_PATH)
    current = _read_window(CURRENT_PATH)

    reference_sample = sample_window(reference, config.sample_rows, params.data.seed)
    current_sample = sample_window(current, config.sample_rows, params.data.seed)
    logger.info(
        "comparing %d current rows (of %d) with %d reference rows (of %d) on %d features",
        len(current_sample),
        len(current),
        len(reference_sample),
        len(reference),
        len(contract.features),
    )
    with timed("drift detection"):
        result = detect_drift(reference_sample, current_sample, contract, config)
    decision = decide_retrain(result, config)

    with timed("drift report"), atomic_path(HTML_PATH) as tmp:
        result.snapshot.save_html(str(tmp))  # Evidently 0.7 writes nothing when given a Path
    write_json(drift_summary(result), METRICS_PATH)
    write_json(dataclasses.asdict(decision), DECISION_PATH)

    logger.info(
        "drifted columns: %d of %d (share %.3f, dataset drift at %.3f): %s",
        result.drifted_count,
        len(result.columns),
        result.drifted_share,
        result.drift_share,
        ", ".join(result.drifted_columns) or "none",
    )
    for column in result.columns:
        logger.info(
            "  %-28s %-11s %s = %.4g (threshold %.3g)%s",
            column.name,
            column.kind,
            column.method,
            column.score,
            column.threshold,
            "  DRIFT" if column.drifted else "",
        )
    logger.info(
        "decision: %s; %s",
        "retrain" if decision.retrain else "keep the model",
        "; ".join(decision.reasons),
    )
    logger.info("wrote %s, %s and %s", HTML_PATH, METRICS_PATH, DECISION_PATH)


def _read_window(path: Path) -> pd.DataFrame:
    if not path.exists():
        raise MonitorInputError(f"{path}: not found; the train stage writes it (dvc repro train)")
    return read_table(path)


def main() -> None:
    run_stage("monitor", monitor)


if __name__ == "__main__":
    main()
