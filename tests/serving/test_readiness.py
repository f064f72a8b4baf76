"""`GET /readyz`: BentoML's 200/503, with the model served and its source, or why none."""

from __future__ import annotations

import asyncio

from serving.readiness import Readiness, ReadinessRoute
from tests.serving.server import MODEL_NAME


def test_readyz_answers_the_model_and_its_source_or_why_not() -> None:
    readiness, sent = Readiness(), []

    async def call() -> None:
        async def send(message: dict) -> None:
            sent.append(message)

        route = ReadinessRoute(None, readiness=readiness)
        await route({"type": "http", "path": "/readyz", "method": "GET"}, None, send)

    readiness.waiting("the shared store is unreachable")
    asyncio.run(call())
    readiness.serving(f"{MODEL_NAME}:v3", "shared")
    readiness.waiting("a later poll failed")  # the served model keeps the worker ready
    asyncio.run(call())

    assert [m["status"] for m in sent if m["type"] == "http.response.start"] == [503, 200]
    bodies = [m["body"] for m in sent if m["type"] == "http.response.body"]
    assert b"unreachable" in bodies[0]
    assert bodies[1] == (
        b'{"ready": true, "model": "milling-failure:v3", "source": "shared", "rollout": null}'
    )
