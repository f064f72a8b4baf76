"""Typed records between processes: a JSON file one process writes and another reads.

Each record is a frozen pydantic model that the writer and every reader import, so a field
renamed on one side fails on the other at once. Part of the ground: records import nothing
of ours outside `core`. `read_record` is the one way to read one: a missing, unreadable or
mismatched file raises `RecordError` with a one-line message that names the file and the
stage or command that writes it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError


class Record(BaseModel):
    """Base of every record: immutable; an unknown key is an error."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class RecordError(ValueError):
    """A record file that is missing, is not JSON, or does not match its model."""


class RecordMissingError(RecordError, FileNotFoundError):
    """The record file does not exist (yet)."""


R = TypeVar("R", bound=BaseModel)


def read_record(path: Path | str, model: type[R], *, writer: str) -> R:
    """The record at `path`, validated; `writer` names who writes it (for the message)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RecordMissingError(f"{path}: not found; {writer} writes it") from None
    except OSError as exc:
        raise RecordError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    try:
        return model.model_validate_json(text)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "(top level)"
        try:
            json.loads(text)
        except ValueError as not_json:
            raise RecordError(f"{path}: not valid JSON ({not_json}); {writer} writes it") from None
        raise RecordError(
            f"{path}: {where}: {first['msg']}; is it from an older version? {writer} rewrites it"
        ) from None


def record_json(record: BaseModel) -> str:
    """A record as JSON with sorted keys, so equal content gives equal bytes."""
    return json.dumps(record.model_dump(mode="json"), indent=2, sort_keys=True) + "\n"
