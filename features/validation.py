"""The result of validating data against its contract: one result per rule, and the report.

Rules fall in three scopes:

- column: the column exists and has the contract's type. Never quarantinable.
- row: not null, within min/max, in the categories, matching the pattern. Rows that break
  them can be set aside (`features.quarantine`) when `validate.quarantine` allows it.
- dataset: row count, label rate (mean of the label) and unique ids. Never quarantinable.

Plain values only: this module does not import Great Expectations (`features.expectations`
runs the suite and builds these results).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from features.contract import Column

Scope = Literal["column", "row", "dataset"]
Rule = Literal[
    "exists",
    "type",
    "whole",
    "not_null",
    "range",
    "categories",
    "pattern",
    "unique",
    "row_count",
    "label_rate",
]
ROW_RULES: frozenset[str] = frozenset({"not_null", "range", "categories", "pattern"})
MAX_EXAMPLES = 5


class DataValidationError(ValueError):
    """Data that breaks its contract; the message names each failed rule, column and examples."""


def format_number(value: float) -> str:
    return f"{value:g}"


def format_range(column: Column) -> str:
    """The column's min/max as an interval, e.g. `[0, 200]` or `(-inf, 5]`."""
    low = "(-inf" if column.min is None else f"[{format_number(column.min)}"
    high = "inf)" if column.max is None else f"{format_number(column.max)}]"
    return f"{low}, {high}"


def plain_value(value: Any) -> Any:
    """A JSON-friendly Python value (numpy scalars unwrapped, NaN as None)."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else str(value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


@dataclass(frozen=True)
class ExpectationResult:
    """The outcome of one expectation, in plain values."""

    expectation: str  # GE's name, e.g. expect_column_values_to_be_between
    rule: Rule
    scope: Scope
    column: str | None
    success: bool
    kwargs: Mapping[str, Any]
    unexpected_count: int | None = None
    unexpected_percent: float | None = None  # of the non-null values, as GE counts it
    examples: tuple[Any, ...] = ()
    observed: Any = None  # for aggregate rules: the row count, the label rate, the dtype
    error: str | None = None  # GE could not evaluate the rule
    skipped: str | None = None  # not judged: its column is missing or holds the wrong type
    hint: str | None = None

    def describe(self) -> str:
        """One line for a person: the column, what went wrong, how often, examples."""
        where = f"column '{self.column}'" if self.column is not None else "dataset"
        hint = f"; {self.hint}" if self.hint else ""
        return f"{where}: {self._problem()}{hint}"

    def _problem(self) -> str:
        n = self.unexpected_count or 0
        values = _count(n, "value")
        examples = f" (e.g. {', '.join(repr(v) for v in self.examples)})" if self.examples else ""
        kw = self.kwargs
        if self.error is not None:
            return f"could not check rule '{self.rule}': {self.error}"
        if self.rule == "exists":
            return "missing (the data contract requires it)"
        if self.rule == "type":
            wanted = "numbers" if "float" in kw["type_list"] else "text"
            if self.unexpected_count is None:
                return f"expected {wanted}, found dtype {str(self.observed).rstrip('_')}"
            return f"expected {wanted}, found {values} of another type{examples}"
        if self.rule == "whole":
            whole = "a whole number" if n == 1 else "whole numbers"
            return f"{values} not {whole} (the contract says integer){examples}"
        if self.rule == "not_null":
            return f"{_count(n, 'null value')} (the column is not nullable)"
        if self.rule == "range":
            low, high = kw.get("min_value"), kw.get("max_value")
            if low is not None and high is not None:
                return (
                    f"{values} out of range [{format_number(low)}, {format_number(high)}]{examples}"
                )
            if low is not None:
                return f"{values} below the minimum {format_number(low)}{examples}"
            return f"{values} above the maximum {format_number(high)}{examples}"
        if self.rule == "categories":
            return f"{values} not in categories {list(kw['value_set'])}{examples}"
        if self.rule == "pattern":
            return f"{values} not matching pattern {kw['regex']!r}{examples}"
        if self.rule == "unique":
            return f"{_count(n, 'row')} share a value that must be unique{examples}"
        if self.rule == "row_count":
            empty = " (empty)" if self.observed == 0 else ""
            return (
                f"{self.observed} rows{empty}, expected between {kw['min_value']} and "
                f"{kw['max_value']} (validate.min_rows, validate.max_rows)"
            )
        bounds = f"[{kw['min_value']:g}, {kw['max_value']:g}] (validate.label_rate)"
        if self.observed is None:  # the mean of a column with no values: GE observes none
            return f"no label rate: the column has no non-null values, expected within {bounds}"
        return f"label rate {self.observed:.4f} outside {bounds}"

    def summary(self) -> dict[str, Any]:
        percent = self.unexpected_percent
        return {
            "expectation": self.expectation,
            "rule": self.rule,
            "scope": self.scope,
            "column": self.column,
            "success": self.success,
            "unexpected_count": self.unexpected_count,
            "unexpected_percent": None if percent is None else round(percent, 6),
            "examples": [plain_value(v) for v in self.examples],
            "observed": plain_value(self.observed),
            "skipped": self.skipped,
            "error": self.error,
            "hint": self.hint,
        }


@dataclass(frozen=True)
class ValidationReport:
    """The result of validating one frame against a contract's suite."""

    contract: str
    rows: int
    results: tuple[ExpectationResult, ...]
    _suite: Any = field(default=None, repr=False, compare=False)  # GE objects, for data docs
    _raw: Any = field(default=None, repr=False, compare=False)

    @property
    def success(self) -> bool:
        return all(r.success for r in self.results)

    @property
    def failures(self) -> tuple[ExpectationResult, ...]:
        """Failed expectations, without those skipped because of a column-level failure."""
        return tuple(r for r in self.results if not r.success and r.skipped is None)

    @property
    def quarantinable(self) -> bool:
        """True when every failure is a row-level rule, so setting rows aside could fix it."""
        failed = [r for r in self.results if not r.success]
        return bool(failed) and all(r.scope == "row" and r.error is None for r in failed)

    @property
    def label_rate(self) -> float | None:
        return next((r.observed for r in self.results if r.rule == "label_rate"), None)

    def message(self) -> str:
        """A readable account: one line per failed expectation."""
        if self.success:
            return f"data contract '{self.contract}': all {len(self.results)} expectations passed"
        lines = [
            f"data contract '{self.contract}': {len(self.failures)} of "
            f"{len(self.results)} expectations failed on {self.rows} rows"
        ]
        lines += [f"  - {r.describe()}" for r in self.failures]
        return "\n".join(lines)

    def summary(self) -> dict[str, Any]:
        """Deterministic, JSON-ready summary: no timestamps, no ids."""
        return {
            "success": self.success,
            "contract": self.contract,
            "rows": self.rows,
            "label_rate": self.label_rate,
            "expectations": len(self.results),
            "failed": sum(not r.success for r in self.results),
            "results": [r.summary() for r in self.results],
        }
