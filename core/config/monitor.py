"""Config of the monitor stage and `lifecycle watch`: window, labels, quality, estimation,
retrain policy."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

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
    # A window's metric is noisy (1,000 rows hold about 30 failures): a floor is breached only
    # when the whole bootstrap interval at this confidence lies below it. null: the point value.
    confidence: float | None = Field(0.95, gt=0, lt=1)
    resamples: int = Field(500, ge=100, le=100_000)
    # A floor is never above what the champion's own training period falls to by chance on a
    # window of the judged size (blocks of its out-of-fold predictions, at this false-alarm
    # rate per window): one above it retrains on unchanged traffic. false: the floors as set.
    own_bounds: bool = True
    false_alarm_rate: float = Field(0.05, gt=0, lt=1)

    @model_validator(mode="after")
    def _thresholds_are_shares(self) -> QualityConfig:
        require_shares(self.thresholds, "monitor.quality.thresholds")
        return self


class DataQualityConfig(Frozen):
    """Checks of the window's feature values against the contract and the training profile.

    A failed check is a data problem (a broken sensor, a pipeline bug), not drift: it alerts
    whatever the model's quality says.
    """

    # a column fails when its null share exceeds its share in training by more than this
    null_allowance: float = Field(0.05, ge=0, le=1)
    # a column fails when more than this share of its values break the contract's range,
    # categories or dtype (the service refuses them, so any share above 0 means another path)
    max_outside_share: float = Field(0.01, ge=0, lt=1)
    # a numeric column is stuck when one value repeats for more rows than this many times the
    # longest run of one value in training ...
    stuck_factor: float = Field(3.0, ge=1)
    # ... and for at least this many rows (so a continuous sensor repeating twice is no alarm)
    stuck_min_rows: int = Field(50, ge=2)
    # true: a category never seen in training fails; false: it is reported, and passes
    new_category_fails: bool = True


class EstimationConfig(Frozen):
    """Performance estimation before labels (CBPE), and the calibration check it rests on.

    The check runs at training time on the out-of-fold probabilities of the training split;
    the seed of the cross-fitting and of the noise intervals is `data.seed`.
    """

    enabled: bool = True  # estimate each window's quality from the champion's probabilities
    calibration_bins: int = Field(10, ge=2, le=100)  # quantile bins of the calibration error
    # calibrated enough to trust as is: ECE at most this share of the positive rate
    max_calibration_error: float = Field(0.1, gt=0, le=1)
    calibration_folds: int = Field(5, ge=2, le=20)  # cross-fitting of the calibrated error
    resamples: int = Field(1000, ge=100, le=100_000)  # label draws for the noise interval
    confidence: float = Field(0.95, gt=0.5, lt=1)  # of the noise interval


class VerdictConfig(Frozen):
    """How one window's signals combine: keep, drift (reported, no retrain), alert, retrain.

    A quality breach (realized on labels, or estimated before them) retrains; a data-quality
    failure alerts (retraining on broken readings would learn the fault); drift alone is
    reported with its evidence unless configured otherwise.
    """

    # drift is material when the drifted features carry at least this share of the champion's
    # permutation importance (or the served probabilities drift)
    drift_importance: float = Field(0.25, gt=0, le=1)
    on_material_drift: Literal["report", "alert", "retrain"] = "report"
    on_data_quality: Literal["alert", "retrain"] = "alert"
    on_estimated_breach: Literal["alert", "retrain"] = "retrain"
    # also a breach: a metric (ROC AUC, average precision) this far below the champion's own
    # level on its training period (out-of-fold), beyond the window's noise interval. null (the
    # default): the floors only. Set it only where quality is steady from period to period: on
    # the default process the out-of-fold average precision of 1,000-row blocks of one
    # training period ranges from 0.65 to 0.99 (tests/monitoring/test_assessment.py)
    max_drop: float | None = Field(None, gt=0, lt=1)


class RetrainPolicyConfig(Frozen):
    """What `watch` needs beyond one window's verdict: persistence and rate limits."""

    windows_in_a_row: int = Field(1, ge=1)  # consecutive retrain verdicts before a retrain
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
    data_quality: DataQualityConfig = DataQualityConfig()
    estimation: EstimationConfig = EstimationConfig()
    verdict: VerdictConfig = VerdictConfig()
    policy: RetrainPolicyConfig = RetrainPolicyConfig()
    calibration: CalibrationConfig = CalibrationConfig()  # per_column_threshold wins where set
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
