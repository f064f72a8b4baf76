"""Synthetic milling-process data following the published generation rules of AI4I 2020.

`generate_process_data` is the project's default data source: deterministic for a given
(rows, seed, scenario), vectorised (a million rows in about a second), and calibrated so a
sample is statistically close to the real AI4I 2020 file, including its time structure:
the temperatures wander slowly over the whole series, so consecutive rows (production
traffic) cover only part of their range, as in the plant. Named scenarios add drift of a
known kind and magnitude, as a step or a gradual onset, for testing monitoring and
retraining. Each published rule, and where the generator had to fill a gap in it (measured
on the real file), is stated beside the code that implements it.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Final

import numpy as np
import pandas as pd
from scipy.signal import lfilter

from core.config import Scenario, SyntheticSourceConfig

logger = logging.getLogger(__name__)

UDI, PRODUCT_ID, TYPE = "UDI", "Product ID", "Type"
AIR, PROCESS = "Air temperature [K]", "Process temperature [K]"
SPEED, TORQUE, WEAR = "Rotational speed [rpm]", "Torque [Nm]", "Tool wear [min]"
FAILURE = "Machine failure"
FAILURE_MODES: Final = ("TWF", "HDF", "PWF", "OSF", "RNF")

# --- the published process, calibrated on the real file -----------------------------------

# Type L/M/H in shares 60/30/10 %; the Product ID is the type letter and a serial number.
TYPES: Final = ("L", "M", "H")
TYPE_SHARES: Final = (0.6, 0.3, 0.1)
WEAR_PER_PROCESS_MIN: Final = (2, 3, 5)  # L, M, H
SERIAL_BASES: Final = (47_180, 14_860, 29_414)  # as in the real file: UDI 1 is M14860

AIR_MEAN_K, AIR_SD_K = 300.0, 2.0
PROCESS_GAP_K, PROCESS_WALK_SD_K = 10.0, 1.0
PROCESS_WALK_AIR_CORRELATION = -0.7
# Time constants (rows), fitted on the real file (see _draw_temperatures): the air walk,
# the smoothing through which the process walk follows it, and the process walk's own part.
AIR_WALK_ROWS = 2500
COUPLING_SMOOTHING_ROWS = 960
PROCESS_WALK_ROWS = 500

TORQUE_MEAN_NM, TORQUE_SD_NM = 40.0, 10.0
SPEED_BASE_RPM = 1000.0  # least squares: residual means within ±4 rpm in every torque decile
SPEED_POWER_RPM_NM = 20_000.0
TOP_SPEED_RPM = 2860.0
SPEED_NOISE_RPM = 50.0
NOISE_TRUNCATION_SD = 4.0  # so speed and temperatures provably stay within the contract

TOOL_LIFE_MIN: Final = (200, 240)
TWF_SHARE = 0.39  # 46 of the real file's 119 tool replacements are failures
HDF_GAP_K, HDF_SPEED_RPM = 8.6, 1380.0
PWF_POWER_W: Final = (3500.0, 9000.0)
OSF_LIMITS_MIN_NM: Final = (11_000.0, 12_000.0, 13_000.0)  # L, M, H
RNF_PROBABILITY = 0.001  # random failures, independent of the inputs

# --- drift scenarios (see generate_process_data) --------------------------------------------

SENSOR_OFFSET_K = 3.0
PRODUCT_MIX_SHARES: Final = (0.3, 0.3, 0.4)
TOOL_LIFE_EXTENSION_MIN = 60
LATE_CHANGE_TWF_SHARE = 0.75
FAILURE_TORQUE_SHIFT_NM = -5.0
FAILURE_GAP_SHIFT_K = 1.0
FAILURE_HDF_GAP_K = 9.8
FAILURE_HDF_SPEED_RPM = 1550.0
FAILURE_OSF_FACTOR = 0.8


@dataclass(frozen=True)
class _Regime:
    """Every parameter a scenario may change; the defaults are the published process.

    `_regime_per_row` turns each field into an array with one value per row (a leading axis
    of `rows`), which is how the generator and the rules read them.
    """

    type_shares: tuple[float, ...] = TYPE_SHARES
    sensor_offset_k: float = 0.0
    process_gap_k: float = PROCESS_GAP_K
    torque_mean_nm: float = TORQUE_MEAN_NM
    tool_life_min: tuple[int, int] = TOOL_LIFE_MIN
    twf_share: float = TWF_SHARE
    hdf_gap_k: float = HDF_GAP_K
    hdf_speed_rpm: float = HDF_SPEED_RPM
    pwf_power_w: tuple[float, float] = PWF_POWER_W
    osf_limits_min_nm: tuple[float, ...] = OSF_LIMITS_MIN_NM


_PUBLISHED = _Regime()
_REGIMES: Final[dict[str, _Regime]] = {
    "none": _PUBLISHED,
    "sensor_offset": dataclasses.replace(_PUBLISHED, sensor_offset_k=SENSOR_OFFSET_K),
    "product_mix": dataclasses.replace(_PUBLISHED, type_shares=PRODUCT_MIX_SHARES),
    "tool_change_policy": dataclasses.replace(
        _PUBLISHED,
        tool_life_min=(
            TOOL_LIFE_MIN[0] + TOOL_LIFE_EXTENSION_MIN,
            TOOL_LIFE_MIN[1] + TOOL_LIFE_EXTENSION_MIN,
        ),
        twf_share=LATE_CHANGE_TWF_SHARE,
    ),
    "failure_mechanism": dataclasses.replace(
        _PUBLISHED,
        torque_mean_nm=TORQUE_MEAN_NM + FAILURE_TORQUE_SHIFT_NM,
        process_gap_k=PROCESS_GAP_K + FAILURE_GAP_SHIFT_K,
        hdf_gap_k=FAILURE_HDF_GAP_K,
        hdf_speed_rpm=FAILURE_HDF_SPEED_RPM,
        osf_limits_min_nm=tuple(limit * FAILURE_OSF_FACTOR for limit in OSF_LIMITS_MIN_NM),
    ),
}


# What each regime field does to the rows a machine records, so a scenario can be replayed
# on recorded rows (`scenario_changes`): an offset or a mean that moves shifts columns by
# the change, new shares re-mix a column's categories. The other fields are the failure
# rules and the tool life: they change outcomes and when tools are replaced, not the values
# a recorded row holds.
_SHIFTED_COLUMNS: Final = {
    "sensor_offset_k": (AIR, PROCESS),
    "process_gap_k": (PROCESS,),  # the process runs hotter above the same air
    "torque_mean_nm": (TORQUE,),
}
_MIXED_COLUMNS: Final = {"type_shares": (TYPE, TYPES)}


@dataclass(frozen=True)
class ColumnShift:
    """Add `amount` to each of `columns` (at full strength of the scenario)."""

    columns: tuple[str, ...]
    amount: float


@dataclass(frozen=True)
class CategoryMix:
    """Draw rows so `column`'s `categories` come in `shares` (at full strength)."""

    column: str
    categories: tuple[str, ...]
    shares: tuple[float, ...]


