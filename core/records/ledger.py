"""One line of the stage ledger (`.lifecycle/ledger.jsonl`): an attempt started or finished.

`pipelines.edges.ledger` writes them; `lifecycle status` (and tests) read them through
`read_ledger`, which skips a damaged line with a warning instead of failing.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Literal

from pydantic import ConfigDict, Field, TypeAdapter, ValidationError

from core.io import read_json_lines
from core.paths import LEDGER
from core.records import Record

logger = logging.getLogger(__name__)

Status = Literal["succeeded", "failed", "interrupted"]


class AttemptError(Record):
    """What ended a failed or interrupted attempt: the exception's class name and message."""

    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)

    error_class: str = Field(alias="class")
    message: str


class _Attempt(Record):
    """The fields of both lines. `pid_start` / `repro_pid_start` are process start times
    (seconds since the epoch), so a pid reused by a later process is not taken for it."""

    lifecycle_run: str
    stage: str
    attempt: int = Field(ge=1)
    max_attempts: int = Field(ge=1)
    pid: int
    pid_start: float | None
    repro_pid: int | None  # the `dvc repro` that started the stage, if one did
    repro_pid_start: float | None
    started_at: str


class AttemptStarted(_Attempt):
    """An attempt's `started` line."""

    event: Literal["started"] = "started"


class AttemptFinished(_Attempt):
    """An attempt's `finished` line: the `started` fields again, then how it ended."""

    event: Literal["finished"] = "finished"
    finished_at: str
    duration_s: float
    status: Status
    error: AttemptError | None
    retrying: bool
    inputs: dict[str, str | None] | None  # the stage's deps hashed as DVC hashes them
    mlflow_run_id: str | None


LedgerEntry = AttemptStarted | AttemptFinished
_ENTRY: TypeAdapter[LedgerEntry] = TypeAdapter(Annotated[LedgerEntry, Field(discriminator="event")])


def ledger_line(entry: LedgerEntry) -> dict[str, object]:
    """The entry as the JSON object written on its line."""
    return entry.model_dump(mode="json")


def read_ledger(path: Path = LEDGER) -> list[LedgerEntry]:
    """Every entry, oldest first; a line that is not a ledger entry is skipped with a warning.

    Raises FileNotFoundError when there is no ledger.
    """
    entries = []
    for number, value in read_json_lines(path):
        try:
            entries.append(_ENTRY.validate_python(value))
        except ValidationError:
            logger.warning("%s line %d: not a ledger record; skipped", path, number)
    return entries
