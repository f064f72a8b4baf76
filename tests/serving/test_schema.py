"""Serving models: derived from the contract, strict at the boundary, readable 4xx messages."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from pydantic import BaseModel, ValidationError

from core.config import SyntheticSourceConfig, TrainConfig
from features.contract import DataContract, dump_contract, parse_contract
from features.synthetic import generate_process_data
from models.training import build_pipeline
from serving.schema import (
    build_answer_models,
    build_batch_model,
    build_record_model,
    describe_validation_error,
    example_record,
    field_name,
    records_to_frame,
    served_columns,
)

AIR = "Air temperature [K]"


@pytest.fixture(scope="module")
def record_model(contract: DataContract) -> type[BaseModel]:
    return build_record_model(contract)


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return generate_process_data(SyntheticSourceConfig(rows=400, seed=3))


@pytest.fixture()
def payload(frame: pd.DataFrame, contract: DataContract) -> dict[str, Any]:
    """One real row, by snake names."""
    row = frame[contract.features].head(1).to_dict("records")[0]  # Python scalars
    return {field_name(name): value for name, value in row.items()}


def _problems(model: type[BaseModel], data: Any) -> list[dict[str, Any]]:
    with pytest.raises(ValidationError) as caught:
        model.model_validate(data)
    return describe_validation_error(caught.value)


def _variant(contract: DataContract, **changes: dict[str, Any]) -> DataContract:
    """The contract with some columns' settings changed (by column name)."""
    raw = {"name": contract.name, "columns": [c.model_dump() for c in contract.columns]}
    for column in raw["columns"]:
        column.update(changes.get(column["name"], {}))
    return parse_contract(raw)


# --- names ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("column", "expected"),
    [
        ("Air temperature [K]", "air_temperature_k"),
        ("Product ID", "product_id"),
        ("UDI", "udi"),
        ("Rotational speed [rpm]", "rotational_speed_rpm"),
        ("Température (°C)", "temperature_c"),
        ("2nd sensor", "c_2nd_sensor"),
        ("class", "class_"),
        ("copy", "copy_"),
        ("model version", "model_version_"),
    ],
)
def test_field_name_is_snake_case_and_stable(column: str, expected: str) -> None:
    assert field_name(column) == expected
    assert field_name(expected) == expected
    assert expected.isidentifier()


def test_field_name_needs_a_letter_or_digit() -> None:
    with pytest.raises(ValueError, match="no letters or digits"):
        field_name("[%]")


def test_colliding_field_names_are_refused(contract: DataContract) -> None:
    raw = {"name": "x", "columns": [c.model_dump() for c in contract.columns]}
    raw["columns"].append({"name": "air_temperature_k", "dtype": "float"})
    with pytest.raises(ValueError, match=r"'Air temperature \[K\]' and 'air_temperature_k'"):
        build_record_model(parse_contract(raw))


# --- the record model -----------------------------------------------------------------


def test_fields_come_from_the_contract(
    record_model: type[BaseModel], contract: DataContract
) -> None:
    served = [c.name for c in contract.columns if c.role in ("id", "feature")]
    assert list(record_model.model_fields) == [field_name(n) for n in served]
    required = {n for n, f in record_model.model_fields.items() if f.is_required()}
    assert required == {field_name(n) for n in contract.features}
    assert contract.label not in {f.title for f in record_model.model_fields.values()}


def test_a_record_by_snake_or_contract_names(
    record_model: type[BaseModel], payload: dict[str, Any], contract: DataContract
) -> None:
    by_snake = record_model.model_validate(payload)
    by_contract = record_model.model_validate(
        {name: payload[field_name(name)] for name in contract.features}
    )
    assert by_snake == by_contract
    dumped = by_snake.model_dump(by_alias=True)
    assert list(dumped) == [c.name for c in served_columns(contract)]
    assert dumped["UDI"] is None and dumped[AIR] == payload["air_temperature_k"]


def test_ids_are_optional_and_kept(record_model: type[BaseModel], payload: dict[str, Any]) -> None:
    record = record_model.model_validate({**payload, "UDI": 7.0, "product_id": "M123"})
    assert record.udi == 7 and isinstance(record.udi, int)  # a whole 7.0 is the integer 7
    assert record.product_id == "M123"


