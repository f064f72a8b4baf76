"""One fix to BentoML 1.4.40's HTTP server, applied when the service module is imported.

BentoML 1.4.40's `TimeoutMiddleware` (bentoml/_internal/server/http/traffic.py) schedules
`loop.call_later(traffic.timeout, ...)` for every request and never cancels it. The timer
handle holds the request's future and, through it, the request's objects, so each request
stays in memory for `traffic.timeout` (60 s by default). At a few hundred requests per
second the heap grows by tens of thousands of objects a second and every full garbage
collection takes longer: `benchmarks/results/serving.md` measured p99 373 ms at 8
connections with the leak, 17 ms without it (the whole story is in that file).

The replacement below is the library's own `__call__` with one change: the timer is
cancelled when the request is over. It is applied only to the exact version it was written
against; on any other version it is skipped with a warning, and the benchmark tells whether
the upstream code still needs it.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

logger = logging.getLogger(__name__)

PATCHED_VERSION = "1.4.40"
_applied = False


def cancel_request_timeout_timers() -> bool:
    """Patch TimeoutMiddleware to cancel its per-request timer. True when applied."""
    global _applied
    if _applied:
        return True
    import bentoml
    from bentoml._internal.server.http import traffic
    from starlette.responses import JSONResponse

    if bentoml.__version__ != PATCHED_VERSION:
        logger.warning(
            "BentoML %s is not %s: its request-timeout timers are left as they are; run "
            "benchmarks/bench_serving.py to see whether p99 latency suffers",
            bentoml.__version__,
            PATCHED_VERSION,
        )
        return False

    async def __call__(self: Any, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        loop = asyncio.get_running_loop()
        waiter = loop.create_future()
        handle = loop.call_later(self.timeout, self._set_timer_out, waiter)

        async def _send(message: dict[str, Any]) -> None:
            if not waiter.done():
                waiter.set_result(None)
            await send(message)

        fut = asyncio.ensure_future(self.app(scope, receive, _send), loop=loop)
        try:
            await waiter
        except TimeoutError:
            if fut.cancel():
                error = f"Not able to process the request in {self.timeout} seconds"
                await JSONResponse({"error": error}, status_code=504)(scope, receive, send)
        else:
            await fut
        finally:
            handle.cancel()  # the change: the timer and what it holds go with the request

    traffic.TimeoutMiddleware.__call__ = __call__
    _applied = True
    return True
