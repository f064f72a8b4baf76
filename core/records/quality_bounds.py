"""How low the champion's own quality goes by chance, measured on its training period.

The train stage builds it (`monitoring.quality_bounds.calibrate_quality`) from contiguous
blocks of the out-of-fold predictions, in time order; the monitor reads it to keep a quality
floor from sitting where the champion's own unchanged data falls by chance.
"""

from __future__ import annotations

from pydantic import Field

from core.records import Record
from core.records.drift_calibration import interpolate_by_rows


class MetricBound(Record):
    """One metric at one block size: the blocks' values and the lower bound read from them."""

    block_rows: int = Field(ge=1)
    blocks: int = Field(ge=1)  # sliding blocks holding both classes
    disjoint_blocks: int = Field(ge=1)
    mean: float
    lowest: float  # the lowest block value seen
    logit_mean: float  # the tail model: a normal on the logit of the block values
    logit_sd: float
    bound: float  # a window of this many rows falls below it by chance at the stated rate


class QualityBounds(Record):
    """Per metric and block size, the lower bound at `false_alarm_rate` per window (shared by
    the metrics); `calibrated` False says why there is none."""

    calibrated: bool
    reason: str
    false_alarm_rate: float
    tail_model: str
    metrics: dict[str, tuple[MetricBound, ...]] = {}  # noqa: RUF012 (frozen record)

    def bound_at(self, metric: str, rows: int) -> float | None:
        """The bound for `rows` judged rows: linear in log rows between the block sizes, the
        nearest size's bound outside them; None when `metric` was not calibrated."""
        sizes = self.metrics.get(metric) if self.calibrated else None
        if not sizes:
            return None
        return interpolate_by_rows([(s.block_rows, s.bound) for s in sizes], rows, log_values=False)
