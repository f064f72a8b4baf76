"""Synthetic milling-process data following the published generation rules of AI4I 2020.

`generate_process_data` is the project's default data source: deterministic for a given
(rows, seed, scenario), vectorised (a million rows in a few seconds), and calibrated so a
sample is statistically close to the real AI4I 2020 file, including its time structure:
the temperatures wander slowly over the whole series, so consecutive rows (production
traffic) cover only part of their range, as in the plant. Named scenarios add drift of a
known kind and magnitude, as a step or a gradual onset, for testing monitoring and
retraining. Each published rule, and where the generator had to fill a gap in it (measured
on the real file), is stated beside the code that implements it.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from core.config import Scenario, SyntheticSourceConfig
from features.ai4i_process import (
    AIR,
    AIR_MEAN_K,
    AIR_SD_K,
    AIR_WALK_ROWS,
    COUPLING_SMOOTHING_ROWS,
    FAILURE,
    FAILURE_MODES,
    NOISE_TRUNCATION_SD,
    PROCESS,
    PROCESS_WALK_AIR_CORRELATION,
    PROCESS_WALK_ROWS,
    PROCESS_WALK_SD_K,
    PRODUCT_ID,
    RNF_PROBABILITY,
    SERIAL_BASES,
    SPEED,
    SPEED_BASE_RPM,
    SPEED_NOISE_RPM,
    SPEED_POWER_RPM_NM,
    TOOL_LIFE_MIN,
    TOP_SPEED_RPM,
    TORQUE,
    TORQUE_SD_NM,
    TYPE,
    TYPES,
    UDI,
    WEAR,
    WEAR_PER_PROCESS_MIN,
    Regime,
)
from features.drift_scenarios import regime_per_row

logger = logging.getLogger(__name__)


def generate_process_data(config: SyntheticSourceConfig, first_udi: int = 1) -> pd.DataFrame:
    """Draw `config.rows` processes of the milling machine, with the contract's columns.

    Scenarios (their magnitudes are the module constants named here):

    - ``none``: the published process.
    - ``sensor_offset``: both temperature sensors read `SENSOR_OFFSET_K` high; the process
      itself, and so every failure, is unchanged. Air and process temperature drift.
    - ``product_mix``: the L/M/H shares become `PRODUCT_MIX_SHARES`, toward H. Only Type
      drifts.
    - ``tool_change_policy``: tools are replaced `TOOL_LIFE_EXTENSION_MIN` later, past their
      rated life, so `LATE_CHANGE_TWF_SHARE` of the replacements are failures: more high-wear
      rows, more TWF and OSF. Only tool wear drifts.
    - ``failure_mechanism``: lighter, faster cuts (torque `FAILURE_TORQUE_SHIFT_NM`, so
      speed rises) with the process `FAILURE_GAP_SHIFT_K` hotter above the air; and the
      failure physics change: heat dissipation fails below a `FAILURE_HDF_GAP_K` gap at up
      to `FAILURE_HDF_SPEED_RPM`, overstrain limits are scaled by `FAILURE_OSF_FACTOR`.
      Torque, speed and process temperature drift, and a model of ``none`` misses failures.

    Onset: with `config.ramp_rows` = 0 the scenario holds from the first row (a step). With
    R > 0 every numeric parameter of the scenario (shares, offsets, means, tool lives,
    failure limits) moves linearly from its published value at the first row to the
    scenario's at row R, and stays there: a sensor that degrades, a mix that shifts, limits
    that erode. Interpolating the parameters, rather than mixing rows of the two regimes,
    keeps each row physical (no bimodal temperatures, no broken wear sequence) and works
    for any scenario alike. `flag_rule_failures(frame, scenario, ramp_rows)` reads the same
    rules back. A ramp longer than `rows` is cut off where the rows end.

    Time: the temperatures are mean-reverting walks over the whole series (time constants
    `AIR_WALK_ROWS` and `PROCESS_WALK_ROWS`), optionally with a daily cycle of
    `config.daily_cycle_k` kelvin over `config.rows_per_day` rows, timed by the UDI; speed,
    torque and Type are independent from row to row and wear is the tools' saw-tooth, as
    in the real file. Each call starts the walks at a random point of their long-run
    distribution.

    Drift, by Evidently's defaults (normed Wasserstein or Jensen-Shannon >= 0.1): on 2,000
    rows sampled at random from a long series (many `AIR_WALK_ROWS`), against a reference
    sampled at random from the same seed's ``none`` series, the columns named above drift
    and no other column does. Windows of consecutive rows are different, as in the real
    file: 1,000 to 5,000 consecutive rows of ``none`` hold only part of the temperature
    walk's range, so air and process temperature look drifted against a reference drawn
    from a long period; that is the plant's natural variation, which a monitor must
    calibrate for, not a change of the process.

    One seed draws the same random numbers in every scenario (and with any ramp), so two
    scenarios with the same seed differ only by what the scenario changes.
    """
    rows = config.rows
    regime = regime_per_row(config.scenario, rows, config.ramp_rows)
    rng = np.random.default_rng(config.seed)

    type_codes = draw_categories(rng, regime.type_shares)
    udi = np.arange(first_udi, first_udi + rows, dtype=np.int64)
    air, process = _draw_temperatures(rng, regime, _daily_cycle(config, udi))
    torque = _draw_torque(rng, regime)
    speed = _derive_speed(rng, torque)
    wear, twf = _wear_tools(rng, type_codes, regime)
    rnf = rng.random(rows) < RNF_PROBABILITY

    frame = pd.DataFrame(
        {
            UDI: udi,
            PRODUCT_ID: _name_products(type_codes, udi),
            TYPE: np.asarray(TYPES, dtype=object)[type_codes],
            AIR: np.round(air + regime.sensor_offset_k, 1),
            PROCESS: np.round(process + regime.sensor_offset_k, 1),
            SPEED: np.round(speed),
            TORQUE: np.round(torque, 1),
            WEAR: wear,
        }
    )
    # The rules read the rounded values, so they hold exactly on the rows as published.
    # A sensor offset moves both temperatures alike: the gap HDF reads is the true one.
    modes = _flag_rules(frame, regime)
    modes["TWF"] = twf.astype(np.int64)
    modes["RNF"] = rnf.astype(np.int64)
    frame[FAILURE] = modes.max(axis=1)  # machine failure: any mode occurred
    for mode in FAILURE_MODES:
        frame[mode] = modes[mode]
    logger.debug(
        "generated %d rows (seed %d, scenario %s, ramp %d rows), failure rate %.4f",
        rows,
        config.seed,
        config.scenario,
        config.ramp_rows,
        frame[FAILURE].mean(),
    )
    return frame


def flag_rule_failures(
    inputs: pd.DataFrame, scenario: Scenario = "none", ramp_rows: int = 0
) -> pd.DataFrame:
    """The rule-based failure modes (HDF, PWF, OSF) of `scenario` on `inputs`, as int64 0/1.

    The published rules: HDF when process - air < 8.6 K and speed < 1380 rpm; PWF when the
    power (torque x speed) is < 3500 W or > 9000 W; OSF when tool wear x torque exceeds
    11,000/12,000/13,000 min·Nm (L/M/H). With `ramp_rows` > 0 the scenario's limits are
    reached over that many rows from the first row of `inputs`, as in
    `generate_process_data`.

    `inputs` needs the Type, temperature, speed, torque and tool wear columns. TWF and RNF
    (probability 0.1 %) are drawn at random, so they are not rules of the inputs.
    """
    type_codes = pd.Categorical(inputs[TYPE], categories=TYPES).codes
    if (type_codes < 0).any():
        unknown = sorted(set(inputs[TYPE][type_codes < 0].astype(str)))
        raise ValueError(f"unknown product types {unknown}; expected one of {TYPES}")
    return _flag_rules(inputs, regime_per_row(scenario, len(inputs), ramp_rows))


def _flag_rules(inputs: pd.DataFrame, regime: Regime) -> pd.DataFrame:
    type_codes = pd.Categorical(inputs[TYPE], categories=TYPES).codes
    gap = inputs[PROCESS].to_numpy(float) - inputs[AIR].to_numpy(float)
    speed = inputs[SPEED].to_numpy(float)
    torque = inputs[TORQUE].to_numpy(float)
    power_w = torque * speed * (2 * np.pi / 60)
    strain = inputs[WEAR].to_numpy(float) * torque
    power_limits = np.asarray(regime.pwf_power_w)
    osf_limit = np.take_along_axis(np.asarray(regime.osf_limits_min_nm), type_codes[:, None], 1)
    return pd.DataFrame(
        {
            "HDF": (gap < regime.hdf_gap_k) & (speed < regime.hdf_speed_rpm),
            "PWF": (power_w < power_limits[:, 0]) | (power_w > power_limits[:, 1]),
            "OSF": strain > osf_limit[:, 0],
        },
        index=inputs.index,
        dtype=np.int64,
    )


def draw_categories(rng: np.random.Generator, shares: np.ndarray) -> np.ndarray:
    """Category codes drawn with each row's shares (as `rng.choice` would with fixed shares).

    `shares` has one row of shares per drawn row; the product types are drawn this way.
    """
    uniform = rng.random(len(shares))
    bounds = np.cumsum(shares, axis=1)[:, :-1]
    return (uniform[:, None] >= bounds).sum(axis=1)


def _daily_cycle(config: SyntheticSourceConfig, udi: np.ndarray) -> np.ndarray | float:
    """The daily swing of the air temperature, in kelvin; UDI 1 is at midnight's mean."""
    if not config.daily_cycle_k:
        return 0.0
    return config.daily_cycle_k * np.sin(2 * np.pi * (udi - 1) / config.rows_per_day)


