"""The data contract: derived views, and clear errors for a bad contract file."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from features.contract import (
    ContractError,
    DataContract,
    dump_contract,
    load_contract,
    parse_contract,
)


def test_milling_contract_roles(contract: DataContract) -> None:
    assert contract.label == "Machine failure"
    assert contract.ids == ["UDI", "Product ID"]
    assert contract.categorical_features == ["Type"]
    assert contract.numeric_features == [
        "Air temperature [K]",
        "Process temperature [K]",
        "Rotational speed [rpm]",
        "Torque [Nm]",
        "Tool wear [min]",
    ]
    # failure modes are known only after a failure: never model inputs
    assert not {"TWF", "HDF", "PWF", "OSF", "RNF"} & set(contract.features)


def test_contract_matches_the_real_file_columns(
    contract: DataContract, real_ai4i_path: Path
) -> None:
    header = real_ai4i_path.read_text().splitlines()[0].split(",")
    assert contract.column_names == header


def test_dump_round_trips(contract: DataContract) -> None:
    assert parse_contract(yaml.safe_load(dump_contract(contract))) == contract


def _raw(contract: DataContract) -> dict:
    return contract.model_dump(mode="json")


def test_two_labels_rejected(contract: DataContract) -> None:
    raw = _raw(contract)
    raw["columns"][0]["role"] = "label"
    with pytest.raises(ContractError, match="exactly one column must have role 'label', found 2"):
        parse_contract(raw)


def test_categorical_without_categories_names_the_column(contract: DataContract) -> None:
    raw = _raw(contract)
    type_column = next(c for c in raw["columns"] if c["name"] == "Type")
    type_column["categories"] = None
    with pytest.raises(
        ContractError, match="column 'Type': a categorical column needs its categories"
    ):
        parse_contract(raw)


def test_unknown_dtype_names_the_column(contract: DataContract) -> None:
    raw = _raw(contract)
    raw["columns"][3]["dtype"] = "decimal"
    with pytest.raises(ContractError) as info:
        parse_contract(raw)
    assert "column 'Air temperature [K]'.dtype" in str(info.value)


def test_unknown_key_in_a_column(contract: DataContract) -> None:
    raw = _raw(contract)
    raw["columns"][4]["maximum"] = 3
    with pytest.raises(
        ContractError, match=r"column 'Process temperature \[K\]'.maximum: Extra inputs"
    ):
        parse_contract(raw)


def test_duplicate_columns(contract: DataContract) -> None:
    raw = _raw(contract)
    raw["columns"].append(raw["columns"][3])
    with pytest.raises(ContractError, match="columns listed twice"):
        parse_contract(raw)


def test_missing_contract_file(tmp_path: Path) -> None:
    with pytest.raises(ContractError, match="data contract not found"):
        load_contract(tmp_path / "nope.yaml")


def test_contract_file_not_a_mapping(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("- just\n- a list\n")
    with pytest.raises(ContractError, match="expected a mapping"):
        load_contract(path)


# --- examples -------------------------------------------------------------------------------


def test_every_shipped_column_has_an_example_that_passes_its_rules(
    contract: DataContract,
) -> None:
    assert all(column.example is not None for column in contract.columns)
    assert contract.by_name["Type"].example == "L"
    assert contract.by_name["Product ID"].example == "L47181"


def test_an_example_is_optional(contract: DataContract) -> None:
    raw = _raw(contract)
    for column in raw["columns"]:
        column.pop("example")
    assert all(column.example is None for column in parse_contract(raw).columns)


@pytest.mark.parametrize(
    ("column", "example", "problem"),
    [
        ("Torque [Nm]", 250.0, "example 250.0 is above max 200"),
        ("Torque [Nm]", -1, "example -1 is below min 0"),
        ("Torque [Nm]", "forty", "example 'forty' is not a number (the column is float)"),
        ("Torque [Nm]", True, "example True is not a number (the column is float)"),
        ("UDI", 2.5, "example 2.5 is not a whole number (the column is integer)"),
        ("Type", "X", "example 'X' is not one of the categories ['L', 'M', 'H']"),
        ("Type", 1, "example 1 is not text (the column is categorical)"),
        ("Product ID", "Z12", "example 'Z12' does not match pattern '^[LMH][0-9]+$'"),
    ],
)
def test_a_bad_example_names_the_column_and_the_rule(
    contract: DataContract, column: str, example: object, problem: str
) -> None:
    raw = _raw(contract)
    next(c for c in raw["columns"] if c["name"] == column)["example"] = example
    with pytest.raises(ContractError) as info:
        parse_contract(raw, "milling.yaml")
    lines = str(info.value).splitlines()
    assert lines == [
        "milling.yaml: invalid data contract",
        f"  - column '{column}': Value error, column '{column}': {problem}",
    ]


def test_an_example_round_trips_with_its_type(contract: DataContract) -> None:
    again = parse_contract(yaml.safe_load(dump_contract(contract)))
    assert again.by_name["UDI"].example == 1 and isinstance(again.by_name["UDI"].example, int)
    assert isinstance(again.by_name["Torque [Nm]"].example, float)


# --- the answer's field names ---------------------------------------------------------


def test_the_milling_answer_keeps_its_names_by_configuration(contract: DataContract) -> None:
    assert (contract.probability_field, contract.label_field) == ("failure_probability", "failure")


def test_without_an_answer_block_the_label_column_names_the_answer(
    contract: DataContract,
) -> None:
    raw = _raw(contract)
    del raw["answer"]
    bare = parse_contract(raw)
    assert (bare.probability_field, bare.label_field) == ("probability", "machine_failure")
    assert "answer" not in yaml.safe_load(dump_contract(bare))  # the default is not written


def test_a_plain_label_name_is_kept(contract: DataContract) -> None:
    raw = _raw(contract)
    del raw["answer"]
    next(c for c in raw["columns"] if c["role"] == "label")["name"] = "diagnosis"
    assert parse_contract(raw).label_field == "diagnosis"


@pytest.mark.parametrize(
    ("answer", "problem"),
    [
        (
            {"probability": "failure probability"},
            "answer.probability: Value error, 'failure probability' is not a valid identifier "
            "(letters, digits, _; not a Python keyword)",
        ),
        (
            {"label": "class"},
            "answer.label: Value error, 'class' is not a valid identifier "
            "(letters, digits, _; not a Python keyword)",
        ),
        (
            {"label": "threshold"},
            "answer.label: Value error, 'threshold' is taken: every answer has threshold, "
            "model_version, request_id",
        ),
        (
            {"probability": "request_id"},
            "answer.probability: Value error, 'request_id' is taken: every answer has "
            "threshold, model_version, request_id",
        ),
        (
            {"probability": "score", "label": "score"},
            "answer: Value error, probability and label are both 'score'; give them "
            "different names",
        ),
        (
            {"probability": "p", "colour": "red"},
            "answer.colour: Extra inputs are not permitted",
        ),
    ],
)
def test_a_bad_answer_name_is_one_clear_line(
    contract: DataContract, answer: dict, problem: str
) -> None:
    raw = {**_raw(contract), "answer": answer}
    with pytest.raises(ContractError) as info:
        parse_contract(raw, "milling.yaml")
    assert str(info.value).splitlines() == ["milling.yaml: invalid data contract", f"  - {problem}"]


def test_a_label_column_whose_snake_name_is_taken_asks_for_an_answer_label(
    contract: DataContract,
) -> None:
    raw = _raw(contract)
    del raw["answer"]
    next(c for c in raw["columns"] if c["role"] == "label")["name"] = "Threshold"
    with pytest.raises(ContractError) as info:
        parse_contract(raw, "milling.yaml")
    assert str(info.value).splitlines()[1] == (
        "  - (top level): Value error, the answer's label would be named after label column "
        "'Threshold', but 'threshold' is taken: every answer has threshold, model_version, "
        "request_id; set answer.label in the contract"
    )
