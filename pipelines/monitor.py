"""DVC stage `monitor`: the production window against the champion's reference, and a verdict.

    python -m pipelines.monitor

The current window is the newest `monitor.window.rows` logged rows; the reference is the
champion's own training split with its out-of-fold scores, kept with the model in the
serving store. Writes the drift report, the metrics and the retrain decision that
`lifecycle watch` reads, then logs an MLflow run and tags the champion's registry version
with it.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from core import paths
from core.columns import REFERENCE_PROBABILITY
from core.config import DEFAULT_PARAMS, Params, load_params
from core.io import atomic_path, read_table, write_json, write_parquet, write_text
from core.records import RecordError, record_json
from core.records.deploy import read_champion
from core.records.monitor import MonitorDecision, ServingChampion
from features.contract import DataContract, load_contract
from monitoring.verdict import (
    RetrainDecision,
    WindowEvidence,
    build_monitor_decision,
    build_monitor_metrics,
    decide_window,
    render_plain_page,
    run_metrics,
    summarise_window,
)
from monitoring.window import (
    LabelsError,
    combine_labels,
    label_window,
    labelled_table,
    scores_to_compare,
    select_window,
    served_by,
)
from pipelines.edges import registry
from pipelines.edges.runtime import run_stage, timed
from pipelines.edges.tracking import start_tracking
from serving.model_store import model_tag, reference_path
from serving.prediction_log import read_prediction_log

if TYPE_CHECKING:
    from monitoring.drift import DriftResult

logger = logging.getLogger(__name__)

LABEL_PATTERNS = ("batch-*.parquet", "batch-*.csv")
MONITOR_TAG = "last_monitor_run"  # set on the champion's registry version


class MonitorInputError(FileNotFoundError):
    """An input is absent or unusable; the message names the file and what writes it."""


def monitor() -> None:
    """Read the window, the labels and the reference; judge; write the outputs; track.

    Reads `params.yaml` (`monitor`, `data.contract`, `data.seed`, `deploy.registered_model`,
    `serving.store`, `serving.prediction_log.directory`, `tracking`), the champion pointer
    `reports/deploy/champion.json`, the prediction log and the labelled batches. Writes
    `reports/monitor/drift.html` (the Evidently report, or a short page saying why there is
    none), `reports/monitor/metrics.json` (DVC metric), `reports/monitor/decision.json`
    (retrain or not, and why) and `data/monitor/window_labelled.parquet` (the window's
    labelled rows as a contract table). Paths are relative to the working directory, the
    project root under `dvc repro`.
    """
    params = load_params(DEFAULT_PARAMS)
    config = params.monitor
    contract = load_contract(params.data.contract)
    champion = _read_champion(params.deploy.registered_model)
    with timed("reading the prediction log"):
        log = read_prediction_log(
            params.serving.prediction_log.directory,
            contract=contract,
            newest=config.window.rows,
        )
    window = select_window(log, config.window.rows)
    labels = combine_labels(_read_label_batches(config.labels.directory), contract)
    labelled = label_window(window, labels, contract)
    table, missing = labelled_table(labelled, contract)
    logger.info(
        "window: the newest %d logged rows (monitor.window.rows %d), %d labelled; champion: %s",
        len(window),
        config.window.rows,
        len(labelled),
        champion.tag if champion else "none",
    )

    drift = quality = None
    if champion is not None and len(window) >= config.window.min_rows:
        reference = _read_reference(champion, params.serving.store, contract)
        drift = _detect_drift(reference, window, champion, contract, params)
        from monitoring.quality import assess_quality  # scikit-learn: only when judging

        quality = assess_quality(
            served_by(labelled, champion.label), contract.label, config, params.data.seed
        )
    evidence = WindowEvidence(
        champion=champion.tag if champion else None,
        rows=len(window),
        labelled_rows=len(labelled),
        drift=drift,
        quality=quality,
    )
    decision = decide_window(evidence, config)
    champion_rows = len(served_by(window, champion.label)) if champion else 0
    summary = summarise_window(window, len(labelled), champion_rows, missing)
    record = build_monitor_decision(decision, champion, summary, drift, quality)

    if drift is not None:
        with timed("drift report"), atomic_path(paths.DRIFT_REPORT) as tmp:
            drift.snapshot.save_html(str(tmp))  # Evidently 0.7 writes nothing when given a Path
    else:
        write_text(render_plain_page(decision), paths.DRIFT_REPORT)
    write_json(build_monitor_metrics(decision, summary, drift, quality), paths.MONITOR_METRICS)
    write_text(record_json(record), paths.MONITOR_DECISION)
    write_parquet(table, paths.LABELLED_WINDOW)
    _log_decision(decision, drift, missing)
    _track(params, champion, record)
    logger.info(
        "wrote %s, %s, %s and %s",
        paths.DRIFT_REPORT,
        paths.MONITOR_METRICS,
        paths.MONITOR_DECISION,
        paths.LABELLED_WINDOW,
    )


# --- inputs -------------------------------------------------------------------------------


def _read_champion(registered_model: str) -> ServingChampion | None:
    """`reports/deploy/champion.json`: `{}` before the first promotion."""
    try:
        champion = read_champion(paths.CHAMPION)
    except RecordError as exc:
        raise MonitorInputError(str(exc)) from None
    if champion is None:
        return None
    return ServingChampion(
        tag=model_tag(registered_model, champion.version), version=champion.version
    )


def _read_label_batches(directory: Path) -> list[tuple[str, pd.DataFrame]]:
    """Every labels batch in `directory` as (file name, frame), unreadable files refused."""
    directory = Path(directory)
    if not directory.is_dir():
        logger.info("no labels folder %s (monitor.labels.directory): no labels yet", directory)
        return []
    files = sorted(
        (path for pattern in LABEL_PATTERNS for path in directory.glob(pattern)),
        key=lambda path: path.name,
    )
    batches = []
    for path in files:
        try:
            batches.append((str(path), read_table(path)))
        except (OSError, ValueError) as exc:  # pyarrow's and pandas' parse errors included
            raise LabelsError(f"{path}: unreadable labels file ({exc})") from None
    logger.info("labels: %d batch file(s) in %s", len(batches), directory)
    return batches


def _read_reference(champion: ServingChampion, store: Path, contract: DataContract) -> pd.DataFrame:
    path = reference_path(champion.tag, store)
    reference = read_table(path)
    needed = [*contract.features, REFERENCE_PROBABILITY]
    missing = [name for name in needed if name not in reference.columns]
    if missing:
        raise MonitorInputError(
            f"{path}: the reference data of {champion.tag} lacks column(s) {missing}; it was "
            "saved before models kept their training features: run dvc repro --force train "
            "to train and deploy again"
        )
    return reference


# --- the work -----------------------------------------------------------------------------


def _detect_drift(
    reference: pd.DataFrame,
    window: pd.DataFrame,
    champion: ServingChampion,
    contract: DataContract,
    params: Params,
) -> DriftResult:
    from monitoring.drift import detect_drift, sample_window  # Evidently: only when judging

    config, seed = params.monitor, params.data.seed
    reference_sample = sample_window(reference, config.sample_rows, seed)
    current = sample_window(window, config.sample_rows, seed)
    logger.info(
        "comparing %d current rows (of %d) with %d reference rows (of %d) on %d features",
        len(current),
        len(window),
        len(reference_sample),
        len(reference),
        len(contract.features),
    )
    with timed("drift detection"):
        return detect_drift(
            reference_sample,
            current,
            contract,
            config,
            reference_scores=reference_sample[REFERENCE_PROBABILITY],
            current_scores=scores_to_compare(current, champion.label),
        )


# --- logging and tracking -----------------------------------------------------------------


def _log_decision(decision: RetrainDecision, drift: DriftResult | None, missing: list[str]) -> None:
    if drift is not None:
        for column in (*drift.columns, *([drift.prediction] if drift.prediction else [])):
            logger.info(
                "  %-28s %s = %.4g (threshold %.3g)%s",
                getattr(column, "name", "failure probability"),
                column.method,
                column.score,
                column.threshold,
                "  DRIFT" if column.drifted else "",
            )
    if missing:
        logger.warning(
            "the labels lack required contract column(s) %s: the labelled window cannot become "
            "training data until they arrive",
            missing,
        )
    logger.info("decision: %s", "retrain" if decision.retrain else "no retrain")
    for reason in decision.reasons:
        logger.info("  %s", reason)


def _track(params: Params, champion: ServingChampion | None, record: MonitorDecision) -> None:
    """One MLflow run with the metrics, decision.json and drift.html; tag the champion version."""
    name = params.deploy.registered_model
    tracking = start_tracking(params.tracking.experiment)
    tags = {
        "registered_model": name,
        "champion_version": str(champion.version) if champion else "none",
        "retrain": str(record.retrain).lower(),
    }
    with tracking.stage_run("monitor", **tags) as run:
        tracking.mlflow.log_metrics(run_metrics(record))
        tracking.mlflow.log_artifact(str(paths.MONITOR_DECISION))
        tracking.mlflow.log_artifact(str(paths.DRIFT_REPORT))
        run_id = run.info.run_id
    if champion is not None:
        _tag_version(name, champion.version, run_id)


def _tag_version(name: str, version: int, run_id: str) -> None:
    if not registry.tag_version(name, version, MONITOR_TAG, run_id):
        logger.warning(
            "%s version %d is not in the model registry; tag %s not set", name, version, MONITOR_TAG
        )
        return
    logger.info("tagged %s version %d with %s=%s", name, version, MONITOR_TAG, run_id)


def main() -> None:
    run_stage("monitor", monitor)


if __name__ == "__main__":
    main()
