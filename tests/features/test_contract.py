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
