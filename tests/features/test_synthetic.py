"""The synthetic milling-process generator: contract, determinism, rules, realism, scenarios."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import get_args

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from scipy.spatial import distance

from core.config import Scenario, SyntheticSourceConfig
from features import synthetic
from features.contract import DataContract
from features.synthetic import (
    AIR,
    FAILURE,
    FAILURE_MODES,
    PROCESS,
    PRODUCT_ID,
    SPEED,
    TORQUE,
    TYPE,
    UDI,
    WEAR,
    flag_rule_failures,
    generate_process_data,
)

SCENARIOS: tuple[str, ...] = get_args(Scenario)
NUMERIC = [AIR, PROCESS, SPEED, TORQUE, WEAR]
RULE_MODES = ["HDF", "PWF", "OSF"]


def make(
    rows: int = 20_000, seed: int = 2020, scenario: str = "none", **kwargs: int
) -> pd.DataFrame:
    config = SyntheticSourceConfig(rows=rows, seed=seed, scenario=scenario)
    return generate_process_data(config, **kwargs)


@pytest.fixture(scope="module")
def samples() -> dict[str, pd.DataFrame]:
    """20,000 rows of every scenario, all drawn from the same seed."""
    return {scenario: make(scenario=scenario) for scenario in SCENARIOS}


# --- shape and determinism -------------------------------------------------------------------


def test_columns_and_dtypes_follow_the_contract(contract: DataContract) -> None:
    frame = make(500)
    assert list(frame.columns) == contract.column_names
    for column in contract.columns:
        series = frame[column.name]
        if column.dtype == "integer":
            assert series.dtype == np.int64, f"{column.name}: {series.dtype}, expected int64"
        elif column.dtype == "float":
            assert pd.api.types.is_numeric_dtype(series), f"{column.name}: {series.dtype}"
        else:
            assert series.map(type).eq(str).all(), f"{column.name}: expected str values"
    # Like the real file: whole minutes of wear, whole rpm, torque and temperatures to 0.1.
    assert frame[WEAR].dtype == np.int64
    for name, decimals in [(SPEED, 0), (TORQUE, 1), (AIR, 1), (PROCESS, 1)]:
        assert np.allclose(frame[name], frame[name].round(decimals)), f"{name} not rounded"


def test_ids_are_consecutive_and_products_carry_their_type(contract: DataContract) -> None:
    frame = make(1000, first_udi=501)
    assert frame[UDI].tolist() == list(range(501, 1501))
    pattern = re.compile(contract.by_name[PRODUCT_ID].pattern or "")
    assert frame[PRODUCT_ID].map(lambda p: bool(pattern.fullmatch(p))).all()
    assert (frame[PRODUCT_ID].str[0] == frame[TYPE]).all(), "the ID's letter is not the Type"
    assert frame[PRODUCT_ID].is_unique


@pytest.mark.parametrize("rows", [1, 49, 51, 200])
def test_tiny_samples_are_complete(rows: int) -> None:
    frame = make(rows)
    assert len(frame) == rows
    assert not frame.isna().any().any()


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_the_same_config_gives_the_same_frame(scenario: str) -> None:
    pd.testing.assert_frame_equal(make(3000, 7, scenario), make(3000, 7, scenario))


def test_another_seed_gives_other_data() -> None:
    first, second = make(3000, seed=1), make(3000, seed=2)
    for name in [TYPE, *NUMERIC]:
        assert not first[name].equals(second[name]), f"{name} is the same for seeds 1 and 2"


# --- the contract and the published rules --------------------------------------------------


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_values_stay_within_the_contract(contract: DataContract, scenario: str) -> None:
    frame = make(100_000, seed=11, scenario=scenario)
    assert not frame.isna().any().any()
    for column in contract.columns:
        series = frame[column.name]
        if column.min is not None:
            assert series.min() >= column.min, f"{scenario}: {column.name} min {series.min()}"
        if column.max is not None:
            assert series.max() <= column.max, f"{scenario}: {column.name} max {series.max()}"
        if column.categories is not None:
            assert set(series) <= set(column.categories), f"{scenario}: {column.name}"


def test_published_rules_hold_on_every_row(samples: dict[str, pd.DataFrame]) -> None:
    frame = samples["none"]
    gap = frame[PROCESS] - frame[AIR]
    power = frame[TORQUE] * frame[SPEED] * 2 * np.pi / 60
    strain = frame[WEAR] * frame[TORQUE]
    limit = frame[TYPE].map({"L": 11_000, "M": 12_000, "H": 13_000})
    expected = {
        "HDF": (gap < 8.6) & (frame[SPEED] < 1380),
        "PWF": (power < 3500) | (power > 9000),
        "OSF": strain > limit,
    }
    for mode, rule in expected.items():
        assert frame[mode].astype(bool).equals(rule), f"{mode} disagrees with its published rule"
        assert frame[mode].sum() > 0, f"no {mode} in 20,000 rows"
    assert 0.0003 < frame["RNF"].mean() < 0.002, "RNF should occur with probability 0.1 %"


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_labels_agree_with_the_scenarios_rules(
    samples: dict[str, pd.DataFrame], scenario: str
) -> None:
    frame = samples[scenario]
    pd.testing.assert_frame_equal(frame[RULE_MODES], flag_rule_failures(frame, scenario))
    any_mode = frame[list(FAILURE_MODES)].max(axis=1)
    assert frame[FAILURE].equals(any_mode), "Machine failure must be 1 exactly when a mode is"


@pytest.mark.parametrize("scenario", ["none", "tool_change_policy"])
def test_tools_wear_by_type_and_are_replaced_within_their_life(
    samples: dict[str, pd.DataFrame], scenario: str
) -> None:
    frame = samples[scenario]
    wear = frame[WEAR].to_numpy()
    added = frame[TYPE].map({"L": 2, "M": 3, "H": 5}).to_numpy()
    replaced = wear[1:] == 0
    assert (wear[1:][~replaced] == wear[:-1][~replaced] + added[:-1][~replaced]).all(), (
        "each process must add the wear of the previous process's type"
    )
    low, high = synthetic._REGIMES[scenario].tool_life_min
    last = wear[:-1][replaced] + added[:-1][replaced]  # the wear the last process reached
    assert last.min() >= low and last.max() < high + 5, (
        f"tools replaced at {last.min()}..{last.max()}"
    )
    twf_rows = np.flatnonzero(frame["TWF"].to_numpy()[:-1])
    assert replaced[twf_rows].all(), "a TWF must be a tool's last process"


# --- close to the real file ------------------------------------------------------------------

# Speed, torque and tool wear: the two-sample K-S critical value at alpha = 0.001 for 10,000
# against 50,000 rows is 1.95 * sqrt((n + m) / (n * m)) = 0.021, a strict test. The real file's
# temperatures are one slow random walk (its own two halves differ by K-S 0.15 for air and 0.33
# for process), so sampling theory would allow much more; 0.04 still rejects a plain normal
# with the right mean and sd for air (0.056): it asks for the real, flat-topped shape.
KS_BOUNDS = {AIR: 0.04, PROCESS: 0.04, SPEED: 0.021, TORQUE: 0.021, WEAR: 0.021}


def test_sample_is_statistically_close_to_the_real_file(real_ai4i_path: Path) -> None:
    real = pd.read_csv(real_ai4i_path)
    sample = make(50_000)
    for name, bound in KS_BOUNDS.items():
        statistic = stats.ks_2samp(sample[name], real[name]).statistic
        assert statistic < bound, (
            f"{name}: K-S {statistic:.4f} against the real file, bound {bound}"
        )

    shares = sample[TYPE].value_counts(normalize=True)
    real_shares = real[TYPE].value_counts(normalize=True)
    for kind in ("L", "M", "H"):
        assert abs(shares[kind] - real_shares[kind]) < 0.02, f"Type {kind}: {shares[kind]:.3f}"

    rate = sample[FAILURE].mean()
    assert abs(rate - 0.0339) < 0.01, f"failure rate {rate:.4f}, real 0.0339"
    for mode in FAILURE_MODES:
        # Within three Poisson sds of the real file's count (e.g. RNF: 19 +- 13 per 10,000).
        real_count = int(real[mode].sum())
        synthetic_count = sample[mode].mean() * len(real)
        tolerance = 3 * math.sqrt(real_count)
        assert abs(synthetic_count - real_count) < tolerance, (
            f"{mode}: {synthetic_count:.0f} per {len(real)} rows, real {real_count}"
        )

    for first, second in [(SPEED, TORQUE), (AIR, PROCESS)]:
        ours, theirs = sample[first].corr(sample[second]), real[first].corr(real[second])
        assert abs(ours - theirs) < 0.03, f"corr({first}, {second}) {ours:.3f}, real {theirs:.3f}"


# --- scenarios -------------------------------------------------------------------------------


def test_sensor_offset_moves_only_the_temperatures(samples: dict[str, pd.DataFrame]) -> None:
    base, drifted = samples["none"], samples["sensor_offset"]
    for name in (AIR, PROCESS):
        shift = drifted[name] - base[name]
        assert abs(shift.mean() - synthetic.SENSOR_OFFSET_K) < 0.01, f"{name} moved {shift.mean()}"
        assert (shift - synthetic.SENSOR_OFFSET_K).abs().max() <= 0.1 + 1e-9
    others = [c for c in base.columns if c not in (AIR, PROCESS)]
    pd.testing.assert_frame_equal(drifted[others], base[others])


def test_product_mix_changes_the_type_shares(samples: dict[str, pd.DataFrame]) -> None:
    shares = samples["product_mix"][TYPE].value_counts(normalize=True)
    for kind, expected in zip(synthetic.TYPES, synthetic.PRODUCT_MIX_SHARES, strict=True):
        assert abs(shares[kind] - expected) < 0.02, f"Type {kind}: {shares[kind]:.3f}"


def test_tool_change_policy_runs_tools_longer(samples: dict[str, pd.DataFrame]) -> None:
    base, late = samples["none"], samples["tool_change_policy"]
    extension = synthetic.TOOL_LIFE_EXTENSION_MIN
    assert late[WEAR].mean() - base[WEAR].mean() == pytest.approx(extension / 2, abs=8)
    assert late[WEAR].max() > synthetic.TOOL_LIFE_MIN[1]
    for mode in ("TWF", "OSF"):
        assert late[mode].mean() > 1.3 * base[mode].mean(), f"{mode} should become more common"


def test_failure_mechanism_fails_more_on_the_same_inputs(samples: dict[str, pd.DataFrame]) -> None:
    inputs = samples["none"]
    published = flag_rule_failures(inputs, "none").max(axis=1)
    changed = flag_rule_failures(inputs, "failure_mechanism").max(axis=1)
    assert (changed >= published).all(), "every published rule failure still fails"
    assert changed.mean() > 2 * published.mean(), (
        f"rule failure rate {published.mean():.4f} -> {changed.mean():.4f} on the same inputs"
    )


def test_failure_mechanism_shifts_the_inputs(samples: dict[str, pd.DataFrame]) -> None:
    base, drifted = samples["none"], samples["failure_mechanism"]
    torque_shift = drifted[TORQUE].mean() - base[TORQUE].mean()
    gap_shift = (drifted[PROCESS] - drifted[AIR]).mean() - (base[PROCESS] - base[AIR]).mean()
    assert torque_shift == pytest.approx(synthetic.FAILURE_TORQUE_SHIFT_NM, abs=0.2)
    assert gap_shift == pytest.approx(synthetic.FAILURE_GAP_SHIFT_K, abs=0.05)
    assert drifted[SPEED].mean() > base[SPEED].mean() + 50, "lighter cuts should run faster"
    assert drifted[FAILURE].mean() > 2 * base[FAILURE].mean()


def drift_scores(reference: pd.DataFrame, current: pd.DataFrame) -> dict[str, float]:
    """Evidently's defaults above 1,000 rows: normed Wasserstein, Jensen-Shannon for Type."""
    scores = {
        name: stats.wasserstein_distance(reference[name], current[name]) / np.std(reference[name])
        for name in NUMERIC
    }
    shares = pd.concat(
        [reference[TYPE].value_counts(normalize=True), current[TYPE].value_counts(normalize=True)],
        axis=1,
    ).fillna(0)
    scores[TYPE] = float(distance.jensenshannon(shares.iloc[:, 0], shares.iloc[:, 1]))
    return scores


