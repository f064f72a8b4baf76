"""Judging and ending a rollout: the registry's aliases and the pointers follow.

Deploy starts a rollout (`pipelines.edges.rollout_release`); `lifecycle watch` and
`lifecycle rollout` call `control_rollout` here: the logged rows of the rollout are judged
(`models.rollout`) and the verdict applied to the registry's aliases and the pointers (the
serving store's and the shared store's).

A verdict is appended to `core.paths.ROLLOUT_HISTORY` first, then its moves are made in an
order that leaves the service on a good model after a crash at any step (promote and
rollback: registry, then pointers; abort and keep: pointers, then registry), then it is
logged to MLflow. A verdict recorded but not completely applied is completed by the next
call (`resume`): every move is idempotent.
"""

from __future__ import annotations

import datetime as dt
import getpass
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from core.clock import parse_time
from core.config import DeployConfig, Params, registered_model_name
from core.records.rollout import (
    Outcome,
    RolloutSlot,
    RolloutVerdict,
    append_verdict,
    read_verdicts,
)
from core.records.watch import RolloutStep
from features.contract import DataContract
from models.rollout import judge_rollout
from monitoring.window import combine_labels, label_window, labels_unjoinable
from pipelines.edges import registry
from pipelines.edges.labels import read_label_batches
from pipelines.edges.rollout_release import point_serving
from pipelines.edges.shared_serving import shared_store
from serving.model_store import (
    load_served_model,
    model_tag,
    pointer_rollout,
    read_champion_pointer,
    slot_model,
)
from serving.prediction_log import read_prediction_log
from serving.shared_store import (
    SharedStore,
    read_shared_pointer,
)

logger = logging.getLogger(__name__)

TERMINAL: tuple[Outcome, ...] = ("promote", "abort", "rollback", "keep")


class RolloutError(RuntimeError):
    """A rollout that cannot be judged or moved; the message says what to do."""


@dataclass(frozen=True)
class RolloutContext:
    """Where a rollout's state lives and how it is judged."""

    name: str  # the registered model
    store: Path  # the serving store (its champion pointer)
    shared: SharedStore | None
    deploy: DeployConfig
    alias_history: Path
    rollout_history: Path
    experiment: str  # MLflow experiment of the lifecycle
    seed: int = 0

    @classmethod
    def from_params(cls, params: Params, contract: DataContract, root: Path) -> RolloutContext:
        from core.paths import ALIAS_HISTORY, ROLLOUT_HISTORY

        return cls(
            name=registered_model_name(params.deploy.registered_model, contract.name),
            store=root / params.serving.store,
            shared=shared_store(params.serving.shared_store_env),
            deploy=params.deploy,
            alias_history=root / ALIAS_HISTORY,
            rollout_history=root / ROLLOUT_HISTORY,
            experiment=params.tracking.experiment,
            seed=params.data.seed,
        )


# --- judging ------------------------------------------------------------------------


def current_rollout(store: Path) -> tuple[dict[str, Any] | None, RolloutSlot | None]:
    """The serving store's pointer and the rollout it carries (None, None before a deploy)."""
    pointer = read_champion_pointer(store)
    return pointer, pointer_rollout(pointer)


def rollout_rows(
    slot: RolloutSlot, log_dir: Path, labels_dir: Path, contract: DataContract
) -> tuple[pd.DataFrame, pd.Series | None]:
    """The logged rows since the rollout started and their labels (None: none can be joined).

    Labels are read as the monitor stage reads them (`monitor.labels.directory`) and joined
    by the contract's id; only the newest row of each id gets its label.
    """
    since = parse_time(slot.started_at)
    rows = read_prediction_log(log_dir, since=since, contract=contract)
    if labels_unjoinable(contract) is not None or rows.empty:
        return rows, None
    labels = combine_labels(read_label_batches(labels_dir), contract)
    if labels.empty:
        return rows, None
    positions = rows.assign(_row=np.arange(len(rows)))
    labelled = label_window(positions, labels, contract)
    values = pd.Series(np.nan, index=rows.index)
    values.iloc[labelled["_row"].to_numpy()] = labelled[contract.label].to_numpy(float)
    return rows, values


