"""Recorded rows replayed as production traffic: their order, their ids, a scenario's changes.

`lifecycle simulate --rows-from` sends rows of the user's own data (the holdout split, the
validated data, any file in the contract's shape) instead of the synthetic process. The
rows go in file order, which is time order, as production sends them (or shuffled); past
the file's last row the replay cycles back to its first. A drift scenario is applied as the
generator defines it (`features.drift_scenarios.scenario_changes`): an offset or a mean shifts
columns, new shares re-mix a column's categories; the outcomes, and so the labels, stay the
rows' own.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import get_args

import numpy as np
import pandas as pd

from core.config import Scenario
from features.contract import DataContract
from features.drift_scenarios import (
    CategoryMix,
    ColumnShift,
    ScenarioChanges,
    ramp_weights,
    scenario_changes,
)
from features.synthetic import draw_categories

NAMES_SHOWN = 12  # columns named in a message, at most


class ReplayError(ValueError):
    """Rows that cannot be replayed as asked; the message is one line, for the user."""


@dataclass(frozen=True)
class ReplayedRows:
    """The rows to send, and what the scenario did to them (for the summary)."""

    frame: pd.DataFrame
    changes: tuple[str, ...] = ()  # e.g. "Torque [Nm] -5", "Type to L 30%, M 30%, H 40%"


def fit_to_contract(frame: pd.DataFrame, contract: DataContract, source: str) -> pd.DataFrame:
    """The rows with every column a request needs, categories and strings as text.

    A request needs every feature, and the row id when simulate cannot number it (an id
    that is not an integer); anything else the file holds (the label, other columns) is
    kept for the labels. ReplayError names the missing columns.
    """
    key = contract.row_id
    needed = list(contract.features)
    if key is not None and contract.by_name[key].dtype != "integer":
        needed.insert(0, key)
    missing = [name for name in needed if name not in frame.columns]
    if missing:
        raise ReplayError(
            f"{source} is not in the shape of the contract '{contract.name}': it has no "
            f"column {_names(missing)}"
        )
    if frame.empty:
        raise ReplayError(f"{source} holds no rows")
    texts = [
        c.name
        for c in contract.columns
        if c.dtype in ("categorical", "string") and c.name in frame.columns
    ]
    return frame.assign(**{name: _as_text(frame[name]) for name in texts})


def replay_rows(
    frame: pd.DataFrame,
    contract: DataContract,
    scenario: Scenario,
    rows: int,
    seed: int,
    shuffle: bool = False,
    ramp_rows: int = 0,
) -> ReplayedRows:
    """`rows` rows of `frame` in file order (or shuffled), cycling, with `scenario` applied.

    The scenario changes the contract's feature columns it names that the rows hold; with
    `ramp_rows` > 0 its change grows from none at the first row to full at row `ramp_rows`,
    as in the generator. A shifted value stays within the contract's range. ReplayError when
    the scenario changes no column the rows hold.
    """
    changes = _applicable(scenario_changes(scenario), frame, contract)
    rng = np.random.default_rng(seed)
    weights = ramp_weights(rows, ramp_rows)
    if changes.mix is None:
        order = _cycle(np.arange(len(frame)), rows, shuffle, rng)
    else:
        order = _mixed_order(frame[changes.mix.column], changes.mix, weights, shuffle, rng)
    replayed = frame.iloc[order].reset_index(drop=True)
    described: list[str] = []
    for shift in changes.shifts:
        replayed = _shifted(replayed, shift, weights, contract)
        described += [f"{name} {shift.amount:+g}" for name in shift.columns]
    if changes.mix is not None:
        shares = ", ".join(
            f"{c} {s:.0%}" for c, s in zip(changes.mix.categories, changes.mix.shares, strict=True)
        )
        described.append(f"{changes.mix.column} to {shares}")
    if described and ramp_rows:
        described[-1] += f" (ramped in over {ramp_rows} rows)"
    return ReplayedRows(replayed, tuple(described))


def number_rows(frame: pd.DataFrame, contract: DataContract, first_id: int) -> pd.DataFrame:
    """The rows with fresh row ids `first_id`, `first_id + 1`, ... when the id is an integer.

    Fresh ids keep replayed rows from colliding with the file's own (training) rows and
    with each other when the replay cycles. An id of another type is kept as the file has
    it, so a replay that would repeat one is refused. Without a row id: unchanged.
    """
    key = contract.row_id
    if key is None:
        return frame
    column = contract.by_name[key]
    if column.dtype != "integer":
        repeated = int(frame[key].duplicated().sum())
        if repeated:
            raise ReplayError(
                f"{repeated} of the {len(frame)} rows would repeat an id of '{key}' (a "
                f"{column.dtype}, which simulate cannot renumber); send fewer rows, without "
                "a scenario that re-mixes them"
            )
        return frame
    last = first_id + len(frame) - 1
    if column.max is not None and last > column.max:
        raise ReplayError(
            f"the ids {first_id}..{last} exceed the contract's max {column.max:g} for "
            f"'{key}'; pass a lower --first-udi or raise the max"
        )
    ids = np.arange(first_id, first_id + len(frame), dtype=np.int64)
    return frame.assign(**{key: ids})


def _applicable(
    changes: ScenarioChanges, frame: pd.DataFrame, contract: DataContract
) -> ScenarioChanges:
    """The scenario's changes of columns the rows hold as features; ReplayError if none."""
    if changes.scenario == "none":
        return changes
    held = {name for name in contract.features if name in frame.columns}
    if not changes.columns:
        usable = [s for s in get_args(Scenario) if scenario_changes(s).columns]
        raise ReplayError(
            f"scenario '{changes.scenario}' changes no recorded column (only the synthetic "
            f"process's {', '.join(changes.not_in_rows)}), so it cannot be replayed on rows; "
            f"use one that does ({', '.join(usable)}) or synthetic rows"
        )
    if not held & set(changes.columns):
        raise ReplayError(
            f"scenario '{changes.scenario}' changes {_names(changes.columns)}, and the "
            f"contract '{contract.name}' has none of them (its columns: "
            f"{_names(contract.column_names)})"
        )
    shifts = []
    for shift in changes.shifts:
        columns = tuple(name for name in shift.columns if name in held)
        if columns:
            shifts.append(ColumnShift(columns, shift.amount))
    mix = changes.mix if changes.mix and changes.mix.column in held else None
    return ScenarioChanges(changes.scenario, tuple(shifts), mix, changes.not_in_rows)


