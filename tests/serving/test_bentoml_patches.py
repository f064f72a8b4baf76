"""serving/bentoml_patches.py: BentoML's request-timeout timer goes with the request.

Each test drives one HTTP request through a real `TimeoutMiddleware` (around a trivial ASGI
app) on a fresh asyncio loop, then looks at the loop's scheduled timers. The unpatched
class comes from a private copy of BentoML's module, loaded from its file, so the tests
neither depend on nor change whether the process-wide class has been patched already; the
patched one is the real class after `cancel_request_timeout_timers()`, restored afterwards.
"""

from __future__ import annotations

import asyncio
import gc
import importlib.util
import weakref
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import bentoml
import pytest
from bentoml._internal.server.http import traffic

from serving import bentoml_patches

TIMEOUT_S = 60.0  # what the service sets; long enough that no timer fires during a test


def _original_traffic_module() -> ModuleType:
    """BentoML's traffic.py as shipped, loaded afresh under a private name."""
    spec = importlib.util.spec_from_file_location("_bentoml_traffic_original", traffic.__file__)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def patched_middleware(monkeypatch: pytest.MonkeyPatch) -> Iterator[type]:
    """The real TimeoutMiddleware with the patch applied; the previous state comes back."""
    if bentoml.__version__ != bentoml_patches.PATCHED_VERSION:
        pytest.skip(f"the patch is for BentoML {bentoml_patches.PATCHED_VERSION} only")
    # setattr to the current values, so that monkeypatch restores them after the test
    monkeypatch.setattr(traffic.TimeoutMiddleware, "__call__", traffic.TimeoutMiddleware.__call__)
    monkeypatch.setattr(bentoml_patches, "_applied", False)
    assert bentoml_patches.cancel_request_timeout_timers()
    yield traffic.TimeoutMiddleware


async def _app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


async def _slow_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await asyncio.sleep(10)
    await _app(scope, receive, send)


def _one_request(middleware_class: type, app: Any = _app, timeout: float = TIMEOUT_S) -> dict:
    """One request on a fresh loop: what was sent, and the timers still live afterwards."""
    loop = asyncio.new_event_loop()
    assert isinstance(loop, asyncio.BaseEventLoop)  # `_scheduled`: its heap of timers
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    middleware = middleware_class(app, timeout)
    alive = weakref.ref(middleware)
    scope = {"type": "http", "method": "POST", "path": "/predict", "headers": []}
    try:
        loop.run_until_complete(middleware(scope, receive, send))
        live_timers = [
            handle
            for handle in loop._scheduled
            if not handle.cancelled() and getattr(handle._callback, "__self__", None) is middleware
        ]
        out = {
            "status": sent[0]["status"],
            "live_timers": len(live_timers),
            "live_timer_delay_s": [round(h.when() - loop.time()) for h in live_timers],
        }
        del middleware, live_timers
        gc.collect()
        out["middleware_collected"] = alive() is None
        return out
    finally:
        loop.close()


def test_patched_middleware_cancels_its_timer(patched_middleware: type) -> None:
    out = _one_request(patched_middleware)
    assert out["status"] == 200
    assert out["live_timers"] == 0
    assert out["middleware_collected"]  # nothing on the loop holds the request's objects


def test_unpatched_middleware_leaves_its_timer_running() -> None:
    """The same request through BentoML's own code: the leak the patch is there for."""
    original = _original_traffic_module().TimeoutMiddleware
    assert original is not traffic.TimeoutMiddleware  # untouched by any patch
    out = _one_request(original)
    assert out["status"] == 200
    assert out["live_timers"] == 1
    assert out["live_timer_delay_s"] == [round(TIMEOUT_S)]  # a minute more of holding on
    assert not out["middleware_collected"]


def test_patched_middleware_still_times_out(patched_middleware: type) -> None:
    out = _one_request(patched_middleware, app=_slow_app, timeout=0.05)
    assert out["status"] == 504
    assert out["live_timers"] == 0
