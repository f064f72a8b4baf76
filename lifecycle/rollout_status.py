"""The rollout part of `lifecycle status`: the rollout in progress and the last verdict.

Reading only: the serving store's pointer (its `rollout` block) and the rollout history.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from core.records.rollout import read_verdicts


def status_pointer(store: Path | None) -> dict[str, Any] | None:
    """The serving store's pointer, or None (no store, none deployed, or unreadable: the
    serving line of the status says why)."""
    from serving.model_store import ModelStoreError, read_champion_pointer

    if store is None:
        return None
    try:
        return read_champion_pointer(store)
    except ModelStoreError:
        return None


def rollout_status(pointer: dict[str, Any] | None, history: Path) -> dict[str, Any]:
    """`in_progress`: the pointer's rollout block (None: none); `last`: the newest verdict in
    the history (None: none yet); `error`: a block that cannot be read."""
    from pydantic import ValidationError

    from serving.model_store import pointer_rollout

    status: dict[str, Any] = {"in_progress": None, "last": None, "error": None}
    try:
        slot = pointer_rollout(pointer)
    except ValidationError as exc:
        status["error"] = f"the pointer's rollout block is unreadable: {exc.errors()[0]['msg']}"
        slot = None
    if slot is not None:
        status["in_progress"] = slot.model_dump(mode="json")
    verdicts = read_verdicts(history)
    if verdicts:
        status["last"] = {"path": str(history), **verdicts[-1].model_dump(mode="json")}
    return status


def format_rollout_status(status: dict[str, Any]) -> list[str]:
    """The rollout in one or two lines; none before the first rollout."""
    lines = []
    slot = status.get("in_progress")
    if status.get("error"):
        lines.append(f"rollout: {status['error']}")
    elif slot is None and status.get("last") is not None:
        lines.append("rollout: none in progress")
    elif slot is not None:
        share = f" (share {slot['share']:g})" if slot["kind"] == "canary" else ""
        other = "previous" if slot["kind"] == "watch" else "candidate"
        lines.append(
            f"rollout {slot['id']}: {slot['kind']}{share}, {other} {slot['model']['tag']}, "
            f"since {slot['started_at']}; `lifecycle rollout status` judges it now"
        )
    last = status.get("last")
    if last is not None:
        reason = last["reasons"][-1] if last["reasons"] else ""
        lines.append(
            f"last rollout verdict ({last['path']}): {last['rollout_id']} {last['outcome']} "
            f"at {last['judged_at']} ({last['rows']} rows): {reason}"
        )
    return lines
