"""Replaying recorded rows: order, cycling, ids, and the generator's scenarios on real rows."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer

from core.config import SyntheticSourceConfig
from features.ai4i_process import AIR, PROCESS, TORQUE, TYPE, TYPES
from features.contract import Column, DataContract
from features.drift_scenarios import (
    FAILURE_GAP_SHIFT_K,
    FAILURE_TORQUE_SHIFT_NM,
    PRODUCT_MIX_SHARES,
    SENSOR_OFFSET_K,
    scenario_changes,
)
from features.replay import ReplayError, fit_to_contract, number_rows, replay_rows
from features.synthetic import generate_process_data


@pytest.fixture(scope="module")
def recorded() -> pd.DataFrame:
    """Rows as a plant records them (the generator's, standing in for a file)."""
    return generate_process_data(SyntheticSourceConfig(rows=3000, seed=8))


def breast_cancer_contract(with_id: bool = True) -> DataContract:
    data = load_breast_cancer(as_frame=True)
    columns = [Column(name=name, dtype="float") for name in data.feature_names]
    columns.append(Column(name="target", dtype="integer", role="label", min=0, max=1))
    if with_id:
        columns.insert(0, Column(name="patient_id", dtype="integer", role="id", unique=True))
    return DataContract(name="breast-cancer", columns=columns)


def test_scenarios_are_read_off_the_generators_regimes() -> None:
    offset = scenario_changes("sensor_offset")
    mechanism = scenario_changes("failure_mechanism")
    mix = scenario_changes("product_mix")

    assert [(s.columns, s.amount) for s in offset.shifts] == [((AIR, PROCESS), SENSOR_OFFSET_K)]
    assert [(s.columns, s.amount) for s in mechanism.shifts] == [
        ((PROCESS,), FAILURE_GAP_SHIFT_K),
        ((TORQUE,), FAILURE_TORQUE_SHIFT_NM),
    ]
    assert mechanism.not_in_rows == ("hdf_gap_k", "hdf_speed_rpm", "osf_limits_min_nm")
    assert (mix.mix.column, mix.mix.categories, mix.mix.shares) == (
        TYPE,
        TYPES,
        PRODUCT_MIX_SHARES,
    )
    assert scenario_changes("none").columns == scenario_changes("tool_change_policy").columns == ()


def test_rows_go_in_file_order_and_cycle_past_the_end(
    recorded: pd.DataFrame, contract: DataContract
) -> None:
    head = recorded.head(10)

    replayed = replay_rows(head, contract, "none", 25, seed=1).frame

    expected = pd.concat([head, head, head.head(5)], ignore_index=True)
    pd.testing.assert_frame_equal(replayed, expected)


def test_shuffle_is_a_fresh_seeded_permutation_each_pass(
    recorded: pd.DataFrame, contract: DataContract
) -> None:
    head = recorded.head(50)

    first = replay_rows(head, contract, "none", 100, seed=3, shuffle=True).frame
    again = replay_rows(head, contract, "none", 100, seed=3, shuffle=True).frame

    pd.testing.assert_frame_equal(first, again)
    for lap in (first.head(50), first.tail(50)):
        assert sorted(lap["UDI"]) == head["UDI"].tolist()  # each pass: every row once
    assert first["UDI"].head(50).tolist() != head["UDI"].tolist()
    assert first["UDI"].head(50).tolist() != first["UDI"].tail(50).tolist()


def test_sensor_offset_shifts_both_temperatures_and_nothing_else(
    recorded: pd.DataFrame, contract: DataContract
) -> None:
    done = replay_rows(recorded, contract, "sensor_offset", len(recorded), seed=1)

    shifted = done.frame
    for name in (AIR, PROCESS):
        np.testing.assert_allclose(shifted[name], recorded[name] + SENSOR_OFFSET_K)
    others = [c for c in recorded.columns if c not in (AIR, PROCESS)]
    pd.testing.assert_frame_equal(shifted[others], recorded[others])  # labels are the rows' own
    assert done.changes == (f"{AIR} +3", f"{PROCESS} +3")


def test_a_ramp_grows_the_shift_from_none_to_full(
    recorded: pd.DataFrame, contract: DataContract
) -> None:
    done = replay_rows(recorded, contract, "failure_mechanism", 1000, seed=1, ramp_rows=400)

    moved = done.frame[TORQUE] - recorded[TORQUE].head(1000)
    torque_floor = done.frame[TORQUE] == 0  # clipped at the contract's min
    expected = FAILURE_TORQUE_SHIFT_NM * np.minimum(np.arange(1000) / 400, 1.0)
    np.testing.assert_allclose(moved[~torque_floor], expected[~torque_floor], atol=1e-9)
    assert done.changes[-1] == f"{TORQUE} -5 (ramped in over 400 rows)"


def test_a_shift_keeps_values_within_the_contracts_range(contract: DataContract) -> None:
    rows = generate_process_data(SyntheticSourceConfig(rows=5, seed=1))
    rows[TORQUE] = [0.5, 3.0, 4.9, 40.0, 199.0]

    torque = replay_rows(rows, contract, "failure_mechanism", 5, seed=1).frame[TORQUE]

    assert torque.tolist() == [0.0, 0.0, 0.0, 35.0, 194.0]


def test_product_mix_draws_types_in_its_shares_each_in_file_order(
    recorded: pd.DataFrame, contract: DataContract
) -> None:
    replayed = replay_rows(recorded, contract, "product_mix", 20_000, seed=2).frame

    shares = replayed[TYPE].value_counts(normalize=True)
    for letter, share in zip(TYPES, PRODUCT_MIX_SHARES, strict=True):
        assert shares[letter] == pytest.approx(share, abs=0.015)
    for letter in TYPES:
        own = recorded.loc[recorded[TYPE] == letter, "UDI"].tolist()
        sent = replayed.loc[replayed[TYPE] == letter, "UDI"].tolist()
        assert sent[: len(own)] == own[: len(sent)]  # in file order, then cycling


def test_a_scenario_without_its_columns_names_them_and_the_contracts() -> None:
    bc = breast_cancer_contract()
    frame = load_breast_cancer(as_frame=True).frame.assign(patient_id=range(1, 570))

    with pytest.raises(ReplayError) as raised:
        replay_rows(frame, bc, "sensor_offset", 10, seed=1)

    assert str(raised.value) == (
        "scenario 'sensor_offset' changes 'Air temperature [K]', 'Process temperature [K]', "
        "and the contract 'breast-cancer' has none of them (its columns: 'patient_id', "
        "'mean radius', 'mean texture', 'mean perimeter', 'mean area', 'mean smoothness', "
        "'mean compactness', 'mean concavity', 'mean concave points', 'mean symmetry', "
        "'mean fractal dimension', 'radius error' and 20 more)"
    )


def test_a_scenario_that_changes_no_recorded_column_is_refused(
    recorded: pd.DataFrame, contract: DataContract
) -> None:
    with pytest.raises(ReplayError) as raised:
        replay_rows(recorded, contract, "tool_change_policy", 10, seed=1)

    assert str(raised.value) == (
        "scenario 'tool_change_policy' changes no recorded column (only the synthetic "
        "process's tool_life_min, twf_share), so it cannot be replayed on rows; use one that "
        "does (sensor_offset, product_mix, failure_mechanism) or synthetic rows"
    )


def test_integer_ids_are_numbered_afresh(recorded: pd.DataFrame, contract: DataContract) -> None:
    numbered = number_rows(recorded.head(4), contract, first_id=501)

    assert numbered["UDI"].tolist() == [501, 502, 503, 504]
    assert numbered["Product ID"].tolist() == recorded["Product ID"].head(4).tolist()


def test_string_ids_are_kept_and_a_repeat_is_refused() -> None:
    columns = [
        Column(name="code", dtype="string", role="id", unique=True),
        Column(name="x", dtype="float"),
        Column(name="y", dtype="integer", role="label", min=0, max=1),
    ]
    coded = DataContract(name="coded", columns=columns)
    frame = pd.DataFrame({"code": ["a", "b", "c"], "x": [1.0, 2.0, 3.0], "y": [0, 1, 0]})

    kept = number_rows(frame, coded, first_id=501)
    cycled = replay_rows(frame, coded, "none", 5, seed=1).frame
    with pytest.raises(ReplayError) as raised:
        number_rows(cycled, coded, first_id=501)

    assert kept["code"].tolist() == ["a", "b", "c"]
    assert str(raised.value) == (
        "2 of the 5 rows would repeat an id of 'code' (a string, which simulate cannot "
        "renumber); send fewer rows, without a scenario that re-mixes them"
    )


def test_ids_beyond_the_contracts_max_are_refused() -> None:
    columns = [
        Column(name="n", dtype="integer", role="id", unique=True, min=1, max=1000),
        Column(name="x", dtype="float"),
        Column(name="y", dtype="integer", role="label", min=0, max=1),
    ]
    bounded = DataContract(name="bounded", columns=columns)
    frame = pd.DataFrame({"n": [1, 2], "x": [1.0, 2.0], "y": [0, 1]})

    with pytest.raises(ReplayError) as raised:
        number_rows(frame, bounded, first_id=1000)

    assert str(raised.value) == (
        "the ids 1000..1001 exceed the contract's max 1000 for 'n'; pass a lower --first-udi "
        "or raise the max"
    )


def test_a_file_without_the_contracts_features_names_them() -> None:
    bc = breast_cancer_contract()
    frame = load_breast_cancer(as_frame=True).frame.drop(columns=["mean radius", "worst area"])

    with pytest.raises(ReplayError) as raised:
        fit_to_contract(frame, bc, "rows.csv")

    assert str(raised.value) == (
        "rows.csv is not in the shape of the contract 'breast-cancer': it has no column "
        "'mean radius', 'worst area'"
    )


def test_categories_read_as_numbers_become_text() -> None:
    columns = [
        Column(name="grade", dtype="categorical", categories=("1", "2")),
        Column(name="y", dtype="integer", role="label", min=0, max=1),
    ]
    graded = DataContract(name="graded", columns=columns)

    fitted = fit_to_contract(pd.DataFrame({"grade": [1, 2, None], "y": [0, 1, 0]}), graded, "f")

    assert fitted["grade"].tolist()[:2] == ["1", "2"] and pd.isna(fitted["grade"].iloc[2])
