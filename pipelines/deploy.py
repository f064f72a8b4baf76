"""Stage `deploy`: the champion/challenger gate, then the model registry.

The challenger (the model just trained) and the current champion (alias `champion` of
`deploy.registered_model`, by default the contract's name, in the MLflow Model Registry) are
scored on the same holdout, less
the rows the champion trained on. The challenger is promoted only if it clears every
threshold in `deploy.thresholds`, is not worse than the champion by more than
`deploy.tolerance` (paired bootstrap on `deploy.primary_metric`) and, once feedback batches
joined the data, beats it on the newest batch's holdout rows (the recent window). A promoted
model becomes a new registry version with alias `champion`; anything else leaves the
champion exactly as it was.
"""

from __future__ import annotations

import importlib.metadata
import logging
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from core.clock import now_text
from core.config import DeployConfig, Params, load_params, registered_model_name
from core.io import read_json, write_json, write_text
from core.model_files import META_FILE, load_model
from core.paths import (
    ALIAS_HISTORY,
    BENTOFILE,
    CHAMPION,
    DEPLOY_DECISION,
    EVALUATION,
    HOLDOUT_SPLIT,
    MODEL_CARD,
    MODEL_CARD_HTML,
    MODEL_DIR,
    MONITOR_PROFILE,
    ROLLOUT_HISTORY,
)
from core.records import read_record, record_json
from core.records.deploy import Challenger, ChampionRecord, DeployDecision, InfraCheck, RecentWindow
from core.records.evaluation import EvaluationReport, read_evaluation
from core.records.profile import WRITER as PROFILE_WRITER
from core.records.profile import MonitorProfile
from features.contract import DataContract, load_contract
from models.evaluation import predict_probability
from models.model_card import (
    CardInputs,
    ModelCard,
    ModelCardError,
    TrainingFacts,
    build_model_card,
    card_from_markdown,
    measure_holdout_calibration,
    render_card_html,
    unpromoted_card,
)
from models.promotion import (
    ChampionEvidence,
    compare_with_champion,
    decide_deployment,
    judge_recent_window,
    promotion_evidence,
    record_infra_check,
    rows_in_reference,
    rows_to_compare,
    rows_unseen_by_champion,
)
from pipelines.edges import model_card, registry
from pipelines.edges.feedback import list_batches, read_ids, row_id_column
from pipelines.edges.rollout_release import release
from pipelines.edges.runtime import run_stage
from pipelines.edges.shared_serving import repair_shared_pointer, shared_store
from pipelines.edges.tracking import start_tracking
from serving.model_store import ServedModel, write_champion_pointer

logger = logging.getLogger(__name__)


class BentoBuildError(RuntimeError):
    """A Bento that cannot be built here; the message says what is missing."""


