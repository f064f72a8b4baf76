"""One clock and one time format for everything the lifecycle records.

Times are aware UTC datetimes; on disk and in MLflow they are ISO 8601 with milliseconds
and a Z (`2026-12-01T14:27:34.123Z`), the form the prediction log, the ledger, the watch
log and the alias history share. A naive time read back is taken as UTC.
"""

from __future__ import annotations

import datetime as dt
from typing import Any


def utc_now() -> dt.datetime:
    """Now, as an aware UTC datetime (the one clock: tests may replace it where it is passed)."""
    return dt.datetime.now(dt.UTC)


def as_utc(moment: dt.datetime) -> dt.datetime:
    """`moment` in UTC; a naive one is taken as UTC already."""
    return moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment.astimezone(dt.UTC)


def format_time(moment: dt.datetime) -> str:
    """UTC, milliseconds, with a Z."""
    return as_utc(moment).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def now_text() -> str:
    """`format_time(utc_now())`."""
    return format_time(utc_now())


def parse_time(value: Any) -> dt.datetime | None:
    """An ISO 8601 time (or a datetime) as an aware UTC datetime; None if unreadable."""
    if isinstance(value, dt.datetime):
        return as_utc(value)
    if not isinstance(value, str) or not value:
        return None
    try:
        return as_utc(dt.datetime.fromisoformat(value.replace("Z", "+00:00")))
    except ValueError:
        return None
