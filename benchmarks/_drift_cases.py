"""The real-file cases of the drift benchmark: folds of the AI4I 2020 series and perturbations.

The real file is one series in time order (10,000 rows). Each fold holds out a stretch of
consecutive rows (circular) and trains its champion on the other rows, read through the
`file` source as a user's file is; the held-out stretch gives production windows of
consecutive rows that the champion never saw. Perturbations change those real rows the way
a plant or its sensors change; each is labelled harmful or benign once, on all held-out rows
of all folds pooled, by the champions' realized average precision against the unperturbed
rows (harmful: it falls by more than `deploy.tolerance`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

AIR, PROCESS = "Air temperature [K]", "Process temperature [K]"
SPEED, TORQUE, WEAR, TYPE = "Rotational speed [rpm]", "Torque [Nm]", "Tool wear [min]", "Type"
LABEL = "Machine failure"

Perturb = Callable[[pd.DataFrame, np.random.Generator], pd.DataFrame]


@dataclass(frozen=True)
class Fold:
    """One champion's training rows and the consecutive rows held out from it."""

    index: int
    train: pd.DataFrame  # in time order
    held_out: pd.DataFrame  # consecutive rows, in time order


def make_folds(frame: pd.DataFrame, held_out_rows: int, folds: int) -> list[Fold]:
    """`folds` circular stretches of `held_out_rows` consecutive rows, evenly spaced."""
    rows = len(frame)
    step = rows // folds
    made = []
    for k in range(folds):
        positions = (np.arange(held_out_rows) + k * step) % rows
        mask = np.zeros(rows, dtype=bool)
        mask[positions] = True
        held = frame.iloc[positions].reset_index(drop=True)  # time order, wrapping at the end
        made.append(Fold(k, frame[~mask].reset_index(drop=True), held))
    return made


def windows_of(frame: pd.DataFrame, rows: int) -> list[pd.DataFrame]:
    """Disjoint windows of `rows` consecutive rows."""
    return [
        frame.iloc[start : start + rows].reset_index(drop=True)
        for start in range(0, len(frame) - rows + 1, rows)
    ]


# --- perturbations of real rows: (frame, rng) -> a changed copy ------------------------------


def _offset(column: str, delta: float) -> Perturb:
    def apply(frame: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
        out = frame.copy()
        out[column] = out[column] + delta
        return out

    return apply


def _both_temperatures(delta: float) -> Perturb:
    def apply(frame: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
        out = frame.copy()
        out[AIR] = out[AIR] + delta
        out[PROCESS] = out[PROCESS] + delta
        return out

    return apply


def _gain(column: str, factor: float) -> Perturb:
    def apply(frame: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
        out = frame.copy()
        out[column] = out[column] * factor
        return out

    return apply


def _noise(column: str, sd: float) -> Perturb:
    def apply(frame: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
        out = frame.copy()
        out[column] = out[column] + rng.normal(0.0, sd, len(out))
        return out

    return apply


def _stuck(column: str) -> Perturb:
    """The sensor repeats its first reading of the window from a third of the way in."""

    def apply(frame: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
        out = frame.copy()
        start = len(out) // 3
        out.loc[start:, column] = out[column].iloc[start]
        return out

    return apply


def _nulls(column: str, share: float) -> Perturb:
    def apply(frame: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
        out = frame.copy()
        out[column] = out[column].astype(float)
        out.loc[rng.random(len(out)) < share, column] = np.nan
        return out

    return apply


def _resample_towards(column: str, value: str, weight: float) -> Perturb:
    """Resample rows (with replacement) so rows with `column == value` weigh `weight` times
    more: a change of the product mix, each row still a real process with its real label."""

    def apply(frame: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
        weights = np.where(frame[column].astype(str) == value, weight, 1.0)
        picked = np.sort(rng.choice(len(frame), size=len(frame), p=weights / weights.sum()))
        return frame.iloc[picked].reset_index(drop=True)

    return apply


def _resample_high(column: str, quantile: float, weight: float) -> Perturb:
    """Resample rows so those above the column's `quantile` weigh `weight` times more."""

    def apply(frame: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
        cut = frame[column].quantile(quantile)
        weights = np.where(frame[column] > cut, weight, 1.0)
        picked = np.sort(rng.choice(len(frame), size=len(frame), p=weights / weights.sum()))
        return frame.iloc[picked].reset_index(drop=True)

    return apply


def _new_failures(column: str, quantile: float, rate: float) -> Perturb:
    """Concept drift: a new failure mechanism above the column's `quantile`; inputs unchanged."""

    def apply(frame: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
        out = frame.copy()
        hit = (out[column] > out[column].quantile(quantile)) & (rng.random(len(out)) < rate)
        out.loc[hit, LABEL] = 1
        return out

    return apply


def _missed_failures(share: float) -> Perturb:
    """Concept drift: a share of failures no longer happen (a maintenance change)."""

    def apply(frame: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
        out = frame.copy()
        hit = (out[LABEL] == 1) & (rng.random(len(out)) < share)
        out.loc[hit, LABEL] = 0
        return out

    return apply


# name -> (kind, perturbation). Kinds: "covariate" (inputs change, P(label | true inputs) does
# not), "sensor" (readings change, the process does not), "concept" (labels change, inputs
# do not), "data" (broken readings).
PERTURBATIONS: dict[str, tuple[str, Perturb]] = {
    "both_temperatures_+2K": ("sensor", _both_temperatures(2.0)),
    "process_temperature_+1.5K": ("sensor", _offset(PROCESS, 1.5)),
    "air_temperature_noise_1K": ("sensor", _noise(AIR, 1.0)),
    "torque_gain_x1.1": ("sensor", _gain(TORQUE, 1.1)),
    "speed_noise_100rpm": ("sensor", _noise(SPEED, 100.0)),
    "tool_wear_+20min": ("sensor", _offset(WEAR, 20.0)),
    "product_mix_towards_H": ("covariate", _resample_towards(TYPE, "H", 4.0)),
    "more_worn_tools": ("covariate", _resample_high(WEAR, 0.5, 3.0)),
    "heavier_cuts": ("covariate", _resample_high(TORQUE, 0.5, 3.0)),
    "torque_stuck": ("data", _stuck(TORQUE)),
    "air_temperature_nulls_20%": ("data", _nulls(AIR, 0.2)),
    "new_failure_mode_high_speed": ("concept", _new_failures(SPEED, 0.8, 0.1)),
    "fewer_failures_half": ("concept", _missed_failures(0.5)),
}
