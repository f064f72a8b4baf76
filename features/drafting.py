"""Draft a data contract from a sample frame, so nobody writes one by hand.

The draft is a starting point: it infers dtypes, ranges (with a margin), categories,
nullability and roles from the sample, and takes each column's first value as its example.
A person still reviews it, above all for columns only known after the label (they must be
`role: ignore`, or they leak the label).

Roles come from the name and the values. A column is proposed as `role: id`, `unique: true`
when every row has a value and

- its values are distinct whole numbers and either its name looks like an id (`UDI`,
  `customer_id`, `case_no`, `ProductID`) or, in a sample of at least `MIN_VALUE_ROWS` rows,
  they form a counter: sorted, they nearly fill a consecutive run (at most `RUN_SLACK` of
  the numbers between the smallest and the largest missing) or step by one constant amount
  (every k-th row of a counter). Distinct whole numbers that do neither (20 rows of torque
  in whole newton metres, a tool's wear that rises by irregular steps) stay a feature, with
  a warning: in a small sample a measurement is often all distinct;
- or its values are distinct strings and its name looks like an id, or the sample has at
  least `MIN_VALUE_ROWS` rows (a code, a key; in fewer rows distinct text may be categories,
  which are drafted with a warning).

The same evidence with nulls drafts `role: id` without `unique` (a row id needs a value in
every row). Floats that are not whole numbers and the label are never ids. A column whose
name looks like an id but whose values are not (they repeat, or are fractions) is drafted
from its values, with a warning. Each reason and warning is in the `Draft`'s notes and in
the column's description, so the reviewer sees why.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from features.contract import Column, DataContract

MAX_CATEGORIES = 30
RANGE_MARGIN = 0.25  # widen observed ranges by this share of their span on each side
MIN_VALUE_ROWS = 10  # fewer sample rows: the values alone never make a column an id
RUN_SLACK = 0.1  # a counter's sorted values may miss this share of their run
_ID_WORDS = frozenset({"id", "ids", "uuid", "guid", "udi", "key", "serial", "idx"})
_ID_SUFFIXES = frozenset({"no", "nr", "num"})  # `case_no`, `patient_nr`, but not `yes/no`
_WORD = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+")


class DraftError(ValueError):
    """The sample cannot yield a contract; the message says why."""


@dataclass(frozen=True)
class DraftNote:
    """Why a column got its role, or what the reviewer must check (`warning`)."""

    column: str
    text: str
    warning: bool = False


@dataclass(frozen=True)
class Draft:
    """The drafted contract and the notes on its roles, for the summary a person reviews."""

    contract: DataContract
    notes: tuple[DraftNote, ...]

    @property
    def warnings(self) -> list[DraftNote]:
        return [note for note in self.notes if note.warning]


def looks_like_id_name(name: str) -> bool:
    """Whether a column's name says it names rows: a word such as `id`, `UDI` or `key`
    (`Product ID`, `customerId`), or a last word `no`/`nr`/`num` after another (`case_no`)."""
    words = [word.lower() for word in _WORD.findall(name)]
    if any(word in _ID_WORDS for word in words):
        return True
    return len(words) >= 2 and words[-1] in _ID_SUFFIXES and words[-2] != "yes"


def draft_contract(
    sample: pd.DataFrame, label: str, name: str, ignore: tuple[str, ...] = ()
) -> Draft:
    """Infer a contract named `name` from `sample`, with `label` as the binary label column."""
    if sample.empty:
        raise DraftError("the sample has no rows")
    if label not in sample.columns:
        raise DraftError(
            f"label column '{label}' is not in the sample; columns: {list(sample.columns)}"
        )
    unknown = sorted(set(ignore) - set(sample.columns))
    if unknown:
        raise DraftError(f"--ignore names columns not in the sample: {unknown}")
    columns, notes = [], []
    for col in sample.columns:
        if col == label:
            columns.append(_draft_label(sample[label]))
            continue
        column, note = _draft_column(sample[col], col in ignore)
        columns.append(column)
        if note is not None:
            notes.append(note)
    if not any(column.role == "feature" for column in columns):
        roles = ", ".join(f"{c.name} ({c.role})" for c in columns if c.role != "label")
        raise DraftError(f"no column of the sample can be a model input: {roles or 'none'}")
    contract = DataContract(
        name=name,
        description=f"Drafted from a sample of {len(sample)} rows; review before use.",
        columns=tuple(columns),
    )
    return Draft(contract=contract, notes=tuple(notes))


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


def _draft_column(series: pd.Series, ignored: bool) -> tuple[Column, DraftNote | None]:
    name = str(series.name)
    nullable = bool(series.isna().any())
    values = series.dropna()
    distinct = len(values) > 0 and bool(values.is_unique)
    several = distinct and len(values) > 1  # distinct values that say something
    id_name = looks_like_id_name(name) and not ignored
    role = "ignore" if ignored else "feature"
    if pd.api.types.is_bool_dtype(series):
        flag = Column(
            name=name,
            dtype="integer",
            role=role,
            nullable=nullable,
            min=0,
            max=1,
            example=_first(series, int),
        )
        return flag, None
    if pd.api.types.is_numeric_dtype(series):
        whole = bool(np.all(np.mod(values, 1) == 0)) if len(values) else False
        if whole and distinct and not ignored:
            counter = _counter(values)
            if counter is not None or id_name:
                because = counter or (
                    f"its name looks like an id and its {len(values)} values are distinct "
                    "whole numbers"
                )
                return _id_column(series, "integer", because, min=float(values.min()))
        low, high = float(values.min()), float(values.max())
        if not (whole and low >= 0 and high <= 1):  # keep a 0/1 flag exactly 0/1
            low, high = _widen(low, high, whole)
        dtype = "integer" if whole else "float"
        warning = None
        if whole and several and not ignored:
            warning = (
                f"its {len(values)} values are distinct whole numbers, but no counter (not a "
                "consecutive run, no constant step): drafted as a feature; make it role: id "
                "if it names rows"
            )
        elif id_name:
            how = "repeat" if whole else "are not whole numbers"
            warning = f"its name looks like an id but its values {how}: {_KEEP_OR_ID}"
        column = Column(
            name=name,
            dtype=dtype,
            role=role,
            nullable=nullable,
            min=low,
            max=high,
            example=_first(series, int if whole else float),
            description=_review(warning),
        )
        return column, _warning(name, warning)
    text = values.astype(str)
    if distinct and not ignored and (id_name or len(values) >= MIN_VALUE_ROWS):
        because = f"its {len(values)} values are distinct strings" + (
            " and its name looks like an id" if id_name else " (a code or a key)"
        )
        return _id_column(series, "string", because)
    warning = None
    if several and not ignored:
        warning = (
            f"its {len(values)} values are all distinct, too few rows (under "
            f"{MIN_VALUE_ROWS}) to tell a code from categories: make it role: id if it names rows"
        )
    elif id_name:
        warning = f"its name looks like an id but its values repeat: {_KEEP_OR_ID}"
    if text.nunique() <= MAX_CATEGORIES:
        categories = tuple(sorted(text.unique().tolist()))
        column = Column(
            name=name,
            dtype="categorical",
            role=role,
            nullable=nullable,
            categories=categories,
            example=_first(series, str),
            description=_review(warning),
        )
        return column, _warning(name, warning)
    because = f"free text with {text.nunique()} distinct values: not a model input"
    column = Column(
        name=name,
        dtype="string",
        role="ignore",
        nullable=nullable,
        example=_first(series, str),
        description=because,
    )
    return column, None if ignored else DraftNote(name, f"ignore: {because}")


_KEEP_OR_ID = "drafted as a feature; make it role: id (or ignore) if it only names rows"


def _counter(values: pd.Series) -> str | None:
    """Why distinct whole numbers are a row counter, or None when they are not one."""
    if len(values) < MIN_VALUE_ROWS:
        return None
    ordered = np.sort(values.to_numpy(dtype=float))
    low, high, count = ordered[0], ordered[-1], len(ordered)
    span = high - low + 1
    if span <= count * (1 + RUN_SLACK):
        gaps = f"all but {span - count:g} of " if span > count else ""
        return f"its {count} distinct whole numbers fill {gaps}{low:g}..{high:g} (a row counter)"
    steps = np.diff(ordered)
    if np.all(steps == steps[0]):
        return (
            f"its {count} distinct whole numbers step by {steps[0]:g} from {low:g} to "
            f"{high:g} (a row counter, every {steps[0]:g} rows)"
        )
    return None


def _id_column(
    series: pd.Series, dtype: str, because: str, **rules: float
) -> tuple[Column, DraftNote]:
    """An id column with the reason; with nulls it cannot be unique, and the note warns."""
    name, nullable = str(series.name), bool(series.isna().any())
    text = f"id (unique): {because}"
    if nullable:
        text = (
            f"id, not unique: {because}, but it has nulls and a row id needs a value in every row"
        )
    column = Column(
        name=name,
        dtype=dtype,  # type: ignore[arg-type]
        role="id",
        nullable=nullable,
        unique=not nullable,
        example=_first(series, int if dtype == "integer" else str),
        description=f"Drafted as {text}.",
        **rules,
    )
    return column, DraftNote(name, text, warning=nullable)


def _review(warning: str | None) -> str:
    return f"Review: {warning}." if warning else ""


def _warning(column: str, warning: str | None) -> DraftNote | None:
    return DraftNote(column, warning, warning=True) if warning else None


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
