"""Config of the monitor stage and `lifecycle watch`: window, labels, quality, retrain policy."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, model_validator

from core.config.base import Frozen, require_shares
from core.config.model import GateMetric


class WindowConfig(Frozen):
    """The current window: the newest rows of the prediction log."""

    rows: int = Field(5000, ge=1)  # the newest logged predictions, at most this many
    min_rows: int = Field(1000, ge=1)  # fewer and the monitor decides nothing


class LabelsConfig(Frozen):
    """Ground truth that arrives after the predictions, joined to them by the contract's id."""

    directory: Path = Path("data/labels")  # batch-*.parquet or *.csv: id, label, ...
    required: bool = True  # retrain only once the window has labelled rows
    min_rows: int = Field(200, ge=1)  # labelled rows needed to judge quality or retrain


class QualityConfig(Frozen):
    """Where labels exist: the champion's quality on the window falling below a floor."""

    thresholds: dict[GateMetric, float] = {"roc_auc": 0.85, "average_precision": 0.5}  # noqa: RUF012

    @model_validator(mode="after")
    def _thresholds_are_shares(self) -> QualityConfig:
        require_shares(self.thresholds, "monitor.quality.thresholds")
        return self


class RetrainPolicyConfig(Frozen):
    """What `watch` needs beyond one window's verdict: persistence and rate limits."""

    windows_in_a_row: int = Field(1, ge=1)  # consecutive drifted windows before a retrain
    cooldown_minutes: float = Field(30.0, ge=0)  # after a retrain, no other one for this long
    max_retrains_per_day: int = Field(4, ge=0)  # 0: never retrain automatically


class CalibrationConfig(Frozen):
    """Drift thresholds measured on the champion's training period (at train time).

    Contiguous blocks of the training data, in time order, are scored against the rest with a
    fixed method per column kind; a threshold per column is read from those null scores at
    `false_alarm_rate` per window, shared over the columns. Off: Evidently's defaults.
    """

    enabled: bool = True  # false: Evidently's default tests and thresholds, as before
    false_alarm_rate: float = Field(0.05, gt=0, lt=1)  # per window, over all columns together
    block_sizes: int = Field(3, ge=1)  # sizes from window.min_rows to window.rows (geometric)
    step_share: float = Field(0.25, gt=0, le=1)  # blocks slide by this share of their size
    min_blocks: int = Field(3, ge=2)  # a size needs this many disjoint blocks in the period
    max_blocks: int = Field(40, ge=2)  # blocks scored per size at most (evenly spread)
    min_block_rows: int = Field(200, ge=10)  # smallest fallback block for a short period


class WatchConfig(Frozen):
    """`lifecycle watch`: the monitor on an interval, and a retrain when the policy says so."""

    interval_s: float = Field(300.0, gt=0)
    log: Path = Path("reports/watch/iterations.jsonl")  # one JSON line per iteration
    lock: Path = Path(".lifecycle/watch.lock")  # one watch at a time


class MonitorConfig(Frozen):
    drift_share: float = Field(0.15, gt=0, le=1)  # dataset drift: this share of columns drift
    num_threshold: float | None = Field(None, gt=0)  # null: Evidently's default per test
    cat_threshold: float | None = Field(None, gt=0)
    per_column_threshold: dict[str, float] = {}  # by contract column name  # noqa: RUF012
    prediction_drift_threshold: float | None = Field(None, gt=0)
    sample_rows: int = Field(100_000, ge=100)
    window: WindowConfig = WindowConfig()
    labels: LabelsConfig = LabelsConfig()
    quality: QualityConfig = QualityConfig()
    policy: RetrainPolicyConfig = RetrainPolicyConfig()
    calibration: CalibrationConfig = CalibrationConfig()  # per_column_threshold wins where set
    watch: WatchConfig = WatchConfig()

    @model_validator(mode="after")
    def _window_can_be_reached(self) -> MonitorConfig:
        if self.window.min_rows > self.window.rows:
            raise ValueError(
                f"monitor.window.min_rows ({self.window.min_rows}) exceeds monitor.window.rows "
                f"({self.window.rows}): no window could ever be judged"
            )
        return self
