"""Data validation: a Great Expectations suite derived from the data contract, and quarantine.

Every rule comes from the contract (`features/contracts/*.yaml`) plus the dataset-level limits
of `params.yaml` (`validate`); no column is named here. Rules fall in three scopes:

- column: the column exists and has the contract's type. Never quarantinable.
- row: not null, within min/max, in the categories, matching the pattern. Rows that break
  them can be set aside (`quarantine_rows`) when `validate.quarantine` allows it.
- dataset: row count, label rate (mean of the label) and unique ids. Never quarantinable.

Importing this module imports Great Expectations (about 3 s): import it only where needed.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import re
import shutil
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, ClassVar, Literal

import great_expectations as gx
import great_expectations.expectations as gxe
import numpy as np
import pandas as pd
from great_expectations.core.run_identifier import RunIdentifier
from great_expectations.data_context.types.base import ProgressBarsConfig
from great_expectations.data_context.types.resource_identifiers import (
    ExpectationSuiteIdentifier,
    ValidationResultIdentifier,
)
from great_expectations.execution_engine import PandasExecutionEngine
from great_expectations.expectations.expectation import ColumnMapExpectation
from great_expectations.expectations.metrics.map_metric_provider import (
    ColumnMapMetricProvider,
    column_condition_partial,
)

from core.config import ValidateConfig
from features.contract import Column, DataContract

Scope = Literal["column", "row", "dataset"]
Rule = Literal[
    "exists", "type", "whole", "not_null", "range", "categories", "pattern",
    "unique", "row_count", "label_rate",
]
ROW_RULES: frozenset[str] = frozenset({"not_null", "range", "categories", "pattern"})
MAX_EXAMPLES = 5

# Dtype names Great Expectations accepts for a numeric column: numpy, pandas nullable, and the
# Python types it checks value by value when a column has dtype object.
_NUMERIC_TYPES = [
    *(f"{kind}{bits}" for kind in ("int", "uint") for bits in (8, 16, 32, 64)),
    "float16", "float32", "float64",
    *(f"{kind}{bits}Dtype" for kind in ("Int", "UInt") for bits in (8, 16, 32, 64)),
    "Float32Dtype", "Float64Dtype",
    "int", "float",
]
_STRING_TYPES = ["str", "StringDtype"]
# Rules that cannot be judged once a column is missing or holds the wrong type.
_NEED_TYPE = frozenset({"whole", "range", "label_rate"})


class DataValidationError(ValueError):
    """Data that breaks its contract; the message names each failed rule, column and examples."""


# --- a custom expectation: integer columns hold whole numbers -------------------------------


class ColumnValuesWholeNumber(ColumnMapMetricProvider):
    """Metric: the value is a whole number (7 and 7.0 pass, 7.5 and 'seven' do not)."""

    condition_metric_name = "column_values.whole_number"

    @column_condition_partial(engine=PandasExecutionEngine)
    def _pandas(cls, column: pd.Series, **kwargs: Any) -> pd.Series:
        numeric = pd.to_numeric(column, errors="coerce")
        return (numeric % 1 == 0).fillna(False).astype(bool)


class ExpectColumnValuesToBeWholeNumbers(ColumnMapExpectation):
    """Expect every non-null value to be a whole number, whatever the column's storage dtype."""

    map_metric: ClassVar[str] = "column_values.whole_number"
    success_keys: ClassVar[tuple[str, ...]] = ("mostly",)
    library_metadata: ClassVar[dict[str, Any]] = {"tags": ["type"], "contributors": []}


# --- the suite ------------------------------------------------------------------------------


def _number(value: float) -> str:
    return f"{value:g}"


def _range_text(column: Column) -> str:
    low = "(-inf" if column.min is None else f"[{_number(column.min)}"
    high = "inf)" if column.max is None else f"{_number(column.max)}]"
    return f"{low}, {high}"


def _expect(kind: type[gxe.Expectation], rule: Rule, scope: Scope, description: str,
            **kwargs: Any) -> gxe.Expectation:
    """An expectation tagged with our rule and scope, which the result is read back by."""
    return kind(meta={"rule": rule, "scope": scope}, description=description, **kwargs)


