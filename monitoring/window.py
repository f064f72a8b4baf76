"""The current window of production traffic and the labels joined to it.

The window is the newest `monitor.window.rows` rows of the prediction log. Ground truth
arrives later in labelled batches; they are joined to the window by the contract's row id
(its first unique id column, `UDI`); a contract without one gets no labels
(`labels_unjoinable`). When an id is labelled in several batches, the batch
whose file name sorts last wins (name them `batch-<sortable time>`); when an id was predicted
several times in the window, its latest prediction wins.

Everything here is pure: frames in, new values out, no file IO. The window's verdict is in
`monitoring.verdict`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from core.columns import MODEL_VERSION, PROBABILITY, TIME
from features.contract import DataContract

_SERVED_ROLES = ("id", "feature")


class LabelsError(ValueError):
    """A labels batch that cannot be used; the message names the file and the columns."""


# --- the window ---------------------------------------------------------------------------


def join_key(contract: DataContract) -> str:
    """The column labels are joined on: the contract's row id (`DataContract.row_id`)."""
    return contract.require_row_id(" to join labels on", LabelsError)


def labels_unjoinable(contract: DataContract) -> str | None:
    """Why no labels can be joined to the window (the contract has no row id), or None.

    Drift, data quality and the estimated quality (CBPE) need no labels, so the monitor
    still judges a window without them; only the realized quality and training data from
    the labelled window wait for a unique id column.
    """
    try:
        join_key(contract)
    except LabelsError as exc:
        return (
            f"labels cannot be joined: {exc}; drift and estimated quality are judged without them"
        )
    return None


def select_window(log: pd.DataFrame, rows: int) -> pd.DataFrame:
    """The newest `rows` rows of the prediction log by time, oldest first, on a fresh index."""
    if rows < 1:
        raise ValueError(f"a window holds at least 1 row, got {rows}")
    ordered = log.sort_values(TIME, kind="stable")
    return ordered.iloc[-rows:].reset_index(drop=True)


def describe_window(window: pd.DataFrame) -> dict[str, Any]:
    """Rows, first and last time (ISO 8601, UTC) and rows per served model version."""
    times = window[TIME]
    versions = window[MODEL_VERSION].fillna("unknown").astype(str).value_counts()
    return {
        "rows": len(window),
        "first_time": times.min().isoformat() if len(window) else None,
        "last_time": times.max().isoformat() if len(window) else None,
        "model_versions": {str(k): int(v) for k, v in sorted(versions.items())},
    }


def served_by(window: pd.DataFrame, version: str) -> pd.DataFrame:
    """The window's rows answered by model `version` (a label such as "v3")."""
    return window[window[MODEL_VERSION] == version]


def scores_to_compare(window: pd.DataFrame, version: str) -> pd.Series:
    """The served probabilities to compare with the champion's reference scores.

    Those of the rows the champion (`version`) served; when it served none yet (just
    promoted), those of every row, so the scores production saw are still judged.
    """
    own = served_by(window, version)
    return (own if len(own) else window)[PROBABILITY]


# --- labels -------------------------------------------------------------------------------


def label_columns(contract: DataContract) -> list[str]:
    """Columns a labels batch may carry beyond the join key: the label, then ignored columns."""
    return [c.name for c in contract.columns if c.role not in _SERVED_ROLES]


def check_labels(frame: pd.DataFrame, source: str, contract: DataContract) -> pd.DataFrame:
    """One labels batch, checked: the join key as whole numbers, the label as 0 or 1.

    Returns the key, the label and the contract's other non-served columns the batch has;
    any other column (features, extras) is dropped, since the log holds what was served.
    Within one batch, the last row of an id wins.
    """
    key, label = join_key(contract), contract.label
    missing = [name for name in (key, label) if name not in frame.columns]
    if missing:
        raise LabelsError(
            f"{source}: labels file lacks column(s) {missing}; a batch needs the contract's "
            f"id column '{key}' and its label '{label}'"
        )
    ids = _ids(frame[key], contract.by_name[key].dtype)
    if ids is None or ids.isna().any():
        kind = "a whole-number" if contract.by_name[key].dtype == "integer" else "an"
        raise LabelsError(f"{source}: column '{key}' must hold {kind} id in every row")
    labels = pd.to_numeric(frame[label], errors="coerce")
    bad = int((~labels.isin([0, 1])).sum())
    if bad:
        raise LabelsError(f"{source}: label column '{label}' must hold 0 or 1; {bad} row(s) do not")
    kept = [name for name in label_columns(contract) if name in frame.columns]
    checked = frame[kept].copy()
    checked.insert(0, key, ids)
    checked[label] = labels.astype(np.int64)
    return checked.drop_duplicates(subset=key, keep="last").reset_index(drop=True)