def test_a_record_is_frozen(record_model: type[BaseModel], payload: dict[str, Any]) -> None:
    record = record_model.model_validate(payload)
    with pytest.raises(ValidationError):
        record.torque_nm = 1.0


@pytest.mark.parametrize(
    ("change", "field", "kind"),
    [
        ({"air_temperature_k": None}, AIR, "float_type"),
        ({"air_temperature_k": "300.5"}, AIR, "float_type"),
        ({"air_temperature_k": True}, AIR, "float_type"),
        ({"air_temperature_k": 1000.0}, AIR, "less_than_equal"),
        ({"torque_nm": -1}, "Torque [Nm]", "greater_than_equal"),
        ({"torque_nm": math.nan}, "Torque [Nm]", "finite_number"),
        ({"torque_nm": math.inf}, "Torque [Nm]", "finite_number"),
        ({"type": "X"}, "Type", "literal_error"),
        ({"type": "l"}, "Type", "literal_error"),
        ({"product_id": "Q1"}, "Product ID", "string_pattern_mismatch"),
        ({"udi": 2.5}, "UDI", "int_from_float"),
        ({"udi": True}, "UDI", "number_type"),
        ({"udi": "12"}, "UDI", "number_type"),
        ({"udi": 0}, "UDI", "greater_than_equal"),
    ],
)
def test_a_bad_value_is_named_by_its_contract_column(
    record_model: type[BaseModel],
    payload: dict[str, Any],
    change: dict[str, Any],
    field: str,
    kind: str,
) -> None:
    (problem,) = _problems(record_model, {**payload, **change})
    assert problem["field"] == field
    assert problem["name"] == field_name(field)
    assert problem["type"] == kind
    assert problem["message"]
    assert "value" in problem


def test_a_bad_value_sent_by_contract_name_is_named_alike(
    record_model: type[BaseModel], payload: dict[str, Any]
) -> None:
    payload.pop("air_temperature_k")
    (problem,) = _problems(record_model, {**payload, AIR: math.nan})
    assert problem == {
        "field": AIR,
        "name": "air_temperature_k",
        "message": "Input should be a finite number",
        "value": "nan",  # a string, so the 4xx body stays valid JSON
        "type": "finite_number",
    }


def test_a_missing_field_is_named(record_model: type[BaseModel], payload: dict[str, Any]) -> None:
    del payload["tool_wear_min"]
    (problem,) = _problems(record_model, payload)
    assert problem == {
        "field": "Tool wear [min]",
        "name": "tool_wear_min",
        "message": "Field required",
        "type": "missing",
    }


def test_a_misspelt_field_is_refused_with_a_suggestion(
    record_model: type[BaseModel], payload: dict[str, Any]
) -> None:
    problems = _problems(record_model, {**payload, "tool_waer_min": 3.0})
    assert problems == [
        {
            "field": "tool_waer_min",
            "name": None,
            "message": "Unknown field; did you mean 'tool_wear_min' ('Tool wear [min]')?",
            "value": 3.0,
            "type": "extra_forbidden",
        }
    ]


def test_a_field_sent_under_both_names_is_refused(
    record_model: type[BaseModel], payload: dict[str, Any]
) -> None:
    (problem,) = _problems(record_model, {**payload, AIR: 301.0})
    assert problem["field"] == AIR
    assert "both of its names" in problem["message"]


def test_json_booleans_and_strings_are_not_numbers(
    record_model: type[BaseModel], payload: dict[str, Any]
) -> None:
    body = pd.Series({**payload, "torque_nm": True}).to_json()
    with pytest.raises(ValidationError) as caught:
        record_model.model_validate_json(body)
    assert describe_validation_error(caught.value)[0]["field"] == "Torque [Nm]"


def test_a_nullable_feature_is_optional(contract: DataContract) -> None:
    model = build_record_model(_variant(contract, **{"Torque [Nm]": {"nullable": True}}))
    assert not model.model_fields["torque_nm"].is_required()
    assert model.model_fields["air_temperature_k"].is_required()


def test_a_pattern_rust_cannot_compile_still_works(contract: DataContract) -> None:
    lookahead = _variant(contract, **{"Product ID": {"pattern": "^(?=[LMH])[LMH][0-9]+$"}})
    model = build_record_model(lookahead)
    assert _problems(model, {**example_record(lookahead), "product_id": "Q1"})[0]["field"] == (
        "Product ID"
    )


