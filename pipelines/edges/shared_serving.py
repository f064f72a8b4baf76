"""Deploy's side of the shared serving store: open it, and finish a half-done promotion.

Deploy publishes a promoted model to the shared store before the registry alias moves and
points the shared champion pointer at it after (`pipelines/deploy.py`); these helpers keep
that stage short.
"""

from __future__ import annotations

import logging
from pathlib import Path

from pipelines.edges import registry
from serving.shared_store import (
    SharedStore,
    open_shared_store,
    publish_model,
    read_shared_pointer,
    shared_store_url,
    write_shared_pointer,
)

logger = logging.getLogger(__name__)


def shared_store(env_name: str) -> SharedStore | None:
    """The shared serving store named by `$<serving.shared_store_env>`, or None."""
    url = shared_store_url(env_name)
    return None if url is None else open_shared_store(url)


def repair_shared_pointer(
    champion: registry.ChampionInfo | None, shared: SharedStore, store: Path
) -> None:
    """Make the shared pointer name the registry's champion: a re-run finishes a promotion.

    A run that moved the alias and stopped before the shared pointer (or one that ran before
    the shared store was configured) publishes the champion from the local store if it is
    not published yet, then points the replicas at it.
    """
    from serving.model_store import ModelStoreError, load_served_model, model_tag

    if champion is None:
        return
    tag = model_tag(champion.name, champion.version)
    pointer = read_shared_pointer(shared)
    if pointer is not None and pointer["tag"] == tag:
        return
    try:
        served = load_served_model(tag, store)
    except ModelStoreError as exc:
        logger.warning("cannot publish the champion %s to the shared store: %s", tag, exc)
        return
    publish_model(shared, served, store)
    write_shared_pointer(shared, served)
    logger.warning("the shared champion pointer now names %s, as the registry does", tag)
