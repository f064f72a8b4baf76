"""The record of every alias move in the MLflow registry: what moved, when and why.

Each move is recorded three ways: one JSON line appended to the alias history
(`core.paths.ALIAS_HISTORY` for the deploy stage), a log line, and tags on the versions
involved (`champion_since`, `promotion_evidence`; `previous_since`, `demotion_evidence`;
for a rollout's candidate `candidate_since`, `candidate_evidence` and, when it is removed,
`aborted_at`, `abort_evidence`).
Servers that predate MLflow's `bda7b8c39065` migration hold at most 5000 characters in a
tag, so a longer record is summarised on the tag and kept whole in the history.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from core.io import append_json_line

if TYPE_CHECKING:
    from mlflow import MlflowClient

logger = logging.getLogger(__name__)

TAG_VALUE_LIMIT = 5000


@dataclass(frozen=True)
class AliasMove:
    """One move of the `champion` alias (or of the rollout's `candidate`): what it pointed to
    before and after, and why.

    `candidate` sets the `candidate` alias and `abort` removes it: the champion stays
    (`from_version == to_version`). A `promote` that ends a rollout names the candidate it
    promoted in `candidate_version`.
    """

    time: str  # UTC, core.clock's format
    action: Literal["promote", "rollback", "candidate", "abort"]
    model: str
    from_version: int | None  # champion before the move
    to_version: int  # champion after the move
    from_sha256: str | None
    to_sha256: str | None
    previous_version: int | None  # `previous` after the move
    changed: bool
    evidence: dict[str, Any]
    candidate_version: int | None = None  # the rollout's candidate (candidate, abort, promote)

    def describe(self) -> str:
        """The move in one readable line."""
        if self.action in ("candidate", "abort"):
            return self._describe_candidate()
        if not self.changed:
            return f"{self.model}: v{self.to_version} is already the champion; nothing moved"
        before = (
            f"v{self.from_version} (sha256 {short_sha256(self.from_sha256)})"
            if self.from_version is not None
            else "none"
        )
        after = f"v{self.to_version} (sha256 {short_sha256(self.to_sha256)})"
        prior = f"v{self.previous_version}" if self.previous_version is not None else "none"
        again = "; roll back again to return to it" if self.action == "rollback" else ""
        return f"{self.action} {self.model}: champion {before} -> {after}; previous {prior}{again}"

    def record(self) -> dict[str, Any]:
        return asdict(self)

    def _describe_candidate(self) -> str:
        champion = f"champion v{self.to_version} (sha256 {short_sha256(self.to_sha256)})"
        if not self.changed:
            return f"{self.action} {self.model}: nothing moved; {champion}"
        if self.action == "candidate":
            return (
                f"candidate {self.model}: v{self.candidate_version} starts a rollout beside "
                f"the {champion}"
            )
        return f"abort {self.model}: candidate v{self.candidate_version} removed; {champion} stays"


def append_move(move: AliasMove, history: Path) -> None:
    """Append the move's full record to the history and log it. Raises OSError when the
    history cannot be written (the error log line then holds the record)."""
    record = move.record()
    try:
        append_json_line(history, record, default=_jsonable, allow_nan=True)
    except OSError as exc:
        logger.error(
            "alias moved but %s was not written (%s); the record: %s",
            history,
            exc,
            _json(record),
        )
        raise
    logger.info("%s", move.describe())
    logger.info("evidence recorded in %s and on the version tags", history)
    logger.debug("evidence for %s of %s: %s", move.action, move.model, _json(record))


def tag_move(client: MlflowClient, move: AliasMove) -> None:
    """Tag the versions the move involved with when and why (the record, cut to fit)."""
    evidence = tag_json(move.record())
    if move.action in ("candidate", "abort") and move.candidate_version is not None:
        since, why = (
            ("candidate_since", "candidate_evidence")
            if move.action == "candidate"
            else ("aborted_at", "abort_evidence")
        )
        client.set_model_version_tag(move.model, str(move.candidate_version), since, move.time)
        client.set_model_version_tag(move.model, str(move.candidate_version), why, evidence)
        return
    client.set_model_version_tag(move.model, str(move.to_version), "champion_since", move.time)
    client.set_model_version_tag(move.model, str(move.to_version), "promotion_evidence", evidence)
    if move.from_version is not None:
        version = str(move.from_version)
        client.set_model_version_tag(move.model, version, "previous_since", move.time)
        client.set_model_version_tag(move.model, version, "demotion_evidence", evidence)


def tag_json(record: dict[str, Any]) -> str:
    """The record as JSON within TAG_VALUE_LIMIT; when too long, a valid JSON summary."""
    text = _json(record)
    if len(text) <= TAG_VALUE_LIMIT:
        return text
    summary = {key: value for key, value in record.items() if key != "evidence"}
    summary["evidence_truncated"] = "full evidence in the alias history file"
    evidence = json.dumps(record["evidence"], sort_keys=True, default=_jsonable)
    keep = TAG_VALUE_LIMIT
    while True:  # the preview is escaped again inside the summary: shrink until it fits
        summary["evidence_preview"] = evidence[:keep]
        text = _json(summary)
        if len(text) <= TAG_VALUE_LIMIT:
            return text
        keep = max(0, keep - (len(text) - TAG_VALUE_LIMIT) - 8)


def short_sha256(sha256: str | None) -> str:
    """The first 12 hex digits, for messages; `-` when unknown."""
    return sha256[:12] if sha256 else "-"


def _json(record: dict[str, Any]) -> str:
    return json.dumps(record, sort_keys=True, default=_jsonable, ensure_ascii=False)


def _jsonable(value: Any) -> Any:
    """numpy values as numbers and lists; anything else JSON cannot hold as its string."""
    tolist = getattr(value, "tolist", None)
    return tolist() if callable(tolist) else str(value)