EXPECTED_DRIFT = {
    "none": set(),
    "sensor_offset": {AIR, PROCESS},
    "product_mix": {TYPE},
    "tool_change_policy": {WEAR},
    "failure_mechanism": {PROCESS, SPEED, TORQUE},
}


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_each_scenario_drifts_what_it_says_in_2000_rows(scenario: str) -> None:
    for seed in range(3):
        reference = make(5000, seed=seed)
        current = make(2000, seed=100 + seed, scenario=scenario)
        scores = drift_scores(reference, current)
        drifted = {name for name, score in scores.items() if score >= 0.1}
        shown = {name: round(score, 3) for name, score in scores.items()}
        assert drifted == EXPECTED_DRIFT[scenario], f"{scenario}, seed {seed}: {shown}"


# --- flag_rule_failures on hand-made rows ----------------------------------------------------


def test_flag_rule_failures_reads_the_rules_at_their_boundaries() -> None:
    inputs = pd.DataFrame(
        {
            TYPE: ["L", "L", "L", "L", "L", "H", "M"],
            AIR: [300.0, 300.0, 300.0, 300.0, 300.0, 300.0, 300.0],
            PROCESS: [310.0, 308.5, 308.5, 310.0, 310.0, 310.0, 309.5],
            SPEED: [1500.0, 1379.0, 1380.0, 3000.0, 1500.0, 1500.0, 1500.0],
            TORQUE: [40.0, 40.0, 40.0, 10.0, 55.0, 55.0, 40.0],
            WEAR: [0, 0, 0, 0, 201, 201, 250],
        },
        index=[10, 11, 12, 13, 14, 15, 16],
    )
    before = inputs.copy()
    flags = flag_rule_failures(inputs)
    assert flags.to_dict("list") == {
        "HDF": [0, 1, 0, 0, 0, 0, 0],  # gap 8.5 K below 1380 rpm only
        "PWF": [0, 0, 0, 1, 0, 0, 0],  # 10 Nm at 3000 rpm is 3142 W
        "OSF": [0, 0, 0, 0, 1, 0, 0],  # 201 x 55 = 11,055 min·Nm: over L's limit, not H's
    }
    assert flags.index.equals(inputs.index)
    pd.testing.assert_frame_equal(inputs, before)
    changed = flag_rule_failures(inputs, "failure_mechanism")
    assert changed["HDF"].tolist() == [0, 1, 1, 0, 0, 0, 1]  # gap 9.5 K at 1500 rpm now fails
    assert changed["OSF"].tolist() == [0, 0, 0, 0, 1, 1, 1]  # limits x0.8: 8,800/9,600/10,400


def test_flag_rule_failures_rejects_unknown_types() -> None:
    inputs = pd.DataFrame(
        {TYPE: ["X"], AIR: [300.0], PROCESS: [310.0], SPEED: [1500.0], TORQUE: [40.0], WEAR: [0]}
    )
    with pytest.raises(ValueError, match="unknown product types"):
        flag_rule_failures(inputs)