def main() -> None:
    params = load_params()
    contract = load_contract(params.data.contract)
    config = params.deploy
    name = registered_model_name(params.deploy.registered_model, contract.name)
    meta = read_json(MODEL_DIR / META_FILE)
    store = params.serving.store
    shared = shared_store(params.serving.shared_store_env)  # None: no shared store
    evaluation = read_evaluation(EVALUATION)
    challenger = Challenger(
        family=meta["family"],
        content_sha256=meta["content_sha256"],
        mlflow_run_id=meta["mlflow_run_id"],
        holdout=evaluation.holdout,
    )
    threshold = float(challenger.holdout["threshold"])
    before = registry.champion(name)
    holdout = pd.read_parquet(HOLDOUT_SPLIT)
    challenger_proba = predict_probability(load_model(MODEL_DIR).pipeline, holdout, contract)
    card: ModelCard | None = None
    evidence = None
    if before is not None and before.sha256 != challenger.content_sha256:
        evidence = _champion_evidence(
            params, before, holdout, contract, challenger_proba, threshold
        )
    decision = decide_deployment(name, challenger, _describe(before), evidence, config)

    if decision.promote:
        version, created = registry.register(
            name,
            meta["mlflow_model_uri"],
            meta["mlflow_run_id"],
            challenger.content_sha256,
            tags={
                "operating_threshold": threshold,
                "family": meta["family"],
                "data_md5": meta["data_md5"],
            },
        )
        served, infra = _check_serving(
            params, name, int(version.version), meta, threshold, holdout, contract, challenger_proba
        )
        bento = _build_bento(served.tag, store) if infra.passed else None
        decision = record_infra_check(decision, int(version.version), created, infra, bento)
        if decision.promote:
            card = _publish_card(
                params,
                contract,
                meta,
                evaluation,
                decision,
                int(version.version),
                holdout,
                challenger_proba,
            )
            rollout = release(
                name,
                store,
                shared,
                config.rollout,
                int(version.version),
                served,
                promotion_evidence(decision),
                now_text(),
                ALIAS_HISTORY,
                ROLLOUT_HISTORY,
            )
            decision = decision.model_copy(update={"rollout": rollout})
            if rollout is not None and rollout.kind != "watch":
                card = None  # the champion's card stays the stage's card until it is replaced
    after = registry.champion(name)
    if decision.rollout is not None and decision.rollout.kind != "watch":
        logger.info("champion unchanged during rollout %s", decision.rollout.id)
    if not decision.promote:
        logger.warning(
            "not promoted; the champion is unchanged (%s)",
            f"v{before.version}" if before else "there is none",
        )
        _repair_pointer(after, store, meta, threshold)
        if shared is not None:
            repair_shared_pointer(after, shared, store)
    for reason in decision.reasons:
        logger.info("gate: %s", reason)
    decision = decision.model_copy(update={"champion_after": _describe(after)})

    _track(params, decision)
    write_text(record_json(decision), DEPLOY_DECISION)
    champion = decision.champion_after
    write_json(champion.model_dump(mode="json") if champion else {}, CHAMPION)
    _write_card(card, decision)


def _publish_card(
    params: Params,
    contract: DataContract,
    meta: dict[str, Any],
    evaluation: EvaluationReport,
    decision: DeployDecision,
    version: int,
    holdout: pd.DataFrame,
    proba: np.ndarray,
) -> ModelCard:
    """Build the promoted version's card; log it with its run and set it as its description."""
    profile = read_record(MONITOR_PROFILE, MonitorProfile, writer=PROFILE_WRITER)
    card = build_model_card(
        CardInputs(
            contract=contract,
            training=TrainingFacts.from_meta(meta),
            train=params.train,
            seed=params.data.seed,
            evaluation=evaluation,
            holdout_calibration=measure_holdout_calibration(
                holdout[contract.label].to_numpy(),
                proba,
                profile.probabilities,
                profile.probabilities.check.bins,
            ),
            decision=decision,
            profile=profile,
        )
    )
    model_card.publish_card(
        decision.registered_model,
        version,
        meta["mlflow_run_id"],
        card.markdown,
        render_card_html(card),
    )
    return card


def _write_card(card: ModelCard | None, decision: DeployDecision) -> None:
    """The champion's card into the stage's outputs: the one just promoted, else the one the
    registry holds for the champion (or a page saying why there is none)."""
    if card is None:
        problem = None
        if decision.champion_after is not None:
            try:
                card = card_from_markdown(model_card.champion_card(decision.registered_model))
            except (registry.RegistryError, ModelCardError) as exc:
                problem = str(exc)
                logger.warning("the champion's model card cannot be read: %s", problem)
        if card is None:
            card = unpromoted_card(decision, problem)
    write_text(card.markdown, MODEL_CARD)
    write_text(render_card_html(card), MODEL_CARD_HTML)


def _champion_evidence(
    params: Params,
    champion: registry.ChampionInfo,
    holdout: pd.DataFrame,
    contract: DataContract,
    challenger_proba: np.ndarray,
    challenger_threshold: float,
) -> ChampionEvidence:
    """The champion scored on the holdout, less its own training rows, and the recent window."""
    champion_proba = predict_probability(
        registry.load_champion_model(champion.name), holdout, contract
    )
    unseen = _unseen_by_champion(champion, params.serving.store, contract, holdout)
    compared = rows_to_compare(unseen, len(holdout))
    recent = _recent_window(
        params.ingest.feedback.directory,
        contract,
        holdout[compared],
        challenger_proba[compared],
        champion_proba[compared],
        params.deploy,
    )
    return compare_with_champion(
        holdout[contract.label].to_numpy(),
        challenger_proba,
        champion_proba,
        _champion_threshold(champion, challenger_threshold),
        unseen,
        recent,
        params.deploy,
        params.data.seed,
    )


