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
from core.columns import REFERENCE_PROBABILITY, TIME
from core.config import DEFAULT_PARAMS, Params, load_params, registered_model_name
from core.io import atomic_path, read_table, write_json, write_parquet, write_text
from core.records import RecordError, read_record, record_json
from core.records.deploy import read_champion
from core.records.monitor import MonitorDecision, ServingChampion
from core.records.profile import WRITER as PROFILE_WRITER
from core.records.profile import MonitorProfile
from features.contract import DataContract, load_contract
from monitoring.assessment import ChampionBasis
from monitoring.verdict import (
    RetrainDecision,
    WindowEvidence,
    add_verdict_to_report,
    build_monitor_decision,
    build_monitor_metrics,
    decide_window,
    render_plain_page,
    run_metrics,
    summarise_window,
)
from monitoring.window import (
    combine_labels,
    label_window,
    labelled_table,
    labels_unjoinable,
    no_labelled_rows,
    select_window,
    served_by,
)
from pipelines.edges import registry
from pipelines.edges.labels import read_label_batches
from pipelines.edges.runtime import run_stage, timed
from pipelines.edges.tracking import start_tracking
from serving.model_store import ModelStoreError, model_tag, monitor_profile_path, reference_path
from serving.prediction_log import read_prediction_log

if TYPE_CHECKING:
    from monitoring.drift import DriftResult

logger = logging.getLogger(__name__)

ESTIMATED = ("roc_auc", "average_precision", "precision", "recall")  # plotted over time
MONITOR_TAG = "last_monitor_run"  # set on the champion's registry version


class MonitorInputError(FileNotFoundError):
    """An input is absent or unusable; the message names the file and what writes it."""


def monitor() -> None:
    """Read the window, the labels and the reference; judge; write the outputs; track.

    Reads `params.yaml` (`monitor`, `data.contract`, `data.seed`, `deploy.registered_model`
    (unset: the contract's name), `serving.store`, `serving.prediction_log.directory`,
    `tracking`), the champion pointer `reports/deploy/champion.json`, the prediction log and
    the labelled batches. Writes `reports/monitor/drift.html` (the Evidently report, or a
    short page saying why there is none), `reports/monitor/metrics.json` (DVC metric),
    `reports/monitor/decision.json` (retrain or not, and why) and
    `data/monitor/window_labelled.parquet` (the window's labelled rows as a contract table).
    Paths are relative to the working directory, the project root under `dvc repro`.
    """
    params = load_params(DEFAULT_PARAMS)
    config = params.monitor
    contract = load_contract(params.data.contract)
    model = registered_model_name(params.deploy.registered_model, contract.name)
    champion = _read_champion(model)
    with timed("reading the prediction log"):
        log = read_prediction_log(
            params.serving.prediction_log.directory,
            contract=contract,
            newest=config.window.rows,
        )
    window = select_window(log, config.window.rows)
    unjoinable = labels_unjoinable(contract)
    if unjoinable is None:
        labels = combine_labels(read_label_batches(config.labels.directory), contract)
        labelled = label_window(window, labels, contract)
    else:  # no row id: drift and the estimated quality judge the window without labels
        labelled = no_labelled_rows(window, contract)
    table, missing = labelled_table(labelled, contract)
    logger.info(
        "window: the newest %d logged rows (monitor.window.rows %d), %d labelled; champion: %s",
        len(window),
        config.window.rows,
        len(labelled),
        champion.tag if champion else "none",
    )

    evidence = WindowEvidence(
        champion=champion.tag if champion else None,
        rows=len(window),
        labelled_rows=len(labelled),
        labels_unjoinable=unjoinable,
    )
    if champion is not None and len(window) >= config.window.min_rows:
        basis = _read_basis(champion, params.serving.store, contract)
        from monitoring.assessment import assess_window  # Evidently: only when judging

        with timed("judging the window"):
            evidence = assess_window(window, labelled, basis, contract, config, params.data.seed)
    decision = decide_window(evidence, config)
    champion_rows = len(served_by(window, champion.label)) if champion else 0
    summary = summarise_window(window, len(labelled), champion_rows, missing)
    record = build_monitor_decision(decision, champion, summary, evidence, config)
    drift = evidence.drift

    if drift is not None:
        with timed("drift report"), atomic_path(paths.DRIFT_REPORT) as tmp:
            drift.snapshot.save_html(str(tmp))  # Evidently 0.7 writes nothing when given a Path
            page = add_verdict_to_report(tmp.read_text(encoding="utf-8"), decision, drift)
            tmp.write_text(page, encoding="utf-8")
    else:
        write_text(render_plain_page(decision), paths.DRIFT_REPORT)
    write_json(build_monitor_metrics(record, drift), paths.MONITOR_METRICS)
    write_text(record_json(record), paths.MONITOR_DECISION)
    write_parquet(table, paths.LABELLED_WINDOW)
    _log_decision(decision, drift, missing, unjoinable)
    if drift is not None and champion is not None and config.workspace.enabled:
        _record_in_workspace(params, model, champion, record, drift, window)
    _track(params, model, champion, record)
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