def _column_expectations(column: Column, config: ValidateConfig) -> list[gxe.Expectation]:
    name = column.name
    rules = [_expect(gxe.ExpectColumnToExist, "exists", "column", f"'{name}' exists",
                     column=name)]
    if column.is_numeric:
        rules.append(_expect(gxe.ExpectColumnValuesToBeInTypeList, "type", "column",
                             f"'{name}' holds numbers", column=name, type_list=_NUMERIC_TYPES))
    if column.dtype == "integer":
        rules.append(_expect(ExpectColumnValuesToBeWholeNumbers, "whole", "column",
                             f"'{name}' holds whole numbers", column=name))
    if column.dtype == "string":
        rules.append(_expect(gxe.ExpectColumnValuesToBeInTypeList, "type", "column",
                             f"'{name}' holds text", column=name, type_list=_STRING_TYPES))
    if not column.nullable:
        rules.append(_expect(gxe.ExpectColumnValuesToNotBeNull, "not_null", "row",
                             f"'{name}' has no nulls", column=name))
    if column.min is not None or column.max is not None:
        rules.append(_expect(gxe.ExpectColumnValuesToBeBetween, "range", "row",
                             f"'{name}' within {_range_text(column)}", column=name,
                             min_value=column.min, max_value=column.max))
    if column.categories is not None:
        rules.append(_expect(gxe.ExpectColumnValuesToBeInSet, "categories", "row",
                             f"'{name}' in {list(column.categories)}", column=name,
                             value_set=list(column.categories)))
    if column.pattern is not None:
        rules.append(_expect(gxe.ExpectColumnValuesToMatchRegex, "pattern", "row",
                             f"'{name}' matches {column.pattern}", column=name,
                             regex=column.pattern))
    if column.unique and config.unique_ids:
        rules.append(_expect(gxe.ExpectColumnValuesToBeUnique, "unique", "dataset",
                             f"'{name}' is unique", column=name))
    return rules


def build_suite(contract: DataContract, config: ValidateConfig) -> gx.ExpectationSuite:
    """The contract's suite: row count, each column's rules in contract order, label rate."""
    low, high = config.label_rate
    expectations = [
        _expect(gxe.ExpectTableRowCountToBeBetween, "row_count", "dataset",
                f"between {config.min_rows} and {config.max_rows} rows",
                min_value=config.min_rows, max_value=config.max_rows),
        *(rule for column in contract.columns for rule in _column_expectations(column, config)),
        _expect(gxe.ExpectColumnMeanToBeBetween, "label_rate", "dataset",
                f"label rate (mean of '{contract.label}') within [{low:g}, {high:g}]",
                column=contract.label, min_value=low, max_value=high),
    ]
    return gx.ExpectationSuite(name=contract.name, expectations=expectations)


# --- the result -----------------------------------------------------------------------------


def _plain(value: Any) -> Any:
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
                return f"{values} out of range [{_number(low)}, {_number(high)}]{examples}"
            if low is not None:
                return f"{values} below the minimum {_number(low)}{examples}"
            return f"{values} above the maximum {_number(high)}{examples}"
        if self.rule == "categories":
            return f"{values} not in categories {list(kw['value_set'])}{examples}"
        if self.rule == "pattern":
            return f"{values} not matching pattern {kw['regex']!r}{examples}"
        if self.rule == "unique":
            return f"{_count(n, 'row')} share a value that must be unique{examples}"
        if self.rule == "row_count":
            empty = " (empty)" if self.observed == 0 else ""
            return (f"{self.observed} rows{empty}, expected between {kw['min_value']} and "
                    f"{kw['max_value']} (validate.min_rows, validate.max_rows)")
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
            "examples": [_plain(v) for v in self.examples],
            "observed": _plain(self.observed),
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
        lines = [f"data contract '{self.contract}': {len(self.failures)} of "
                 f"{len(self.results)} expectations failed on {self.rows} rows"]
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


# --- running the suite ----------------------------------------------------------------------


def _broken_columns(raw_results: Iterable[Any]) -> dict[str, str]:
    """Columns that are missing or hold the wrong type: 'missing' or 'type'."""
    broken: dict[str, str] = {}
    for raw in raw_results:
        rule = (raw.expectation_config.meta or {}).get("rule")
        column = raw.expectation_config.kwargs.get("column")
        if not raw.success and rule == "exists":
            broken[column] = "missing"
        elif not raw.success and rule == "type":
            broken.setdefault(column, "type")
    return broken


