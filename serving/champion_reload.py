"""What a worker serves, and how it is replaced: load the new one fully, swap one reference.

The service reloads at start, on `POST /admin/reload` and at every poll of the champion
watcher. What it serves is one `serving.rollout.ServedPair`: the champion and, during a
rollout, the pointer's rollout block and the other model it names. A reload happens when
the champion's tag or the rollout block (id, kind, model, share) changed; a request scores
with the pair it picked up, so nothing in flight fails or mixes versions. A champion that
cannot be loaded leaves the current one serving; a rollout model that cannot be loaded (or
a rollout block that cannot be used) leaves the champion serving alone, is logged once,
counted (`outcome="rollout_failed"`) and tried again at the next poll.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from core.records.rollout import RolloutSlot
from features.contract import DataContract
from serving.champion_source import Champion, ChampionSource, NoChampion
from serving.model_store import ModelStoreError, ServedModel, load_served_model
from serving.readiness import Readiness
from serving.rollout import ServedPair, same_slot

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
    rollout: dict[str, Any] | None = Field(
        None,
        description="The rollout served beside the champion after the call: "
        "{id, kind, version, share}; null without one.",
    )
    rollout_error: str | None = Field(
        None, description="Why the pointer's rollout is not served (the champion serves alone)."
    )


class ServedChampion:
    """One worker's served pair (None until a champion loads) and its reloads."""

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
        self._rollout_error: str | None = None  # likewise for the rollout's model
        self._source_name = ""  # which source named the champion served
        self.state: ServedPair | None = None

    @property
    def model(self) -> ServedModel | None:
        """The champion being served (one reference read)."""
        state = self.state
        return None if state is None else state.champion

    def _load(self, tag: str, store: Any) -> ServedModel:
        """Load a model and check it answers the request schema this service was built with."""
        model = load_served_model(tag, store)
        features = model.meta.get("features")
        if features is not None and list(features) != self._contract.features:
            raise ModelStoreError(
                f"{tag} was trained on features {features}, but the service's contract has "
                f"{self._contract.features}; restart the service with its contract"
            )
        return model

    def _result(self, previous: str | None, error: str | None = None) -> ReloadResult:
        state = self.state
        return ReloadResult(
            changed=False,
            tag=previous,
            model_version=state.champion.version if state else None,
            previous_tag=previous,
            error=error,
            rollout=state.describe() if state else None,
            rollout_error=self._rollout_error if state else None,
        )

    def reload(self, source: str) -> ReloadResult:
        """Serve the pointer's champion and rollout: load what changed, then swap one reference."""
        with self._lock:
            before = self.state
            previous = before.champion.tag if before else None
            loaded_other = before.other.tag if before and before.other else None
            try:
                champion = self._source.find(previous, loaded_other)
                slot = champion.rollout
                if (
                    before is not None
                    and champion.tag == previous
                    and same_slot(before.slot, slot)
                    and (slot is None or before.other is not None)
                ):
                    self._note_rollout_error(champion.rollout_error, before)
                    return self._result(previous)
                model = (
                    before.champion
                    if before is not None and champion.tag == previous
                    else self._load(champion.tag, champion.store)
                )
            except NoChampion as exc:  # nothing to serve yet: not an error
                self._readiness.waiting(str(exc))
                if source != "poll":
                    logger.warning("%s; not ready until there is one", exc)
                return self._result(previous)
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
                return self._result(previous, error=str(exc))
            other, rollout_error = self._load_other(slot, before, champion)
            if rollout_error is None:
                rollout_error = champion.rollout_error
            self.state = ServedPair(model, slot, other)  # the swap: one reference
            self._failed_reload = None
            self._source_name = champion.source
            self._note_rollout_error(rollout_error, self.state, force=True)
            if source != "start" and (model.tag != previous or other is not None):
                self._reloads.labels(outcome="swapped").inc()
            rollout = self.state.describe()
            logger.info(
                "%s reload: now serving %s (was %s)%s",
                source,
                model.tag,
                previous,
                f"; rollout {rollout}" if rollout else "",
            )
            return ReloadResult(
                changed=True,
                tag=model.tag,
                model_version=model.version,
                previous_tag=previous,
                rollout=rollout,
                rollout_error=rollout_error,
            )

    def _load_other(
        self, slot: RolloutSlot | None, before: ServedPair | None, champion: Champion
    ) -> tuple[ServedModel | None, str | None]:
        """The rollout's model: kept when already loaded, else loaded; (None, why) on failure."""
        if slot is None:
            return None, None
        if before is not None and before.other is not None and before.other.tag == slot.model.tag:
            return before.other, None
        try:
            other = self._load(slot.model.tag, champion.store)
        except Exception as exc:  # the champion serves alone; tried again at the next poll
            self._reloads.labels(outcome="rollout_failed").inc()
            return None, f"cannot load the rollout's model {slot.model.tag}: {exc}"
        if other.content_sha256 != slot.model.content_sha256:
            self._reloads.labels(outcome="rollout_failed").inc()
            return None, (
                f"the rollout names {slot.model.tag} with content sha256 "
                f"{slot.model.content_sha256[:12]}, but the store holds "
                f"{other.content_sha256[:12]}; deploy the rollout again"
            )
        return other, None

    def _note_rollout_error(
        self, error: str | None, state: ServedPair, force: bool = False
    ) -> None:
        """Log a rollout problem once per message; /readyz shows it while it lasts."""
        if error == self._rollout_error and not force:
            return
        if error is not None and error != self._rollout_error:
            logger.error("rollout not served (the champion serves alone): %s", error)
            if state.slot is None:  # a block that cannot be used (load failures count above)
                self._reloads.labels(outcome="rollout_failed").inc()
        elif error is None and self._rollout_error is not None:
            logger.info("rollout served again: %s", state.describe())
        self._rollout_error = error
        self._readiness.serving(state.champion.tag, self._source_name, state.describe(), error)