def combine_labels(
    batches: Sequence[tuple[str, pd.DataFrame]], contract: DataContract
) -> pd.DataFrame:
    """Labels from every batch, one row per id: the batch whose name sorts last wins.

    `batches` are `(name, frame)` pairs (the name is the file's, used for ordering and in
    error messages). A column a batch lacks is null for its rows.
    """
    key = join_key(contract)
    ordered = sorted(batches, key=lambda batch: batch[0])
    checked = [check_labels(frame, name, contract) for name, frame in ordered]
    if not checked:
        key_dtype = "int64" if contract.by_name[key].dtype == "integer" else "object"
        return pd.DataFrame(
            {key: pd.Series(dtype=key_dtype), contract.label: pd.Series(dtype="int64")}
        )
    combined = pd.concat(checked, ignore_index=True, sort=False)
    combined = combined.drop_duplicates(subset=key, keep="last")
    kept = [key, *(name for name in label_columns(contract) if name in combined.columns)]
    return combined[kept].sort_values(key, kind="stable").reset_index(drop=True)


def label_window(
    window: pd.DataFrame, labels: pd.DataFrame, contract: DataContract
) -> pd.DataFrame:
    """The window's labelled rows: the latest prediction of each id, joined with its labels.

    Keeps every log column and adds the label and the other non-served columns the labels
    have; rows without an id, or without a label, are left out. Ordered by time.
    """
    key = join_key(contract)
    ids = _ids(window[key], contract.by_name[key].dtype, partial=True)
    named = ids.notna()
    kept = ids[named].astype(np.int64) if ids.dtype == "Int64" else ids[named]
    predicted = window[named].assign(**{key: kept})
    latest = predicted.drop_duplicates(subset=key, keep="last")  # the window is in time order
    extra = [name for name in labels.columns if name != key and name not in latest.columns]
    labelled = latest.merge(labels[[key, *extra]], on=key, how="inner", validate="one_to_one")
    return labelled.sort_values(TIME, kind="stable").reset_index(drop=True)


def no_labelled_rows(window: pd.DataFrame, contract: DataContract) -> pd.DataFrame:
    """`label_window`'s answer when no labels can be joined: no rows, the same columns."""
    return window.iloc[0:0].assign(**{contract.label: pd.Series(dtype=np.int64)})


def labelled_table(
    labelled: pd.DataFrame, contract: DataContract
) -> tuple[pd.DataFrame, list[str]]:
    """The labelled rows as a contract table, and the required columns the labels lack.

    Columns follow the contract's order. A nullable column the labels lack is null; a
    required (non-nullable) one is left out when no row has it and kept with its gaps when
    some rows lack it; either way it is named in the returned list, so whoever turns these
    rows into training data can refuse them clearly. Nothing is filled in.
    """
    columns: dict[str, pd.Series] = {}
    missing: list[str] = []
    for column in contract.columns:
        present = column.name in labelled.columns
        values = labelled[column.name] if present else pd.Series(np.nan, index=labelled.index)
        gaps = bool(values.isna().any())
        if gaps and not column.nullable:
            missing.append(column.name)
            if not present or values.isna().all():
                continue
        columns[column.name] = _as_contract_dtype(values, column.dtype)
    return pd.DataFrame(columns, index=labelled.index).reset_index(drop=True), missing


# --- helpers ------------------------------------------------------------------------------


def _ids(values: pd.Series, dtype: str, partial: bool = False) -> pd.Series | None:
    """Row ids in one comparable form: int64 for an integer id, text for any other.

    A value that is no id (missing, or not a whole number for an integer id) is null when
    `partial`; otherwise any such value makes the result None.
    """
    if dtype != "integer":
        text = values.astype(object).where(values.notna(), None)
        return text.map(lambda value: None if value is None else str(value))
    numbers = pd.to_numeric(values, errors="coerce")
    whole = numbers.notna() & (numbers == numbers.round())
    if partial:
        return numbers.where(whole).astype("Int64")
    if not bool(whole.all()):
        return None
    return numbers.astype(np.int64)


def _as_contract_dtype(values: pd.Series, dtype: str) -> pd.Series:
    """Integer columns as int64 (Int64 when they have gaps), floats as float64, text as object."""
    if dtype == "integer":
        numbers = pd.to_numeric(values, errors="coerce")
        return numbers.astype("Int64" if numbers.isna().any() else np.int64)
    if dtype == "float":
        return pd.to_numeric(values, errors="coerce").astype(np.float64)
    return values.astype(object).where(values.notna(), None)
