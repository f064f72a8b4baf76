"""The reader of the prediction log: the rows of a time window, newest partitions first.

The writer (`serving.prediction_log.writer`) appends JSON lines under
`date=YYYY-MM-DD/hour=HH/`; the monitor stage and `lifecycle simulate` read them back here.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
from pathlib import Path
from typing import Any

import pandas as pd

from core.clock import as_utc
from core.columns import LOG_COLUMNS, PREDICTED, PROBABILITY, THRESHOLD
from features.contract import DataContract
from serving.schema import served_columns

logger = logging.getLogger(__name__)

_LOG_DTYPES = {PROBABILITY: "float64", PREDICTED: "bool", THRESHOLD: "float64"}
# the answer's columns as logs written before they had the log's own names call them
_EARLIER_NAMES = {"failure_probability": PROBABILITY, "failure": PREDICTED}
# date=/hour=, and below it replica=<id>/ when synced from the shared store
_PARTITION = re.compile(r"^date=(\d{4}-\d{2}-\d{2})/hour=(\d{2})(/replica=[^/]+)?$")
_PARTS = ("date=*/hour=*/part-*.jsonl", "date=*/hour=*/replica=*/part-*.jsonl")


def read_prediction_log(
    directory: Path,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    contract: DataContract | None = None,
    newest: int | None = None,
) -> pd.DataFrame:
    """Every logged row with `since <= time < until`, sorted by time (`time` tz-aware, UTC).

    Partitions outside the window are not read. With `newest`, only the newest `newest`
    rows are returned, and hour partitions are read newest first until they hold that many,
    so the cost follows the window, not the log's age. Unreadable lines (the truncated last
    line of a process killed mid-write) are skipped with a warning naming the file. Naive
    datetimes are taken as UTC. With a contract, its id and feature columns are always
    present, also in the empty frame.
    """
    if newest is not None and newest < 1:
        raise ValueError(f"newest must be at least 1 row, got {newest}")
    since, until = _as_utc(since), _as_utc(until)
    hours: dict[pd.Timestamp | None, list[Path]] = {}
    for part in sorted(p for pattern in _PARTS for p in Path(directory).glob(pattern)):
        hour = _partition_start(part, Path(directory))
        if hour is None or _overlaps(hour, since, until):
            hours.setdefault(hour, []).append(part)
    # a row lives in the partition of its own time's hour, so whole hours read newest first
    # hold the newest rows; a part outside the date=/hour= layout is always read
    order = sorted(hours, key=lambda hour: (hour is not None, hour), reverse=True)
    rows: list[dict[str, Any]] = []
    dated = 0
    for hour in order:
        if newest is not None and hour is not None and dated >= newest:
            break
        for part in hours[hour]:
            read = _read_rows(part)
            rows.extend(read)
            if newest is not None:
                dated += _dated(read, since, until)
    expected = [*LOG_COLUMNS, *(c.name for c in served_columns(contract))] if contract else []
    if not rows:
        return _empty_frame(expected or list(LOG_COLUMNS), contract)
    frame = pd.DataFrame.from_records(rows)
    for name in expected:
        if name not in frame.columns:
            frame[name] = None
    first = [name for name in expected or LOG_COLUMNS if name in frame.columns]
    frame = frame[first + [name for name in frame.columns if name not in first]]
    frame["time"] = _parse_times(frame["time"])
    undated = int(frame["time"].isna().sum())
    if undated:
        logger.warning("prediction log: %d row(s) without a readable time; skipped", undated)
    frame = frame[_within(frame["time"], since, until)].sort_values("time", kind="stable")
    if newest is not None:
        frame = frame.iloc[-newest:]
    return frame.reset_index(drop=True)


def _dated(
    rows: list[dict[str, Any]], since: pd.Timestamp | None, until: pd.Timestamp | None
) -> int:
    """How many `rows` have a readable time within `since <= time < until`."""
    times = _parse_times(pd.Series([row.get("time") for row in rows], dtype=object))
    return int(_within(times, since, until).sum())


def _parse_times(values: pd.Series) -> pd.Series:
    """Logged times as tz-aware UTC timestamps; NaT where a value is not a readable time."""
    return pd.to_datetime(values, utc=True, format="ISO8601", errors="coerce")


def _within(times: pd.Series, since: pd.Timestamp | None, until: pd.Timestamp | None) -> pd.Series:
    """True where a time is readable and `since <= time < until`."""
    keep = times.notna()
    if since is not None:
        keep &= times >= since
    if until is not None:
        keep &= times < until
    return keep


def _as_utc(moment: dt.datetime | None) -> pd.Timestamp | None:
    return None if moment is None else pd.Timestamp(as_utc(moment))


def _partition_start(part: Path, directory: Path) -> pd.Timestamp | None:
    match = _PARTITION.match(part.parent.relative_to(directory).as_posix())
    if match is None:
        return None
    return pd.Timestamp(f"{match.group(1)}T{match.group(2)}:00:00", tz="UTC")


def _overlaps(hour: pd.Timestamp, since: pd.Timestamp | None, until: pd.Timestamp | None) -> bool:
    if until is not None and hour >= until:
        return False
    return since is None or hour + pd.Timedelta(hours=1) > since


def _read_rows(part: Path) -> list[dict[str, Any]]:
    lines = part.read_bytes().split(b"\n")
    rows = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            row = None
        if isinstance(row, dict):
            rows.append(_current_names(row))
        elif number == len(lines):  # no newline after it: the writer stopped mid-line
            logger.warning("prediction log: %s: truncated last line skipped", part)
        else:
            logger.warning("prediction log: %s: unreadable line %d skipped", part, number)
    return rows


def _current_names(row: dict[str, Any]) -> dict[str, Any]:
    """A row logged under the earlier names (`failure_probability`, `failure`), renamed."""
    if PROBABILITY in row or "failure_probability" not in row:
        return row
    return {_EARLIER_NAMES.get(name, name): value for name, value in row.items()}


def _empty_frame(columns: list[str], contract: DataContract | None) -> pd.DataFrame:
    dtypes: dict[str, Any] = {name: "object" for name in columns}
    dtypes.update({k: v for k, v in _LOG_DTYPES.items() if k in dtypes})
    dtypes["time"] = pd.DatetimeTZDtype("ns", "UTC")
    if contract is not None:
        for column in served_columns(contract):
            if column.is_numeric:
                dtypes[column.name] = "float64"
    return pd.DataFrame({name: pd.Series(dtype=dtype) for name, dtype in dtypes.items()})
