"""The shadow scorer: the other model of a rollout scores each answered row, off the request path.

One background thread per worker. The request path hands it the answered rows (their log
rows, already holding the answer) and returns; the thread scores them with the row's
shadow model in calls of up to `deploy.rollout.shadow.max_batch_rows` rows, fills in the
`shadow_*` columns (`core.columns`) and passes the rows to the prediction log. So the
answer never waits for the shadow, and a row reaches the log once, with both scores.

- Bounded: at most `queue_rows` rows wait. Beyond that, rows are logged at once, unscored
  (`shadow_version` set, its score null), and counted: the judge ignores such rows.
- On its own budget: the thread runs at the lowest OS priority (Linux: a per-thread nice
  19) and spends at most `max_cpu_share` of its wall time in scoring calls, by its own
  timings: after a call of `t` seconds it rests `t * (1 - share) / share`, while the rows
  that arrive wait and make the next call bigger (cheaper per row). A row that waited more
  than `max_lag_s` is logged unscored when its turn comes, counted as `over_budget`: the
  shadow could not score it within its share. So a slow candidate takes what its share
  buys, the request threads the rest of the CPU (and the GIL).
- Paired timing: every `paired_every`-th batch is scored by the model that answered its rows
  too, right after, and that time goes to `paired_score_ms`: the judge's p99 guard compares
  the two models on like calls (same rows, same thread). Its score is not kept; a failure
  leaves the column null. The time counts against the budget.
- Errors never leave the thread: a call that raises is retried one row at a time, so each
  failing row gets its own `shadow_error` ("<Type>: <message>", cut to 200 characters) and
  the others their score; every outcome is counted by version.
- `close(timeout_s)` stops taking rows and scores what is queued until the timeout; what is
  left is logged unscored, the batch still in a call too (a slow or hung model: its rows
  are logged by `close`, and the call's late result is dropped, so each row is logged and
  counted once). Nothing is lost, as long as it runs before the log closes.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from core.columns import (
    PAIRED_SCORE_MS,
    ROLLOUT_COLUMNS,
    ROLLOUT_ID,
    SHADOW_ERROR,
    SHADOW_PREDICTED,
    SHADOW_PROBABILITY,
    SHADOW_SCORE_MS,
    SHADOW_THRESHOLD,
    SHADOW_VERSION,
)
from features.contract import DataContract
from models.evaluation import predict_probability
from serving.model_store import ServedModel
from serving.schema import records_to_frame

logger = logging.getLogger(__name__)

ERROR_CHARS = 200
_NICE = 19  # the thread's own scheduling priority (the lowest): request threads come first


@dataclass(frozen=True)
class ShadowRow:
    """One answered row waiting for its shadow score."""

    row: dict[str, Any]  # its log row; the shadow columns are filled in place
    record: Any  # the validated request record (for the model's frame)
    model: ServedModel  # the model that scores it in shadow
    answered_by: ServedModel | None = None  # the model that answered it (paired timing)
    queued_at: float = field(default_factory=time.monotonic)  # for its lag (`max_lag_s`)


# what scoring fills in a log row: the rollout columns but the two the request path sets
_FILLED = tuple(c for c in ROLLOUT_COLUMNS if c not in (ROLLOUT_ID, SHADOW_VERSION))


def _clear_shadow_fields(row: dict[str, Any]) -> None:
    row.update(dict.fromkeys(_FILLED))  # null, as `serving.rollout.log_row` left them


def _unfilled(item: ShadowRow) -> ShadowRow:
    """A copy of the row as queued, apart from the one a running call may still fill in."""
    row = dict(item.row)  # one C-level copy: atomic under the GIL
    _clear_shadow_fields(row)
    return dataclasses.replace(item, row=row)


def describe_error(exc: BaseException) -> str:
    """ "<ExceptionType>: <message>", on one line, at most 200 characters."""
    text = f"{type(exc).__name__}: {exc}".replace("\n", " ")
    return text if len(text) <= ERROR_CHARS else text[: ERROR_CHARS - 3] + "..."


class ShadowScorer:
    """Scores queued rows with their shadow model from one thread, then logs them."""

    def __init__(
        self,
        contract: DataContract,
        log: Callable[[list[dict[str, Any]]], None],
        queue_rows: int,
        max_batch_rows: int,
        counted: Any = None,
        max_cpu_share: float = 1.0,
        max_lag_s: float = float("inf"),
        paired_every: int = 0,
    ) -> None:
        """`log` takes finished rows (the prediction log's `log`); `counted` is the Prometheus
        counter of shadow rows by model_version and outcome (scored, error, unscored,
        over_budget); `max_cpu_share` and `max_lag_s` are the budget, `paired_every` the paired
        timing (module docstring)."""
        if not 0 < max_cpu_share <= 1 or not max_lag_s > 0:
            raise ValueError(
                f"shadow budget: max_cpu_share must be in (0, 1] (got {max_cpu_share}) and "
                f"max_lag_s above 0 (got {max_lag_s}); fix deploy.rollout.shadow"
            )
        self._contract = contract
        self._log = log
        self.queue_rows = queue_rows
        self.max_batch_rows = max_batch_rows
        self.max_cpu_share = max_cpu_share
        self.max_lag_s = max_lag_s
        self.paired_every = paired_every
        self._batches = 0  # scored batches, for paired_every
        self._counted = counted
        self._cond = threading.Condition()
        self._queue: collections.deque[ShadowRow] = collections.deque()  # guarded by _cond
        self._accepting = True
        self._deadline = float("inf")
        self._inflight: list[ShadowRow] | None = None  # the batch in a call (guarded by _cond)
        self.scored = self.errors = self.unscored = self.over_budget = 0
        self.busy_s = 0.0  # wall time spent scoring (the budget's measure)
        self.last_busy_s = 0.0  # the latest call's share of busy_s (its rest may be under way)
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="shadow-scorer", daemon=True)
        self._thread.start()

    def submit(self, rows: Sequence[ShadowRow]) -> None:
        """Queue rows for their shadow score; never blocks, never raises."""
        try:
            with self._cond:
                room = self.queue_rows - len(self._queue) if self._accepting else 0
                taken = max(0, min(room, len(rows)))
                self._queue.extend(rows[:taken])
                if taken:
                    self._cond.notify()
            if taken < len(rows):
                self._unscored(list(rows[taken:]))
        except Exception:  # the request has its answer; the rows must still reach the log
            logger.exception("shadow: could not queue %d row(s)", len(rows))

    @property
    def queued(self) -> int:
        with self._cond:
            return len(self._queue)

    def close(self, timeout_s: float) -> None:
        """Stop taking rows, score what is queued until `timeout_s`, log the rest unscored."""
        with self._cond:
            if not self._accepting:
                return
            self._accepting = False
            self._deadline = time.monotonic() + timeout_s
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout_s + 1)
        with self._cond:
            inflight, self._inflight = self._inflight or [], None  # the thread drops it
            left = list(self._queue)
            self._queue.clear()
        if inflight:  # logged as they were queued: the thread may still be filling them in
            logger.warning("shadow: a call of %d row(s) still running at shutdown", len(inflight))
            left = [_unfilled(item) for item in inflight] + left
        if left:
            logger.warning("shadow: %d row(s) unscored at shutdown; logged without", len(left))
            self._unscored(left)
        logger.info(
            "shadow scorer closed: %d row(s) scored, %d error(s), %d unscored, %d over budget",
            self.scored,
            self.errors,
            self.unscored,
            self.over_budget,
        )

    # --- the thread ------------------------------------------------------------------

    def _run(self) -> None:
        with contextlib.suppress(OSError, AttributeError):  # Linux: a per-thread nice value
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), _NICE)
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._queue or not self._accepting)
                if not self._queue or time.monotonic() >= self._deadline:
                    return
                late = self._take_late()
                batch = self._take() if self._queue else []
                self._inflight = batch or None
            if late:
                self._unscored(late, "over_budget")
            if not batch:
                continue
            start = time.perf_counter()
            try:
                self._score(batch)
                finished = True
            except Exception:  # the thread must outlive any surprise; the rows still go out
                logger.exception("shadow: unexpected error; logging %d row(s)", len(batch))
                finished = False
            self._hand_over(batch, finished)
            self._rest(time.perf_counter() - start)

    def _hand_over(self, batch: list[ShadowRow], finished: bool) -> None:
        """Count and log the batch, unless `close` took it over. Under the lock (the log only
        queues), so a `close` that gave up waiting finds the batch either logged or its own."""
        with self._cond:
            if self._inflight is not batch:
                return
            self._inflight = None
            if not finished:
                for item in batch:
                    _clear_shadow_fields(item.row)
                self._unscored(batch)
                return
            model = batch[0].model  # one model per batch (`_take`)
            failed = sum(item.row.get(SHADOW_ERROR) is not None for item in batch)
            self.errors += failed
            self.scored += len(batch) - failed
            for outcome, rows in (("error", failed), ("scored", len(batch) - failed)):
                if rows:
                    self._count(model, outcome, rows)
            self._log([item.row for item in batch])

    def _rest(self, busy_s: float) -> None:
        """Wait so that scoring stays within `max_cpu_share` of the thread's wall time."""
        self.last_busy_s = busy_s  # before busy_s: a reader of busy_s, then this, sees the
        self.busy_s += busy_s  # call it counted or a later one (tests/serving/test_shadow.py)
        rest_s = busy_s * (1.0 - self.max_cpu_share) / self.max_cpu_share
        if rest_s > 0:
            with self._cond:  # closing ends the rest: the drain has its own deadline
                self._cond.wait_for(lambda: not self._accepting, timeout=rest_s)

    def _take_late(self) -> list[ShadowRow]:
        """The rows at the queue's head that waited more than `max_lag_s` (oldest first)."""
        if not self._accepting:
            return []  # closing: what is queued is scored until the deadline
        oldest = time.monotonic() - self.max_lag_s
        late = []
        while self._queue and self._queue[0].queued_at < oldest:
            late.append(self._queue.popleft())
        return late

    def _take(self) -> list[ShadowRow]:
        """Up to max_batch_rows queued rows of the first row's model, in queue order."""
        first = self._queue.popleft()
        batch, rest = [first], []
        while self._queue and len(batch) < self.max_batch_rows:
            item = self._queue.popleft()
            (batch if item.model is first.model else rest).append(item)
        self._queue.extendleft(reversed(rest))
        return batch

    def _score(self, batch: list[ShadowRow]) -> None:
        """Fill in each row's score, or its error (counted and logged by `_hand_over`)."""
        model = batch[0].model
        try:
            scores, ms = self._call(model, batch)
        except Exception as exc:
            if len(batch) == 1:
                batch[0].row[SHADOW_ERROR] = describe_error(exc)
            else:  # which rows fail: one at a time
                for item in batch:
                    self._score([item])
        else:
            for item, score in zip(batch, scores, strict=True):
                item.row[SHADOW_PROBABILITY] = score
                item.row[SHADOW_PREDICTED] = score >= model.threshold
                item.row[SHADOW_THRESHOLD] = model.threshold
                item.row[SHADOW_SCORE_MS] = round(ms, 3)
            self._batches += 1
            if self.paired_every and self._batches % self.paired_every == 0:
                self._pair(batch)

    def _call(self, model: ServedModel, batch: list[ShadowRow]) -> tuple[list[float], float]:
        start = time.perf_counter()
        frame = records_to_frame([item.record for item in batch], self._contract)
        scores = predict_probability(model.pipeline, frame, self._contract).tolist()
        return scores, (time.perf_counter() - start) * 1000.0

    def _pair(self, batch: list[ShadowRow]) -> None:
        """Time the rows' answering model on the same rows (when one model answered all)."""
        answered_by = batch[0].answered_by
        if answered_by is None or any(item.answered_by is not answered_by for item in batch):
            return
        try:
            _, ms = self._call(answered_by, batch)
        except Exception as exc:  # it answered these rows once; the timing is only a bonus
            logger.debug("shadow: paired timing of %s failed: %s", answered_by.version, exc)
            return
        for item in batch:
            item.row[PAIRED_SCORE_MS] = round(ms, 3)

    def _unscored(self, rows: list[ShadowRow], outcome: str = "unscored") -> None:
        """Log rows as they are (shadow_version set, no score) and count them by `outcome`:
        `unscored` (queue full, shutdown) or `over_budget` (waited beyond `max_lag_s`)."""
        with self._cond:  # request threads log unscored rows too
            if outcome == "over_budget":
                self.over_budget += len(rows)
            else:
                self.unscored += len(rows)
        by_model: dict[str, int] = {}
        for item in rows:
            by_model[item.model.version] = by_model.get(item.model.version, 0) + 1
        for version, count in by_model.items():
            if self._counted is not None:
                self._counted.labels(model_version=version, outcome=outcome).inc(count)
        self._log([item.row for item in rows])

    def _count(self, model: ServedModel, outcome: str, rows: int) -> None:
        if self._counted is not None:
            self._counted.labels(model_version=model.version, outcome=outcome).inc(rows)
