"""Adaptive batching of single-row requests: one model call at a time, rows queue meanwhile."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any


class RowBatcher:
    """Scores single rows together: one model call at a time, rows queue in the meantime.

    A batch leaves when the runner is free. It takes every queued row up to
    `max_batch_size`; when the last batch held more rows than are queued now (clients are
    sending concurrently), it waits up to `max_latency_ms` for that many to arrive. A lone
    client never waits (its batches are single rows), and no row is ever refused: under
    overload rows wait in the queue instead of being shed with 503s.

    `score` takes the rows of one call and returns one result per row, in order (the
    service's `serving.rollout.RowAnswer`: which model answered, so routing happens per
    row after batching).
    """

    def __init__(
        self,
        score: Callable[[list[Any]], Sequence[Any]],
        max_batch_size: int,
        max_latency_ms: int,
        run_in_thread: Callable[..., Awaitable[Any]],
    ) -> None:
        self._score = score
        self._max_batch_size = max_batch_size
        self._max_latency_s = max_latency_ms / 1000.0
        self._run_in_thread = run_in_thread
        self._queue: asyncio.Queue[tuple[Any, asyncio.Future]] | None = None
        self._task: asyncio.Task | None = None
        self._expected = 1

    async def submit(self, row: Any) -> Any:
        """The row's result from `score`."""
        if self._task is None or self._task.done():
            self._queue = asyncio.Queue()
            self._task = asyncio.get_running_loop().create_task(self._run())
        assert self._queue is not None
        future: asyncio.Future = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((row, future))
        return await future

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()

    async def _run(self) -> None:
        assert self._queue is not None
        queue = self._queue
        while True:
            batch = [await queue.get()]
            self._take_queued(queue, batch)
            target = min(self._expected, self._max_batch_size)
            if len(batch) < target:
                deadline = time.monotonic() + self._max_latency_s
                while len(batch) < target and (left := deadline - time.monotonic()) > 0:
                    try:
                        batch.append(await asyncio.wait_for(queue.get(), left))
                    except TimeoutError:
                        break
                    self._take_queued(queue, batch)
            self._expected = len(batch)
            live = [(row, future) for row, future in batch if not future.done()]
            if not live:
                continue
            try:
                results = await self._run_in_thread(self._score, [row for row, _ in live])
            except Exception as exc:  # the rows' requests fail with it; the batcher goes on
                for _, future in live:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for (_, future), result in zip(live, results, strict=True):
                if not future.done():  # a request that timed out is no longer waiting
                    future.set_result(result)

    def _take_queued(self, queue: asyncio.Queue, batch: list) -> None:
        while len(batch) < self._max_batch_size and not queue.empty():
            batch.append(queue.get_nowait())
