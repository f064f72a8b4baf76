"""What a worker serves during a rollout, and who answers each row.

The served state is one frozen `ServedPair`: the champion, the pointer's rollout block
(`core.records.rollout.RolloutSlot`, or None) and the other model it names (None when
there is no rollout or it could not be loaded). The service swaps it as one reference, so
a request sees a consistent pair.

`score_rows` scores a call's rows (one request, or a batch of single-row requests put
together by `serving.batching`) and says for each row which model answered and which one
scores it in shadow afterwards (`serving.shadow`):

- no rollout (or its model not loaded): the champion answers, nothing in shadow;
- `shadow` and `watch`: the champion answers every row, the other model scores it in shadow;
- `canary`: a row whose id falls in the canary's share (`canary_bucket`) is answered by the
  candidate; the others by the champion, and the candidate scores them in shadow. The
  champion scores every row of the call in one call, so for the candidate's rows its score
  is the shadow score at once (no second call, no queue). When the candidate raises, the
  champion answers those rows too (no failed request) and the candidate scores them again
  in shadow, one row at a time if need be, so the log says which rows it fails on
  (`shadow_error`).
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from core.columns import (
    MODEL_VERSION,
    PAIRED_SCORE_MS,
    PREDICTED,
    PROBABILITY,
    REQUEST_ID,
    ROLLOUT_COLUMNS,
    ROLLOUT_ID,
    SCORE_MS,
    SHADOW_PREDICTED,
    SHADOW_PROBABILITY,
    SHADOW_SCORE_MS,
    SHADOW_THRESHOLD,
    SHADOW_VERSION,
    THRESHOLD,
)
from core.records.rollout import RolloutSlot
from features.contract import DataContract, field_name
from models.evaluation import predict_probability
from serving.model_store import ServedModel
from serving.schema import records_to_frame

logger = logging.getLogger(__name__)

_BUCKETS = float(2**64)


@dataclass(frozen=True)
class ServedPair:
    """One worker's served state, swapped as one reference."""

    champion: ServedModel
    slot: RolloutSlot | None = None  # the pointer's rollout block
    other: ServedModel | None = None  # the model it names, once loaded

    @property
    def active(self) -> bool:
        """True when a rollout's model is loaded and takes part."""
        return self.slot is not None and self.other is not None

    def describe(self) -> dict[str, Any] | None:
        """The rollout as `/readyz` and `/admin/reload` state it; None without one."""
        if self.slot is None or self.other is None:
            return None
        return {
            "id": self.slot.id,
            "kind": self.slot.kind,
            "version": self.other.version,
            "share": self.slot.share,
        }


def same_slot(a: RolloutSlot | None, b: RolloutSlot | None) -> bool:
    """True when two rollout blocks name the same rollout (id, kind, model and share)."""
    if a is None or b is None:
        return a is b
    return (a.id, a.kind, a.model, a.share) == (b.id, b.kind, b.model, b.share)


def canary_bucket(key: str) -> float:
    """A stable number in [0, 1) for a row's id: the first 8 bytes of its sha256."""
    digest = hashlib.sha256(key.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / _BUCKETS


def routing_key(record: Any, request_id: str, contract: DataContract) -> str:
    """The text a row is routed by: its row id (the contract's `row_id`), else the request id."""
    row_id = contract.row_id
    if row_id is not None:
        value = getattr(record, field_name(row_id), None)
        if value is not None:
            return str(value)
    return request_id


@dataclass(frozen=True)
class RowAnswer:
    """One row's answer: the model that answered, its score and call time, and the rollout."""

    model: ServedModel
    probability: float
    score_ms: float
    rollout_id: str | None = None
    shadow: ServedModel | None = None  # the other model of the rollout
    # its score, when already known (a canary row the candidate answered: the champion's)
    shadow_probability: float | None = None
    shadow_ms: float | None = None

    @property
    def needs_shadow(self) -> bool:
        """True when the other model must still score this row (`serving.shadow`)."""
        return self.shadow is not None and self.shadow_probability is None


def score_rows(
    pair: ServedPair,
    rows: Sequence[tuple[Any, str]],
    contract: DataContract,
    fallbacks: Any = None,
) -> list[RowAnswer]:
    """Answer each (record, request id) row; see the module's docstring for who answers.

    `fallbacks` counts (Prometheus, by model_version) the canary rows the champion answered
    because the candidate raised. Only the champion's own failure raises.
    """
    records = [record for record, _ in rows]
    frame = records_to_frame(records, contract)
    champion, slot, other = pair.champion, pair.slot, pair.other
    if slot is None or other is None:
        scores, ms = _timed(champion, frame, contract)
        return [RowAnswer(champion, score, ms) for score in scores]
    if slot.kind != "canary":
        scores, ms = _timed(champion, frame, contract)
        return [RowAnswer(champion, score, ms, slot.id, other) for score in scores]
    routed = [canary_bucket(routing_key(r, rid, contract)) < slot.share for r, rid in rows]
    scores, ms = _timed(champion, frame, contract)  # every row: answers and shadow scores
    answers = [RowAnswer(champion, score, ms, slot.id, other) for score in scores]
    picked = [index for index, go in enumerate(routed) if go]
    if not picked:
        return answers
    subset = (
        frame
        if len(picked) == len(rows)
        else records_to_frame([records[index] for index in picked], contract)
    )
    try:
        candidate, candidate_ms = _timed(other, subset, contract)
    except Exception as exc:  # the champion answers them; the shadow logs the error per row
        logger.debug("canary %s raised on %d row(s): %s", other.version, len(picked), exc)
        if fallbacks is not None:
            fallbacks.labels(model_version=other.version).inc(len(picked))
        return answers
    for index, score in zip(picked, candidate, strict=True):
        answers[index] = RowAnswer(other, score, candidate_ms, slot.id, champion, scores[index], ms)
    return answers


def _timed(model: ServedModel, frame: Any, contract: DataContract) -> tuple[list[float], float]:
    start = time.perf_counter()
    scores = predict_probability(model.pipeline, frame, contract)
    return scores.tolist(), (time.perf_counter() - start) * 1000.0


def log_row(record: Any, request_id: str, answer: RowAnswer) -> dict[str, Any]:
    """The prediction-log row of one answered record (the shadow's columns still empty).

    With a rollout, every rollout column is present: null until the shadow scores it.
    """
    model = answer.model
    row: dict[str, Any] = {
        REQUEST_ID: request_id,
        MODEL_VERSION: model.version,
        PROBABILITY: answer.probability,
        PREDICTED: answer.probability >= model.threshold,
        THRESHOLD: model.threshold,
        SCORE_MS: round(answer.score_ms, 3),
    }
    shadow = answer.shadow
    if shadow is not None:
        row.update(dict.fromkeys(ROLLOUT_COLUMNS))
        row[ROLLOUT_ID] = answer.rollout_id
        row[SHADOW_VERSION] = shadow.version
        if answer.shadow_probability is not None:
            row[SHADOW_PROBABILITY] = answer.shadow_probability
            row[SHADOW_PREDICTED] = answer.shadow_probability >= shadow.threshold
            row[SHADOW_THRESHOLD] = shadow.threshold
            row[SHADOW_SCORE_MS] = round(answer.shadow_ms or 0.0, 3)
            row[PAIRED_SCORE_MS] = row[SCORE_MS]  # both from the request's own calls
    row.update(record.model_dump(by_alias=True))
    return row
