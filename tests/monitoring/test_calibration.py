"""Drift thresholds calibrated on a training period in time order, against Evidently's defaults.

Time-correlated traffic: a seeded AR(1) air temperature (correlation time about 1,000 rows, the
process temperature following it) that always runs, and the real AI4I 2020 file in its own
row order when it is present. Windows of consecutive rows after the training period, none of
them perturbed, must be flagged at about the stated false-alarm rate with the calibrated
thresholds, while Evidently's defaults flag nearly all of them; real shifts must still be
flagged.
"""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from evidently.legacy.calculations.stattests import (
    jensenshannon_stat_test,
    wasserstein_stat_test,
)
from evidently.legacy.core import ColumnType
from scipy import signal
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from core.columns import REFERENCE_PROBABILITY
from core.config import ConfigError, MonitorConfig, parse_params
from core.records import read_record, record_json
from core.records.drift_calibration import DriftCalibration
from features.contract import DataContract
from monitoring.calibration import (
    CalibrationError,
    calibrate_drift,
    render_calibration,
    score_block,
)
from monitoring.drift import describe_prediction_drift, detect_drift, drift_summary

ROOT = Path(__file__).resolve().parents[2]
EVIDENTLY = {"numerical": wasserstein_stat_test, "categorical": jensenshannon_stat_test}
TRAINING_ROWS = 16_000
CONFIG = MonitorConfig()  # the defaults: windows of 1,000 to 5,000 rows, 5 % false alarms
COLUMNS = [
    "Type",
    "Air temperature [K]",
    "Process temperature [K]",
    "Rotational speed [rpm]",
    "Torque [Nm]",
    "Tool wear [min]",
    REFERENCE_PROBABILITY,
]


def make_plant(rows: int, seed: int, phi: float = 0.999) -> pd.DataFrame:
    """Milling rows in time order: the air temperature an AR(1) (sd 2 K, lag-1 correlation
    `phi`), the process temperature 10 K above it, the rest independent; a failure
    probability from torque and tool wear."""
    rng = np.random.default_rng(seed)
    noise = rng.normal(0.0, 2.0 * np.sqrt(1 - phi**2), rows)
    noise[0] = rng.normal(0.0, 2.0)
    air = 300.0 + signal.lfilter([1.0], [1.0, -phi], noise)
    frame = pd.DataFrame(
        {
            "UDI": np.arange(1, rows + 1),
            "Type": rng.choice(["L", "M", "H"], size=rows, p=(0.6, 0.3, 0.1)),
            "Air temperature [K]": air,
            "Process temperature [K]": air + 10.0 + rng.normal(0.0, 1.0, rows),
            "Rotational speed [rpm]": rng.normal(1540.0, 180.0, rows),
            "Torque [Nm]": rng.normal(40.0, 10.0, rows),
            "Tool wear [min]": rng.uniform(0.0, 250.0, rows),
        }
    )
    return with_probability(frame)


def with_probability(frame: pd.DataFrame) -> pd.DataFrame:
    """The frame with a failure probability that rises with torque and tool wear."""
    logit = -6.0 + 0.08 * (frame["Torque [Nm]"] - 40.0) + 0.01 * (frame["Tool wear [min]"] - 100.0)
    return frame.assign(**{REFERENCE_PROBABILITY: 1.0 / (1.0 + np.exp(-logit))})


def flag_rates(
    calibration: DriftCalibration, reference: pd.DataFrame, later: pd.DataFrame, rows: int
) -> tuple[float, float, int]:
    """Shares of disjoint `rows`-row windows of `later` with any column flagged: calibrated
    thresholds, and Evidently's defaults (over 1,000 reference rows it picks the same
    distances, at 0.1), from the very stattest Evidently runs."""
    calibrated = default = windows = 0
    for start in range(0, len(later) - rows + 1, rows):
        window = later.iloc[start : start + rows]
        scores = {
            name: score_block(window[name], reference[name], _column(calibration, name).kind)
            for name in COLUMNS
        }
        calibrated += any(
            score >= _column(calibration, name).threshold_at(rows) for name, score in scores.items()
        )
        default += any(
            score >= EVIDENTLY[_column(calibration, name).kind].default_threshold
            for name, score in scores.items()
        )
        windows += 1
    return calibrated / windows, default / windows, windows


def _column(calibration: DriftCalibration, name: str):
    return calibration.prediction if name == REFERENCE_PROBABILITY else calibration.columns[name]


def judge(reference, current, contract, calibration=None, config=CONFIG):
    return detect_drift(
        reference,
        current,
        contract,
        config,
        reference_scores=reference[REFERENCE_PROBABILITY],
        current_scores=current[REFERENCE_PROBABILITY],
        calibration=calibration,
    )