def _skip_reason(rule: str, column: str | None, broken: Mapping[str, str],
                 rows: int) -> str | None:
    if rule == "label_rate" and rows == 0:
        return "no rows"
    if column not in broken or rule == "exists":
        return None
    if broken[column] == "missing":
        return "column missing"
    return "column has the wrong type" if rule in _NEED_TYPE else None


def _exception_message(info: Any) -> str | None:
    """GE's error message (its first line), from one exception record or a dict of them."""
    records = [info] if not info or "raised_exception" in info else list(info.values())
    for record in records:
        if record and record.get("raised_exception"):
            return str(record.get("exception_message") or "unknown error").splitlines()[0]
    return None


def _to_result(raw: Any, broken: Mapping[str, str], rows: int) -> ExpectationResult:
    config = raw.expectation_config
    rule, scope = config.meta["rule"], config.meta["scope"]
    kwargs = {k: tuple(v) if isinstance(v, list) else v
              for k, v in config.kwargs.items() if k != "batch_id"}
    column = kwargs.get("column")
    result = raw.result or {}
    skipped = None if raw.success else _skip_reason(rule, column, broken, rows)
    examples: list[Any] = []
    if rule != "not_null":  # the examples of a null check are all null
        for value in map(_plain, result.get("partial_unexpected_list") or []):
            if value not in examples and len(examples) < MAX_EXAMPLES:
                examples.append(value)
    return ExpectationResult(
        expectation=config.type,
        rule=rule,
        scope=scope,
        column=column,
        success=bool(raw.success),
        kwargs=MappingProxyType(kwargs),
        unexpected_count=result.get("unexpected_count"),
        unexpected_percent=_plain(result.get("unexpected_percent")),
        examples=tuple(examples),
        observed=_plain(result.get("observed_value")),
        error=None if skipped else _exception_message(raw.exception_info),
        skipped=skipped,
    )


def _with_type_hint(result: ExpectationResult, frame: pd.DataFrame) -> ExpectationResult:
    """For a numeric column read as text, point at the values that are not numbers at all."""
    if (result.success or result.rule != "type" or result.column not in frame.columns
            or "float" not in result.kwargs["type_list"]):
        return result
    values = frame[result.column]
    text = values[values.map(lambda v: isinstance(v, str))] if values.dtype == object else []
    if len(text) == 0 or len(text) != result.unexpected_count:
        return result
    not_numbers = text[pd.to_numeric(text, errors="coerce").isna()]
    if len(not_numbers) == len(text):
        return result  # plain text: GE's examples say it
    if not_numbers.empty:
        hint = "the column holds numbers stored as text: convert it to a numeric dtype"
    else:
        shown = ", ".join(repr(v) for v in list(dict.fromkeys(not_numbers))[:MAX_EXAMPLES])
        verb = "is not a number" if len(not_numbers) == 1 else "are not numbers"
        hint = f"the column holds text, of which {len(not_numbers)} {verb} (e.g. {shown})"
    return dataclasses.replace(result, hint=hint)


def _ephemeral_context() -> Any:
    """An in-memory GE context: no project folder, no progress bars, no usage statistics."""
    context = gx.get_context(mode="ephemeral")
    context.enable_analytics(False)  # whatever the import order left in the environment
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    return context


def validate_frame(frame: pd.DataFrame, contract: DataContract, config: ValidateConfig,
                   run_name: str = "dataset") -> ValidationReport:
    """Validate a frame against the contract's suite in an ephemeral Great Expectations context.

    A missing or mistyped column fails its own rule; the rules that depend on it are marked
    skipped instead of reporting GE's errors. The frame is not modified.
    """
    context = _ephemeral_context()
    batch_definition = (
        context.data_sources.add_pandas(f"{contract.name}_source")
        .add_dataframe_asset(contract.name)
        .add_batch_definition_whole_dataframe("whole_frame")
    )
    suite = context.suites.add(build_suite(contract, config))
    definition = context.validation_definitions.add(gx.ValidationDefinition(
        name=f"{contract.name}_{run_name}", data=batch_definition, suite=suite))
    raw = definition.run(
        batch_parameters={"dataframe": frame},
        # 20 examples from GE leave MAX_EXAMPLES distinct ones after dropping repeats
        result_format={"result_format": "BASIC", "partial_unexpected_count": 20},
        run_id=RunIdentifier(run_name=run_name),
    )
    order = {expectation.id: i for i, expectation in enumerate(suite.expectations)}
    in_order = sorted(raw.results, key=lambda r: order[r.expectation_config.id])
    broken = _broken_columns(in_order)
    results = tuple(
        _with_type_hint(_to_result(r, broken, len(frame)), frame) for r in in_order)
    return ValidationReport(contract=contract.name, rows=len(frame), results=results,
                            _suite=suite, _raw=raw)


