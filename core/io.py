"""File IO shared by every layer: atomic writes, JSON and JSON lines, reading tables.

Every output is written to a temporary file in the same folder and renamed into place,
so a stage killed mid-write never leaves a half-written file that a later stage trusts.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd

TABLE_SUFFIXES = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}


@contextlib.contextmanager
def atomic_path(target: Path | str) -> Iterator[Path]:
    """Yield a temporary path beside `target`; rename it onto `target` only on success."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~_current_umask())  # mkstemp makes 0600; honour the umask
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_atomic(target: Path | str, writer: Callable[[Path], Any]) -> Path:
    """Call `writer(tmp_path)` and move the result onto `target` atomically."""
    with atomic_path(target) as tmp:
        writer(tmp)
    return Path(target)


def write_parquet(frame: pd.DataFrame, target: Path | str) -> Path:
    """Write a frame as Parquet, deterministically (no index, no timestamps), atomically."""
    return write_atomic(target, lambda tmp: frame.to_parquet(tmp, index=False, engine="pyarrow"))


def write_json(data: Any, target: Path | str) -> Path:
    """Write JSON with sorted keys so equal content gives equal bytes."""
    text = json.dumps(data, indent=2, sort_keys=True, default=str) + "\n"
    return write_atomic(target, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_text(text: str, target: Path | str) -> Path:
    return write_atomic(target, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def read_json(path: Path | str) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def table_format(path: Path | str) -> str:
    """'csv' or 'parquet' from a path's suffix; a clear error for anything else."""
    suffix = Path(str(path)).suffix.lower()
    try:
        return TABLE_SUFFIXES[suffix]
    except KeyError:
        raise ValueError(
            f"{path}: cannot tell the format from suffix '{suffix}'; use .csv or .parquet"
        ) from None


def read_table(path: Path | str, fmt: str | None = None) -> pd.DataFrame:
    """Read a CSV or Parquet file into a frame."""
    fmt = fmt or table_format(path)
    if fmt == "parquet":
        return pd.read_parquet(path)
    return pd.read_csv(path)


def append_json_line(
    path: Path | str,
    record: Any,
    *,
    default: Callable[[Any], Any] = str,
    allow_nan: bool = False,
) -> None:
    """Append one JSON object as a line, in a single write, then fsync (logs and ledgers).

    `default` turns a value JSON cannot hold into one it can (by default its string).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps(record, sort_keys=True, default=default, allow_nan=allow_nan) + "\n"
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(line)
        handle.flush()
        os.fsync(handle.fileno())


def read_json_lines(path: Path | str) -> list[tuple[int, Any]]:
    """Each non-blank line's number and its JSON value (None when it is not valid JSON).

    Raises FileNotFoundError when there is no file; callers decide what a bad line means.
    """
    values = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                values.append((number, json.loads(line)))
            except ValueError:
                values.append((number, None))
    return values