def _cycle(
    positions: np.ndarray, count: int, shuffle: bool, rng: np.random.Generator
) -> np.ndarray:
    """`count` of `positions` in their order (or a fresh shuffle each pass), cycling."""
    passes = math.ceil(count / len(positions))
    laps = [rng.permutation(positions) if shuffle else positions for _ in range(passes)]
    return np.concatenate(laps)[:count]


def _mixed_order(
    values: pd.Series,
    mix: CategoryMix,
    weights: np.ndarray,
    shuffle: bool,
    rng: np.random.Generator,
) -> np.ndarray:
    """Positions whose `mix.column` values come in the mix's shares, each category in order.

    Row i draws its category with shares (1 - w) x the file's own + w x the mix's, w its
    ramp weight (`draw_categories`, as the generator draws product types); each category's
    rows are then taken in file order (or shuffled), cycling. Rows of other values (or
    none) keep their own share.
    """
    present = [c for c in mix.categories if (values == c).any()]
    if not present:
        raise ReplayError(
            f"no row's '{mix.column}' is one of {', '.join(mix.categories)}, the categories "
            "the scenario re-mixes"
        )
    groups = [np.flatnonzero(values.to_numpy() == c) for c in present]
    rest = np.flatnonzero(~values.isin(present).to_numpy())
    own = np.array([len(g) for g in groups] + [len(rest)], dtype=float) / len(values)
    wanted = np.array([mix.shares[mix.categories.index(c)] for c in present])
    wanted = np.append(wanted / wanted.sum() * (1 - own[-1]), own[-1])
    shares = (1 - weights[:, None]) * own + weights[:, None] * wanted
    codes = draw_categories(rng, shares)
    order = np.empty(len(weights), dtype=np.int64)
    for code, group in enumerate([*groups, rest]):
        chosen = codes == code
        if chosen.any():
            order[chosen] = _cycle(group, int(chosen.sum()), shuffle, rng)
    return order


def _shifted(
    frame: pd.DataFrame, shift: ColumnShift, weights: np.ndarray, contract: DataContract
) -> pd.DataFrame:
    """The frame with `shift` added to its columns (times each row's ramp weight), in range."""
    moved = {}
    for name in shift.columns:
        column = contract.by_name[name]
        values = frame[name].astype(float) + shift.amount * weights
        values = values.clip(lower=column.min, upper=column.max)
        moved[name] = values.round() if column.dtype == "integer" else values
    return frame.assign(**moved)


def _as_text(values: pd.Series) -> pd.Series:
    """Values as text, nulls kept; whole numbers read as floats (a CSV column with a gap)
    without their '.0'."""
    if pd.api.types.is_float_dtype(values) and (values.dropna() % 1 == 0).all():
        values = values.astype("Int64")
    return values.astype(object).where(values.isna(), values.astype(str))


def _names(names: list[str] | tuple[str, ...]) -> str:
    shown = ", ".join(f"'{n}'" for n in names[:NAMES_SHOWN])
    more = len(names) - NAMES_SHOWN
    return f"{shown} and {more} more" if more > 0 else shown