# --- quarantine -----------------------------------------------------------------------------


def row_rule_masks(frame: pd.DataFrame,
                   contract: DataContract) -> dict[tuple[str, str], pd.Series]:
    """For each row-level rule, keyed (rule, column): True where a row breaks it.

    Same semantics as the suite, so the counts equal GE's: nulls count only for `not_null`,
    patterns are searched (`re.search`: anchor them). Missing columns are left out, and
    values of the wrong type are not counted here (that is a column-level failure).
    """
    masks: dict[tuple[str, str], pd.Series] = {}
    for column in contract.columns:
        if column.name not in frame.columns:
            continue
        values = frame[column.name]
        present = values.notna()
        if not column.nullable:
            masks[("not_null", column.name)] = ~present
        if column.min is not None or column.max is not None:
            numbers = pd.to_numeric(values, errors="coerce")
            low = numbers < column.min if column.min is not None else False
            high = numbers > column.max if column.max is not None else False
            masks[("range", column.name)] = (low | high) & present
        if column.categories is not None:
            masks[("categories", column.name)] = ~values.isin(column.categories) & present
        if column.pattern is not None:
            matches = values.astype(str).str.contains(re.compile(column.pattern), regex=True)
            masks[("pattern", column.name)] = ~matches.astype(bool) & present
    return {key: mask.fillna(False).astype(bool) for key, mask in masks.items()}


def quarantine_rows(frame: pd.DataFrame,
                    contract: DataContract) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split a frame into (good, bad): bad rows break at least one row-level rule."""
    bad = np.zeros(len(frame), dtype=bool)
    for mask in row_rule_masks(frame, contract).values():
        bad |= mask.to_numpy()
    return frame[~bad], frame[bad]


def _broken_rule_text(rule: str, column: Column) -> str:
    if rule == "not_null":
        return f"'{column.name}' is null"
    if rule == "range":
        return f"'{column.name}' out of range {_range_text(column)}"
    if rule == "categories":
        return f"'{column.name}' not in {list(column.categories or ())}"
    return f"'{column.name}' not matching {column.pattern!r}"


def quarantine_reasons(frame: pd.DataFrame, contract: DataContract) -> dict[str, int]:
    """How many rows break each row-level rule (a row may break several)."""
    return {
        _broken_rule_text(rule, contract.by_name[column]): int(mask.sum())
        for (rule, column), mask in row_rule_masks(frame, contract).items()
        if mask.any()
    }


# --- the decision: pass, quarantine, or fail ------------------------------------------------


@dataclass(frozen=True, eq=False)
class ValidationOutcome:
    """What validation decided: the rows to pass on, the rows set aside, and why."""

    report: ValidationReport  # on the whole frame
    validated: pd.DataFrame | None = field(repr=False)  # None when validation failed
    quarantined: pd.DataFrame = field(repr=False)
    quarantine_enabled: bool = False
    max_share: float = 0.0
    reasons: Mapping[str, int] = field(default_factory=dict)
    after_quarantine: ValidationReport | None = None  # the rows kept, validated again
    problem: str | None = None  # why quarantine could not be used, when it was tried

    @property
    def success(self) -> bool:
        return self.validated is not None

    @property
    def reports(self) -> tuple[ValidationReport, ...]:
        if self.after_quarantine is None:
            return (self.report,)
        return (self.report, self.after_quarantine)

    @property
    def quarantined_share(self) -> float:
        return len(self.quarantined) / self.report.rows if self.report.rows else 0.0

    def message(self) -> str:
        """The report's message, plus what quarantine did or why it could not help."""
        lines = [self.report.message()]
        if self.problem:
            lines.append(self.problem)
        elif len(self.quarantined):
            reasons = ", ".join(f"{text}: {n}" for text, n in sorted(self.reasons.items()))
            lines.append(
                f"quarantined {len(self.quarantined)} of {self.report.rows} rows "
                f"({self.quarantined_share:.2%}, validate.quarantine.max_share "
                f"{self.max_share:.2%}): {reasons}")
        return "\n".join(lines)

    def summary(self) -> dict[str, Any]:
        """Deterministic, JSON-ready summary (the validate stage's DVC metric)."""
        applied = self.success and len(self.quarantined) > 0
        return {
            "success": self.success,
            "rows": self.report.rows,
            "rows_validated": 0 if self.validated is None else len(self.validated),
            "rows_quarantined": len(self.quarantined) if applied else 0,
            "label_rate": (self.after_quarantine or self.report).label_rate,
            "quarantine": {
                "enabled": self.quarantine_enabled,
                "applied": applied,
                "share": round(self.quarantined_share, 6),
                "max_share": self.max_share,
                "reasons": dict(sorted(self.reasons.items())),
                "problem": self.problem,
            },
            "validation": self.report.summary(),
            "after_quarantine": None if self.after_quarantine is None
            else self.after_quarantine.summary(),
        }


