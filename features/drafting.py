"""Draft a data contract from a sample frame, so nobody writes one by hand.

The draft is a starting point: it infers dtypes, ranges (with a margin), categories,
nullability and roles from the sample, and takes each column's first value as its example.
A person still reviews it, above all for columns only known after the label (they must be
`role: ignore`, or they leak the label).
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from features.contract import Column, DataContract

MAX_CATEGORIES = 30
RANGE_MARGIN = 0.25  # widen observed ranges by this share of their span on each side
_ID_NAME = re.compile(r"(^|[^a-z])(id|uuid|udi|key)($|[^a-z])", re.IGNORECASE)


class DraftError(ValueError):
    """The sample cannot yield a contract; the message says why."""


def draft_contract(
    sample: pd.DataFrame, label: str, name: str = "my-data", ignore: tuple[str, ...] = ()
) -> DataContract:
    """Infer a contract from `sample`, with `label` as the binary label column."""
    if sample.empty:
        raise DraftError("the sample has no rows")
    if label not in sample.columns:
        raise DraftError(
            f"label column '{label}' is not in the sample; columns: {list(sample.columns)}"
        )
    unknown = sorted(set(ignore) - set(sample.columns))
    if unknown:
        raise DraftError(f"--ignore names columns not in the sample: {unknown}")
    columns = [
        _draft_label(sample[label]) if col == label else _draft_column(sample[col], col in ignore)
        for col in sample.columns
    ]
    return DataContract(
        name=name,
        description=f"Drafted from a sample of {len(sample)} rows; review before use.",
        columns=tuple(columns),
    )


def _draft_label(series: pd.Series) -> Column:
    values = set(series.dropna().unique().tolist())
    if series.isna().any() or not values <= {0, 1}:  # True and False equal 1 and 0
        shown = sorted(map(str, values))[:5]
        raise DraftError(
            f"label column '{series.name}' must hold only 0 and 1 with no nulls; found {shown}"
        )
    return Column(
        name=str(series.name),
        dtype="integer",
        role="label",
        min=0,
        max=1,
        example=_first(series, int),
    )


def _draft_column(series: pd.Series, ignored: bool) -> Column:
    name = str(series.name)
    nullable = bool(series.isna().any())
    values = series.dropna()
    unique = values.is_unique and len(values) == len(series)
    role = "ignore" if ignored else "feature"
    if pd.api.types.is_bool_dtype(series):
        return Column(
            name=name,
            dtype="integer",
            role=role,
            nullable=nullable,
            min=0,
            max=1,
            example=_first(series, int),
        )
    if pd.api.types.is_numeric_dtype(series):
        whole = bool(np.all(np.mod(values, 1) == 0)) if len(values) else False
        if unique and whole and _ID_NAME.search(name) and not ignored:
            return Column(
                name=name,
                dtype="integer",
                role="id",
                unique=True,
                min=float(values.min()),
                example=_first(series, int),
            )
        low, high = float(values.min()), float(values.max())
        if not (whole and low >= 0 and high <= 1):  # keep a 0/1 flag exactly 0/1
            low, high = _widen(low, high, whole)
        dtype = "integer" if whole else "float"
        return Column(
            name=name,
            dtype=dtype,
            role=role,
            nullable=nullable,
            min=low,
            max=high,
            example=_first(series, int if whole else float),
        )
    text = values.astype(str)
    if unique and not ignored:
        return Column(
            name=name,
            dtype="string",
            role="id",
            unique=_ID_NAME.search(name) is not None,
            example=_first(series, str),
        )
    if text.nunique() <= MAX_CATEGORIES:
        categories = tuple(sorted(text.unique().tolist()))
        return Column(
            name=name,
            dtype="categorical",
            role=role,
            nullable=nullable,
            categories=categories,
            example=_first(series, str),
        )
    return Column(
        name=name,
        dtype="string",
        role="ignore",
        nullable=nullable,
        example=_first(series, str),
        description=f"free text with {text.nunique()} distinct values: not a model input",
    )


def _first(series: pd.Series, kind: type) -> int | float | str | None:
    """The column's first non-null value as a plain `kind`: the drafted example."""
    values = series.dropna()
    return kind(values.iloc[0]) if len(values) else None


def _widen(low: float, high: float, whole: bool) -> tuple[float, float]:
    """Observed range plus a margin; a non-negative column stays non-negative."""
    margin = (high - low) * RANGE_MARGIN or abs(high) * RANGE_MARGIN or 1.0
    widened_low, widened_high = low - margin, high + margin
    if low >= 0 > widened_low:
        widened_low = 0.0
    if whole:
        return float(np.floor(widened_low)), float(np.ceil(widened_high))
    return round(widened_low, 6), round(widened_high, 6)
