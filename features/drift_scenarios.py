"""Named drift scenarios of the synthetic process: a known change, as a step or a ramp.

Each scenario is a `Regime` (`features.ai4i_process`) that differs from the published one in
the fields it changes; `regime_per_row` moves from the published regime to a scenario's over
the first rows (its onset), and `scenario_changes` reads off what a scenario does to recorded
rows, so it can be replayed on them (`features.replay`). `features.synthetic` describes what
each scenario does to the process (`generate_process_data`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Final

import numpy as np

from core.config import Scenario
from features.ai4i_process import (
    AIR,
    OSF_LIMITS_MIN_NM,
    PROCESS,
    PROCESS_GAP_K,
    TOOL_LIFE_MIN,
    TORQUE,
    TORQUE_MEAN_NM,
    TYPE,
    TYPES,
    Regime,
)

# --- the scenarios' magnitudes (see features.synthetic.generate_process_data) -------------

SENSOR_OFFSET_K = 3.0
PRODUCT_MIX_SHARES: Final = (0.3, 0.3, 0.4)
TOOL_LIFE_EXTENSION_MIN = 60
LATE_CHANGE_TWF_SHARE = 0.75
FAILURE_TORQUE_SHIFT_NM = -5.0
FAILURE_GAP_SHIFT_K = 1.0
FAILURE_HDF_GAP_K = 9.8
FAILURE_HDF_SPEED_RPM = 1550.0
FAILURE_OSF_FACTOR = 0.8

PUBLISHED = Regime()
REGIMES: Final[dict[str, Regime]] = {
    "none": PUBLISHED,
    "sensor_offset": dataclasses.replace(PUBLISHED, sensor_offset_k=SENSOR_OFFSET_K),
    "product_mix": dataclasses.replace(PUBLISHED, type_shares=PRODUCT_MIX_SHARES),
    "tool_change_policy": dataclasses.replace(
        PUBLISHED,
        tool_life_min=(
            TOOL_LIFE_MIN[0] + TOOL_LIFE_EXTENSION_MIN,
            TOOL_LIFE_MIN[1] + TOOL_LIFE_EXTENSION_MIN,
        ),
        twf_share=LATE_CHANGE_TWF_SHARE,
    ),
    "failure_mechanism": dataclasses.replace(
        PUBLISHED,
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
    """A scenario as changes of recorded columns, read off its regime (`REGIMES`)."""

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
    target = REGIMES[scenario]
    shifts: list[ColumnShift] = []
    mix: CategoryMix | None = None
    not_in_rows: list[str] = []
    for field in dataclasses.fields(Regime):
        start, end = getattr(PUBLISHED, field.name), getattr(target, field.name)
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


def regime_per_row(scenario: Scenario, rows: int, ramp_rows: int) -> Regime:
    """The regime in force at each row: the published one moving to `scenario`'s.

    Row i holds the share w = min(i / ramp_rows, 1) of the change (w = 1 on every row when
    `ramp_rows` is 0): each field is (1 - w) x published + w x scenario, exact at both ends.
    Fields the scenario leaves alone are broadcast views, so they cost no memory.
    """
    target = REGIMES[scenario]
    weight = ramp_weights(rows, ramp_rows)
    fields: dict[str, np.ndarray] = {}
    for field in dataclasses.fields(Regime):
        start = np.asarray(getattr(PUBLISHED, field.name), dtype=float)
        end = np.asarray(getattr(target, field.name), dtype=float)
        if np.array_equal(start, end):
            fields[field.name] = np.broadcast_to(start, (rows, *start.shape))
        else:
            share = weight.reshape(rows, *([1] * start.ndim))
            fields[field.name] = (1 - share) * start + share * end
    return Regime(**fields)


def ramp_weights(rows: int, ramp_rows: int) -> np.ndarray:
    """The share of a scenario's change at each row: min(i / ramp_rows, 1); all 1 without a ramp."""
    return np.minimum(np.arange(rows) / ramp_rows, 1.0) if ramp_rows else np.ones(rows)