@pytest.fixture(scope="module")
def plant() -> pd.DataFrame:
    return make_plant(TRAINING_ROWS + 100_000, seed=0)


@pytest.fixture(scope="module")
def training(plant) -> pd.DataFrame:
    return plant.iloc[:TRAINING_ROWS]


@pytest.fixture(scope="module")
def later(plant) -> pd.DataFrame:
    return plant.iloc[TRAINING_ROWS:]


@pytest.fixture(scope="module")
def calibration(training, contract) -> DriftCalibration:
    return calibrate_drift(training, contract, CONFIG)


# --- calibrate_drift ----------------------------------------------------------------------


def test_calibration_covers_every_feature_and_the_scores(calibration, contract):
    assert calibration.calibrated
    assert calibration.block_rows == (1000, 2236, 5000)
    assert list(calibration.columns) == contract.features
    assert calibration.prediction is not None
    assert calibration.tests == 7 and calibration.column_alpha == pytest.approx(0.05 / 7)
    methods = {name: c.method for name, c in calibration.columns.items()}
    assert methods == {
        "Type": "jensenshannon",
        **dict.fromkeys(contract.numeric_features, "wasserstein"),
    }
    for column in [*calibration.columns.values(), calibration.prediction]:
        for size in column.sizes:
            assert size.threshold >= size.quantiles["max"] >= size.quantiles["0.5"] > 0
            assert size.disjoint_blocks == TRAINING_ROWS // size.block_rows


def test_null_scores_are_evidentlys_own(training, contract):
    """Every null score equals Evidently's stattest on that block against the rest, and so
    does `score_block`'s."""
    config = MonitorConfig(calibration={"step_share": 1.0, "max_blocks": 100})
    calibration = calibrate_drift(training, contract, config)
    for name in COLUMNS:
        column = _column(calibration, name)
        size = column.sizes[0]
        column_type = ColumnType.Numerical if column.kind == "numerical" else ColumnType.Categorical
        scores, ours = [], []
        for start in range(0, TRAINING_ROWS - size.block_rows + 1, size.block_rows):
            block = training[name].iloc[start : start + size.block_rows]
            rest = pd.concat(
                [training[name].iloc[:start], training[name].iloc[start + size.block_rows :]]
            )
            test = EVIDENTLY[column.kind]
            scores.append(float(test(rest, block, column_type, None).drift_score))
            ours.append(score_block(block, rest, column.kind))
        assert size.blocks == len(scores) == 16
        assert ours == pytest.approx(scores, rel=1e-12)
        assert size.quantiles["max"] == pytest.approx(max(scores), rel=1e-9)
        assert size.quantiles["0.5"] == pytest.approx(float(np.median(scores)), rel=1e-9)


def test_consecutive_windows_are_flagged_at_about_the_stated_rate(calibration, training, later):
    """Measured (seed 0): 1,000 rows 5 of 100 windows flagged, 5,000 rows 0 of 20, against 100
    of 100 and 20 of 20 with Evidently's defaults. Over the training periods of seeds 0-9: 32
    of 1,000 (3.2 %, at most 7 % for one period) and 1 of 200 (0.5 %), within the stated 5 %
    per window. A period that saw little of the walk's range gives more (up to 20 % in other
    draws), hence the margin below."""
    for rows in (1000, 5000):
        calibrated, default, windows = flag_rates(calibration, training, later, rows)
        assert windows == 100_000 // rows
        assert calibrated <= 2 * CONFIG.calibration.false_alarm_rate, (rows, calibrated)
        assert default >= 0.9, (rows, default)


def test_evidently_gives_the_calibrated_verdicts(calibration, training, later, contract):
    window = later.iloc[20_000:25_000]
    default = judge(training, window, contract)
    calibrated = judge(training, window, contract, calibration)
    assert default.dataset_drift and "Air temperature [K]" in default.drifted_columns
    assert not calibrated.dataset_drift and calibrated.drifted_columns == ()
    assert all(c.calibrated for c in calibrated.columns)
    assert not any(c.calibrated for c in default.columns)
    for column in calibrated.columns:
        expected = calibration.columns[column.name].threshold_at(5000)
        assert column.threshold == pytest.approx(expected)
        assert column.score == pytest.approx(
            score_block(window[column.name], training[column.name], column.kind), rel=1e-9
        )
    prediction = calibrated.prediction
    assert prediction is not None and prediction.calibrated and not prediction.drifted
    assert prediction.threshold == pytest.approx(calibration.prediction.threshold_at(5000))
    assert describe_prediction_drift(calibrated, CONFIG).endswith(
        f"(threshold {prediction.threshold:.4g}, calibrated on the champion's training period)"
    )
    summary = drift_summary(calibrated)["calibration"]
    assert summary == {
        "false_alarm_rate": 0.05,
        "block_rows": [1000, 2236, 5000],
        "columns": list(calibration.columns),
        "prediction": True,
    }
    assert drift_summary(default)["calibration"] is None


