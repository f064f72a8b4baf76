"""BentoML's private API, kept in this one module: one fix to its HTTP server, and its store.

Everything here reaches under BentoML's public API (`bentoml._internal`, underscore
arguments) and was checked on BentoML 1.4.40 (`PATCHED_VERSION`); after an upgrade, read
this file first and run tests/serving/test_bentoml_patches.py and test_model_store.py.
The fix, `cancel_request_timeout_timers`, stops a per-request memory leak;
`bentoml_openapi_document` reads the OpenAPI document BentoML builds; `open_model_store`,
`create_model` and `point_bentoml_home` reach BentoML's model store at an explicit path.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bentoml import Model
    from bentoml._internal.models.model import ModelStore

logger = logging.getLogger(__name__)

PATCHED_VERSION = "1.4.40"  # every private API below was checked on this BentoML version
_applied = False


def cancel_request_timeout_timers() -> bool:
    """Patch TimeoutMiddleware to cancel its per-request timer. True when applied.

    BentoML 1.4.40's `TimeoutMiddleware` (bentoml/_internal/server/http/traffic.py) schedules
    `loop.call_later(traffic.timeout, ...)` for every request and never cancels it. The timer
    handle holds the request's future and, through it, the request's objects, so each request
    stays in memory for `traffic.timeout` (60 s by default): `benchmarks/results/serving.md`
    measured p99 373 ms at 8 connections with the leak, 17 ms without it. The replacement is
    the library's own `__call__` with one change, the timer is cancelled when the request is
    over; it is applied only on the exact version it was written against (skipped with a
    warning on any other).
    """
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


def bentoml_openapi_document(service: Any) -> dict[str, Any]:
    """The OpenAPI document BentoML builds for `service` (a `@bentoml.service` class), as JSON.

    BentoML 1.4.40 serves `service.openapi_spec.asdict()` at `/docs.json`
    (`_bentoml_impl/server/app.py`); `serving.openapi` corrects it.
    """
    return service.openapi_spec.asdict()


# --- BentoML's model store at an explicit path ------------------------------------------
# (its public API reaches the store only through its global BentoML home)


def open_model_store(folder: Path) -> ModelStore:
    """BentoML's model store in `folder` (`<store>/models`), not the global BentoML home's."""
    from bentoml._internal.models.model import ModelStore

    return ModelStore(folder)


@contextmanager
def create_model(
    tag: str, labels: dict[str, str], metadata: dict[str, Any], models: ModelStore
) -> Iterator[Model]:
    """`bentoml.models.create`, saving into `models` (its private `_model_store` argument)."""
    import bentoml

    with bentoml.models.create(
        tag, labels=labels, metadata=metadata, _model_store=models
    ) as created:
        yield created


def point_bentoml_home(home: Path) -> None:
    """Override an already imported BentoML's home, model store and bento store."""
    from bentoml._internal.bento import BentoStore
    from bentoml._internal.configuration.containers import BentoMLContainer
    from bentoml._internal.models.model import ModelStore

    BentoMLContainer.bentoml_home.set(str(home))
    BentoMLContainer.model_store.set(ModelStore(home / "models"))
    BentoMLContainer.bento_store.set(BentoStore(home / "bentos"))