@dataclass(frozen=True)
class ScenarioChanges:
    """A scenario as changes of recorded columns, read off its regime (`_REGIMES`)."""

    scenario: str
    shifts: tuple[ColumnShift, ...] = ()
    mix: CategoryMix | None = None
    not_in_rows: tuple[str, ...] = ()  # regime fields no recorded column shows

    @property
    def columns(self) -> tuple[str, ...]:
        """Every column the scenario changes, in order, once."""
        names = [c for shift in self.shifts for c in shift.columns]
        names += [self.mix.column] if self.mix else []
        return tuple(dict.fromkeys(names))


def scenario_changes(scenario: Scenario) -> ScenarioChanges:
    """How `scenario` changes the columns of recorded rows: its regime minus the published one.

    ``sensor_offset`` shifts both temperatures by `SENSOR_OFFSET_K`; ``product_mix`` re-mixes
    Type to `PRODUCT_MIX_SHARES`; ``failure_mechanism`` shifts torque by
    `FAILURE_TORQUE_SHIFT_NM` and the process temperature by `FAILURE_GAP_SHIFT_K` (its
    changed failure rules are in `not_in_rows`); ``tool_change_policy`` changes no recorded
    column (when tools are replaced, and the share of tool failures).
    """
    target = _REGIMES[scenario]
    shifts: list[ColumnShift] = []
    mix: CategoryMix | None = None
    not_in_rows: list[str] = []
    for field in dataclasses.fields(_Regime):
        start, end = getattr(_PUBLISHED, field.name), getattr(target, field.name)
        if start == end:
            continue
        if field.name in _SHIFTED_COLUMNS:
            shifts.append(ColumnShift(_SHIFTED_COLUMNS[field.name], end - start))
        elif field.name in _MIXED_COLUMNS:
            column, categories = _MIXED_COLUMNS[field.name]
            mix = CategoryMix(column, categories, tuple(end))
        else:
            not_in_rows.append(field.name)
    return ScenarioChanges(scenario, tuple(shifts), mix, tuple(not_in_rows))


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
    regime = _regime_per_row(config.scenario, rows, config.ramp_rows)
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
    return _flag_rules(inputs, _regime_per_row(scenario, len(inputs), ramp_rows))


