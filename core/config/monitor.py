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


class WatchConfig(Frozen):
    """`lifecycle watch`: the monitor on an interval, and a retrain when the policy says so."""

    interval_s: float = Field(300.0, gt=0)
    log: Path = Path("reports/watch/iterations.jsonl")  # one JSON line per iteration
    lock: Path = Path(".lifecycle/watch.lock")  # one watch at a time


class WorkspaceConfig(Frozen):
    """The local Evidently workspace: each judged window's snapshot, for `evidently ui`."""

    enabled: bool = True  # false: keep only the latest window's drift.html
    # One project per registered model in this folder; it accumulates across runs, so it is
    # not a DVC out (DVC would delete it before each run). `evidently ui --workspace` it.
    directory: Path = Path("reports/monitor/workspace")
    # true: each window's snapshot keeps the whole drift report (~0.24 MB a window, not
    # ~16 kB); its drift.html is in the monitor's MLflow run either way
    reports: bool = False


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
    watch: WatchConfig = WatchConfig()
    workspace: WorkspaceConfig = WorkspaceConfig()

    @model_validator(mode="after")
    def _window_can_be_reached(self) -> MonitorConfig:
        if self.window.min_rows > self.window.rows:
            raise ValueError(
                f"monitor.window.min_rows ({self.window.min_rows}) exceeds monitor.window.rows "
                f"({self.window.rows}): no window could ever be judged"
            )
        return self