def test_real_shifts_are_still_flagged(calibration, training, later, contract):
    window = later.iloc[:3000].copy()
    window["Torque [Nm]"] *= 1.1  # +4 Nm, 0.4 sd
    mix = window["Type"].eq("L") & (np.arange(len(window)) % 2 == 0)
    window.loc[mix, "Type"] = "H"  # half the L products become H
    window["Air temperature [K]"] += 8.0  # a sensor offset of 4 sd, beyond the walk's range
    result = judge(training, with_probability(window), contract, calibration)
    assert set(result.drifted_columns) == {"Type", "Torque [Nm]", "Air temperature [K]"}
    assert result.dataset_drift
    assert result.prediction is not None and result.prediction.drifted  # torque moves scores


def test_explicit_thresholds_keep_precedence(calibration, training, later, contract):
    config = MonitorConfig(
        per_column_threshold={"Torque [Nm]": 5.0}, prediction_drift_threshold=5.0
    )
    result = judge(training, later.iloc[:2000], contract, calibration, config)
    torque = next(c for c in result.columns if c.name == "Torque [Nm]")
    assert torque.threshold == 5.0 and not torque.calibrated
    assert sum(c.calibrated for c in result.columns) == 5
    assert result.prediction is not None
    assert result.prediction.threshold == 5.0 and not result.prediction.calibrated


def test_disabled_calibration_leaves_evidentlys_defaults(calibration, training, later, contract):
    config = MonitorConfig(calibration={"enabled": False})
    window = later.iloc[:2000]
    ignored = judge(training, window, contract, calibration, config)
    assert ignored == judge(training, window, contract, None, config)
    assert drift_summary(ignored)["calibration"] is None
    off = calibrate_drift(training, contract, config)
    assert not off.calibrated and off.reason.startswith("monitor.calibration.enabled is false")


# --- the real AI4I 2020 file --------------------------------------------------------------


@pytest.fixture(scope="module")
def ai4i(real_ai4i_path) -> pd.DataFrame:
    return pd.read_csv(real_ai4i_path)  # in the file's own (time) order


def test_real_file_windows_are_not_drift_but_real_shifts_are(ai4i, contract):
    """Calibrated on the first 5,000 rows, windows of the other 5,000: 0 of 17 windows of
    1,000 rows (sliding by 250) and 0 of 1 of 5,000 rows flagged, against 17 of 17 and 1 of 1
    with Evidently's defaults (air and process temperature)."""
    training = ai4i.iloc[:5000].copy()
    numeric = contract.numeric_features
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    training[REFERENCE_PROBABILITY] = cross_val_predict(
        model, training[numeric], training[contract.label], cv=5, method="predict_proba"
    )[:, 1]
    model.fit(training[numeric], training[contract.label])
    calibration = calibrate_drift(training, contract, CONFIG)
    assert calibration.block_rows == (1000,)  # 5,000 rows hold 3 disjoint blocks of 1,000 only
    later = ai4i.iloc[5000:].copy()
    later[REFERENCE_PROBABILITY] = model.predict_proba(later[numeric])[:, 1]
    for rows, step in ((1000, 250), (5000, 5000)):
        calibrated = default = 0
        starts = range(0, len(later) - rows + 1, step)
        for start in starts:
            window = later.iloc[start : start + rows]
            scores = {
                n: score_block(window[n], training[n], _column(calibration, n).kind)
                for n in COLUMNS
            }
            calibrated += any(
                s >= _column(calibration, n).threshold_at(rows) for n, s in scores.items()
            )
            default += any(s >= 0.1 for s in scores.values())
        assert calibrated / len(starts) <= 0.1, (rows, calibrated)
        assert default / len(starts) >= 0.9, (rows, default)
    window = later.iloc[:5000]
    assert judge(training, window, contract).dataset_drift  # Evidently's defaults
    assert not judge(training, window, contract, calibration).dataset_drift
    shifted = window.copy()
    shifted["Torque [Nm]"] *= 1.1
    shifted.loc[shifted["Type"].eq("L") & (np.arange(5000) % 2 == 0), "Type"] = "H"
    result = judge(training, shifted, contract, calibration)
    assert set(result.drifted_columns) == {"Type", "Torque [Nm]"}


# --- a training period too short ----------------------------------------------------------


