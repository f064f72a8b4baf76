"""The request gate in front of the prediction and admin routes: API key, size, JSON, schema.

An ASGI middleware that answers before BentoML reads the body: 401 without the right
`X-API-Key`, 415 for a body that is not JSON, 413 over the size limit, and 400 naming
each bad field for a body the request model refuses. Every answer carries `X-Request-ID`.
With several workers it also recycles connections now and then, so they share the load.
"""

from __future__ import annotations

import hmac
import itertools
import json
import os
import re
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import BaseModel, ValidationError

from serving.schema import describe_validation_error

API_KEY_HEADER = "X-API-Key"
REQUEST_ID_HEADER = "X-Request-ID"
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


class RequestGate:
    """ASGI middleware for the prediction and admin routes: key, size, JSON and schema.

    Runs before BentoML reads the body, so an oversized, unauthenticated or invalid
    request costs no parsing by BentoML, logs no traceback, and gets a JSON body that names
    the problem. Other paths (health, metrics, docs) pass through untouched.

    With `close_every`, every `close_every`-th answer of a worker carries `Connection:
    close`, so the client reconnects and the kernel places the new connection again.
    BentoML's workers share one listening socket, and a burst of keep-alive connections
    tends to land on one worker (BentoML issue #5426) and stay there; measured here, two
    workers then served like one in 2 of 20 runs, and in none with recycling
    (benchmarks/results/worker_balance.md). Closing now and then lets an idle worker take
    connections over, as nginx's `keepalive_requests` does.
    """

    def __init__(
        self,
        app: Any,
        *,
        protected: tuple[str, ...],
        schemas: dict[str, type[BaseModel]],
        api_key_env: str,
        max_body_bytes: int,
        close_every: int = 0,
    ) -> None:
        self.app = app
        self.protected = frozenset(protected)
        self.schemas = schemas
        self.api_key = os.environ.get(api_key_env) or None  # read once, at start-up
        self.max_body_bytes = max_body_bytes
        self.close_every = close_every  # 0: never ask the client to reconnect
        self._answers = itertools.count(1)  # this worker's answers on the protected routes

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] not in self.protected:
            await self.app(scope, receive, send)
            return
        headers = _headers(scope)
        request_id = request_id_from(headers.get(REQUEST_ID_HEADER.lower()))
        scope = {**scope, "headers": _with_header(scope, REQUEST_ID_HEADER, request_id)}
        added = {REQUEST_ID_HEADER: request_id}
        if self.close_every and next(self._answers) % self.close_every == 0:
            added["Connection"] = "close"  # the server (uvicorn) closes after this answer
        send = _adding_headers(send, added)

        if self.api_key is not None and not hmac.compare_digest(
            headers.get(API_KEY_HEADER.lower(), "").encode(), self.api_key.encode()
        ):
            await _reply(send, 401, {"error": f"missing or wrong {API_KEY_HEADER} header"})
            return
        if scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        media_type = headers.get("content-type", "application/json").split(";")[0].strip()
        if media_type.lower() != "application/json":
            await _reply(
                send,
                415,
                {"error": f"send JSON (Content-Type: application/json), not {media_type}"},
            )
            return
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_body_bytes:
            await _reply(send, 413, _too_large(self.max_body_bytes))
            return
        body = await _read_body(receive, self.max_body_bytes)
        if body is None:
            await _reply(send, 413, _too_large(self.max_body_bytes))
            return
        schema = self.schemas.get(scope["path"])
        if schema is not None:
            try:
                schema.model_validate_json(body or b"{}")
            except ValidationError as exc:
                problems = _trimmed(describe_validation_error(exc))
                await _reply(
                    send,
                    400,
                    {"error": f"invalid request: {_summary(problems)}", "detail": problems},
                )
                return
        await self.app(scope, _replay(body, receive), send)


def _headers(scope: dict[str, Any]) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}


def _with_header(scope: dict[str, Any], name: str, value: str) -> list[tuple[bytes, bytes]]:
    key = name.lower().encode("latin-1")
    return [(k, v) for k, v in scope["headers"] if k.lower() != key] + [
        (key, value.encode("latin-1"))
    ]


def _adding_headers(send: Any, headers: dict[str, str]) -> Callable[[dict], Awaitable[None]]:
    added = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
    replaced = {key for key, _ in added}

    async def wrapped(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            kept = [(k, v) for k, v in message.get("headers", []) if k.lower() not in replaced]
            message = {**message, "headers": [*kept, *added]}
        await send(message)

    return wrapped


def request_id_from(given: str | None) -> str:
    """The client's request id when it is a sane token, else a new one."""
    if given and _REQUEST_ID.fullmatch(given):
        return given
    return uuid.uuid4().hex


async def _read_body(receive: Any, limit: int) -> bytes | None:
    """The whole body, or None as soon as it grows past `limit` bytes."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return b"".join(chunks)  # the app will see the disconnect too
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replay(body: bytes, receive: Any) -> Callable[[], Awaitable[dict[str, Any]]]:
    sent = False

    async def replayed() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed


async def _reply(send: Any, status: int, body: dict[str, Any]) -> None:
    await send_json(send, status, json.dumps(body).encode("utf-8"))


async def send_json(send: Any, status: int, payload: bytes) -> None:
    """One whole JSON response on an ASGI `send`: its status, type and length, then the body."""
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})


def _too_large(limit: int) -> dict[str, Any]:
    return {"error": f"request body over {limit} bytes (serving.max_body_bytes)"}


def _trimmed(problems: list[dict[str, Any]], limit: int = 80) -> list[dict[str, Any]]:
    """Echo short values only: never the whole body back (malformed JSON), never megabytes."""
    trimmed = []
    for problem in problems:
        problem = dict(problem)
        value = problem.get("value")
        if problem.get("type") == "json_invalid":
            problem.pop("value", None)
        elif isinstance(value, str) and len(value) > limit:
            problem["value"] = value[:limit] + "..."
        trimmed.append(problem)
    return trimmed


def _summary(problems: list[dict[str, Any]]) -> str:
    first = problems[0] if problems else {"message": "unreadable body"}
    where = first.get("field")
    if "record" in first:
        where = f"records[{first['record']}].{where}" if where else f"records[{first['record']}]"
    text = f"{where}: {first['message']}" if where else first["message"]
    more = len(problems) - 1
    return text + (f" (and {more} more)" if more > 0 else "")
