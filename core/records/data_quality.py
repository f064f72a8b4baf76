"""Data quality of the served traffic: the training profile, and the verdict on a window.

`monitoring.data_quality.profile_training_data` builds the `DataProfile` at training time
(it travels with the model to the monitor); `assess_data_quality` judges a window of logged
traffic against it and the data contract, and returns a `DataQualitySummary`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from core.records import Record

CheckKind = Literal["nulls", "outside_contract", "stuck", "new_category", "repeated"]


class ColumnProfile(Record):
    """One feature column of the training data, as the checks need it."""

    name: str
    numeric: bool
    null_share: float = Field(ge=0, le=1)
    distinct: int = Field(ge=0)  # distinct non-null values
    longest_run: int = Field(ge=0)  # longest run of one value in row order, nulls skipped
    minimum: float | None = None  # numeric columns: the smallest and largest value seen
    maximum: float | None = None
    categories: tuple[str, ...] | None = None  # categorical columns: the categories seen


class DataProfile(Record):
    """The training split's feature columns, profiled in the source's row order."""

    rows: int = Field(ge=0)
    columns: dict[str, ColumnProfile]  # by contract column name, every feature


class DataQualityCheck(Record):
    """One check of one column: the number measured, its limit, and a sentence to read."""

    kind: CheckKind
    column: str
    passed: bool
    value: float  # the measured share or run length (rows)
    limit: float  # fails above this
    training: float | None  # the training figure it is judged against, where there is one
    examples: tuple[str, ...] = ()  # offending values (at most a few), as text
    message: str


class DataQualitySummary(Record):
    """Every check on the window, failed ones first, and one line for the whole."""

    judged: bool  # false: the window holds no rows
    passed: bool
    rows: int
    failed: tuple[str, ...]  # "kind:column" of each failed check, in the order of `checks`
    checks: tuple[DataQualityCheck, ...]
    reason: str