def test_a_shorter_period_drops_the_sizes_it_cannot_hold(training, contract):
    calibration = calibrate_drift(training.iloc[:8000], contract, CONFIG)
    assert calibration.calibrated and calibration.block_rows == (1000, 2236)
    assert "5000 rows skipped: 8000 training rows hold fewer than 3 disjoint blocks" in (
        calibration.reason
    )
    torque = calibration.columns["Torque [Nm]"]
    assert torque.threshold_at(5000) == torque.threshold_at(2236)  # the largest size's


def test_a_short_period_falls_back_to_smaller_blocks(training, contract):
    calibration = calibrate_drift(training.iloc[:2400], contract, CONFIG)
    assert calibration.calibrated and calibration.block_rows == (800,)
    assert calibration.reason == (
        "2400 training rows hold fewer than 3 disjoint blocks (monitor.calibration.min_blocks) "
        "of monitor.window.min_rows (1000); blocks of 800 rows stand in for every window size "
        "(smaller blocks vary more, so the thresholds err high)"
    )


def test_a_too_short_period_leaves_evidentlys_defaults(training, later, contract, caplog):
    calibration = calibrate_drift(training.iloc[:500], contract, CONFIG)
    assert not calibration.calibrated and calibration.columns == {}
    assert calibration.reason == (
        "500 training rows are too few: 3 disjoint blocks (monitor.calibration.min_blocks) of "
        "at least monitor.calibration.min_block_rows (200) rows do not fit; Evidently's "
        "default tests and thresholds apply; train on a longer period to calibrate"
    )
    window = later.iloc[:2000]
    result = judge(training, window, contract, calibration)
    assert result == judge(training, window, contract)
    assert not any(c.calibrated for c in result.columns)
    assert calibration.reason in caplog.text


# --- the record, the report section, the config -------------------------------------------


def test_record_is_small_json_that_reads_back(calibration, tmp_path):
    path = tmp_path / "drift_calibration.json"
    path.write_text(record_json(calibration), encoding="utf-8")
    assert path.stat().st_size < 20_000
    assert read_record(path, DriftCalibration, writer="train") == calibration
    torque = calibration.columns["Torque [Nm]"]
    low, mid, high = (s.threshold for s in torque.sizes)
    assert min(low, mid) <= torque.threshold_at(1500) <= max(low, mid)
    assert torque.threshold_at(500) == low and torque.threshold_at(50_000) == high


def test_report_section_names_the_thresholds(calibration, training, contract):
    page = render_calibration(calibration)
    assert "Drift thresholds calibrated on the training period" in page
    assert "Air temperature [K]" in page and "served probability (prediction drift)" in page
    assert f"{calibration.columns['Torque [Nm]'].sizes[0].threshold:.4g}" in page
    short = render_calibration(calibrate_drift(training.iloc[:500], contract, CONFIG))
    assert "too few" in short and "<table>" not in short


def test_missing_feature_is_named(training, contract):
    with pytest.raises(CalibrationError) as error:
        calibrate_drift(training.drop(columns="Torque [Nm]"), contract, CONFIG)
    assert str(error.value) == (
        "the training data lacks feature column(s) ['Torque [Nm]'] named in the data contract"
    )


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("false_alarm_rate", 1.5, "false_alarm_rate: Input should be less than 1 (got 1.5)"),
        ("false_alarm_rate", 0, "false_alarm_rate: Input should be greater than 0 (got 0)"),
        ("min_blocks", 1, "min_blocks: Input should be greater than or equal to 2 (got 1)"),
        ("block_size", 3, "block_size: unknown key (did you mean 'block_sizes'?)"),
    ],
)
def test_bad_config_names_the_key(key, value, message):
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    bad = copy.deepcopy(raw)
    bad["monitor"].setdefault("calibration", {})[key] = value
    with pytest.raises(ConfigError) as error:
        parse_params(bad)
    assert f"  - monitor.calibration.{message}" in str(error.value).splitlines()


def test_calibration_takes_about_a_second_on_16000_rows(training, contract: DataContract):
    started = time.perf_counter()
    calibrate_drift(training, contract, CONFIG)
    elapsed = time.perf_counter() - started
    assert elapsed < 5.0, f"calibration took {elapsed:.2f} s"  # measured: about 0.4 s
    assert json.loads(record_json(calibrate_drift(training, contract, CONFIG)))["calibrated"]


def test_a_column_without_enough_values_is_left_to_evidently(training, contract, caplog):
    sparse = training.assign(**{"Tool wear [min]": np.nan})
    calibration = calibrate_drift(sparse, contract, CONFIG)
    assert calibration.calibrated and "Tool wear [min]" not in calibration.columns
    assert len(calibration.columns) == 5
    assert (
        "drift calibration skips column 'Tool wear [min]': 0 non-null values hold no two blocks"
        in caplog.text
    )
