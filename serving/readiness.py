"""`GET /readyz` that says which model a worker serves and where it came from.

BentoML's `/readyz` answers 200 or 503 with a bare text body. This ASGI middleware keeps
that meaning (200 once a champion is loaded, 503 before) and answers JSON:
`{"ready": true, "model": "milling-failure:v3", "source": "shared", "rollout": null}`, or
`{"ready": false, "reason": "..."}` with 503. Each worker process has its own state, set by
its service instance. During a rollout, `rollout` is `{"id", "kind", "version", "share"}` of
the model served beside the champion; `rollout_error` says (one line) why the pointer's
rollout is not served, when it is not.
"""

from __future__ import annotations

import json
import threading
from typing import Any

from serving.gate import send_json

READYZ_PATH = "/readyz"


class Readiness:
    """A worker's readiness: the model it serves and its source, or why it serves none."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._body: dict[str, Any] = {"ready": False, "reason": "starting"}

    def serving(
        self,
        tag: str,
        source: str,
        rollout: dict[str, Any] | None = None,
        rollout_error: str | None = None,
    ) -> None:
        body = {"ready": True, "model": tag, "source": source, "rollout": rollout}
        if rollout_error is not None:
            body["rollout_error"] = rollout_error
        with self._lock:
            self._body = body

    def waiting(self, reason: str) -> None:
        """Not ready, and why; ignored once a model is served (it keeps serving)."""
        with self._lock:
            if not self._body["ready"]:
                self._body = {"ready": False, "reason": reason}

    def answer(self) -> tuple[int, dict[str, Any]]:
        with self._lock:
            body = dict(self._body)
        return (200 if body["ready"] else 503), body


class ReadinessRoute:
    """ASGI middleware: `GET /readyz` answers from `Readiness`; everything else passes."""

    def __init__(self, app: Any, *, readiness: Readiness) -> None:
        self.app = app
        self.readiness = readiness

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] != READYZ_PATH or scope["method"] != "GET":
            await self.app(scope, receive, send)
            return
        status, body = self.readiness.answer()
        await send_json(send, status, json.dumps(body).encode("utf-8"))
