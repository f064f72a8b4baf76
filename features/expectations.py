"""The Great Expectations suite derived from the data contract, and running it on a frame.

Every rule comes from the contract (`features/contracts/*.yaml`) plus the dataset-level limits
of `params.yaml` (`validate`); no column is named here. The results come back as plain
`features.validation` values.

Importing this module imports Great Expectations (about 3 s): import it only where needed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Any, ClassVar

import great_expectations as gx
import great_expectations.expectations as gxe
import pandas as pd
from great_expectations.core.run_identifier import RunIdentifier
from great_expectations.data_context.types.base import ProgressBarsConfig
from great_expectations.execution_engine import PandasExecutionEngine
from great_expectations.expectations.expectation import ColumnMapExpectation
from great_expectations.expectations.metrics.map_metric_provider import (
    ColumnMapMetricProvider,
    column_condition_partial,
)

from core.config import ValidateConfig
from features.contract import Column, DataContract
from features.validation import (
    MAX_EXAMPLES,
    ExpectationResult,
    Rule,
    Scope,
    ValidationReport,
    format_range,
    plain_value,
)

# Dtype names Great Expectations accepts for a numeric column: numpy, pandas nullable, and the
# Python types it checks value by value when a column has dtype object.
_NUMERIC_TYPES = [
    *(f"{kind}{bits}" for kind in ("int", "uint") for bits in (8, 16, 32, 64)),
    "float16",
    "float32",
    "float64",
    *(f"{kind}{bits}Dtype" for kind in ("Int", "UInt") for bits in (8, 16, 32, 64)),
    "Float32Dtype",
    "Float64Dtype",
    "int",
    "float",
]
_STRING_TYPES = ["str", "StringDtype"]
# Rules that cannot be judged once a column is missing or holds the wrong type.
_NEED_TYPE = frozenset({"whole", "range", "label_rate"})


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


def _expect(
    kind: type[gxe.Expectation], rule: Rule, scope: Scope, description: str, **kwargs: Any
) -> gxe.Expectation:
    """An expectation tagged with our rule and scope, which the result is read back by."""
    return kind(meta={"rule": rule, "scope": scope}, description=description, **kwargs)


def _column_expectations(column: Column, config: ValidateConfig) -> list[gxe.Expectation]:
    name = column.name
    rules = [_expect(gxe.ExpectColumnToExist, "exists", "column", f"'{name}' exists", column=name)]
    if column.is_numeric:
        rules.append(
            _expect(
                gxe.ExpectColumnValuesToBeInTypeList,
                "type",
                "column",
                f"'{name}' holds numbers",
                column=name,
                type_list=_NUMERIC_TYPES,
            )
        )
    if column.dtype == "integer":
        rules.append(
            _expect(
                ExpectColumnValuesToBeWholeNumbers,
                "whole",
                "column",
                f"'{name}' holds whole numbers",
                column=name,
            )
        )
    if column.dtype == "string":
        rules.append(
            _expect(
                gxe.ExpectColumnValuesToBeInTypeList,
                "type",
                "column",
                f"'{name}' holds text",
                column=name,
                type_list=_STRING_TYPES,
            )
        )
    if not column.nullable:
        rules.append(
            _expect(
                gxe.ExpectColumnValuesToNotBeNull,
                "not_null",
                "row",
                f"'{name}' has no nulls",
                column=name,
            )
        )
    if column.min is not None or column.max is not None:
        rules.append(
            _expect(
                gxe.ExpectColumnValuesToBeBetween,
                "range",
                "row",
                f"'{name}' within {format_range(column)}",
                column=name,
                min_value=column.min,
                max_value=column.max,
            )
        )
    if column.categories is not None:
        rules.append(
            _expect(
                gxe.ExpectColumnValuesToBeInSet,
                "categories",
                "row",
                f"'{name}' in {list(column.categories)}",
                column=name,
                value_set=list(column.categories),
            )
        )
    if column.pattern is not None:
        rules.append(
            _expect(
                gxe.ExpectColumnValuesToMatchRegex,
                "pattern",
                "row",
                f"'{name}' matches {column.pattern}",
                column=name,
                regex=column.pattern,
            )
        )
    if column.unique and config.unique_ids:
        rules.append(
            _expect(
                gxe.ExpectColumnValuesToBeUnique,
                "unique",
                "dataset",
                f"'{name}' is unique",
                column=name,
            )
        )
    return rules


def build_suite(contract: DataContract, config: ValidateConfig) -> gx.ExpectationSuite:
    """The contract's suite: row count, each column's rules in contract order, label rate."""
    low, high = config.label_rate
    expectations = [
        _expect(
            gxe.ExpectTableRowCountToBeBetween,
            "row_count",
            "dataset",
            f"between {config.min_rows} and {config.max_rows} rows",
            min_value=config.min_rows,
            max_value=config.max_rows,
        ),
        *(rule for column in contract.columns for rule in _column_expectations(column, config)),
        _expect(
            gxe.ExpectColumnMeanToBeBetween,
            "label_rate",
            "dataset",
            f"label rate (mean of '{contract.label}') within [{low:g}, {high:g}]",
            column=contract.label,
            min_value=low,
            max_value=high,
        ),
    ]
    return gx.ExpectationSuite(name=contract.name, expectations=expectations)


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


def _skip_reason(rule: str, column: str | None, broken: Mapping[str, str], rows: int) -> str | None:
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
    kwargs = {
        k: tuple(v) if isinstance(v, list) else v
        for k, v in config.kwargs.items()
        if k != "batch_id"
    }
    column = kwargs.get("column")
    result = raw.result or {}
    skipped = None if raw.success else _skip_reason(rule, column, broken, rows)
    examples: list[Any] = []
    if rule != "not_null":  # the examples of a null check are all null
        for value in map(plain_value, result.get("partial_unexpected_list") or []):
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
        unexpected_percent=plain_value(result.get("unexpected_percent")),
        examples=tuple(examples),
        observed=plain_value(result.get("observed_value")),
        error=None if skipped else _exception_message(raw.exception_info),
        skipped=skipped,
    )


def _with_type_hint(result: ExpectationResult, frame: pd.DataFrame) -> ExpectationResult:
    """For a numeric column read as text, point at the values that are not numbers at all."""
    if (
        result.success
        or result.rule != "type"
        or result.column not in frame.columns
        or "float" not in result.kwargs["type_list"]
    ):
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


def ephemeral_context() -> Any:
    """An in-memory GE context: no project folder, no progress bars, no usage statistics."""
    context = gx.get_context(mode="ephemeral")
    context.enable_analytics(False)  # whatever the import order left in the environment
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    return context


def validate_frame(
    frame: pd.DataFrame, contract: DataContract, config: ValidateConfig, run_name: str = "dataset"
) -> ValidationReport:
    """Validate a frame against the contract's suite in an ephemeral Great Expectations context.

    A missing or mistyped column fails its own rule; the rules that depend on it are marked
    skipped instead of reporting GE's errors. The frame is not modified.
    """
    context = ephemeral_context()
    batch_definition = (
        context.data_sources.add_pandas(f"{contract.name}_source")
        .add_dataframe_asset(contract.name)
        .add_batch_definition_whole_dataframe("whole_frame")
    )
    suite = context.suites.add(build_suite(contract, config))
    definition = context.validation_definitions.add(
        gx.ValidationDefinition(
            name=f"{contract.name}_{run_name}", data=batch_definition, suite=suite
        )
    )
    raw = definition.run(
        batch_parameters={"dataframe": frame},
        # 20 examples from GE leave MAX_EXAMPLES distinct ones after dropping repeats
        result_format={"result_format": "BASIC", "partial_unexpected_count": 20},
        run_id=RunIdentifier(run_name=run_name),
    )
    order = {expectation.id: i for i, expectation in enumerate(suite.expectations)}
    in_order = sorted(raw.results, key=lambda r: order[r.expectation_config.id])
    broken = _broken_columns(in_order)
    results = tuple(_with_type_hint(_to_result(r, broken, len(frame)), frame) for r in in_order)
    return ValidationReport(
        contract=contract.name, rows=len(frame), results=results, _suite=suite, _raw=raw
    )