def _read_basis(champion: ServingChampion, store: Path, contract: DataContract) -> ChampionBasis:
    """The champion's reference data and monitor profile, from its copy in the serving store."""
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
    try:
        profile_path = monitor_profile_path(champion.tag, store)
    except ModelStoreError as exc:  # a champion trained before models kept one
        logger.warning(
            "%s; until then drift uses Evidently's default thresholds, and neither the "
            "estimated quality nor the data quality is judged",
            exc,
        )
        return ChampionBasis(champion.tag, champion.label, reference, None)
    try:
        profile = read_record(profile_path, MonitorProfile, writer=PROFILE_WRITER)
    except RecordError as exc:
        raise MonitorInputError(str(exc)) from None
    logger.info(
        "champion %s: reference of %d training rows; drift thresholds %s",
        champion.tag,
        len(reference),
        "calibrated on its training period" if profile.drift.calibrated else profile.drift.reason,
    )
    return ChampionBasis(champion.tag, champion.label, reference, profile)


# --- logging and tracking -----------------------------------------------------------------


def _record_in_workspace(
    params: Params,
    model: str,
    champion: ServingChampion,
    record: MonitorDecision,
    drift: DriftResult,
    window: pd.DataFrame,
) -> None:
    """The window into the Evidently workspace (`evidently ui`); a failure there is logged,
    not raised: the verdict matters more than the dashboard."""
    from monitoring.assessment import quality_floors
    from monitoring.dashboard import build_dashboard_panels, build_window_snapshot, window_values
    from pipelines.edges.workspace import WorkspaceError, record_window

    config = params.monitor
    # the floors that judged the window (the champion's own bounds may have lowered them)
    floors = record.quality.floors if record.quality else quality_floors(config, None)[0]
    estimated = (
        {name: getattr(record.estimate, name).value for name in ESTIMATED}
        if record.estimate is not None
        else None
    )
    snapshot = build_window_snapshot(
        drift.snapshot,
        window_values(estimated, record.quality, floors),
        window[TIME].max(),
        include_report=config.workspace.reports,
        name=f"{champion.tag} window",
        metadata={
            "champion": champion.tag,
            "action": record.action,
            "decided_by": record.decided_by or "-",
            "rows": str(record.window.rows),
            "labelled_rows": str(record.window.labelled_rows),
        },
    )
    try:
        with timed("Evidently workspace"):
            record_window(
                config.workspace.directory,
                model,
                snapshot,
                build_dashboard_panels(),
            )
    except WorkspaceError as exc:
        logger.warning("window not added to the Evidently workspace: %s", exc)


def _log_decision(
    decision: RetrainDecision,
    drift: DriftResult | None,
    missing: list[str],
    unjoinable: str | None,
) -> None:
    if drift is not None:
        for column in (*drift.columns, *([drift.prediction] if drift.prediction else [])):
            logger.info(
                "  %-28s %s = %.4g (threshold %.3g)%s",
                getattr(column, "name", "probability"),
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
    for reason in decision.reasons:  # the one line on labels that cannot be joined: a warning
        (logger.warning if reason == unjoinable else logger.info)("  %s", reason)


def _track(
    params: Params, name: str, champion: ServingChampion | None, record: MonitorDecision
) -> None:
    """One MLflow run with the metrics, decision.json and drift.html; tag the champion version."""
    tracking = start_tracking(params.tracking.experiment)
    tags = {
        "registered_model": name,
        "champion_version": str(champion.version) if champion else "none",
        "retrain": str(record.retrain).lower(),
        "action": record.action,
        "decided_by": record.decided_by or "none",
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
