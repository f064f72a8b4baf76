"""The feedback folder: labelled production batches that join the training data.

`lifecycle watch` writes a window's new labelled rows to `ingest.feedback.directory` as
`batch-<time>.parquet` (`write_feedback_batch`). The ingest stage appends every batch, in
name order, to the source's rows; the deploy stage judges a challenger on the newest batch's
rows in the holdout (the recent window). A folder that does not exist holds no feedback.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from core.clock import as_utc
from core.hashing import bytes_md5, file_md5
from core.io import write_parquet
from core.paths import LABELLED_WINDOW
from core.records.watch import FeedbackSummary
from features.contract import DataContract

logger = logging.getLogger(__name__)

BATCH_PATTERN = "batch-*.parquet"


class FeedbackError(Exception):
    """A feedback batch that cannot join the data; the message names the file."""


@dataclass(frozen=True)
class FeedbackBatch:
    """One batch file as read: where it is, its content hash and its rows."""

    path: Path
    md5: str
    frame: pd.DataFrame

    @property
    def name(self) -> str:
        return self.path.name

    def describe(self) -> dict[str, str | int]:
        return {"name": self.name, "rows": len(self.frame), "md5": self.md5}


def list_batches(directory: Path) -> list[Path]:
    """The batch files in `directory`, sorted by name (oldest first); none if it is absent."""
    directory = Path(directory)
    if not directory.exists():
        return []
    if not directory.is_dir():
        raise FeedbackError(f"{directory}: not a folder (ingest.feedback.directory)")
    return sorted(path for path in directory.glob(BATCH_PATTERN) if path.is_file())


def read_batch(path: Path) -> FeedbackBatch:
    """Read one batch file; an unreadable file is a FeedbackError naming it."""
    path = Path(path)
    try:
        content = path.read_bytes()
        frame = pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises several types for a damaged file
        raise FeedbackError(f"{path}: cannot be read as Parquet: {exc}") from None
    return FeedbackBatch(path=path, md5=bytes_md5(content), frame=frame)


def read_ids(path: Path, column: str) -> pd.Series:
    """One column (the row id) of a batch file, without reading the rest."""
    try:
        return pd.read_parquet(path, columns=[column])[column]
    except Exception as exc:
        raise FeedbackError(f"{path}: cannot read column '{column}': {exc}") from None


def align_batch(
    batch: pd.DataFrame, source: pd.DataFrame, contract: DataContract, name: str
) -> pd.DataFrame:
    """The batch with the source's columns, in its order and with its dtypes.

    Every column the contract declares must be in the batch. Columns the source does not
    have are dropped, and columns of the source outside the contract that the batch lacks
    are left empty, each with a warning.
    """
    missing = [column for column in contract.column_names if column not in batch.columns]
    if missing:
        raise FeedbackError(
            f"{name}: missing column(s) the data contract '{contract.name}' declares: "
            f"{_quoted(missing)}"
        )
    extra = [str(column) for column in batch.columns if column not in source.columns]
    if extra:
        logger.warning("%s: dropping column(s) the source does not have: %s", name, _quoted(extra))
    absent = [str(column) for column in source.columns if column not in batch.columns]
    if absent:
        logger.warning("%s: no column(s) %s; left empty in its rows", name, _quoted(absent))
    aligned = batch.reindex(columns=source.columns)
    for column in source.columns:
        if column in absent or aligned[column].dtype == source[column].dtype:
            continue
        try:
            aligned[column] = aligned[column].astype(source[column].dtype)
        except (TypeError, ValueError) as exc:
            raise FeedbackError(
                f"{name}: column '{column}' holds {aligned[column].dtype} values that cannot "
                f"be cast to the source's {source[column].dtype}: {exc}"
            ) from None
    return aligned


def append_feedback(
    source: pd.DataFrame, batches: Sequence[FeedbackBatch], contract: DataContract
) -> pd.DataFrame:
    """The source's rows, then each batch's rows in the order given, as one table."""
    if not batches:
        return source
    aligned = [align_batch(batch.frame, source, contract, str(batch.path)) for batch in batches]
    return pd.concat([source, *aligned], ignore_index=True)


def row_id_column(contract: DataContract) -> str:
    """The contract's unique id column, which matches feedback rows to holdout rows."""
    needed_for = ", so holdout rows cannot be matched to feedback batches"
    return contract.require_row_id(needed_for, FeedbackError)


