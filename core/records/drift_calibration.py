"""The drift thresholds calibrated on a champion's own training period, for the monitor.

The train stage builds it (`monitoring.calibration.calibrate_drift`) and stores it with the
model; the monitor stage reads it back and hands it to `monitoring.drift.detect_drift`, so
Evidently judges each column with the method and threshold measured on the natural variation
of the data the champion was trained on, instead of its sample-size dependent defaults.
"""

from __future__ import annotations

import itertools
import math
from typing import Literal

from pydantic import Field

from core.records import Record

WRITER = "the train stage (dvc repro train)"


class NullScores(Record):
    """The drift scores of one block size: contiguous training blocks against the rest."""

    block_rows: int = Field(ge=1)
    blocks: int = Field(ge=1)  # sliding blocks scored
    disjoint_blocks: int = Field(ge=1)  # how many blocks of this size fit without overlap
    quantiles: dict[str, float]  # "0.5", "0.9", "max" of the scores
    log_mean: float  # the tail model: a normal fitted to the log scores
    log_sd: float
    threshold: float  # drift when a window's score reaches it


class ColumnCalibration(Record):
    """One column's fixed Evidently method and its threshold per calibrated block size."""

    kind: Literal["numerical", "categorical"]
    method: str  # Evidently's stattest name: "wasserstein" or "jensenshannon"
    sizes: tuple[NullScores, ...]  # by block size, ascending

    def threshold_at(self, rows: int) -> float:
        """The threshold for a window of `rows` rows: linear in log-log between the block
        sizes, the nearest calibrated size's threshold outside them."""
        points = [(s.block_rows, s.threshold) for s in self.sizes]
        return interpolate_by_rows(points, rows, log_values=True)


def interpolate_by_rows(points: list[tuple[int, float]], rows: int, *, log_values: bool) -> float:
    """The value at `rows` from (block rows, value) points in ascending rows: linear in log
    rows (and in log values with `log_values`) between them, the nearest point's outside."""
    if rows <= points[0][0]:
        return points[0][1]
    for (low, v_low), (high, v_high) in itertools.pairwise(points):
        if rows <= high:
            share = (math.log(rows) - math.log(low)) / (math.log(high) - math.log(low))
            if log_values:
                return math.exp(math.log(v_low) + share * (math.log(v_high) - math.log(v_low)))
            return v_low + share * (v_high - v_low)
    return points[-1][1]


class DriftCalibration(Record):
    """Per-column drift methods and thresholds at a stated per-window false-alarm rate.

    `calibrated` False (training period too short) leaves Evidently's defaults in charge;
    `reason` says how the thresholds were made, or why not.
    """

    calibrated: bool
    reason: str
    false_alarm_rate: float  # per window: the chance that any calibrated column is flagged
    tests: int = Field(ge=0)  # the columns sharing that rate (Bonferroni)
    column_alpha: float  # false_alarm_rate / tests: each column's tail probability
    tail_model: str  # how the threshold is read from the null scores
    training_rows: int = Field(ge=0)
    block_rows: tuple[int, ...]  # the block sizes calibrated
    columns: dict[str, ColumnCalibration]  # by contract feature name
    prediction: ColumnCalibration | None  # the out-of-fold probabilities