def judge(
    ctx: RolloutContext,
    pointer: dict[str, Any],
    slot: RolloutSlot,
    rows: pd.DataFrame,
    labels: pd.Series | None,
    now: dt.datetime,
) -> RolloutVerdict:
    """The verdict on the rollout now (nothing moves)."""
    return judge_rollout(rows, labels, slot, pointer["version"], ctx.deploy, now, ctx.seed)


def by_hand(verdict: RolloutVerdict, action: str, reason: str) -> RolloutVerdict:
    """`verdict` (this moment's guards, as evidence) with the outcome a person chose.

    `promote` on a watch keeps the champion; `abort` on a watch rolls it back.
    """
    watch = verdict.kind == "watch"
    outcome: Outcome
    if action == "promote":
        outcome = "keep" if watch else "promote"
    elif action == "abort":
        outcome = "rollback" if watch else "abort"
    else:
        raise RolloutError(f"unknown action {action!r}: use promote or abort")
    line = f"{outcome} by hand ({_user()}): {reason}"
    return verdict.model_copy(update={"outcome": outcome, "reasons": [*verdict.reasons, line]})


# --- applying -----------------------------------------------------------------------


def apply_verdict(
    ctx: RolloutContext,
    verdict: RolloutVerdict,
    slot: RolloutSlot,
    pointer: dict[str, Any],
    *,
    record: bool = True,
) -> list[str]:
    """Record the verdict, make its moves, log it to MLflow; the moves, one line each."""
    if record:
        append_verdict(ctx.rollout_history, verdict)
    if verdict.outcome == "continue":
        return []
    evidence = {
        "rollout_id": verdict.rollout_id,
        "outcome": verdict.outcome,
        "reasons": verdict.reasons,
    }
    other = verdict.other_version
    actions: list[str] = []
    if verdict.outcome == "promote":
        move = registry.promote_candidate(ctx.name, other, evidence, history=ctx.alias_history)
        actions.append(move.describe())
        served = load_served_model(slot.model.tag, ctx.store)
        watch = _watch_after(ctx, verdict, pointer)
        point_serving(ctx.store, ctx.shared, served, watch)
        actions.append(f"pointers -> {served.tag}" + (f", watching {watch.id}" if watch else ""))
    elif verdict.outcome == "abort":
        point_serving(ctx.store, ctx.shared, pointer, None)
        actions.append(f"pointers -> {pointer['tag']} alone")
        move = registry.abort_candidate(ctx.name, other, evidence, history=ctx.alias_history)
        actions.append(move.describe())
    elif verdict.outcome == "rollback":
        champion = registry.champion(ctx.name)
        if champion is not None and champion.version == verdict.champion_version:
            move = registry.rollback(ctx.name, evidence, history=ctx.alias_history)
            actions.append(move.describe())
        served = load_served_model(slot.model.tag, ctx.store)
        point_serving(ctx.store, ctx.shared, served, None)
        actions.append(f"pointers -> {served.tag} alone")
    else:  # keep
        point_serving(ctx.store, ctx.shared, pointer, None)
        actions.append(f"pointers -> {pointer['tag']} alone; the watch ended")
    for line in actions:
        logger.info("rollout %s: %s", verdict.rollout_id, line)
    log_verdict(verdict, ctx.experiment)
    return actions


def resume(ctx: RolloutContext) -> RolloutVerdict | None:
    """Complete the last recorded verdict if a crash left it half applied; it, or None."""
    last = last_verdict(ctx.rollout_history)
    if last is None or last.outcome not in TERMINAL:
        return None
    pointer, slot = current_rollout(ctx.store)
    shared_slot = None
    if ctx.shared is not None:
        shared_slot = pointer_rollout(read_shared_pointer(ctx.shared))
    held = {s.id: s for s in (slot, shared_slot) if s is not None}
    candidate = registry.candidate(ctx.name) if last.kind != "watch" else None
    pending_alias = candidate is not None and candidate.version == last.other_version
    if last.rollout_id not in held and not pending_alias:
        return None
    if pointer is None:
        raise RolloutError(f"{ctx.store}: no champion pointer to finish rollout {last.rollout_id}")
    started = held.get(last.rollout_id) or _slot_of(last, ctx)
    logger.warning("rollout %s: finishing its recorded %s", last.rollout_id, last.outcome)
    apply_verdict(ctx, last, started, _champion_part(pointer, last, ctx), record=False)
    return last