def _unseen_by_champion(
    champion: registry.ChampionInfo, store: Path, contract: DataContract, holdout: pd.DataFrame
) -> np.ndarray | None:
    """The holdout rows the champion did not train on: the ones to compare the models on.

    A champion trained on other data (before feedback joined it, say) saw part of this
    holdout, and would be flattered there. Its training rows are in the reference data the
    serving store keeps with it. None (compare on every row) when the reference cannot be
    read, or when leaving its rows out leaves one class only.
    """
    from serving.model_store import ModelStoreError, model_tag, reference_path

    tag, key = model_tag(champion.name, champion.version), [*contract.ids, *contract.features]
    try:
        seen = pd.read_parquet(reference_path(tag, store), columns=key)
    except (ModelStoreError, KeyError, ValueError, OSError) as exc:
        logger.warning(
            "cannot tell which holdout rows %s trained on (%s); comparing on all of them", tag, exc
        )
        return None
    unseen = rows_unseen_by_champion(holdout, seen, contract)
    if unseen is None:
        logger.warning(
            "%s trained on all but %d holdout rows, too few to compare on; comparing on all",
            tag,
            int((~rows_in_reference(holdout, seen, contract)).sum()),
        )
        return None
    logger.info(
        "comparing on %d holdout rows; %d more were training rows of %s",
        unseen.sum(),
        len(unseen) - unseen.sum(),
        tag,
    )
    return unseen


def _recent_window(
    feedback: Path,
    contract: DataContract,
    holdout: pd.DataFrame,
    challenger_proba: np.ndarray,
    champion_proba: np.ndarray,
    config: DeployConfig,
) -> RecentWindow | None:
    """Both models on the holdout rows of the newest feedback batch; None without feedback.

    Those are production rows neither model trained on; the challenger must beat the
    champion there by more than `deploy.recent_window.margin`.
    """
    batches = list_batches(feedback)
    if not batches:
        logger.info("no feedback batches in %s: the recent-window check does not apply", feedback)
        return None
    newest, id_column = batches[-1], row_id_column(contract)
    recent = judge_recent_window(
        newest.name,
        read_ids(newest, id_column),
        holdout,
        challenger_proba,
        champion_proba,
        id_column,
        contract,
        config,
    )
    logger.info(
        "recent window: %d holdout rows (%d positives) from %s",
        recent.rows,
        recent.positives,
        newest,
    )
    return recent


def _track(params: Params, decision: DeployDecision) -> None:
    """One MLflow run with decision.json, the comparison's deltas and whether it promoted."""
    tracking = start_tracking(params.tracking.experiment)
    with tracking.stage_run("deploy", promoted=str(decision.promote).lower()):
        tracking.mlflow.log_dict(decision.model_dump(mode="json"), "decision.json")
        comparison, recent = decision.comparison, decision.recent_window
        if comparison is not None:
            tracking.mlflow.log_metrics(
                {
                    f"delta_{comparison.metric}": comparison.delta,
                    "delta_ci_low": comparison.ci_low,
                    "delta_ci_high": comparison.ci_high,
                }
            )
            if recent is not None and recent.delta is not None:
                tracking.mlflow.log_metric(f"recent_window_delta_{recent.metric}", recent.delta)
        tracking.mlflow.log_metric("promoted", int(decision.promote))


def _check_serving(
    params: Params,
    name: str,
    version: int,
    meta: dict[str, Any],
    threshold: float,
    holdout: pd.DataFrame,
    contract: DataContract,
    challenger_proba: np.ndarray,
) -> tuple[ServedModel, InfraCheck]:
    """Export the candidate to the serving store, load it as the service does, replay rows."""
    from serving.infra_check import replay_rows, sample_replay_rows
    from serving.model_store import export_model, load_served_model, use_store

    store = params.serving.store
    use_store(store)
    tag = export_model(
        MODEL_DIR, name, version, meta["mlflow_run_id"], meta["content_sha256"], threshold, store
    )
    served = load_served_model(tag, store)
    check = params.deploy.infra_validation
    sample, expected = sample_replay_rows(
        holdout, challenger_proba, check.replay_rows, params.data.seed
    )
    report = replay_rows(
        served, sample, contract, check.p99_budget_ms, expected, params.serving.numeric_threads
    )
    logger.info("infra check of %s: %s", tag, report.message)
    return served, report


