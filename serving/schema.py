"""Request and response models of the prediction service, derived from the data contract.

No column is named here. `build_record_model` makes one field per `id` and `feature` column
of the contract, with its type, range, categories, pattern and description, so the OpenAPI
document and the 4xx messages follow the contract when it changes. `build_answer_models`
names the answer's probability and label fields as the contract's `answer:` block says.
"""

from __future__ import annotations

import difflib
import math
import numbers
import operator
import re
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal

import numpy as np
import pandas as pd
from pydantic import (
    AliasChoices,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    create_model,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic.json_schema import SkipJsonSchema
from pydantic_core import InitErrorDetails, PydanticCustomError, SchemaError

from features.contract import Column, DataContract, field_name
from serving.answers import (
    AnswerModels,
    BatchPrediction,
    Prediction,
    RecordPrediction,
    build_answer_models,
)

__all__ = [  # the answer models live in serving.answers; these names stay importable here
    "AnswerModels",
    "BatchPrediction",
    "Prediction",
    "RecordPrediction",
    "build_answer_models",
]

RECORD_MODEL_NAME = "ProcessRecord"
BATCH_MODEL_NAME = "ProcessBatch"
SERVED_ROLES = frozenset({"id", "feature"})  # what a client sends; labels are never inputs
_JSON_KINDS = {"bool": "a boolean", "str": "a string", "list": "an array", "dict": "an object"}
_INT64_MIN, _INT64_MAX = int(np.iinfo(np.int64).min), int(np.iinfo(np.int64).max)


# --- names ----------------------------------------------------------------------------


def served_columns(contract: DataContract) -> list[Column]:
    """The columns a request carries, in contract order: ids and features."""
    return [c for c in contract.columns if c.role in SERVED_ROLES]


# --- the record and batch models -------------------------------------------------------


def build_record_model(contract: DataContract) -> type[BaseModel]:
    """One input record: a field per id and feature column of the contract.

    Features are required unless nullable; ids are optional (they only reach the log).

    - Field names are snake_case (`air_temperature_k`); a request may also use the contract's
      names ("Air temperature [K]"). Validation errors always name the contract column.
    - Numbers are strict about kind and lax about form: any JSON number is a float (5 -> 5.0),
      and a whole-valued number is an integer (5.0 -> 5; the contract's `integer` means whole
      numbers, so 5.5 is refused). Booleans and numeric strings are refused: `true` or "300"
      in a sensor reading is a client bug, not a value. NaN and infinity are refused.
    - Unknown fields are refused (with the closest known name), so a misspelt optional field
      cannot silently become a missing value.
    """
    columns = served_columns(contract)
    snakes: dict[str, str] = {}
    for column in columns:
        snake = field_name(column.name)
        if snake in snakes:
            raise ValueError(
                f"columns '{snakes[snake]}' and '{column.name}' both make the field name "
                f"'{snake}'; rename one in the contract"
            )
        snakes[snake] = column.name
    fields = {
        field_name(c.name): (_annotation(c), _field_info(c, field_name(c.name))) for c in columns
    }
    aliases = {**snakes, **{name: name for name in snakes.values()}}  # either name -> column
    config = ConfigDict(
        extra="forbid", frozen=True, json_schema_extra={"examples": [example_record(contract)]}
    )
    validators = {"_name_contract_columns": _contract_names_in_errors(aliases)}
    doc = f"One record to score: the id and feature columns of the '{contract.name}' contract."
    try:
        return create_model(
            RECORD_MODEL_NAME, __config__=config, __doc__=doc, __validators__=validators, **fields
        )
    except SchemaError:  # a pattern Rust's linear-time regex engine cannot compile
        config["regex_engine"] = "python-re"
        return create_model(
            RECORD_MODEL_NAME, __config__=config, __doc__=doc, __validators__=validators, **fields
        )


def build_batch_model(record_model: type[BaseModel], max_rows: int) -> type[BaseModel]:
    """`{"records": [...]}` with 1 to `max_rows` records; the size is checked before the rows."""

    def check_size(value: Any) -> Any:
        if isinstance(value, list | tuple):
            if not value:
                raise PydanticCustomError("too_short", "A batch needs at least one record")
            if len(value) > max_rows:
                raise PydanticCustomError(
                    "too_long",
                    "A batch holds at most {max_rows} records, got {rows}; split it",
                    {"max_rows": max_rows, "rows": len(value)},
                )
        return value

    extra = record_model.model_config.get("json_schema_extra")
    example = extra.get("examples", []) if isinstance(extra, dict) else []
    records = Annotated[list[record_model], BeforeValidator(check_size)]  # type: ignore[valid-type]
    info = Field(
        min_length=1,
        max_length=max_rows,
        description=f"The records to score, 1 to {max_rows}; answers keep their order.",
    )
    config = ConfigDict(extra="forbid", frozen=True)
    if example:
        config["json_schema_extra"] = {"examples": [{"records": example[:1]}]}
    return create_model(
        BATCH_MODEL_NAME,
        __config__=config,
        __doc__="A batch of records scored in one model call.",
        records=(records, info),
    )


def example_record(contract: DataContract) -> dict[str, Any]:
    """A valid request record by snake names: the contract's examples, else derived ones."""
    examples = {field_name(c.name): _example(c) for c in served_columns(contract)}
    return {name: value for name, value in examples.items() if value is not None}


def _annotation(column: Column) -> Any:
    """The value's type with its rules: inside `Annotated`, so they survive `| None`."""
    if column.dtype == "float":  # strict: any number, never a boolean or a string
        rules = Field(ge=column.min, le=column.max, strict=True, allow_inf_nan=False)
        base: Any = Annotated[float, rules]
    elif column.dtype == "integer":  # lax, so 5.0 passes, but booleans and strings do not
        low, high = _integer_bounds(column)
        base = Annotated[int, Field(ge=low, le=high), BeforeValidator(_require_number)]
    elif column.dtype == "categorical":
        base = Literal[tuple(column.categories or ())]
    else:
        base = Annotated[str, Field(pattern=column.pattern)]
    return base | None if _optional(column) else base


def _optional(column: Column) -> bool:
    return column.nullable or column.role == "id"


def _field_info(column: Column, snake: str) -> FieldInfo:
    example = _example(column)
    return Field(
        None if _optional(column) else ...,
        validation_alias=AliasChoices(snake, column.name) if snake != column.name else snake,
        serialization_alias=column.name,  # model_dump(by_alias=True) gives the contract names
        title=column.name,
        description=column.description or column.name,
        examples=None if example is None else [example],
    )


def _bound(value: float | None) -> float | int | None:
    if value is not None and float(value).is_integer():
        return int(value)
    return value


def _integer_bounds(column: Column) -> tuple[float | int, float | int]:
    """The contract's bounds, kept within int64 even where it gives none: the model's frame
    holds integers as int64, as in training, and a larger one must be a 4xx, not a crash."""
    low, high = _bound(column.min), _bound(column.max)
    return (
        _INT64_MIN if low is None else max(low, _INT64_MIN),
        _INT64_MAX if high is None else min(high, _INT64_MAX),
    )


def _require_number(value: Any) -> Any:
    if value is None or (
        isinstance(value, numbers.Real) and not isinstance(value, bool | np.bool_)
    ):
        return value
    kind = type(value).__name__
    raise PydanticCustomError(
        "number_type", "Input should be a number, not {kind}", {"kind": _JSON_KINDS.get(kind, kind)}
    )


def _contract_names_in_errors(aliases: Mapping[str, str]) -> Any:
    """A wrap validator: errors name the contract column, whichever name the client used."""

    def name_contract_columns(cls: type[BaseModel], data: Any, handler: Any) -> Any:
        try:
            return handler(data)
        except ValidationError as exc:
            errors = [_renamed(error, aliases) for error in exc.errors(include_url=False)]
            raise ValidationError.from_exception_data(exc.title, errors) from None

    return model_validator(mode="wrap")(name_contract_columns)


def _renamed(error: Any, aliases: Mapping[str, str]) -> InitErrorDetails:
    loc, kind, message = tuple(error["loc"]), error["type"], error["msg"]
    key = loc[0] if loc and isinstance(loc[0], str) else None
    if key is not None and kind == "extra_forbidden":
        if key in aliases:
            message = f"'{aliases[key]}' is given under both of its names; send one"
        else:
            message = "Unknown field" + _closest(key, aliases)
    elif key in aliases:
        loc = (aliases[key], *loc[1:])
    return {"type": PydanticCustomError(kind, message), "loc": loc, "input": error["input"]}


def _closest(key: str, aliases: Mapping[str, str]) -> str:
    lowered = {name.lower(): name for name in aliases}
    match = difflib.get_close_matches(key.lower(), list(lowered), n=1, cutoff=0.6)
    if not match:
        return ""
    column = aliases[lowered[match[0]]]
    return f"; did you mean '{field_name(column)}' ('{column}')?"


# --- examples for the OpenAPI document -------------------------------------------------


def _example(column: Column) -> Any:
    """The contract's example, else one derived from the rules; None when none is safe.

    Without an example: the first category, the middle of the range (or its one bound, or
    0), or "example" for text, unless the column's pattern refuses that text.
    """
    if column.example is not None:
        if column.dtype == "integer":
            return int(column.example)
        return float(column.example) if column.dtype == "float" else column.example
    if column.dtype == "categorical":
        return (column.categories or (None,))[0]
    if column.dtype == "string":
        fits = column.pattern is None or re.search(column.pattern, "example") is not None
        return "example" if fits else None
    low, high = column.min, column.max
    if low is not None and high is not None:
        middle = (low + high) / 2
    else:
        middle = next((bound for bound in (low, high) if bound is not None), 0.0)
    return math.ceil(middle) if column.dtype == "integer" else float(middle)


# --- from records to the model's frame -------------------------------------------------


def records_to_frame(records: Sequence[BaseModel], contract: DataContract) -> pd.DataFrame:
    """The model's input frame: contract names and order, features plus the ids that were sent.

    Floats are float64; integers int64 (float64 with NaN when a value is missing, as pandas
    reads a CSV); categories and strings are Python str in object columns, as in training.
    """
    data: dict[str, np.ndarray] = {}
    for column in served_columns(contract):
        values = list(map(operator.attrgetter(field_name(column.name)), records))
        if column.role == "id" and all(value is None for value in values):
            continue
        data[column.name] = _column_array(values, column)
    return pd.DataFrame(data, copy=False)


def _column_array(values: list[Any], column: Column) -> np.ndarray:
    if column.dtype == "float":
        return np.array(values, dtype=np.float64)
    if column.dtype == "integer":
        return np.array(values, dtype=np.float64 if None in values else np.int64)
    return np.array(values, dtype=object)


# --- 4xx bodies ------------------------------------------------------------------------


def describe_validation_error(exc: ValidationError) -> list[dict[str, Any]]:
    """Each problem as {field, name, record?, message, value?, type}, ready for a 4xx body.

    `field` is the contract column (or the unknown key as sent, or `records` for the batch
    as a whole), `name` its snake_case field name (None for an unknown key), `record` the
    index within a batch, `value` the offending input (left out for a missing field and for
    whole objects; NaN and infinity as strings, so the body stays valid JSON).
    """
    described = []
    for error in exc.errors(include_url=False, include_context=False):
        loc = error["loc"]
        field = next((part for part in reversed(loc) if isinstance(part, str)), None)
        record = next((part for part in reversed(loc) if isinstance(part, int)), None)
        known = field is not None and error["type"] != "extra_forbidden"
        item: dict[str, Any] = {"field": field, "name": _snake_or_none(field) if known else None}
        if record is not None:
            item["record"] = record
        item["message"] = error["msg"]
        value = error.get("input")
        if error["type"] != "missing" and not isinstance(value, dict | list | tuple):
            item["value"] = _json_safe(value)
        item["type"] = error["type"]
        described.append(item)
    return described


class Problem(BaseModel):
    """One problem with a request, as `describe_validation_error` states it."""

    field: str | None = Field(
        description="The contract column, the unknown key as sent, or `records` for the "
        "batch as a whole; null when the body itself is the problem (not JSON, not an object)."
    )
    name: str | None = Field(description="The field's snake_case name; null for unknown keys.")
    record: int | SkipJsonSchema[None] = Field(
        None, description="The record's index within a batch (only for a batch's records)."
    )
    message: str = Field(description="What is wrong, in words.")
    value: Any = Field(
        None, description="The offending input (absent for a missing field or a whole object)."
    )
    type: str = Field(description="The kind of problem, e.g. missing, extra_forbidden.")


class InvalidRequest(BaseModel):
    """A 400: the body does not fit the request schema."""

    error: str = Field(description="One line: the first problem, and how many more.")
    detail: list[Problem] = Field(description="Every problem found, in order.")


class ErrorAnswer(BaseModel):
    """Any other refusal or error: one line saying why."""

    error: str = Field(description="What went wrong and, where it helps, what to do.")


def _snake_or_none(field: str) -> str | None:
    try:
        return field_name(field)
    except ValueError:
        return None


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return repr(value)