# --- the batch model ------------------------------------------------------------------


def test_a_batch_needs_one_to_max_rows(
    record_model: type[BaseModel], payload: dict[str, Any]
) -> None:
    batch_model = build_batch_model(record_model, max_rows=3)
    assert len(batch_model.model_validate({"records": [payload] * 3}).records) == 3
    (empty,) = _problems(batch_model, {"records": []})
    assert empty["field"] == "records"
    assert empty["message"] == "A batch needs at least one record"
    (big,) = _problems(batch_model, {"records": [payload] * 4})
    assert big["message"] == "A batch holds at most 3 records, got 4; split it"
    assert "value" not in big


def test_a_bad_record_in_a_batch_is_located(
    record_model: type[BaseModel], payload: dict[str, Any]
) -> None:
    batch_model = build_batch_model(record_model, max_rows=10)
    (problem,) = _problems(batch_model, {"records": [payload, {**payload, "type": "Z"}]})
    assert problem["record"] == 1
    assert problem["field"] == "Type"


# --- the OpenAPI schema ---------------------------------------------------------------


def test_the_schema_documents_every_field_with_a_valid_example(
    record_model: type[BaseModel], contract: DataContract
) -> None:
    schema = record_model.model_json_schema()
    for column in served_columns(contract):
        prop = schema["properties"][field_name(column.name)]
        assert prop["description"] == column.description
        assert prop["title"] == column.name
    assert schema["properties"]["torque_nm"]["minimum"] == 0
    assert schema["properties"]["type"]["enum"] == ["L", "M", "H"]
    assert schema["additionalProperties"] is False
    (example,) = schema["examples"]
    record = record_model.model_validate(example)
    assert record.type == "L" and record.air_temperature_k == 300.0  # the contract's examples
    batch_schema = build_batch_model(record_model, 5).model_json_schema()
    assert batch_schema["properties"]["records"]["maxItems"] == 5
    build_batch_model(record_model, 5).model_validate(batch_schema["examples"][0])


def test_the_example_record_is_the_contracts_examples(contract: DataContract) -> None:
    example = example_record(contract)
    assert example == {field_name(c.name): c.example for c in served_columns(contract)}
    assert example["product_id"] == "L47181" and isinstance(example["udi"], int)


def test_without_examples_they_are_derived_from_the_rules(contract: DataContract) -> None:
    raw = {"name": contract.name, "columns": [c.model_dump() for c in contract.columns]}
    for column in raw["columns"]:
        column["example"] = None
    plain = parse_contract(raw)
    example = example_record(plain)
    record = build_record_model(plain).model_validate(example)
    assert record.type == "L" and record.air_temperature_k == 300.0  # middle of 250..350
    assert example["udi"] == 1  # its one bound
    assert "product_id" not in example  # "example" does not match its pattern: left out


def test_an_integer_example_written_as_a_float_is_an_integer(contract: DataContract) -> None:
    variant = _variant(contract, UDI={"example": 7.0}, **{"Torque [Nm]": {"example": 40}})
    example = example_record(variant)
    assert example["udi"] == 7 and isinstance(example["udi"], int)
    assert example["torque_nm"] == 40.0 and isinstance(example["torque_nm"], float)


# --- records to the model's frame -----------------------------------------------------


def test_records_become_the_training_frame(
    record_model: type[BaseModel], frame: pd.DataFrame, contract: DataContract
) -> None:
    rows = frame[contract.features].to_dict("records")
    records = [record_model.model_validate(row) for row in rows]
    served = records_to_frame(records, contract)
    assert list(served.columns) == contract.features
    assert served["Type"].dtype == object and served["Type"].map(type).eq(str).all()
    numeric = served[contract.numeric_features]
    assert (numeric.dtypes == np.float64).all()
    pd.testing.assert_frame_equal(served, frame[contract.features].astype(numeric.dtypes.to_dict()))

    pipeline = build_pipeline(contract, TrainConfig(model="logistic_regression"), 0)
    pipeline.fit(frame[contract.features], frame[contract.label])
    np.testing.assert_allclose(
        pipeline.predict_proba(served)[:, 1], pipeline.predict_proba(frame[contract.features])[:, 1]
    )


