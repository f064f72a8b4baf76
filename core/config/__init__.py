"""Typed, frozen configuration parsed once from `params.yaml`, one module per concern.

Every config type of the project lives here, in the ground: it imports nothing of ours
outside `core`, and every layer imports its config from here. An unknown or mistyped key
fails at once with the key's dotted path (and a close match, when there is one). Import
from `core.config`: every public name is re-exported here.
"""

from core.config.base import (
    ConfigError,
    Frozen,
)
from core.config.data import (
    DataConfig,
    FeedbackConfig,
    FileSourceConfig,
    HttpSourceConfig,
    IngestConfig,
    QuarantineConfig,
    Scenario,
    SourceName,
    SqlSourceConfig,
    SyntheticSourceConfig,
    ValidateConfig,
)
from core.config.model import (
    FAMILY_CONFIGS,
    BootstrapConfig,
    ClassWeight,
    DeployConfig,
    EvaluateConfig,
    GateMetric,
    HistGradientBoostingConfig,
    InfraValidationConfig,
    LogisticRegressionConfig,
    ModelName,
    OperatingPointConfig,
    RandomForestConfig,
    RankingMetric,
    RecentWindowConfig,
    SearchConfig,
    SearchValue,
    TrainConfig,
)
from core.config.monitor import (
    CalibrationConfig,
    LabelsConfig,
    MonitorConfig,
    QualityConfig,
    RetrainPolicyConfig,
    WatchConfig,
    WindowConfig,
)
from core.config.params import (
    DEFAULT_PARAMS,
    Params,
    TrackingConfig,
    load_params,
    parse_params,
)
from core.config.retry import (
    STAGES,
    RetryConfig,
    RetryOverride,
    StageRetryConfig,
    TransientErrorName,
)
from core.config.serving import (
    BatchingConfig,
    PredictionLogConfig,
    ServingConfig,
)

__all__ = [
    "DEFAULT_PARAMS",
    "FAMILY_CONFIGS",
    "STAGES",
    "BatchingConfig",
    "BootstrapConfig",
    "CalibrationConfig",
    "ClassWeight",
    "ConfigError",
    "DataConfig",
    "DeployConfig",
    "EvaluateConfig",
    "FeedbackConfig",
    "FileSourceConfig",
    "Frozen",
    "GateMetric",
    "HistGradientBoostingConfig",
    "HttpSourceConfig",
    "InfraValidationConfig",
    "IngestConfig",
    "LabelsConfig",
    "LogisticRegressionConfig",
    "ModelName",
    "MonitorConfig",
    "OperatingPointConfig",
    "Params",
    "PredictionLogConfig",
    "QualityConfig",
    "QuarantineConfig",
    "RandomForestConfig",
    "RankingMetric",
    "RecentWindowConfig",
    "RetrainPolicyConfig",
    "RetryConfig",
    "RetryOverride",
    "Scenario",
    "SearchConfig",
    "SearchValue",
    "ServingConfig",
    "SourceName",
    "SqlSourceConfig",
    "StageRetryConfig",
    "SyntheticSourceConfig",
    "TrackingConfig",
    "TrainConfig",
    "TransientErrorName",
    "ValidateConfig",
    "WatchConfig",
    "WindowConfig",
    "load_params",
    "parse_params",
]
