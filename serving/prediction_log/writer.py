"""The writer of the prediction log: every served prediction, as JSON lines in hourly partitions.

`PredictionLogger.log` runs on the request path: it stamps the rows with the time, adds them
to a bounded buffer and returns; it never waits for IO and never raises. One background
thread appends them to `directory/date=YYYY-MM-DD/hour=HH/part-<pid>-<start>.jsonl` (UTC, by
each row's time), one write per partition per batch followed by fsync, at least every
`flush_interval_s`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import math
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol

import numpy as np
from pydantic import BaseModel

from core.clock import format_time
from core.columns import MODEL_VERSION, PREDICTED, PROBABILITY, REQUEST_ID, THRESHOLD
from serving.schema import BatchPrediction, Prediction

logger = logging.getLogger(__name__)

_RETRY_WHILE_CLOSING_S = 0.1

_Chunk = tuple[float, list[Mapping[str, Any]]]  # one call's time and the rows taken from it


class LogSink(Protocol):
    """Where batches go instead of local files (`serving.prediction_log.shared`)."""

    def part(self, moment: dt.datetime, started: str) -> Any:
        """The part a row of `moment` goes to; `started` names the logger's start."""

    def write(self, part: Any, payload: bytes) -> None:
        """Write one batch of lines to `part`; raise OSError to have them kept and retried."""


def prediction_rows(
    records: Sequence[BaseModel], prediction: Prediction | BatchPrediction
) -> list[dict[str, Any]]:
    """Log rows for served records: the answer, then each record by its contract names.

    The answer's columns have the log's own names (`core.columns`), whatever the contract
    calls them in the served answer. `time` is added by the logger. A batch gives one row
    per record, all with its request id.
    """
    shared = {REQUEST_ID: prediction.request_id, MODEL_VERSION: prediction.model_version}
    if isinstance(prediction, Prediction):
        answers = [prediction.scored()] * len(records)
    else:
        answers = prediction.scored()
    return [
        {
            **shared,
            PROBABILITY: probability,
            PREDICTED: predicted,
            THRESHOLD: prediction.threshold,
            **record.model_dump(by_alias=True),
        }
        for record, (probability, predicted) in zip(records, answers, strict=True)
    ]


