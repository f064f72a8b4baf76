"""The deploy stage's decision on the challenger, as the typed record it writes.

`compare_with_champion` gathers what the gate weighs against a champion (both models scored
on the holdout rows the champion did not train on, and the recent window); `decide_deployment`
turns that, or the absolute thresholds alone, into a `DeployDecision`; `record_infra_check`
adds the serving check of a candidate the gate let through. Pure: arrays and records in,
new records out; the registry, the serving store and the files stay in the stage.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from core.config import DeployConfig
from core.records.deploy import (
    Challenger,
    ChampionRecord,
    Comparison,
    ComparisonRows,
    DeployDecision,
    InfraCheck,
    Metrics,
    RecentWindow,
)
from features.contract import DataContract
from models.bootstrap import paired_bootstrap
from models.evaluation import score_predictions
from models.gate import compare_recent_window, decide_promotion

# What an alias move records as its evidence (the registry keeps it with the version).
_EVIDENCE = ("reasons", "checks", "comparison", "comparison_rows", "recent_window", "challenger")


@dataclass(frozen=True)
class ChampionEvidence:
    """What the gate weighs when there is a champion to beat."""

    holdout: Metrics  # the champion's holdout metrics at its own operating threshold
    comparison: Comparison  # on the rows the champion did not train on
    rows: ComparisonRows
    recent_window: RecentWindow | None  # None: no feedback, the check does not apply


def rows_in_reference(
    frame: pd.DataFrame, reference: pd.DataFrame, contract: DataContract
) -> np.ndarray:
    """For each row of `frame`: is it a row of `reference` (every id and feature equal)?"""
    key = [*contract.ids, *contract.features]
    return pd.MultiIndex.from_frame(frame[key]).isin(pd.MultiIndex.from_frame(reference[key]))


def rows_unseen_by_champion(
    holdout: pd.DataFrame, seen: pd.DataFrame, contract: DataContract
) -> np.ndarray | None:
    """The holdout rows that are not among the champion's training rows `seen`.

    Ids alone could collide across sources, so a row is seen when its ids and features are
    all equal to a training row's. None (compare on every row) when leaving the seen rows
    out leaves one class only.
    """
    unseen = ~rows_in_reference(holdout, seen, contract)
    labels = holdout[contract.label].to_numpy()[unseen]
    return unseen if 0 < labels.sum() < len(labels) else None


def rows_to_compare(unseen: np.ndarray | None, rows: int) -> np.ndarray:
    """The holdout rows the models are compared on: the `unseen` ones, or all `rows` of them
    when the champion's training rows could not be told apart (`unseen` None)."""
    return np.ones(rows, dtype=bool) if unseen is None else unseen


def judge_recent_window(
    batch: str,
    batch_ids: Collection[Any],
    holdout: pd.DataFrame,
    challenger_proba: np.ndarray,
    champion_proba: np.ndarray,
    id_column: str,
    contract: DataContract,
    config: DeployConfig,
) -> RecentWindow:
    """Both models on the holdout rows whose id is in the newest feedback batch `batch`."""
    rows = holdout[id_column].isin(batch_ids).to_numpy()
    return compare_recent_window(
        batch,
        holdout[contract.label].to_numpy()[rows],
        challenger_proba[rows],
        champion_proba[rows],
        config.primary_metric,
        config.recent_window,
    )


def compare_with_champion(
    y_true: np.ndarray,
    challenger_proba: np.ndarray,
    champion_proba: np.ndarray,
    champion_threshold: float,
    unseen: np.ndarray | None,
    recent_window: RecentWindow | None,
    config: DeployConfig,
    seed: int,
) -> ChampionEvidence:
    """Score the champion on the holdout and bootstrap the difference on the `unseen` rows.

    `unseen` is None when the champion's training rows could not be told apart: then every
    holdout row is compared, and the rows left out are unknown.
    """
    compared = rows_to_compare(unseen, len(y_true))
    left_out = None if unseen is None else int(len(unseen) - unseen.sum())
    comparison = paired_bootstrap(
        y_true[compared],
        challenger_proba[compared],
        champion_proba[compared],
        config.primary_metric,
        resamples=config.bootstrap.resamples,
        confidence=config.bootstrap.confidence,
        seed=seed,
    )
    return ChampionEvidence(
        holdout=score_predictions(y_true, champion_proba, champion_threshold),
        comparison=comparison,
        rows=ComparisonRows(rows=int(compared.sum()), champion_training_rows_left_out=left_out),
        recent_window=recent_window,
    )


def decide_deployment(
    registered_model: str,
    challenger: Challenger,
    champion: ChampionRecord | None,
    evidence: ChampionEvidence | None,
    config: DeployConfig,
) -> DeployDecision:
    """The gate's verdict on `challenger`, before anything moves in the registry.

    A challenger that already is the champion (same content hash) is not promoted again.
    Otherwise `evidence` must be given exactly when there is a champion.
    """
    base = {
        "registered_model": registered_model,
        "challenger": challenger,
        "champion_before": champion,
    }
    if champion is not None and champion.content_sha256 == challenger.content_sha256:
        reason = (
            f"this model (sha256 {challenger.content_sha256[:12]}) is already champion "
            f"v{champion.version}"
        )
        return DeployDecision(promote=False, reasons=[reason], **base)
    if (champion is None) != (evidence is None):
        raise ValueError("the evidence against a champion goes with the champion")
    verdict = decide_promotion(
        challenger.holdout,
        evidence.holdout if evidence else None,
        evidence.comparison if evidence else None,
        config,
        evidence.recent_window if evidence else None,
    )
    return DeployDecision(
        promote=verdict.promote,
        reasons=list(verdict.reasons),
        checks=verdict.checks,
        champion_holdout=evidence.holdout if evidence else None,
        comparison=evidence.comparison if evidence else None,
        comparison_rows=evidence.rows if evidence else None,
        recent_window=evidence.recent_window if evidence else None,
        **base,
    )


def record_infra_check(
    decision: DeployDecision,
    version: int,
    created: bool,
    infra: InfraCheck,
    bento: str | None,
) -> DeployDecision:
    """The decision once the candidate is registered as `version` and its serving checked.

    A failed check withdraws the promotion: nothing moves.
    """
    if infra.passed:
        reason = f"infra check passed: {infra.message}"
    else:
        reason = f"infra check failed, nothing moved: {infra.message}"
    return decision.model_copy(
        update={
            "promote": decision.promote and infra.passed,
            "reasons": [*decision.reasons, reason],
            "registered_version": version,
            "version_created": created,
            "infra_check": infra,
            "bento": bento,
        }
    )


def promotion_evidence(decision: DeployDecision) -> dict[str, Any]:
    """What an alias move records: the reasons, the checks and the comparison."""
    return decision.model_dump(mode="json", include=set(_EVIDENCE))
