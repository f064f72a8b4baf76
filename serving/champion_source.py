"""Where the service finds its champion: the shared store, the local pointer, or its Bento.

One source per service, decided at start-up:

- **shared** (`$<serving.shared_store_env>` set): the shared store's `champion.json`; a model
  it names is fetched into this replica's own store first. The shared pointer replaces the
  local one rather than adding to it: replicas on other machines have no deploy writing
  their local pointer, and a stale local pointer must never win over the team's champion,
  so every replica follows exactly one pointer.
- **pointer**: the local store's `champion.json`, written by deploy and `lifecycle rollback`.
- **packed**: with neither, a service run from a built Bento serves the model packed in it.

The service loads whatever this returns through `load_served_model` (trusted types).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import yaml

from serving.model_store import has_model, read_champion_pointer
from serving.shared_store import (
    SharedStore,
    display_url,
    fetch_model,
    open_shared_store,
    read_shared_pointer,
)

logger = logging.getLogger(__name__)

Source = Literal["shared", "pointer", "packed"]
BENTO_FILE = "bento.yaml"


@dataclass(frozen=True)
class Champion:
    """A model to serve: its tag, which source named it, and the store that holds it."""

    tag: str
    source: Source
    store: Path


class NoChampion(LookupError):
    """No source names a champion yet; the message says which one was asked."""


class ChampionSource:
    """Finds the current champion; `find()` raises ModelStoreError when its source fails."""

    def __init__(self, store: Path, shared_url: str | None, packed: Champion | None) -> None:
        self.store = Path(store)
        self.shared_url = shared_url
        self.packed = packed
        self._shared: SharedStore | None = None

    def describe(self) -> str:
        if self.shared_url is not None:
            return f"the shared store {display_url(self.shared_url)}"
        if self.packed is not None:
            return f"the pointer in {self.store}, else the Bento's packed {self.packed.tag}"
        return f"the pointer in {self.store}"

    def find(self, current: str | None = None) -> Champion:
        """The champion now; with the shared store, fetched into the local store if missing.

        `current` is the tag being served: it is not fetched again.
        """
        if self.shared_url is not None:
            if self._shared is None:
                self._shared = open_shared_store(self.shared_url)
            pointer = read_shared_pointer(self._shared)
            if pointer is None:
                raise NoChampion(f"no champion pointer in {self.describe()} yet")
            tag = str(pointer["tag"])
            if tag != current:
                fetch_model(self._shared, tag, self.store)
            return Champion(tag, "shared", self.store)
        pointer = read_champion_pointer(self.store)
        if pointer is not None:
            return Champion(str(pointer["tag"]), "pointer", self.store)
        if self.packed is not None:
            return self.packed
        raise NoChampion(f"no champion pointer in {self.store} yet: deploy one (dvc repro)")


def packed_champion(params_folder: Path, environ: dict[str, str] | None = None) -> Champion | None:
    """The model packed in the Bento this service runs from, or None outside a Bento.

    A built Bento keeps the project (params.yaml included) in `<bento>/src` beside its
    `bento.yaml`, which lists the packed models. The model itself is in the Bento's own
    `models/` folder in a container image, else in the BentoML home's model store.
    """
    bento = Path(params_folder).parent
    try:
        info = yaml.safe_load((bento / BENTO_FILE).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return None
    tags = [str(model.get("tag")) for model in (info or {}).get("models") or []]
    if len(tags) != 1:
        if tags:
            logger.warning("the Bento packs %d models (%s); serving none of them", len(tags), tags)
        return None
    environ = dict(os.environ) if environ is None else environ
    home = Path(environ.get("BENTOML_HOME") or Path.home() / "bentoml")
    store = bento if has_model(tags[0], bento) else home
    return Champion(tags[0], "packed", store)