class PredictionLogger:
    """Appends logged rows to hourly JSON-lines partitions from one background thread.

    - Bounded memory: rows not yet written (waiting, or kept after a failed write) never
      exceed `queue_size`; beyond that, new rows are counted in `dropped`.
    - A failed write (directory unwritable, disk full) is counted in `write_errors` and
      logged; its rows are kept and written with a later batch, so a transient error loses
      nothing.
    - `close()` writes everything left. Without it, rows of the last interval are lost at exit.
    - Each process writes its own part file, so workers never interleave lines, and a process
      killed mid-write leaves at most one truncated final line, which the reader skips.
    """

    def __init__(
        self,
        directory: Path,
        queue_size: int,
        flush_interval_s: float,
        clock: Callable[[], float] = time.time,
        sink: LogSink | None = None,
    ) -> None:
        if queue_size < 1 or flush_interval_s <= 0:
            raise ValueError("queue_size must be >= 1 and flush_interval_s > 0")
        self.directory = Path(directory)
        self.queue_size = queue_size
        self.flush_interval_s = flush_interval_s
        self._clock = clock
        self._sink = sink  # None: append to local files under `directory`
        self._cond = threading.Condition()
        # guarded by _cond
        # A list behind one lock rather than a `queue.Queue` of rows: a request costs one
        # lock instead of one `put` per row (about 1 ms for a 1,000-row batch here), and the
        # bound still counts rows.
        self._waiting: list[_Chunk] = []
        self._waiting_rows = 0
        self._unwritten = 0  # waiting + being written + kept after a failure: the bound
        self._accepting = True
        self._failing = False
        self._deadline = math.inf
        self._logged = self._dropped = self._write_errors = 0
        # used by the writer only
        self._kept: dict[Any, list[bytes]] = {}  # part (a Path, or the sink's) -> lines
        self._reported_drops = 0
        self._failed_attempts = 0
        self._wake_rows = max(1, queue_size // 4)
        self._started: float | None = None
        self._thread: threading.Thread | None = None

    # --- the caller's side ---------------------------------------------------------

    def start(self) -> None:
        """Start the writer thread."""
        with self._cond:
            if self._thread is not None or not self._accepting:
                raise RuntimeError("a prediction logger starts once, before close()")
            self._started = self._clock()
            self._thread = threading.Thread(target=self._run, name="prediction-log", daemon=True)
        self._thread.start()

    def log(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Queue rows for writing; never blocks on IO, never raises. Do not change them after."""
        try:
            rows = list(rows)
        except Exception:
            logger.warning("prediction log: rows must be a sequence of mappings", exc_info=True)
            return
        self._take(rows)

    def _take(self, rows: list[Mapping[str, Any]]) -> None:
        """Queue as many of `rows` as there is room for; count the rest as dropped."""
        count = len(rows)
        if not count:
            return
        try:
            stamp = self._clock()
            with self._cond:
                room = self.queue_size - self._unwritten if self._accepting else 0
                taken = min(count, max(room, 0))
                if taken:
                    self._waiting.append((stamp, rows if taken == count else rows[:taken]))
                    self._waiting_rows += taken
                    self._unwritten += taken
                    if self._waiting_rows >= self._wake_rows:
                        self._cond.notify()
                self._dropped += count - taken
        except Exception:  # a broken clock: count the rows, never fail the request
            with contextlib.suppress(Exception):
                self._dropped += count
                logger.warning("prediction log: could not take %d row(s)", count, exc_info=True)

    def close(self, timeout_s: float = 10) -> None:
        """Stop taking rows and write all that is left, retrying failed writes until timeout_s."""
        with self._cond:
            if not self._accepting:
                return
            self._accepting = False
            self._deadline = time.monotonic() + timeout_s
            self._cond.notify_all()
            thread = self._thread
        if thread is None:  # never started: write in the caller
            self._started = self._clock()
            self._run()
            return
        thread.join(timeout_s + 1)
        if thread.is_alive():
            logger.error(
                "prediction log: still writing after %.1f s; %d row(s) may be lost",
                timeout_s,
                self.pending,
            )

    def __enter__(self) -> PredictionLogger:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def logged(self) -> int:
        """Rows written and fsynced."""
        with self._cond:
            return self._logged

    @property
    def dropped(self) -> int:
        """Rows lost: the buffer was full, the logger was closed, or a row was not JSON."""
        with self._cond:
            return self._dropped

    @property
    def write_errors(self) -> int:
        """Failed write attempts (one per partition file per batch)."""
        with self._cond:
            return self._write_errors

    @property
    def pending(self) -> int:
        """Rows taken but not yet written."""
        with self._cond:
            return self._unwritten

    # --- the writer thread ---------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._cond:
                if self._accepting:
                    self._cond.wait_for(self._should_wake, self.flush_interval_s)
                chunks, self._waiting, self._waiting_rows = self._waiting, [], 0
                closing = not self._accepting
            self._write_safely(chunks)
            if closing:
                self._finish()
                return

    def _should_wake(self) -> bool:
        if not self._accepting:
            return True
        return not self._failing and self._waiting_rows >= self._wake_rows

    def _finish(self) -> None:
        """After close(): retry what failed until the deadline, then count it as lost."""
        while self._kept and time.monotonic() < self._deadline:
            time.sleep(min(_RETRY_WHILE_CLOSING_S, self.flush_interval_s))
            self._write_safely([])
        lost = sum(len(lines) for lines in self._kept.values())
        if lost:
            self._kept = {}
            with self._cond:
                self._unwritten -= lost
                self._dropped += lost
            logger.error("prediction log: %d row(s) could not be written before close", lost)
        self._report_drops()

    def _write_safely(self, chunks: list[_Chunk]) -> None:
        try:
            self._write(chunks)
        except Exception:  # the writer must outlive any surprise
            logger.exception("prediction log: unexpected error in the writer")
        self._report_drops()

    def _write(self, chunks: list[_Chunk]) -> None:
        batches, unencodable = self._kept, 0
        self._kept = {}
        for stamp, rows in chunks:
            moment = dt.datetime.fromtimestamp(stamp, dt.UTC)
            stamp_text = format_time(moment)
            lines = batches.setdefault(self._part_path(moment), [])
            for row in rows:
                try:
                    lines.append(_encode(row, stamp_text))
                except Exception:  # not a mapping, or a value JSON cannot hold
                    unencodable += 1
        written = failed = 0
        for path, lines in batches.items():
            if not lines:
                continue
            try:
                if self._sink is None:
                    _append(path, b"".join(lines))
                else:
                    self._sink.write(path, b"".join(lines))
                written += len(lines)
            except OSError as exc:
                failed += 1
                self._kept[path] = lines
                self._note_failure(path, exc)
        if written and self._failed_attempts and not self._kept:
            logger.info(
                "prediction log: writing again after %d failed attempt(s)", self._failed_attempts
            )
            self._failed_attempts = 0
        if unencodable:
            logger.warning("prediction log: %d row(s) are not JSON; dropped", unencodable)
        with self._cond:
            self._logged += written
            self._dropped += unencodable
            self._unwritten -= written + unencodable
            self._write_errors += failed
            self._failing = bool(self._kept)

    def _note_failure(self, path: Any, exc: OSError) -> None:
        self._failed_attempts += 1
        level = logging.WARNING if self._failed_attempts == 1 else logging.DEBUG
        kept = sum(len(lines) for lines in self._kept.values())
        logger.log(
            level, "prediction log: cannot write %s (%s); keeping %d row(s)", path, exc, kept
        )

    def _report_drops(self) -> None:
        with self._cond:
            dropped = self._dropped
        if dropped > self._reported_drops:
            logger.warning(
                "prediction log: %d more row(s) dropped (%d in all; the buffer holds %d)",
                dropped - self._reported_drops,
                dropped,
                self.queue_size,
            )
            self._reported_drops = dropped

    def _part_path(self, moment: dt.datetime) -> Any:
        started = dt.datetime.fromtimestamp(self._started or 0.0, dt.UTC)
        start = f"{started:%Y%m%dT%H%M%S}{started.microsecond // 1000:03d}Z"
        if self._sink is not None:
            return self._sink.part(moment, start)
        name = f"part-{os.getpid()}-{start}.jsonl"  # the pid at write time: one file per process
        return self.directory / f"date={moment:%Y-%m-%d}" / f"hour={moment:%H}" / name


def _encode(row: Mapping[str, Any], stamp_text: str) -> bytes:
    record = {"time": stamp_text, **row}
    record["time"] = stamp_text  # the logger's clock, even if the row had a time
    try:
        text = json.dumps(record, separators=(",", ":"), allow_nan=False, default=_to_json)
    except ValueError:  # NaN or infinity: null, so the file stays strict JSON
        finite = {k: _finite_or_none(v) for k, v in record.items()}
        text = json.dumps(finite, separators=(",", ":"), allow_nan=False, default=_to_json)
    return (text + "\n").encode("utf-8")


def _to_json(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON")


def _finite_or_none(value: Any) -> Any:
    if isinstance(value, float | np.floating) and not math.isfinite(value):
        return None
    return value


def _append(path: Path, payload: bytes) -> None:
    """Append in one write, then fsync; on failure cut the file back to its old end."""
    path.parent.mkdir(parents=True, exist_ok=True)
    created = not path.exists()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
    try:
        size = os.fstat(fd).st_size
        try:
            view = memoryview(payload)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        except OSError:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, size)  # no half line for the next batch to follow
            raise
    finally:
        os.close(fd)
    if created:  # make the new file's (and folders') names durable too
        for folder in (path.parent, path.parent.parent, path.parent.parent.parent):
            _fsync_dir(folder)


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