def control_rollout(
    ctx: RolloutContext,
    contract: DataContract,
    log_dir: Path,
    labels_dir: Path,
    now: dt.datetime,
) -> RolloutStep | None:
    """One control step: finish a half-applied verdict, then judge and apply; None without
    a rollout (and nothing to finish)."""
    resumed = resume(ctx)
    pointer, slot = current_rollout(ctx.store)
    if slot is None or pointer is None:
        return None if resumed is None else RolloutStep(resumed=resumed)
    rows, labels = rollout_rows(slot, log_dir, labels_dir, contract)
    verdict = judge(ctx, pointer, slot, rows, labels, now)
    actions = apply_verdict(ctx, verdict, slot, pointer)
    return RolloutStep(resumed=resumed, verdict=verdict, actions=actions)


# --- the history and MLflow -------------------------------------------------------


def last_verdict(path: Path) -> RolloutVerdict | None:
    verdicts = read_verdicts(path)
    return verdicts[-1] if verdicts else None


def log_verdict(verdict: RolloutVerdict, experiment: str) -> str | None:
    """The verdict as an MLflow run (`rollout <outcome>`, tagged with the rollout id): its JSON
    and the guards' values as metrics. A warning (None) when MLflow cannot be reached: the
    moves never wait for it, and the history file has the verdict."""
    from pipelines.edges.tracking import log_record_run

    tags = {
        "kind": "rollout",
        "rollout_id": verdict.rollout_id,
        "rollout_kind": verdict.kind,
        "outcome": verdict.outcome,
        "registered_model": verdict.model,
        "champion_version": str(verdict.champion_version),
        "other_version": str(verdict.other_version),
    }
    metrics = {
        f"guard_{guard.name}": guard.value for guard in verdict.guards if guard.value is not None
    }
    metrics.update(
        rows=verdict.rows, labelled_rows=verdict.labelled_rows, elapsed_s=verdict.elapsed_s
    )
    return log_record_run(
        experiment,
        f"rollout {verdict.outcome}",
        tags,
        {key: float(value) for key, value in metrics.items()},
        verdict.model_dump(mode="json"),
        "verdict.json",
        what=f"rollout verdict {verdict.rollout_id} ({verdict.outcome})",
        kept_in="the rollout history",
    )


def _watch_after(
    ctx: RolloutContext, verdict: RolloutVerdict, pointer: dict[str, Any]
) -> RolloutSlot | None:
    """After a promotion, with a rollback window: watch the new champion against the old one
    (the pointer's champion until now). Its id and start follow from the verdict, so
    finishing an interrupted promotion writes the same block."""
    if ctx.deploy.rollout.rollback_window_s <= 0:
        return None
    old = load_served_model(pointer["tag"], ctx.store)
    return RolloutSlot(
        id=f"{verdict.rollout_id}-watch",
        kind="watch",
        model=slot_model(old),
        started_at=verdict.judged_at,
    )


def _champion_part(
    pointer: dict[str, Any], verdict: RolloutVerdict, ctx: RolloutContext
) -> dict[str, Any]:
    """The champion as it was before the verdict: what `apply_verdict` expects as `pointer`.

    A promotion interrupted after the local pointer moved: the old champion is the verdict's.
    """
    tag = model_tag(ctx.name, verdict.champion_version)
    if pointer["tag"] == tag:
        return pointer
    return {**pointer, **slot_model(load_served_model(tag, ctx.store)).model_dump()}


def _slot_of(verdict: RolloutVerdict, ctx: RolloutContext) -> RolloutSlot:
    """The rollout's block rebuilt from its verdict, once the pointers no longer carry it."""
    served = load_served_model(model_tag(ctx.name, verdict.other_version), ctx.store)
    return RolloutSlot(
        id=verdict.rollout_id, kind=verdict.kind, model=slot_model(served), started_at=verdict.since
    )


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"