def _draw_temperatures(
    rng: np.random.Generator, regime: Regime, cycle: np.ndarray | float
) -> tuple[np.ndarray, np.ndarray]:
    """True air and process temperatures: slow walks over the whole series, coupled.

    The published process: air is a random walk normalised to sd 2 K around 300 K; process
    is air + 10 K + a random walk with sd 1 K. A random walk grows without bound with the
    number of rows, so here each walk is mean-reverting (a stationary AR(1), i.e. an
    Ornstein-Uhlenbeck process) with the published long-run sd. The air's time constant,
    2,500 rows, is the least-squares fit to the real file's mean squared increments
    E[(x[t+k] - x[t])^2] at lags k = 10..1,000 rows, with the sd fixed at 2 K.
    In the real file the process walk is correlated -0.7 with the air temperature (the
    process sd is 1.5 K, not sqrt(5) K), but only slowly: their increments are uncorrelated
    up to lags of 300 rows and strongly anti-correlated beyond 1,000. So the process walk
    follows the air walk smoothed over `COUPLING_SMOOTHING_ROWS`, scaled to give -0.7, plus
    an own walk of `PROCESS_WALK_ROWS`; those two were chosen on the real file's windowed
    spread of the process temperature and the gap. A real 10,000-row stretch then looks like
    a typical 10,000-row stretch of these walks: autocorrelation, windowed spread, and the
    flat-topped histogram the real path happens to have (tests/features/test_synthetic.py).
    """
    air_walk, follower, own_walk = _mean_reverting_walks(rng, len(regime.process_gap_k))
    rho = PROCESS_WALK_AIR_CORRELATION / _smoothing_correlation()
    gap_walk = rho * follower + np.sqrt(1 - rho**2) * own_walk
    air = AIR_MEAN_K + AIR_SD_K * air_walk + cycle
    return air, air + regime.process_gap_k + PROCESS_WALK_SD_K * gap_walk


