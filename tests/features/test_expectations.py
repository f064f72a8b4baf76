"""The suite derives from the contract, good data passes, each corruption fails with a
message that names the column, the count and examples."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest

from core.config import ValidateConfig
from features.contract import DataContract, parse_contract
from features.expectations import build_suite, validate_frame
from features.validation import ValidationReport
from tests.factories import make_valid_frame

CONFIG = ValidateConfig()  # min_rows 1000, label_rate [0.005, 0.25], unique ids


# --- the suite --------------------------------------------------------------------------


def test_suite_derives_every_rule_from_the_contract(contract: DataContract) -> None:
    suite = build_suite(contract, CONFIG)
    by_column: dict[str, set[str]] = {}
    for expectation in suite.expectations:
        column = getattr(expectation, "column", None) or "(dataset)"
        by_column.setdefault(column, set()).add(expectation.meta["rule"])

    assert set(by_column) == {*contract.column_names, "(dataset)"}
    assert by_column["(dataset)"] == {"row_count"}
    assert by_column[contract.label] >= {
        "exists",
        "type",
        "whole",
        "not_null",
        "range",
        "label_rate",
    }
    for column in contract.columns:
        rules = by_column[column.name]
        assert "exists" in rules
        assert ("not_null" in rules) is not column.nullable
        assert ("range" in rules) is (column.min is not None or column.max is not None)
        assert ("categories" in rules) is (column.categories is not None)
        assert ("pattern" in rules) is (column.pattern is not None)
        assert ("unique" in rules) is column.unique


def test_suite_follows_another_contract_and_config() -> None:
    other = parse_contract(
        {
            "name": "tiny",
            "columns": [
                {"name": "id", "dtype": "integer", "role": "id", "unique": True},
                {"name": "reading", "dtype": "float", "nullable": True, "max": 5},
                {"name": "label", "dtype": "integer", "role": "label", "min": 0, "max": 1},
            ],
        }
    )
    config = ValidateConfig(unique_ids=False, min_rows=5, max_rows=10, label_rate=(0.1, 0.9))
    suite = build_suite(other, config)
    rules = {(getattr(e, "column", None), e.meta["rule"]) for e in suite.expectations}

    assert ("reading", "not_null") not in rules
    assert ("reading", "range") in rules
    assert ("id", "unique") not in rules  # validate.unique_ids is off
    row_count = next(e for e in suite.expectations if e.meta["rule"] == "row_count")
    assert (row_count.min_value, row_count.max_value) == (5, 10)
    rate = next(e for e in suite.expectations if e.meta["rule"] == "label_rate")
    assert (rate.column, rate.min_value, rate.max_value) == ("label", 0.1, 0.9)


# --- good data ----------------------------------------------------------------------------


def test_valid_frame_passes(valid_report: ValidationReport) -> None:
    assert valid_report.success, valid_report.message()
    assert valid_report.failures == ()
    assert "all 65 expectations passed" in valid_report.message()
    assert valid_report.rows == 2000
    assert 0.005 <= valid_report.label_rate <= 0.25


def test_real_ai4i_file_passes(real_ai4i_path, contract: DataContract) -> None:
    report = validate_frame(pd.read_csv(real_ai4i_path), contract, CONFIG)
    assert report.success, report.message()
    assert report.rows == 10_000
    assert report.label_rate == pytest.approx(0.0339)


def test_integer_column_of_whole_floats_passes(
    valid_frame: pd.DataFrame, contract: DataContract
) -> None:
    frame = valid_frame.astype({"UDI": float, "Machine failure": float})
    frame.loc[3, "Air temperature [K]"] = 300  # a whole value in a float column is fine too
    report = validate_frame(frame, contract, CONFIG)
    assert report.success, report.message()


def test_validation_does_not_change_its_input(contract: DataContract) -> None:
    frame = make_valid_frame(1500, seed=3)
    frame.loc[0, "Torque [Nm]"] = -1.0
    before = frame.copy()
    validate_frame(frame, contract, CONFIG)
    pd.testing.assert_frame_equal(frame, before)


# --- each corruption fails with a readable message -----------------------------------------


def _set(column: str, rows: list[int], values: list[object]) -> Callable[[pd.DataFrame], None]:
    def corrupt(frame: pd.DataFrame) -> None:
        if any(isinstance(v, str) for v in values):
            frame[column] = frame[column].astype(object)
        elif any(isinstance(v, float) for v in values):
            frame[column] = frame[column].astype(float)
        for row, value in zip(rows, values, strict=True):
            frame.at[row, column] = value

    return corrupt


def _numbers_as_text(frame: pd.DataFrame) -> None:
    frame["Torque [Nm]"] = frame["Torque [Nm]"].round(1).astype(str)
    frame.at[4, "Torque [Nm]"] = "n/a"


def _label_rate_too_high(frame: pd.DataFrame) -> None:
    frame.loc[frame.index[:800], "Machine failure"] = 1


def _duplicate_ids(frame: pd.DataFrame) -> None:
    frame.loc[10, "UDI"] = 5


def _dates_in_numeric_column(frame: pd.DataFrame) -> None:
    frame["Tool wear [min]"] = pd.Timestamp("2024-01-01")


CORRUPTIONS = {
    "out of range": (
        _set("Torque [Nm]", [3, 5], [-5.0, 999.0]),
        "column 'Torque [Nm]': 2 values out of range [0, 200] (e.g. -5.0, 999.0)",
    ),
    "nulls": (
        _set("Air temperature [K]", [1, 2, 3], [np.nan] * 3),
        "column 'Air temperature [K]': 3 null values (the column is not nullable)",
    ),
    "unknown category": (
        _set("Type", [7], ["X"]),
        "column 'Type': 1 value not in categories ['L', 'M', 'H'] (e.g. 'X')",
    ),
    "pattern mismatch": (
        _set("Product ID", [8, 9], ["Z123", "L-7"]),
        "column 'Product ID': 2 values not matching pattern '^[LMH][0-9]+$' (e.g. 'Z123', 'L-7')",
    ),
    "strings in a numeric column": (
        _set("Torque [Nm]", [2, 6], ["abc", "12,5"]),
        "column 'Torque [Nm]': expected numbers, found 2 values of another type "
        "(e.g. 'abc', '12,5')",
    ),
    "numbers stored as text": (
        _numbers_as_text,
        "the column holds text, of which 1 is not a number (e.g. 'n/a')",
    ),
    "dates in a numeric column": (
        _dates_in_numeric_column,
        "column 'Tool wear [min]': expected numbers, found dtype datetime64",
    ),
    "fractions in an integer column": (
        _set("UDI", [4], [4.5]),
        "column 'UDI': 1 value not a whole number (the contract says integer) (e.g. 4.5)",
    ),
    "duplicate ids": (
        _duplicate_ids,
        "column 'UDI': 2 rows share a value that must be unique (e.g. 5)",
    ),
    "label rate out of range": (_label_rate_too_high, "column 'Machine failure': label rate 0.4"),
}


@pytest.mark.parametrize("name", list(CORRUPTIONS))
def test_each_corruption_fails_with_a_clear_message(
    name: str, valid_frame: pd.DataFrame, contract: DataContract
) -> None:
    corrupt, expected = CORRUPTIONS[name]
    frame = valid_frame.copy()
    corrupt(frame)
    report = validate_frame(frame, contract, CONFIG)

    assert not report.success
    message = report.message()
    assert expected in message
    assert len(report.failures) == 1, message  # one problem, one line: no cascade
    assert "Traceback" not in message and "could not check" not in message


def test_label_rate_message_names_the_bounds(
    valid_frame: pd.DataFrame, contract: DataContract
) -> None:
    frame = valid_frame.copy()
    frame["Machine failure"] = 0
    frame[["TWF", "HDF", "PWF", "OSF", "RNF"]] = 0
    report = validate_frame(frame, contract, CONFIG)
    assert (
        "column 'Machine failure': label rate 0.0000 outside [0.005, 0.25] (validate.label_rate)"
    ) in report.message()


def test_missing_column_gives_one_clear_line(
    valid_frame: pd.DataFrame, contract: DataContract
) -> None:
    report = validate_frame(valid_frame.drop(columns=["Torque [Nm]"]), contract, CONFIG)

    assert report.message().splitlines() == [
        "data contract 'milling': 1 of 65 expectations failed on 2000 rows",
        "  - column 'Torque [Nm]': missing (the data contract requires it)",
    ]
    dependent = [r for r in report.results if r.column == "Torque [Nm]" and r.rule != "exists"]
    assert dependent and all(r.skipped == "column missing" and r.error is None for r in dependent)


def test_too_few_rows(valid_frame: pd.DataFrame, contract: DataContract) -> None:
    report = validate_frame(valid_frame.head(500), contract, CONFIG)
    assert report.message().splitlines()[1:] == [
        "  - dataset: 500 rows, expected between 1000 and 5000000 "
        "(validate.min_rows, validate.max_rows)"
    ]


@pytest.mark.parametrize("columns", ["kept", "none"])
def test_empty_frame(columns: str, valid_frame: pd.DataFrame, contract: DataContract) -> None:
    frame = valid_frame.iloc[0:0] if columns == "kept" else pd.DataFrame()
    report = validate_frame(frame, contract, CONFIG)

    lines = report.message().splitlines()
    assert lines[1] == (
        "  - dataset: 0 rows (empty), expected between 1000 and 5000000 "
        "(validate.min_rows, validate.max_rows)"
    )
    assert "label rate" not in report.message()
    missing = [line for line in lines if "missing" in line]
    assert len(missing) == (0 if columns == "kept" else len(contract.columns))


def test_several_problems_are_all_listed(valid_frame: pd.DataFrame, contract: DataContract) -> None:
    frame = valid_frame.drop(columns=["RNF"])
    frame.loc[3, "Torque [Nm]"] = -1.0
    frame.loc[7, "Type"] = "X"
    report = validate_frame(frame, contract, CONFIG)
    message = report.message()
    assert message.startswith("data contract 'milling': 3 of 65 expectations failed")
    for part in ("'RNF': missing", "'Torque [Nm]': 1 value out of range", "'Type': 1 value"):
        assert part in message
