"""Data quality of the traffic: one tiny case per check, clean windows that pass, real data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from core.config import ConfigError, DataQualityConfig, SyntheticSourceConfig, parse_params
from core.records import record_json
from core.records.data_quality import DataProfile
from features.contract import DataContract
from features.synthetic import generate_process_data
from monitoring.data_quality import DataQualityError, assess_data_quality, profile_training_data
from serving.prediction_log import read_prediction_log

CONFIG = DataQualityConfig()
TORQUE, AIR, TYPE = "Torque [Nm]", "Air temperature [K]", "Type"


def process(rows: int, seed: int, types: tuple[str, ...] = ("L", "M", "H")) -> pd.DataFrame:
    """Tiny milling-like rows in time order: a slow air-temperature walk, noisy readings."""
    rng = np.random.default_rng(seed)
    air = 300 + np.cumsum(rng.normal(0, 0.05, rows))
    return pd.DataFrame(
        {
            TYPE: rng.choice(types, rows),
            AIR: air.round(1),
            "Process temperature [K]": (air + 10 + rng.normal(0, 0.5, rows)).round(1),
            "Rotational speed [rpm]": rng.normal(1500, 150, rows).round(),
            TORQUE: rng.normal(40, 10, rows).clip(1, 100).round(1),
            "Tool wear [min]": np.arange(rows, dtype=float) % 240,
        }
    )


@pytest.fixture(scope="module")
def profile(contract: DataContract) -> DataProfile:
    return profile_training_data(process(3000, seed=1), contract)


def failed_check(summary, kind: str, column: str):
    assert f"{kind}:{column}" in summary.failed
    return next(c for c in summary.checks if (c.kind, c.column) == (kind, column))


def test_a_clean_window_passes_every_check(contract: DataContract, profile: DataProfile) -> None:
    summary = assess_data_quality(process(600, seed=2), profile, contract, CONFIG)
    assert summary.judged and summary.passed and summary.failed == ()
    # per feature: nulls, contract, stuck; Type also new categories; repeated records once
    assert len(summary.checks) == 3 * len(contract.features) + 2
    assert all(check.passed for check in summary.checks)
    assert summary.reason == "data quality: all 20 checks pass on 600 rows"


def test_a_stuck_sensor_fails_with_its_value_and_run(
    contract: DataContract, profile: DataProfile
) -> None:
    window = process(600, seed=2)
    window.loc[300:, TORQUE] = 40.0
    summary = assess_data_quality(window, profile, contract, CONFIG)
    assert not summary.passed and summary.failed == ("stuck:Torque [Nm]",)
    check = summary.checks[0]  # failed checks come first
    trained = profile.columns[TORQUE].longest_run
    assert check.message == (
        f"Torque [Nm] is stuck at 40.0 for the last 300 rows (longest run in training: {trained})"
    )
    assert (check.value, check.training, check.examples) == (300.0, float(trained), ("40.0",))
    assert summary.reason == "data quality fails on 600 rows: " + check.message


def test_a_stuck_run_inside_the_window_says_where_and_nulls_do_not_break_it(
    contract: DataContract, profile: DataProfile
) -> None:
    window = process(600, seed=2)
    window[TORQUE] = window[TORQUE].astype(object)
    window.loc[100:199, TORQUE] = 40.0
    window.loc[150, TORQUE] = None
    check = failed_check(assess_data_quality(window, profile, contract, CONFIG), "stuck", TORQUE)
    assert check.message.startswith(
        "Torque [Nm] is stuck at 40.0 for 99 rows (rows 101 to 200 of 600; longest run"
    )


def test_a_short_repeat_of_a_continuous_sensor_is_no_alarm(
    contract: DataContract, profile: DataProfile
) -> None:
    window = process(600, seed=2)
    window.loc[300:339, TORQUE] = 40.0  # 40 rows: above 3 x the training run, below 50 rows
    summary = assess_data_quality(window, profile, contract, CONFIG)
    assert summary.passed


def test_one_record_resent_again_and_again_is_a_repeat_not_a_stuck_sensor(
    contract: DataContract, profile: DataProfile
) -> None:
    window = process(600, seed=2)
    window.iloc[200:500] = window.iloc[200]  # a client retrying one request 300 times
    summary = assess_data_quality(window, profile, contract, CONFIG)
    assert summary.failed == ("repeated:record",)  # no column is called stuck
    assert summary.checks[0].message == (
        "one identical record arrived 300 times in a row (rows 201 to 500 of 600): "
        "a client resending one request, not live readings"
    )


def test_a_whole_window_of_one_record_is_one_failure(
    contract: DataContract, profile: DataProfile
) -> None:
    window = pd.concat([process(600, seed=2).iloc[[7]]] * 600, ignore_index=True)
    summary = assess_data_quality(window, profile, contract, CONFIG)
    assert summary.failed == ("repeated:record",)


def test_a_few_resent_records_pass(contract: DataContract, profile: DataProfile) -> None:
    window = process(600, seed=2)
    window.iloc[100:130] = window.iloc[100]  # 30 identical records: below 50, a short retry burst
    check = next(
        c
        for c in assess_data_quality(window, profile, contract, CONFIG).checks
        if c.kind == "repeated"
    )
    assert check.passed and check.value == 30.0


def test_a_window_with_one_category_is_stuck(contract: DataContract, profile: DataProfile) -> None:
    window = process(600, seed=2)
    window[TYPE] = "L"
    check = failed_check(assess_data_quality(window, profile, contract, CONFIG), "stuck", TYPE)
    assert check.message.startswith("Type is stuck at 'L' for the last 600 rows")


def test_a_null_surge_fails_against_the_training_share(
    contract: DataContract, profile: DataProfile
) -> None:
    window = process(1000, seed=2)
    window.loc[window.index % 4 == 0, AIR] = np.nan
    summary = assess_data_quality(window, profile, contract, CONFIG)
    assert summary.failed == ("nulls:Air temperature [K]",)
    assert summary.checks[0].message == (
        "Air temperature [K] is null in 25.0% of the window's 1,000 rows (in training: 0.0%; "
        "allowed up to 5.0%); the contract does not allow nulls here"
    )
    assert (summary.checks[0].value, summary.checks[0].limit) == (0.25, 0.05)


def test_a_few_nulls_within_the_allowance_pass(
    contract: DataContract, profile: DataProfile
) -> None:
    window = process(1000, seed=2)
    window.loc[:29, AIR] = np.nan  # 3 %
    assert assess_data_quality(window, profile, contract, CONFIG).passed


def test_a_feature_absent_from_the_window_is_all_null(
    contract: DataContract, profile: DataProfile
) -> None:
    window = process(600, seed=2).drop(columns=TORQUE)
    check = failed_check(assess_data_quality(window, profile, contract, CONFIG), "nulls", TORQUE)
    assert check.message.startswith("Torque [Nm] is absent from the window: all 600 rows are null")


def test_a_category_outside_the_contract_is_new_and_breaks_the_contract(
    contract: DataContract, profile: DataProfile
) -> None:
    window = process(600, seed=2)
    window.loc[:29, TYPE] = "X"
    summary = assess_data_quality(window, profile, contract, CONFIG)
    assert set(summary.failed) == {"new_category:Type", "outside_contract:Type"}
    new = failed_check(summary, "new_category", TYPE)
    assert new.message == (
        "Type has categories never seen in training: 'X' (30 rows, not in the contract)"
    )
    outside = failed_check(summary, "outside_contract", TYPE)
    assert outside.message == (
        "Type: 30 of 600 values (5.0%) break the contract (one of L, M, H), more than the "
        "1.0% allowed; e.g. 'X'"
    )


def test_a_contract_category_unseen_in_training_fails_unless_configured_to_report(
    contract: DataContract,
) -> None:
    profile = profile_training_data(process(3000, seed=1, types=("L", "M")), contract)
    window = process(600, seed=2)  # holds H, which the contract allows
    summary = assess_data_quality(window, profile, contract, CONFIG)
    assert summary.failed == ("new_category:Type",)
    assert summary.checks[0].message.startswith("Type has categories never seen in training: 'H' (")
    assert summary.checks[0].message.endswith(" rows, in the contract)")
    lenient = assess_data_quality(
        window, profile, contract, CONFIG.model_copy(update={"new_category_fails": False})
    )
    assert lenient.passed
    reported = next(c for c in lenient.checks if c.kind == "new_category")
    assert reported.message.endswith(
        "(reported only: monitor.data_quality.new_category_fails is false)"
    )


def test_values_outside_the_range_fail_with_examples(
    contract: DataContract, profile: DataProfile
) -> None:
    window = process(600, seed=2)
    window.loc[:14, TORQUE] = -5.0
    window.loc[15:29, TORQUE] = 250.0
    check = failed_check(
        assess_data_quality(window, profile, contract, CONFIG), "outside_contract", TORQUE
    )
    assert check.message == (
        "Torque [Nm]: 30 of 600 values (5.0%) break the contract (numbers from 0 to 200), "
        "more than the 1.0% allowed; e.g. -5.0, 250.0"
    )
    assert check.value == 0.05


def test_text_in_a_numeric_column_breaks_the_contract(
    contract: DataContract, profile: DataProfile
) -> None:
    window = process(600, seed=2)
    window[TORQUE] = window[TORQUE].astype(object)
    window.loc[:9, TORQUE] = "n/a"
    check = failed_check(
        assess_data_quality(window, profile, contract, CONFIG), "outside_contract", TORQUE
    )
    assert check.examples == ("'n/a'",) and check.value == pytest.approx(10 / 600, abs=1e-6)


def test_an_empty_window_is_not_judged(contract: DataContract, profile: DataProfile) -> None:
    summary = assess_data_quality(process(0, seed=2), profile, contract, CONFIG)
    assert not summary.judged and summary.passed and summary.checks == ()
    assert summary.reason == "data quality not judged: the window holds no rows"


def test_the_profile_reads_back_from_its_json(contract: DataContract, profile: DataProfile) -> None:
    assert DataProfile.model_validate_json(record_json(profile)) == profile
    air = profile.columns[AIR]
    assert air.numeric and air.null_share == 0 and air.distinct > 10 and air.longest_run >= 1
    assert profile.columns[TYPE].categories == ("H", "L", "M")
    assert profile.columns[TYPE].minimum is None
    assert profile.rows == 3000


def test_profile_and_window_refuse_a_mismatched_contract(
    contract: DataContract, profile: DataProfile
) -> None:
    with pytest.raises(DataQualityError, match=r"lacks feature column\(s\) \['Torque \[Nm\]'\]"):
        profile_training_data(process(100, seed=1).drop(columns=TORQUE), contract)
    older = DataProfile(
        rows=profile.rows, columns={k: v for k, v in profile.columns.items() if k != TORQUE}
    )
    with pytest.raises(DataQualityError) as info:
        assess_data_quality(process(100, seed=2), older, contract, CONFIG)
    assert str(info.value) == (
        "data quality: the champion's training profile has no column(s) ['Torque [Nm]'] of the "
        "contract 'milling': the contract changed after training; retrain"
    )


def test_a_window_read_from_the_prediction_log_is_judged(
    contract: DataContract, profile: DataProfile, tmp_path: Path
) -> None:
    """The reader types a logged column that is missing (null) as object: still judged."""
    window = process(200, seed=2).drop(columns=TORQUE)
    part = tmp_path / "date=2024-01-01" / "hour=00" / "part-1.jsonl"
    part.parent.mkdir(parents=True)
    lines = [
        json.dumps({"time": f"2024-01-01T00:00:{i % 60:02d}Z", "UDI": i, **row})
        for i, row in enumerate(window.to_dict(orient="records"))
    ]
    part.write_text("\n".join(lines) + "\n")
    logged = read_prediction_log(tmp_path, contract=contract)
    summary = assess_data_quality(logged[contract.features], profile, contract, CONFIG)
    assert summary.failed == ("nulls:Torque [Nm]",)


@pytest.mark.parametrize("size", [1000, 5000])
def test_consecutive_synthetic_windows_raise_no_false_failure(
    contract: DataContract, size: int
) -> None:
    train = generate_process_data(SyntheticSourceConfig(rows=16_000, seed=2020))
    profile = profile_training_data(train, contract)
    traffic = generate_process_data(SyntheticSourceConfig(rows=20_000, seed=7))
    failures = [
        summary.reason
        for start in range(0, len(traffic), size)
        if not (
            summary := assess_data_quality(
                traffic.iloc[start : start + size][contract.features], profile, contract, CONFIG
            )
        ).passed
    ]
    assert failures == []


def test_consecutive_windows_of_the_real_file_raise_no_false_failure(
    contract: DataContract, real_ai4i_path: Path
) -> None:
    """Each 1,000-row window of the real file in time order, profiled on the other rows."""
    real = pd.read_csv(real_ai4i_path)
    failures = []
    for start in range(0, len(real), 1000):
        rest = pd.concat([real.iloc[:start], real.iloc[start + 1000 :]], ignore_index=True)
        window = real.iloc[start : start + 1000][contract.features]
        summary = assess_data_quality(
            window, profile_training_data(rest, contract), contract, CONFIG
        )
        if not summary.passed:
            failures.append(summary.reason)
    assert len(real) >= 10_000 and failures == []


@pytest.mark.parametrize(
    ("data_quality", "line"),
    [
        (
            {"null_allowance": 1.5},
            "monitor.data_quality.null_allowance: Input should be less than or equal to 1",
        ),
        (
            {"stuck_min_rows": 1},
            "monitor.data_quality.stuck_min_rows: Input should be greater than or equal to 2",
        ),
        (
            {"stuck_factor": 0.5},
            "monitor.data_quality.stuck_factor: Input should be greater than or equal to 1",
        ),
        (
            {"max_outside_share": 1},
            "monitor.data_quality.max_outside_share: Input should be less than 1",
        ),
        (
            {"new_category": True},
            "monitor.data_quality.new_category: unknown key (did you mean 'new_category_fails'?)",
        ),
    ],
)
def test_bad_data_quality_config_names_the_key(data_quality: dict, line: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_params({"monitor": {"data_quality": data_quality}})
    assert line in str(info.value).splitlines()[1]
