"""Deploy's side of a rollout: a promoted challenger goes live by `deploy.rollout`.

With `strategy` shadow or canary (and a champion to compare with) it becomes the registry's
`candidate` and the pointers (the serving store's, then the shared store's) name it in a
`rollout` block beside the unchanged champion; else it becomes champion at once, as before,
and with `rollback_window_s` > 0 the pointers name the old champion in a `watch` block.
`pipelines.edges.rollout_control` judges and ends the rollout. Kept apart from it so the
deploy stage does not depend on the judge.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from core.clock import parse_time
from core.config.rollout import RolloutConfig
from core.records.rollout import RolloutSlot
from pipelines.edges import registry
from serving.model_store import (
    ServedModel,
    load_served_model,
    model_tag,
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
) -> RolloutSlot | None:
    """Make the promoted `served` (registry `version`) live; the rollout started, if any.

    Shadow or canary with a champion: published (if there is a shared store), `candidate`
    alias, then the pointers gain the block. Otherwise champion at once: published first
    (unreachable = no promotion), alias, local pointer, shared pointer last, with a `watch`
    block naming the old champion when `rollback_window_s` > 0.
    """
    champion = registry.champion(name)
    if shared is not None:
        publish_model(shared, served, store)
    if config.strategy != "immediate" and champion is not None and champion.version != version:
        current = load_served_model(model_tag(name, champion.version), store)
        slot = RolloutSlot(
            id=f"{name}-v{version}-{_stamp(now)}",
            kind=config.strategy,
            model=slot_model(served),
            share=config.canary.share if config.strategy == "canary" else 0.0,
            started_at=now,
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