def _build_bento(tag: str, store: Path) -> str:
    """`bentoml build` of serving/bentofile.yaml, with the candidate model packed in.

    The Bento takes the model's name and version: model `breast-cancer:v3` is packed in
    Bento `breast-cancer:v3` (BentoML's default would be the service class's name).
    """
    import bentoml
    import yaml

    from serving.model_store import use_store

    logger.debug("bentoml build uses uv from %s", uv_for_bentoml())
    use_store(store)
    options = yaml.safe_load(BENTOFILE.read_text(encoding="utf-8"))
    name, version = tag.split(":", 1)
    for existing in bentoml.bentos.list(tag):  # one Bento per model version: reuse it
        if tag in {str(m.tag) for m in existing.info.models}:
            logger.info("Bento %s with model %s exists; reusing it", existing.tag, tag)
            return str(existing.tag)
    bento = bentoml.bentos.build(**options, name=name, models=[tag], version=version, build_ctx=".")
    logger.info("built Bento %s with model %s", bento.tag, tag)
    return str(bento.tag)


def uv_for_bentoml() -> str:
    """The uv `bentoml build` will run; an error where it would download one instead.

    BentoML 1.4 (`bentoml._internal.configuration.get_uv_command`, called on every build)
    takes `uv` from PATH, else the installed `uv` package (`python -m uv`), which needs no
    PATH (DVC may run the stage without the venv's bin on it); only when both are missing
    does it run `pip install uv`, a download in the middle of the lifecycle. The pinned
    stack has uv (requirements.lock), so that never happens; this makes sure of it.
    """
    found = shutil.which("uv")
    if found is not None:
        return found
    try:
        importlib.metadata.version("uv")
    except importlib.metadata.PackageNotFoundError:
        raise BentoBuildError(
            "bentoml build needs uv, and would pip-install it from the network: install the "
            "pinned stack (`make install`; uv is in requirements.lock)"
        ) from None
    return f"{sys.executable} -m uv"


def _repair_pointer(
    champion: registry.ChampionInfo | None, store: Path, meta: dict[str, Any], threshold: float
) -> None:
    """Make the serving store's pointer name the registry's champion, if it does not.

    A store that lost the champion's model (deleted, new machine) gets it back from
    `artifacts/model` when that is the champion.
    """
    from serving.model_store import (
        ModelStoreError,
        export_model,
        load_served_model,
        model_tag,
        read_champion_pointer,
    )

    if champion is None:
        return
    tag = model_tag(champion.name, champion.version)
    pointer = read_champion_pointer(store)
    if pointer is not None and pointer.get("tag") == tag:
        return
    try:
        served = load_served_model(tag, store)
    except ModelStoreError:
        if champion.sha256 != meta["content_sha256"]:
            logger.warning("the serving store lacks the champion %s; serving cannot load it", tag)
            return
        export_model(
            MODEL_DIR,
            champion.name,
            champion.version,
            meta["mlflow_run_id"],
            meta["content_sha256"],
            threshold,
            store,
        )
        served = load_served_model(tag, store)
    write_champion_pointer(store, served)
    logger.warning("the serving store's champion pointer now names %s, as the registry does", tag)


def _champion_threshold(champion: registry.ChampionInfo, fallback: float) -> float:
    """The champion's own operating threshold, recorded when it was registered."""
    try:
        return float(champion.tags["operating_threshold"])
    except (KeyError, TypeError, ValueError):
        return fallback


def _describe(info: registry.ChampionInfo | None) -> ChampionRecord | None:
    if info is None:
        return None
    return ChampionRecord(
        version=info.version, content_sha256=info.sha256, mlflow_run_id=info.run_id
    )


if __name__ == "__main__":
    run_stage("deploy", main)
