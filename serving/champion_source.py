"""Where the service finds its champion: the shared store, the local pointer, or its Bento.

One source per service, decided at start-up:

- **shared** (`$<serving.shared_store_env>` set): the shared store's `champion.json`; a model
  it names is fetched into this replica's own store first. The shared pointer replaces the
  local one rather than adding to it: replicas on other machines have no deploy writing
  their local pointer, and a stale local pointer must never win over the team's champion,
  so every replica follows exactly one pointer.
- **pointer**: the local store's `champion.json`, written by deploy and `lifecycle rollback`.
- **packed**: with neither, a service run from a built Bento serves the model packed in it.

The pointer may also carry a rollout block (`core.records.rollout.RolloutSlot`): the other
model every worker loads beside the champion. With the shared store it is fetched like the
champion. A block that cannot be used never stops the champion: `find` returns it as
`rollout_error` (one line) and the champion alone is served.

The service loads whatever this returns through `load_served_model` (trusted types).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import yaml

from core.records.rollout import RolloutSlot
from serving.model_store import (
    POINTER_FILE,
    has_model,
    read_champion_pointer,
    split_rollout,
)
from serving.shared_store import (
    SharedStore,
    display_url,
    fetch_model,
    open_shared_store,
    pointer_url,
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
    rollout: RolloutSlot | None = None  # the pointer's rollout block, when usable
    rollout_error: str | None = None  # why the pointer's rollout block is not used


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

    def find(self, current: str | None = None, current_other: str | None = None) -> Champion:
        """The champion now; with the shared store, fetched into the local store if missing.

        `current` is the tag being served, `current_other` the rollout model loaded beside
        it: neither is fetched again. The rollout's model is fetched too; when that fails
        the champion is still returned, with the reason in `rollout_error`.
        """
        if self.shared_url is not None:
            if self._shared is None:
                self._shared = open_shared_store(self.shared_url)
            pointer = read_shared_pointer(self._shared, lenient_rollout=True)
            if pointer is None:
                raise NoChampion(f"no champion pointer in {self.describe()} yet")
            tag = str(pointer["tag"])
            if tag != current:
                fetch_model(self._shared, tag, self.store)
            slot, error = split_rollout(pointer, pointer_url(display_url(self.shared_url)))
            if slot is not None and slot.model.tag != current_other:
                try:
                    fetch_model(self._shared, slot.model.tag, self.store)
                except Exception as exc:  # the champion serves alone meanwhile
                    slot, error = None, f"cannot fetch the rollout's {slot.model.tag}: {exc}"
            return Champion(tag, "shared", self.store, slot, error)
        pointer = read_champion_pointer(self.store, lenient_rollout=True)
        if pointer is not None:
            slot, error = split_rollout(pointer, self.store / POINTER_FILE)
            return Champion(str(pointer["tag"]), "pointer", self.store, slot, error)
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