def _flag_rules(inputs: pd.DataFrame, regime: _Regime) -> pd.DataFrame:
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


def _regime_per_row(scenario: Scenario, rows: int, ramp_rows: int) -> _Regime:
    """The regime in force at each row: the published one moving to `scenario`'s.

    Row i holds the share w = min(i / ramp_rows, 1) of the change (w = 1 on every row when
    `ramp_rows` is 0): each field is (1 - w) x published + w x scenario, exact at both ends.
    Fields the scenario leaves alone are broadcast views, so they cost no memory.
    """
    target = _REGIMES[scenario]
    weight = ramp_weights(rows, ramp_rows)
    fields: dict[str, np.ndarray] = {}
    for field in dataclasses.fields(_Regime):
        start = np.asarray(getattr(_PUBLISHED, field.name), dtype=float)
        end = np.asarray(getattr(target, field.name), dtype=float)
        if np.array_equal(start, end):
            fields[field.name] = np.broadcast_to(start, (rows, *start.shape))
        else:
            share = weight.reshape(rows, *([1] * start.ndim))
            fields[field.name] = (1 - share) * start + share * end
    return _Regime(**fields)


def ramp_weights(rows: int, ramp_rows: int) -> np.ndarray:
    """The share of a scenario's change at each row: min(i / ramp_rows, 1); all 1 without a ramp."""
    return np.minimum(np.arange(rows) / ramp_rows, 1.0) if ramp_rows else np.ones(rows)


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
    rng: np.random.Generator, regime: _Regime, cycle: np.ndarray | float
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
    smoothed = lfilter([1 - psi], [1.0, -psi], air, zi=[psi * first - (1 - psi) * air[0]])[0]
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
    return lfilter([1.0], [1.0, -phi], steps)


def _smoothing_moments() -> tuple[float, float]:
    """Cov(air walk, smoothed) and Var(smoothed) in the long run (air walk variance 1)."""
    phi, psi = np.exp(-1.0 / AIR_WALK_ROWS), np.exp(-1.0 / COUPLING_SMOOTHING_ROWS)
    covariance = (1 - psi) / (1 - phi * psi)
    variance = (1 - psi) ** 2 * (1 + phi * psi) / ((1 - psi**2) * (1 - phi * psi))
    return float(covariance), float(variance)


def _smoothing_correlation() -> float:
    covariance, variance = _smoothing_moments()
    return covariance / np.sqrt(variance)


def _draw_torque(rng: np.random.Generator, regime: _Regime) -> np.ndarray:
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
    rng: np.random.Generator, type_codes: np.ndarray, regime: _Regime
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
