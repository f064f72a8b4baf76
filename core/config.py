"""Typed, frozen configuration parsed once from `params.yaml`.

Every block of `params.yaml` has a model here; an unknown or mistyped key fails at once
with the key's dotted path (and a close match, when there is one).
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

DEFAULT_PARAMS = Path("params.yaml")


class ConfigError(ValueError):
    """A configuration file that cannot be used; the message names the offending key."""


class Frozen(BaseModel):
    """Base for every config block: immutable, and unknown keys are errors."""

    model_config = ConfigDict(frozen=True, extra="forbid")


# --- data -----------------------------------------------------------------------------


class DataConfig(Frozen):
    contract: Path = Path("features/contracts/milling.yaml")
    seed: int = 42


# --- ingest ---------------------------------------------------------------------------

Scenario = Literal[
    "none", "sensor_offset", "product_mix", "tool_change_policy", "failure_mechanism"
]


class SyntheticSourceConfig(Frozen):
    rows: int = Field(20_000, gt=0, le=50_000_000)
    seed: int = 2020
    scenario: Scenario = "none"


class FileSourceConfig(Frozen):
    path: Path | None = None


class RetryConfig(Frozen):
    """Exponential backoff with jitter for transient failures."""

    attempts: int = Field(5, ge=1, le=100)
    backoff_initial_s: float = Field(0.5, ge=0)
    backoff_max_s: float = Field(30.0, ge=0)
    jitter_s: float = Field(0.5, ge=0)  # a random 0..jitter_s added after the cap

    @model_validator(mode="after")
    def _backoff_is_ordered(self) -> RetryConfig:
        if self.backoff_initial_s > self.backoff_max_s:
            raise ValueError("backoff_initial_s must not exceed backoff_max_s")
        return self


class HttpSourceConfig(Frozen):
    url: str | None = None
    format: Literal["auto", "csv", "parquet"] = "auto"
    connect_timeout_s: float = Field(10.0, gt=0)
    read_timeout_s: float = Field(60.0, gt=0)
    retry: RetryConfig = RetryConfig()


class SqlSourceConfig(Frozen):
    url: str | None = None
    query: str | None = None


SourceName = Literal["synthetic", "file", "http", "sql"]


class FeedbackConfig(Frozen):
    """Labelled production batches that the `watch` loop adds to the training data."""

    directory: Path = Path("data/feedback")  # batch-*.parquet, appended to the source's rows


class IngestConfig(Frozen):
    source: SourceName = "synthetic"
    synthetic: SyntheticSourceConfig = SyntheticSourceConfig()
    file: FileSourceConfig = FileSourceConfig()
    http: HttpSourceConfig = HttpSourceConfig()
    sql: SqlSourceConfig = SqlSourceConfig()
    feedback: FeedbackConfig = FeedbackConfig()

    @model_validator(mode="after")
    def _chosen_source_is_complete(self) -> IngestConfig:
        missing = {
            "file": [("path", self.file.path)],
            "http": [("url", self.http.url)],
            "sql": [("url", self.sql.url), ("query", self.sql.query)],
        }.get(self.source, [])
        empty = [f"ingest.{self.source}.{key}" for key, value in missing if not value]
        if empty:
            raise ValueError(f"source '{self.source}' needs {', '.join(empty)} to be set")
        return self


# --- validate -------------------------------------------------------------------------


class QuarantineConfig(Frozen):
    enabled: bool = False
    max_share: float = Field(0.05, ge=0, le=1)


class ValidateConfig(Frozen):
    min_rows: int = Field(1000, ge=1)
    max_rows: int = Field(5_000_000, ge=1)
    label_rate: tuple[float, float] = (0.005, 0.25)
    unique_ids: bool = True
    quarantine: QuarantineConfig = QuarantineConfig()

    @model_validator(mode="after")
    def _ranges_are_ordered(self) -> ValidateConfig:
        if self.min_rows > self.max_rows:
            raise ValueError("validate.min_rows must not exceed validate.max_rows")
        low, high = self.label_rate
        if not 0 <= low <= high <= 1:
            raise ValueError("validate.label_rate must be [low, high] with 0 <= low <= high <= 1")
        return self


# --- train ----------------------------------------------------------------------------

ClassWeight = Literal["balanced"] | None


class HistGradientBoostingConfig(Frozen):
    learning_rate: float = Field(0.1, gt=0, le=1)
    max_iter: int = Field(200, ge=1)
    max_leaf_nodes: int = Field(31, ge=2)
    class_weight: ClassWeight = "balanced"


class RandomForestConfig(Frozen):
    n_estimators: int = Field(200, ge=1)
    max_depth: int | None = Field(None, ge=1)
    min_samples_leaf: int = Field(2, ge=1)
    class_weight: ClassWeight = "balanced"


class LogisticRegressionConfig(Frozen):
    C: float = Field(1.0, gt=0)
    max_iter: int = Field(1000, ge=1)
    class_weight: ClassWeight = "balanced"


ModelName = Literal["logistic_regression", "random_forest", "hist_gradient_boosting"]
FAMILY_CONFIGS: dict[str, type[Frozen]] = {
    "hist_gradient_boosting": HistGradientBoostingConfig,
    "random_forest": RandomForestConfig,
    "logistic_regression": LogisticRegressionConfig,
}
SearchValue = bool | int | float | str | None


class SearchConfig(Frozen):
    """Optional randomized search with cross-validation; `n_iter` is the budget."""

    enabled: bool = False
    n_iter: int = Field(8, ge=1, le=1000)
    cv_folds: int = Field(3, ge=2, le=20)
    space: dict[ModelName, dict[str, list[SearchValue]]] = {}

    @model_validator(mode="after")
    def _space_names_real_hyperparameters(self) -> SearchConfig:
        for family, space in self.space.items():
            known = set(FAMILY_CONFIGS[family].model_fields)
            unknown = sorted(set(space) - known)
            if unknown:
                raise ValueError(
                    f"train.search.space.{family}: unknown hyperparameter(s) {unknown}; "
                    f"known: {sorted(known)}"
                )
            empty = sorted(name for name, values in space.items() if not values)
            if empty:
                raise ValueError(f"train.search.space.{family}: no values for {empty}")
        return self


class TrainConfig(Frozen):
    holdout_size: float = Field(0.2, gt=0, lt=1)
    cv_folds: int = Field(5, ge=2, le=20)  # out-of-fold predictions: CV metrics, threshold
    model: ModelName = "hist_gradient_boosting"
    hist_gradient_boosting: HistGradientBoostingConfig = HistGradientBoostingConfig()
    random_forest: RandomForestConfig = RandomForestConfig()
    logistic_regression: LogisticRegressionConfig = LogisticRegressionConfig()
    search: SearchConfig = SearchConfig()


# --- evaluate, deploy, monitor --------------------------------------------------------

RankingMetric = Literal["roc_auc", "average_precision"]
GateMetric = Literal["roc_auc", "average_precision", "f1", "precision", "recall"]


class OperatingPointConfig(Frozen):
    """How the label threshold is chosen on validation (out-of-fold) predictions."""

    goal: Literal["recall", "precision", "f1"] = "recall"
    at_least: float = Field(0.9, gt=0, le=1)  # for recall/precision; unused for f1


class EvaluateConfig(Frozen):
    operating_point: OperatingPointConfig = OperatingPointConfig()


class BootstrapConfig(Frozen):
    resamples: int = Field(1000, ge=100, le=100_000)
    confidence: float = Field(0.95, gt=0.5, lt=1)


class InfraValidationConfig(Frozen):
    """Before the champion alias moves, the candidate must load the way the service loads it
    and answer a replay of holdout rows, one request at a time, within this budget."""

    replay_rows: int = Field(200, ge=10, le=100_000)
    p99_budget_ms: float = Field(50.0, gt=0)


class RecentWindowConfig(Frozen):
    """When feedback exists: the challenger must beat the champion on the newest batch.

    Judged on the holdout rows that came from the newest feedback batch (rows neither model
    trained on); too few rows or positives there and the challenger is not promoted.
    """

    min_rows: int = Field(100, ge=1)
    min_positives: int = Field(5, ge=1)
    margin: float = Field(0.0, ge=0, le=1)  # challenger minus champion must exceed this


class DeployConfig(Frozen):
    """The champion/challenger gate, the model registry and the serving store."""

    registered_model: str = Field("milling-failure", min_length=1)
    primary_metric: RankingMetric = "average_precision"
    thresholds: dict[GateMetric, float] = {"roc_auc": 0.85, "average_precision": 0.5}
    tolerance: float = Field(0.01, ge=0, le=1)
    bootstrap: BootstrapConfig = BootstrapConfig()
    infra_validation: InfraValidationConfig = InfraValidationConfig()
    recent_window: RecentWindowConfig = RecentWindowConfig()

    @model_validator(mode="after")
    def _thresholds_are_shares(self) -> DeployConfig:
        outside = sorted(k for k, v in self.thresholds.items() if not 0 <= v <= 1)
        if outside:
            raise ValueError(f"deploy.thresholds {outside} must lie between 0 and 1")
        return self


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

    thresholds: dict[GateMetric, float] = {"roc_auc": 0.85, "average_precision": 0.5}

    @model_validator(mode="after")
    def _thresholds_are_shares(self) -> QualityConfig:
        outside = sorted(k for k, v in self.thresholds.items() if not 0 <= v <= 1)
        if outside:
            raise ValueError(f"monitor.quality.thresholds {outside} must lie between 0 and 1")
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


class MonitorConfig(Frozen):
    drift_share: float = Field(0.15, gt=0, le=1)  # dataset drift: this share of columns drift
    num_threshold: float | None = Field(None, gt=0)  # null: Evidently's default per test
    cat_threshold: float | None = Field(None, gt=0)
    per_column_threshold: dict[str, float] = {}  # by contract column name
    prediction_drift_threshold: float | None = Field(None, gt=0)
    sample_rows: int = Field(100_000, ge=100)
    window: WindowConfig = WindowConfig()
    labels: LabelsConfig = LabelsConfig()
    quality: QualityConfig = QualityConfig()
    policy: RetrainPolicyConfig = RetrainPolicyConfig()
    watch: WatchConfig = WatchConfig()

    @model_validator(mode="after")
    def _window_can_be_reached(self) -> MonitorConfig:
        if self.window.min_rows > self.window.rows:
            raise ValueError(
                f"monitor.window.min_rows ({self.window.min_rows}) exceeds monitor.window.rows "
                f"({self.window.rows}): no window could ever be judged"
            )
        return self


class PredictionLogConfig(Frozen):
    """Every served request is appended here; the monitor stage reads it as its window."""

    directory: Path = Path("data/predictions")
    queue_size: int = Field(100_000, ge=100)  # bounded memory: beyond it, records are counted lost
    flush_interval_s: float = Field(1.0, gt=0, le=60)


class BatchingConfig(Frozen):
    """Adaptive batching of single-row requests into one model call."""

    enabled: bool = True
    max_batch_size: int = Field(64, ge=1, le=10_000)
    max_latency_ms: int = Field(20, ge=1, le=60_000)


class ServingConfig(Frozen):
    """The BentoML service (`lifecycle serve`)."""

    host: str = "127.0.0.1"  # loopback unless you mean it
    port: int = Field(3000, ge=1, le=65535)
    workers: int = Field(2, ge=1, le=64)  # processes; each loads the model (~270 MiB here)
    threads: int = Field(4, ge=1, le=256)  # per worker, for the synchronous APIs
    numeric_threads: int = Field(1, ge=1, le=64)  # OpenMP/BLAS threads per worker
    # with several workers, every Nth answer of a worker closes its connection (the client
    # reconnects and may land on another worker); 0: never
    recycle_connection_every: int = Field(200, ge=0)
    api_key_env: str = "LIFECYCLE_API_KEY"  # set this variable to require an X-API-Key header
    max_body_bytes: int = Field(1_048_576, ge=1024)
    max_batch_rows: int = Field(1000, ge=1)
    reload_poll_s: float = Field(2.0, gt=0, le=3600)  # how often the service checks the champion
    store: Path = Path(".bentoml")  # the project's own BentoML home: models load only from here
    batching: BatchingConfig = BatchingConfig()
    prediction_log: PredictionLogConfig = PredictionLogConfig()


class TrackingConfig(Frozen):
    """MLflow: where runs go. The tracking URI comes from MLFLOW_TRACKING_URI, not from here."""

    experiment: str = Field("lifecycle", min_length=1)


# --- retry: every stage's body, under `pipelines.edges.runtime.run_stage` ---------------------

STAGES = ("ingest", "validate", "train", "evaluate", "deploy", "monitor")  # dvc.yaml's order
# The error classes a stage may be retried on: each means "the outside world failed, try
# again". Anything else (a data, contract or config error) fails the stage at once.
TransientErrorName = Literal[
    "TransientSourceError",  # pipelines.edges.sources: network, timeout, 5xx, a locked database
    "RegistryUnavailableError",  # pipelines.edges.registry: the tracking server for the registry
    "TrackingUnavailableError",  # pipelines.edges.tracking: the tracking server for runs
    "ConnectionError",  # the built-in one (refused, reset, broken pipe)
    "TimeoutError",
]


class RetryOverride(Frozen):
    """A stage's own retry settings; a key left out (null) keeps `retry.default`'s value."""

    attempts: int | None = Field(None, ge=1, le=100)
    backoff_initial_s: float | None = Field(None, ge=0)
    backoff_max_s: float | None = Field(None, ge=0)
    jitter_s: float | None = Field(None, ge=0)


class StageRetryConfig(Frozen):
    """Retry a whole stage when it fails with a transient error; every attempt is recorded."""

    default: RetryConfig = RetryConfig(
        attempts=3, backoff_initial_s=1.0, backoff_max_s=30.0, jitter_s=0.5
    )
    stages: dict[str, RetryOverride] = {}  # by stage name, e.g. {"train": {"attempts": 5}}
    transient: tuple[TransientErrorName, ...] = (
        "TransientSourceError",
        "RegistryUnavailableError",
        "TrackingUnavailableError",
    )

    @model_validator(mode="after")
    def _stages_are_known_and_consistent(self) -> StageRetryConfig:
        unknown = sorted(set(self.stages) - set(STAGES))
        if unknown:
            raise ValueError(
                f"retry.stages: unknown stage(s) {unknown}; known: {', '.join(STAGES)}"
            )
        for stage in self.stages:
            self.for_stage(stage)  # the merged settings must be valid too
        return self

    def for_stage(self, stage: str) -> RetryConfig:
        """The default settings with the stage's overrides applied."""
        override = self.stages.get(stage)
        if override is None:
            return self.default
        merged = {**self.default.model_dump(), **override.model_dump(exclude_none=True)}
        try:
            return RetryConfig.model_validate(merged)
        except ValidationError as exc:
            reason = str(exc.errors()[0]["msg"]).removeprefix("Value error, ")
            raise ValueError(f"retry.stages.{stage}: {reason}") from None


