"""What the monitor needs to judge a champion, measured on its own data when it was trained.

The train stage writes it beside the model (`artifacts/model/monitor_profile.json`); the
serving store keeps it with the model, so it travels with the champion; the monitor reads
the champion's copy. Each part is built by the library module named beside it.
"""

from __future__ import annotations

from core.records import Record
from core.records.data_quality import DataProfile
from core.records.drift_calibration import DriftCalibration
from core.records.estimation import ProbabilityCalibration
from core.records.importance import FeatureImportance
from core.records.quality_bounds import QualityBounds

WRITER = "the train stage (dvc repro train)"


class ReferenceQuality(Record):
    """The champion's quality on its reference data (out-of-fold, training period): the level
    a window's estimated and realized quality are read against."""

    rows: int
    positives: int
    roc_auc: float | None
    average_precision: float | None


class MonitorProfile(Record):
    drift: DriftCalibration  # monitoring.calibration: per-feature thresholds
    probabilities: ProbabilityCalibration  # models.probability_calibration: for estimation
    importance: FeatureImportance  # models.importance: permutation importance on the holdout
    data: DataProfile  # monitoring.data_quality: the training split's columns
    reference: ReferenceQuality
    quality: QualityBounds | None = None  # monitoring.quality_bounds; None: built before them
