"""The model a worker serves, and how it is replaced: load the new one fully, swap one reference.

The service reloads at start, on `POST /admin/reload` and at every poll of the champion
watcher. A request scores with the model it picked up, so nothing in flight fails or mixes
versions; a champion that cannot be loaded leaves the current one serving.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from features.contract import DataContract
from serving.champion_source import Champion, ChampionSource, NoChampion
from serving.model_store import ModelStoreError, ServedModel, load_served_model
from serving.readiness import Readiness

logger = logging.getLogger(__name__)


class ReloadRequest(BaseModel):
    """`/admin/reload` takes no parameters: no body, or an empty JSON object."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class ReloadResult(BaseModel):
    """What `/admin/reload` did."""

    changed: bool = Field(description="True when a different model is now served.")
    tag: str | None = Field(description="The model served after the call, e.g. name:v3.")
    model_version: str | None = Field(description="Its registered version label, e.g. v3.")
    previous_tag: str | None = Field(description="The model served before the call.")
    error: str | None = Field(
        None, description="Why the champion could not be loaded (500); null when it was."
    )


class ServedChampion:
    """One worker's served model (None until a champion loads) and its reloads."""

    def __init__(
        self,
        source: ChampionSource,
        contract: DataContract,
        readiness: Readiness,
        reloads: Any,
    ) -> None:
        """`reloads` is the Prometheus counter of reloads, labelled by outcome."""
        self._source = source
        self._contract = contract
        self._readiness = readiness
        self._reloads = reloads
        self._lock = threading.Lock()
        self._failed_reload: str | None = None  # the last error, logged once per message
        self.model: ServedModel | None = None

    def _load(self, champion: Champion) -> ServedModel:
        """Load a model and check it answers the request schema this service was built with."""
        tag = champion.tag
        model = load_served_model(tag, champion.store)
        features = model.meta.get("features")
        if features is not None and list(features) != self._contract.features:
            raise ModelStoreError(
                f"{tag} was trained on features {features}, but the service's contract has "
                f"{self._contract.features}; restart the service with its contract"
            )
        return model

    def reload(self, source: str) -> ReloadResult:
        """Serve the pointer's champion: load it fully, then swap one reference."""
        with self._lock:
            before = self.model
            previous = before.tag if before else None
            try:
                champion = self._source.find(previous)
                if champion.tag == previous:
                    return ReloadResult(
                        changed=False,
                        tag=previous,
                        model_version=before.version if before else None,
                        previous_tag=previous,
                    )
                model = self._load(champion)
            except NoChampion as exc:  # nothing to serve yet: not an error
                self._readiness.waiting(str(exc))
                if source != "poll":
                    logger.warning("%s; not ready until there is one", exc)
                return ReloadResult(
                    changed=False,
                    tag=previous,
                    model_version=before.version if before else None,
                    previous_tag=previous,
                )
            except Exception as exc:  # keep serving what we have
                self._reloads.labels(outcome="failed").inc()
                repeated = source == "poll" and str(exc) == self._failed_reload
                logger.log(
                    logging.DEBUG if repeated else logging.ERROR,
                    "%s reload failed; still serving %s: %s",
                    source,
                    previous,
                    exc,
                )
                self._failed_reload = str(exc)
                self._readiness.waiting(str(exc))
                return ReloadResult(
                    changed=False,
                    tag=previous,
                    model_version=before.version if before else None,
                    previous_tag=previous,
                    error=str(exc),
                )
            self.model = model  # the swap: requests already scoring keep their reference
            self._readiness.serving(model.tag, champion.source)
            self._failed_reload = None
            if source != "start":  # the first load is no reload
                self._reloads.labels(outcome="swapped").inc()
            logger.info("%s reload: now serving %s (was %s)", source, model.tag, previous)
            return ReloadResult(
                changed=True, tag=model.tag, model_version=model.version, previous_tag=previous
            )