def check_dataset(frame: pd.DataFrame, contract: DataContract,
                  config: ValidateConfig) -> ValidationOutcome:
    """Validate a frame and apply the quarantine policy of `validate.quarantine`.

    Passes when every expectation holds. With quarantine enabled, a frame whose only failures
    are row-level rules passes with the offending rows set aside, provided they are at most
    `max_share` of the rows and the rows kept pass the whole suite again (row count and label
    rate included).
    """
    policy = config.quarantine
    report = validate_frame(frame, contract, config)
    none = frame.iloc[0:0]
    base = {"report": report, "quarantine_enabled": policy.enabled, "max_share": policy.max_share}
    if report.success:
        return ValidationOutcome(validated=frame, quarantined=none, **base)
    if not policy.enabled:
        return ValidationOutcome(validated=None, quarantined=none, **base)
    if not report.quarantinable:
        return ValidationOutcome(
            validated=None, quarantined=none, **base,
            problem="quarantine cannot help: column- or dataset-level rules failed "
                    "(only null, range, category and pattern failures are quarantined)")
    good, bad = quarantine_rows(frame, contract)
    reasons = quarantine_reasons(frame, contract)
    share = len(bad) / len(frame)
    if share > policy.max_share:
        return ValidationOutcome(
            validated=None, quarantined=bad, reasons=reasons, **base,
            problem=f"quarantine refused: {len(bad)} of {len(frame)} rows ({share:.2%}) break "
                    f"row-level rules, more than validate.quarantine.max_share "
                    f"({policy.max_share:.2%})")
    after = validate_frame(good, contract, config, run_name="after_quarantine")
    if not after.success:
        return ValidationOutcome(
            validated=None, quarantined=bad, reasons=reasons, after_quarantine=after, **base,
            problem="the rows kept after quarantine still fail:\n" + after.message())
    return ValidationOutcome(validated=good, quarantined=bad, reasons=reasons,
                             after_quarantine=after, **base)


# --- data docs ------------------------------------------------------------------------------


def write_data_docs(reports: Iterable[ValidationReport], directory: Path | str) -> Path:
    """Render Great Expectations data docs (HTML) of validation reports into `directory`.

    GE's own site builder runs in a fresh ephemeral context with one filesystem site. It
    builds into a temporary folder beside `directory`, which then replaces `directory`, so
    `directory/index.html` is never half-written. The pages load styles from public CDNs:
    offline they are plain but complete.
    """
    directory = Path(directory).resolve()  # GE's filesystem store wants an absolute path
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
    try:
        context = _ephemeral_context()
        for site in list(context.list_data_docs_sites()):
            context.delete_data_docs_site(site)  # the default site builds in /tmp
        context.add_data_docs_site("validate", {
            "class_name": "SiteBuilder",
            "store_backend": {"class_name": "TupleFilesystemStoreBackend",
                              "base_directory": str(staging)},
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
        })
        suites: set[str] = set()
        for report in reports:
            raw = report._raw
            if raw.suite_name not in suites:
                suites.add(raw.suite_name)
                context.suites.add(gx.ExpectationSuite(
                    name=raw.suite_name,
                    expectations=[copy.copy(e) for e in report._suite.expectations]))
            key = ValidationResultIdentifier(
                expectation_suite_identifier=ExpectationSuiteIdentifier(name=raw.suite_name),
                run_id=raw.meta["run_id"],
                batch_identifier=raw.meta["run_id"].run_name,
            )
            context.validation_results_store.set(key, raw)
        context.build_data_docs(site_names=["validate"])
        shutil.rmtree(directory, ignore_errors=True)
        staging.rename(directory)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return directory / "index.html"
