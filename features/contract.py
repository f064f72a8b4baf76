"""The one data contract: each column's name, dtype, range or categories, nullability, role
and an example value.

The contract is a YAML file named in `params.yaml` (`data.contract`). The validation suite,
the model's preprocessing, the serving request model and the drift column mapping are all
derived from it; nothing else lists the columns by hand.
"""

from __future__ import annotations

import functools
import keyword
import math
import re
import unicodedata
from functools import cached_property
from pathlib import Path
from typing import Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

Dtype = Literal["integer", "float", "string", "categorical"]
Role = Literal["id", "feature", "label", "ignore"]
NUMERIC_DTYPES: frozenset[str] = frozenset({"integer", "float"})
# the fields every served answer carries beside the probability and the label
ANSWER_SHARED_FIELDS = ("threshold", "model_version", "request_id")
_RESERVED_NAMES = frozenset(dir(BaseModel))
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class ContractError(ValueError):
    """A contract file that cannot be used; the message names the column and the problem."""


@functools.lru_cache(maxsize=1024)
def field_name(column: str) -> str:
    """A stable snake_case identifier for a column: "Air temperature [K]" -> "air_temperature_k".

    Accents are dropped, each run of other non-alphanumerics becomes one underscore, and the
    result is lower-cased. A leading digit gets a `c_` prefix; a Python keyword, a BaseModel
    attribute or a `model_` name gets a trailing underscore. `field_name(field_name(x))`
    equals `field_name(x)`.
    """
    plain = unicodedata.normalize("NFKD", column).encode("ascii", "ignore").decode()
    snake = re.sub(r"[^0-9a-zA-Z]+", "_", plain).strip("_").lower()
    if not snake:
        raise ValueError(f"column {column!r}: no letters or digits to make a field name from")
    if snake[0].isdigit():
        snake = f"c_{snake}"
    if keyword.iskeyword(snake) or snake in _RESERVED_NAMES or snake.startswith("model_"):
        snake = f"{snake}_"
    return snake


class Answer(BaseModel):
    """The field names of the served answer: the probability and the predicted label.

    Either may be left out: the probability is then `probability`, the label the contract's
    label column as a snake_case identifier (`Machine failure` -> `machine_failure`).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    probability: str = "probability"
    label: str | None = None

    @field_validator("probability", "label")
    @classmethod
    def _an_identifier(cls, name: str | None) -> str | None:
        if name is not None:
            problem = answer_name_problem(name)
            if problem is not None:
                raise ValueError(problem)
        return name

    @model_validator(mode="after")
    def _names_differ(self) -> Answer:
        if self.label is not None and self.label == self.probability:
            raise ValueError(
                f"probability and label are both '{self.label}'; give them different names"
            )
        return self


def answer_name_problem(name: str) -> str | None:
    """Why `name` cannot name a field of the answer, or None when it can."""
    if not _IDENTIFIER.fullmatch(name) or keyword.iskeyword(name):
        return f"'{name}' is not a valid identifier (letters, digits, _; not a Python keyword)"
    if name in ANSWER_SHARED_FIELDS:
        return f"'{name}' is taken: every answer has {', '.join(ANSWER_SHARED_FIELDS)}"
    if name in _RESERVED_NAMES or name.startswith("model_"):
        return f"'{name}' is reserved by pydantic (an attribute of its models or model_*)"
    return None


class Column(BaseModel):
    """One column. `integer` means whole numbers (a float column of whole values passes)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1)
    dtype: Dtype
    role: Role = "feature"
    nullable: bool = False
    min: float | None = None
    max: float | None = None
    categories: tuple[str, ...] | None = None
    pattern: str | None = None
    unique: bool = False
    # domain knowledge the model must respect: the label's probability never falls (increasing)
    # or never rises (decreasing) as this feature grows, all else equal
    monotonic: Literal["increasing", "decreasing"] | None = None
    # a typical value, shown in the serving API's OpenAPI document; it must pass the rules above
    example: bool | int | float | str | None = None
    description: str = ""

    @model_validator(mode="after")
    def _rules_fit_dtype(self) -> Column:
        numeric = self.dtype in NUMERIC_DTYPES
        if (self.min is not None or self.max is not None) and not numeric:
            raise ValueError(
                f"column '{self.name}': min/max need a numeric dtype, not {self.dtype}"
            )
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"column '{self.name}': min {self.min} is above max {self.max}")
        if self.dtype == "categorical" and not self.categories:
            raise ValueError(f"column '{self.name}': a categorical column needs its categories")
        if self.categories is not None and self.dtype != "categorical":
            raise ValueError(f"column '{self.name}': categories need dtype categorical")
        if self.pattern is not None and self.dtype != "string":
            raise ValueError(f"column '{self.name}': a pattern needs dtype string")
        if self.monotonic is not None and not (numeric and self.role == "feature"):
            raise ValueError(f"column '{self.name}': monotonic needs a numeric feature")
        problem = self._example_problem()
        if problem is not None:
            raise ValueError(f"column '{self.name}': example {self.example!r} {problem}")
        return self

    def _example_problem(self) -> str | None:
        """Why `example` breaks the column's own rules, or None when it passes them."""
        value = self.example
        if value is None:
            return None
        if self.is_numeric:
            if isinstance(value, bool) or not isinstance(value, int | float):
                return f"is not a number (the column is {self.dtype})"
            if not math.isfinite(value):
                return "is not a finite number"
            if self.dtype == "integer" and not float(value).is_integer():
                return "is not a whole number (the column is integer)"
            if self.min is not None and value < self.min:
                return f"is below min {self.min:g}"
            if self.max is not None and value > self.max:
                return f"is above max {self.max:g}"
            return None
        if not isinstance(value, str):
            return f"is not text (the column is {self.dtype})"
        if self.categories is not None and value not in self.categories:
            return f"is not one of the categories {list(self.categories)}"
        if self.pattern is not None:
            try:
                matches = re.search(self.pattern, value) is not None
            except re.error as exc:
                return f"cannot be checked: pattern {self.pattern!r} is not a valid regex ({exc})"
            if not matches:
                return f"does not match pattern {self.pattern!r}"
        return None

    @property
    def is_numeric(self) -> bool:
        return self.dtype in NUMERIC_DTYPES