def batch_file_name(moment: dt.datetime, suffix: str = "") -> str:
    """`batch-20261125T063700123Z[-suffix].parquet`: UTC to the millisecond, sorts by time."""
    moment = as_utc(moment)
    stamp = f"{moment:%Y%m%dT%H%M%S}{moment.microsecond // 1000:03d}Z"
    return f"batch-{stamp}{f'-{suffix}' if suffix else ''}.parquet"


def select_feedback_rows(
    window: pd.DataFrame, known_ids: set[Any], contract: DataContract
) -> tuple[pd.DataFrame, dict[str, int]]:
    """The window's labelled rows that are new to the feedback data, in the contract's columns.

    Rows without a label, rows whose id an earlier batch holds, and all but the newest row
    of a repeated id are left out; the counts say how many of each.
    """
    missing = [name for name in contract.column_names if name not in window.columns]
    if missing:
        raise FeedbackError(
            f"{LABELLED_WINDOW} lacks contract column(s) {missing}; a feedback batch needs "
            "every column of the contract (are the label batches complete? see "
            "monitor.labels.directory)"
        )
    key = row_id_column(contract)
    rows = window.loc[:, contract.column_names]
    labelled = rows[rows[contract.label].notna()]
    gaps = {
        column.name: int(labelled[column.name].isna().sum())
        for column in contract.columns
        if not column.nullable and column.role != "id" and labelled[column.name].isna().any()
    }
    if gaps:
        shown = ", ".join(f"'{name}' ({count} rows)" for name, count in gaps.items())
        raise FeedbackError(
            f"{LABELLED_WINDOW} has labelled rows without a value in required column(s) "
            f"{shown}; a feedback batch needs them all (are the label batches complete? see "
            "monitor.labels.directory)"
        )
    unique = labelled.drop_duplicates(subset=key, keep="last")
    new = unique[~unique[key].isin(known_ids)].reset_index(drop=True)
    counts = {
        "dropped_unlabelled": len(rows) - len(labelled),
        "dropped_duplicate": len(labelled) - len(unique),
        "dropped_known": len(unique) - len(new),
    }
    return new, counts


def read_known_ids(directory: Path, key: str) -> set[Any]:
    """Every id in the feedback batches already written."""
    known: set[Any] = set()
    for batch in list_batches(directory):
        known.update(read_ids(batch, key).dropna().tolist())
    return known


def write_feedback_batch(
    window_path: Path, directory: Path, contract: DataContract, moment: dt.datetime
) -> tuple[FeedbackSummary | None, dict[str, int]]:
    """Write the window's new labelled rows as a feedback batch; None when there are none."""
    try:
        window = pd.read_parquet(window_path)
    except FileNotFoundError:
        raise FeedbackError(
            f"{window_path}: not found; the monitor stage writes the window's labelled rows there"
        ) from None
    known = read_known_ids(directory, row_id_column(contract))
    rows, counts = select_feedback_rows(window, known, contract)
    if rows.empty:
        return None, counts
    path = directory / batch_file_name(moment)
    if path.exists():
        raise FeedbackError(f"{path} exists already; not overwritten")
    write_parquet(rows, path)
    return FeedbackSummary(path=path, rows=len(rows), md5=file_md5(path), **counts), counts


def _quoted(names: Sequence[str]) -> str:
    return ", ".join(f"'{name}'" for name in names)