def _mean_reverting_walks(
    rng: np.random.Generator, rows: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The air walk, the air walk smoothed, and the process walk's own part; sd 1, mean 0.

    Each walk is x[t] = phi x[t-1] + sqrt(1 - phi^2) e[t] with phi = exp(-1 / time
    constant), the smoothing s[t] = psi s[t-1] + (1 - psi) x[t]; all start from their joint
    long-run distribution, so any stretch of any length is stationary. The walks are
    clipped at `NOISE_TRUNCATION_SD` (6 rows in 100,000), so temperatures are bounded.
    """
    noise = rng.standard_normal((2, rows))
    start_of_smoothing = rng.standard_normal()
    air, own = (
        _run_ar1(row, np.exp(-1.0 / rows_), row[0])
        for row, rows_ in zip(noise, (AIR_WALK_ROWS, PROCESS_WALK_ROWS), strict=True)
    )
    psi = np.exp(-1.0 / COUPLING_SMOOTHING_ROWS)
    covariance, variance = _smoothing_moments()
    first = covariance * air[0] + np.sqrt(variance - covariance**2) * start_of_smoothing
    smoothed = first_order_filter(air, 1 - psi, psi, psi * first - (1 - psi) * air[0])
    smoothed[0] = first
    limit = NOISE_TRUNCATION_SD
    return (
        np.clip(air, -limit, limit),
        np.clip(smoothed / np.sqrt(variance), -limit, limit),
        np.clip(own, -limit, limit),
    )


def _run_ar1(noise: np.ndarray, phi: float, first: float) -> np.ndarray:
    steps = noise * np.sqrt(1 - phi**2)
    steps[:1] = first  # the first row is a draw of the long-run distribution
    return first_order_filter(steps, 1.0, phi)


def first_order_filter(x: np.ndarray, gain: float, pole: float, state: float = 0.0) -> np.ndarray:
    """y[t] = pole y[t-1] + gain x[t], with y[-1] pole = `state`: what
    `scipy.signal.lfilter([gain], [1, -pole], x, zi=[state])` computes, with its very
    operations in its order, so bit for bit (tests/features/test_first_order_filter.py),
    without importing scipy.signal (over a second). A recurrence: a loop over Python floats,
    about 0.25 s per million rows."""
    values = np.asarray(x, dtype=float).tolist()
    for t, value in enumerate(values):
        # lfilter's direct form II transposed: y = z + b0 x, then z = b1 x - a1 y (b1 = 0)
        output = state + gain * value
        state = value * 0.0 - output * -pole
        values[t] = output
    return np.array(values, dtype=float)


def _smoothing_moments() -> tuple[float, float]:
    """Cov(air walk, smoothed) and Var(smoothed) in the long run (air walk variance 1)."""
    phi, psi = np.exp(-1.0 / AIR_WALK_ROWS), np.exp(-1.0 / COUPLING_SMOOTHING_ROWS)
    covariance = (1 - psi) / (1 - phi * psi)
    variance = (1 - psi) ** 2 * (1 + phi * psi) / ((1 - psi**2) * (1 - phi * psi))
    return float(covariance), float(variance)


def _smoothing_correlation() -> float:
    covariance, variance = _smoothing_moments()
    return covariance / np.sqrt(variance)


def _draw_torque(rng: np.random.Generator, regime: Regime) -> np.ndarray:
    """Normal torque around 40 Nm with sd 10 Nm, clipped at zero: it is never negative."""
    mean = regime.torque_mean_nm
    return np.maximum(mean + TORQUE_SD_NM * rng.standard_normal(len(mean)), 0.0)


def _derive_speed(rng: np.random.Generator, torque: np.ndarray) -> np.ndarray:
    """Base speed plus a constant-power share, capped at the top speed, plus noise.

    The published rule is "from a power of 2860 W, with normal noise". A constant 2860 W
    cannot give the real file (at 40 Nm that is 683 rpm; the file has 1539), so the curve is
    fitted to it: 1000 rpm + 20,000 rpm·Nm / torque (about 2.1 kW), capped at a top speed of
    2860 rpm, plus normal noise of 50 rpm. This reproduces the file's right skew, its
    speed-torque correlation (-0.87) and its PWF counts.
    """
    knee_nm = SPEED_POWER_RPM_NM / (TOP_SPEED_RPM - SPEED_BASE_RPM)  # top speed below this
    ideal = SPEED_BASE_RPM + SPEED_POWER_RPM_NM / np.maximum(torque, knee_nm)
    noise = np.clip(rng.standard_normal(torque.size), -NOISE_TRUNCATION_SD, NOISE_TRUNCATION_SD)
    return ideal + SPEED_NOISE_RPM * noise


def _wear_tools(
    rng: np.random.Generator, type_codes: np.ndarray, regime: Regime
) -> tuple[np.ndarray, np.ndarray]:
    """Tool wear at the start of each process, and TWF on the rows where a tool fails.

    Each process adds its type's wear (5/3/2 min for H/M/L); the tool is replaced at a wear
    drawn between 200 and 240 min, and a share of the replacements are tool wear failures
    (TWF). A tool's last process is the one that takes it to its life, drawn per tool; the
    next process starts a new tool at 0 min (as in the real file). A tool's life range and
    TWF share are the regime's at the row where the tool starts.
    The loop runs once per tool, about every 85 rows, each step a binary search.
    """
    rows = type_codes.size
    added = np.asarray(WEAR_PER_PROCESS_MIN, dtype=np.int64)[type_codes]
    worn_after = np.cumsum(added)
    max_tools = rows // (TOOL_LIFE_MIN[0] // max(WEAR_PER_PROCESS_MIN)) + 2
    life_draws = rng.random(max_tools)
    fail_draws = rng.random(max_tools)

    starts, failed_rows = [0], []
    for life_draw, fail_draw in zip(life_draws, fail_draws, strict=True):
        start = starts[-1]
        low, high = regime.tool_life_min[start]
        life = int(np.floor(low + life_draw * (high - low + 1)))
        failed = fail_draw < regime.twf_share[start]
        already = worn_after[start - 1] if start else 0
        last = int(np.searchsorted(worn_after, already + life))
        if last >= rows:
            break
        if failed:
            failed_rows.append(last)
        if last + 1 == rows:
            break
        starts.append(last + 1)

    tool = np.zeros(rows, dtype=np.int64)
    tool[starts[1:]] = 1
    tool = np.cumsum(tool)
    worn_before = worn_after - added
    wear = worn_before - worn_before[np.asarray(starts)][tool]
    twf = np.zeros(rows, dtype=bool)
    twf[failed_rows] = True
    return wear, twf


def _name_products(type_codes: np.ndarray, udi: np.ndarray) -> np.ndarray:
    """Type letter and serial number, one serial range per type as in the real file."""
    serials = np.asarray(SERIAL_BASES, dtype=np.int64)[type_codes] + udi - 1
    letters = np.asarray(TYPES)[type_codes]
    return np.strings.add(letters, serials.astype(np.str_)).astype(object)