class DataContract(BaseModel):
    """The columns of a dataset and what each is for."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    description: str = ""
    columns: tuple[Column, ...] = Field(min_length=1)
    # the served answer's field names; absent: `probability` and the label column's snake name
    answer: Answer = Answer()

    @model_validator(mode="after")
    def _roles_are_consistent(self) -> DataContract:
        names = [c.name for c in self.columns]
        duplicated = sorted({n for n in names if names.count(n) > 1})
        if duplicated:
            raise ValueError(f"columns listed twice: {duplicated}")
        labels = [c for c in self.columns if c.role == "label"]
        if len(labels) != 1:
            raise ValueError(f"exactly one column must have role 'label', found {len(labels)}")
        label = labels[0]
        if label.nullable:
            raise ValueError(f"label column '{label.name}' cannot be nullable")
        if not any(c.role == "feature" for c in self.columns):
            raise ValueError("at least one column must have role 'feature'")
        if self.answer.label is None:
            default = field_name(label.name)
            problem = answer_name_problem(default)
            if problem is None and default == self.answer.probability:
                problem = f"'{default}' is also the probability's name"
            if problem is not None:
                raise ValueError(
                    f"the answer's label would be named after label column '{label.name}', "
                    f"but {problem}; set answer.label in the contract"
                )
        return self

    @cached_property
    def by_name(self) -> dict[str, Column]:
        return {c.name: c for c in self.columns}

    @property
    def probability_field(self) -> str:
        """The served answer's name for the probability of the positive label."""
        return self.answer.probability

    @property
    def label_field(self) -> str:
        """The served answer's name for the predicted label (probability >= threshold)."""
        return self.answer.label or field_name(self.label)

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def label(self) -> str:
        return next(c.name for c in self.columns if c.role == "label")

    @property
    def ids(self) -> list[str]:
        return [c.name for c in self.columns if c.role == "id"]

    @property
    def features(self) -> list[str]:
        return [c.name for c in self.columns if c.role == "feature"]

    @property
    def numeric_features(self) -> list[str]:
        return [c.name for c in self.columns if c.role == "feature" and c.is_numeric]

    @property
    def categorical_features(self) -> list[str]:
        return [c.name for c in self.columns if c.role == "feature" and not c.is_numeric]

    @property
    def monotonic_constraints(self) -> dict[str, int]:
        """Feature name -> +1 (increasing) or -1 (decreasing), as scikit-learn takes them."""
        sign = {"increasing": 1, "decreasing": -1}
        return {c.name: sign[c.monotonic] for c in self.columns if c.monotonic is not None}

    @property
    def unique_columns(self) -> list[str]:
        return [c.name for c in self.columns if c.unique]

    @property
    def row_id(self) -> str | None:
        """The column that names a row: the first id column declared unique, else None.

        Labels join to served predictions on it, and feedback rows match holdout rows on it.
        """
        return next((c.name for c in self.columns if c.role == "id" and c.unique), None)

    def require_row_id(self, needed_for: str, error: type[Exception] = ContractError) -> str:
        """`row_id`, or `error` saying the contract has none; `needed_for` ends the sentence.

        `needed_for` follows "...(role id, unique: true)" as written, e.g. " to join labels on".
        """
        if self.row_id is None:
            raise error(
                f"the data contract '{self.name}' declares no unique id column (role id, "
                f"unique: true){needed_for}"
            )
        return self.row_id


def parse_contract(raw: object, source: str = "contract") -> DataContract:
    """Validate a mapping into a `DataContract` with a message that names the problem."""
    if not isinstance(raw, dict):
        raise ContractError(f"{source}: expected a mapping with 'name' and 'columns'")
    try:
        return DataContract.model_validate(raw)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            loc = list(error["loc"])
            if len(loc) >= 2 and loc[0] == "columns" and isinstance(loc[1], int):
                columns = raw.get("columns") or []
                entry = columns[loc[1]] if loc[1] < len(columns) else {}
                name = entry.get("name", f"#{loc[1]}") if isinstance(entry, dict) else f"#{loc[1]}"
                loc = [f"column '{name}'", *loc[2:]]
            where = ".".join(str(p) for p in loc) or "(top level)"
            problems.append(f"  - {where}: {error['msg']}")
        raise ContractError(f"{source}: invalid data contract\n" + "\n".join(problems)) from None


def load_contract(path: Path | str) -> DataContract:
    """Read the contract YAML named in `params.yaml`."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ContractError(
            f"{path}: data contract not found (params.yaml data.contract)"
        ) from None
    except yaml.YAMLError as exc:
        raise ContractError(f"{path}: not valid YAML: {exc}") from None
    return parse_contract(raw, str(path))


def dump_contract(contract: DataContract) -> str:
    """The contract as YAML text, in the same shape `load_contract` reads."""
    data = contract.model_dump(mode="json", exclude_defaults=True)
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