def test_ids_join_the_frame_only_when_sent(
    record_model: type[BaseModel], payload: dict[str, Any], contract: DataContract
) -> None:
    without = records_to_frame([record_model.model_validate(payload)], contract)
    assert list(without.columns) == contract.features
    records = [
        record_model.model_validate({**payload, "udi": 4, "product_id": "L4"}),
        record_model.model_validate(payload),
    ]
    both = records_to_frame(records, contract)
    assert list(both.columns) == [c.name for c in served_columns(contract)]
    assert both["UDI"].dtype == np.float64 and math.isnan(both["UDI"].iloc[1])  # as pandas reads
    assert both["Product ID"].tolist() == ["L4", None]
    assert records_to_frame(records[:1], contract)["UDI"].dtype == np.int64


def test_no_records_give_an_empty_frame_with_the_columns(contract: DataContract) -> None:
    empty = records_to_frame([], contract)
    assert list(empty.columns) == contract.features and empty.empty


def test_the_contract_round_trip_keeps_the_model(contract: DataContract) -> None:
    again = parse_contract(yaml.safe_load(dump_contract(contract)))
    assert (
        build_record_model(again).model_json_schema()
        == build_record_model(contract).model_json_schema()
    )


# --- responses ------------------------------------------------------------------------


def test_a_prediction_compares_with_the_threshold(contract: DataContract) -> None:
    prediction = build_answer_models(contract).single
    assert prediction.from_probability(0.3, 0.3, "4", "r1").scored() == (0.3, True)
    assert prediction.from_probability(np.float64(0.29), 0.3, "4", "r1").scored()[1] is False
    with pytest.raises(ValidationError):
        prediction.from_probability(math.nan, 0.3, "4", "r1")


def test_a_batch_prediction_states_shared_fields_once(contract: DataContract) -> None:
    answers = build_answer_models(contract)
    batch = answers.batch.from_probabilities(np.array([0.1, 0.5, 0.9]), 0.5, "4", "r2")
    assert [predicted for _, predicted in batch.scored()] == [False, True, True]
    assert batch.model_dump()["predictions"][0] == {
        "failure_probability": 0.1,
        "failure": False,
        "model_version": "4",
    }
    assert (batch.model_version, batch.request_id, batch.threshold) == ("4", "r2", 0.5)


def _medical(**answer: str) -> DataContract:
    """A contract that has nothing to do with machines: a diagnosis from two measurements."""
    raw: dict[str, Any] = {
        "name": "clinic",
        "description": "Tumour measurements with a diagnosis.",
        "columns": [
            {"name": "patient_id", "dtype": "integer", "role": "id", "unique": True},
            {"name": "mean radius", "dtype": "float", "min": 0},
            {"name": "mean texture", "dtype": "float", "min": 0},
            {"name": "Diagnosis (malignant)", "dtype": "integer", "role": "label"},
        ],
    }
    if answer:
        raw["answer"] = answer
    return parse_contract(raw)


def test_the_answer_is_named_after_the_contracts_label_by_default() -> None:
    answers = build_answer_models(_medical())
    answer = answers.single.from_probability(0.7, 0.5, "v1", "r1")
    assert answer.model_dump() == {
        "probability": 0.7,
        "diagnosis_malignant": True,
        "threshold": 0.5,
        "model_version": "v1",
        "request_id": "r1",
    }
    batch = answers.batch.from_probabilities([0.2], 0.5, "v1", "r2")
    assert batch.model_dump()["predictions"] == [
        {"probability": 0.2, "diagnosis_malignant": False, "model_version": "v1"}
    ]


def test_the_answer_takes_the_contracts_names() -> None:
    answers = build_answer_models(_medical(probability="malignancy", label="malignant"))
    assert list(answers.single.model_fields)[:2] == ["malignancy", "malignant"]
    assert list(answers.record.model_fields) == ["malignancy", "malignant", "model_version"]


def test_the_answer_schema_speaks_of_the_label_not_of_failures() -> None:
    schemas = [
        build_answer_models(_medical()).single.model_json_schema(),
        build_answer_models(_medical()).batch.model_json_schema(),
    ]
    text = str(schemas).lower()
    assert "failure" not in text and "milling" not in text
    assert "'diagnosis (malignant)' is 1" in text