class Params(Frozen):
    """The whole of `params.yaml`."""

    data: DataConfig = DataConfig()
    ingest: IngestConfig = IngestConfig()
    validate_: ValidateConfig = Field(ValidateConfig(), alias="validate")
    train: TrainConfig = TrainConfig()
    evaluate: EvaluateConfig = EvaluateConfig()
    deploy: DeployConfig = DeployConfig()
    monitor: MonitorConfig = MonitorConfig()
    serving: ServingConfig = ServingConfig()
    tracking: TrackingConfig = TrackingConfig()
    retry: StageRetryConfig = StageRetryConfig()

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


def parse_params(raw: Any, source: str = "params.yaml") -> Params:
    """Validate a mapping into `Params`, turning pydantic's errors into one readable message."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(
            f"{source}: expected a mapping of blocks at the top level, got {type(raw).__name__}"
        )
    try:
        return Params.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_describe_errors(exc, raw, source)) from None


def load_params(path: Path | str = DEFAULT_PARAMS) -> Params:
    """Read and validate `params.yaml`."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file (run from the project root)") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    return parse_params(raw, str(path))


def _describe_errors(exc: ValidationError, raw: dict[str, Any], source: str) -> str:
    lines = [f"{source}: {exc.error_count()} problem(s)"]
    for error in exc.errors():
        loc = [str(part) for part in error["loc"]]
        key = ".".join(loc) or "(top level)"
        if error["type"] == "extra_forbidden":
            hint = _close_match(raw, error["loc"])
            lines.append(f"  - {key}: unknown key{hint}")
        else:
            value = error.get("input")
            shown = f" (got {value!r})" if not isinstance(value, (dict, list)) else ""
            lines.append(f"  - {key}: {error['msg']}{shown}")
    return "\n".join(lines)


def _close_match(raw: dict[str, Any], loc: tuple[Any, ...]) -> str:
    """Suggest the known key closest to an unknown one, walking the model tree."""
    model: type[BaseModel] = Params
    for part in loc[:-1]:
        field = next((f for name, f in model.model_fields.items() if part in (name, f.alias)), None)
        annotation = getattr(field, "annotation", None)
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return ""
        model = annotation
    known = [f.alias or name for name, f in model.model_fields.items()]
    match = difflib.get_close_matches(str(loc[-1]), known, n=1)
    return f" (did you mean '{match[0]}'?)" if match else ""
