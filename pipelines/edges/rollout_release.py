"""Deploy's side of a rollout: a promoted challenger goes live by `deploy.rollout`.

With `strategy` shadow or canary (and a champion to compare with) it becomes the registry's
`candidate` and the pointers (the serving store's, then the shared store's) name it in a
`rollout` block beside the unchanged champion; else it becomes champion at once, as before,
and with `rollback_window_s` > 0 the pointers name the old champion in a `watch` block.
`pipelines.edges.rollout_control` judges and ends the rollout. Kept apart from it so the
deploy stage does not depend on the judge.

A deploy while a rollout is in progress ends that rollout first, on the record: its
verdict (`abort` for a candidate, `keep` for a watch) goes to the rollout history with the
reason "replaced by candidate vN" (or "by champion vN"), and an aborted candidate's alias
move to the alias history, before the new one starts. Deploying the candidate in progress
again keeps its rollout (and its clock) as it is.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from core.clock import parse_time
from core.config.rollout import RolloutConfig
from core.records.rollout import RolloutSlot, RolloutVerdict, append_verdict
from pipelines.edges import registry
from serving.model_store import (
    ServedModel,
    load_served_model,
    model_tag,
    pointer_rollout,
    read_champion_pointer,
    slot_model,
    write_champion_pointer,
)
from serving.shared_store import SharedStore, publish_model, write_shared_pointer

logger = logging.getLogger(__name__)


def release(
    name: str,
    store: Path,
    shared: SharedStore | None,
    config: RolloutConfig,
    version: int,
    served: ServedModel,
    evidence: dict[str, Any],
    now: str,
    history: Path,
    rollout_history: Path,
) -> RolloutSlot | None:
    """Make the promoted `served` (registry `version`) live; the rollout started, if any.

    Shadow or canary with a champion: published (if there is a shared store), `candidate`
    alias, then the pointers gain the block. Otherwise champion at once: published first
    (unreachable = no promotion), alias, local pointer, shared pointer last, with a `watch`
    block naming the old champion when `rollback_window_s` > 0. A rollout in progress is
    first ended as replaced (`end_replaced`), unless `version` is its candidate (returned
    as it is) or the champion (the pointers keep the block; None is returned).
    """
    champion = registry.champion(name)
    if shared is not None:
        publish_model(shared, served, store)
    running = in_progress(store)
    if champion is not None and champion.version == version:  # the champion, deployed again
        registry.promote(name, version, evidence, history=history)
        point_serving(store, shared, served, running)  # a rollout in progress goes on
        return None
    if config.strategy != "immediate" and champion is not None:
        if running is not None and running.kind != "watch" and running.model.tag == served.tag:
            logger.info("%s: v%d is the candidate of rollout %s already", name, version, running.id)
            return running
        current = load_served_model(model_tag(name, champion.version), store)
        slot = RolloutSlot(
            id=f"{name}-v{version}-{_stamp(now)}",
            kind=config.strategy,
            model=slot_model(served),
            share=config.canary.share if config.strategy == "canary" else 0.0,
            started_at=now,
        )
        if running is not None:
            end_replaced(
                name,
                running,
                champion.version,
                f"candidate v{version}",
                now,
                history,
                rollout_history,
            )
        registry.set_candidate(name, version, {**evidence, "rollout_id": slot.id}, history=history)
        point_serving(store, shared, current, slot)
        logger.info(
            "%s: %s rollout %s of v%d beside the champion v%d started",
            name,
            slot.kind,
            slot.id,
            version,
            champion.version,
        )
        return slot
    if running is not None and champion is not None:
        end_replaced(
            name, running, champion.version, f"champion v{version}", now, history, rollout_history
        )
    move = registry.promote(name, version, evidence, history=history)
    watch = None
    if config.rollback_window_s > 0 and move.changed and move.from_version is not None:
        old = load_served_model(model_tag(name, move.from_version), store)
        watch = RolloutSlot(
            id=f"{name}-v{version}-watch-{_stamp(now)}",
            kind="watch",
            model=slot_model(old),
            started_at=now,
        )
    point_serving(store, shared, served, watch)
    return watch


def in_progress(store: Path) -> RolloutSlot | None:
    """The rollout the serving store's pointer carries (None: none, or no pointer yet)."""
    return pointer_rollout(read_champion_pointer(store))


def end_replaced(
    name: str,
    running: RolloutSlot,
    champion_version: int,
    by: str,
    now: str,
    history: Path,
    rollout_history: Path,
) -> RolloutVerdict:
    """End the rollout a new deploy replaces, on the record: its verdict (`abort`; `keep`
    for a watch: the champion stays), then the candidate alias removed (alias history).

    Nothing was judged: the verdict has no guards and no rows; its reason names what
    replaced it. The pointers are rewritten by the caller with the new block.
    """
    outcome = "keep" if running.kind == "watch" else "abort"
    reason = f"replaced by {by}: a new deploy ended this {running.kind} before its verdict"
    started, moment = parse_time(running.started_at), parse_time(now)
    elapsed = (moment - started).total_seconds() if started and moment else 0.0
    verdict = RolloutVerdict(
        rollout_id=running.id,
        kind=running.kind,
        model=name,
        champion_version=champion_version,
        other_version=int(running.model.version.removeprefix("v")),
        judged_at=now,
        since=running.started_at,
        until=now,
        rows=0,
        labelled_rows=0,
        elapsed_s=round(max(elapsed, 0.0), 3),
        guards=[],
        outcome=outcome,
        reasons=[reason],
    )
    append_verdict(rollout_history, verdict)
    if running.kind != "watch":
        evidence = {"rollout_id": running.id, "outcome": outcome, "reasons": [reason]}
        registry.abort_candidate(name, verdict.other_version, evidence, history=history)
    logger.warning("%s: rollout %s %s: %s", name, running.id, outcome, reason)
    return verdict


def point_serving(
    store: Path,
    shared: SharedStore | None,
    served: ServedModel | dict[str, Any],
    rollout: RolloutSlot | None,
) -> None:
    """The local pointer, then the shared one (replicas switch last)."""
    write_champion_pointer(store, served, rollout)
    if shared is not None:
        write_shared_pointer(shared, served, rollout)


def _stamp(now: str) -> str:
    moment = parse_time(now)
    return f"{moment:%Y%m%dT%H%M%SZ}" if moment else "now"
