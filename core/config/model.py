"""Config of the model's stages: train (families, search), evaluate and deploy (the gate)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from pydantic import Field, field_validator, model_validator

from core.config.base import ConfigError, Frozen, require_shares
from core.config.rollout import RolloutConfig
from core.names import model_name_problem, slugify

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
    space: dict[ModelName, dict[str, list[SearchValue]]] = {}  # noqa: RUF012

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


class ImportanceConfig(Frozen):
    """Permutation importance of the fitted model on the holdout, stored with the model.

    The monitor weights each feature's drift by its share: drift on a feature the model
    hardly uses costs little.
    """

    enabled: bool = True  # false: every feature gets an equal share, and the record says so
    repeats: int = Field(10, ge=1, le=1000)  # shuffles per feature; the mean and sd come from them


class TrainConfig(Frozen):
    holdout_size: float = Field(0.2, gt=0, lt=1)
    cv_folds: int = Field(5, ge=2, le=20)  # out-of-fold predictions: CV metrics, threshold
    model: ModelName = "hist_gradient_boosting"
    hist_gradient_boosting: HistGradientBoostingConfig = HistGradientBoostingConfig()
    random_forest: RandomForestConfig = RandomForestConfig()
    logistic_regression: LogisticRegressionConfig = LogisticRegressionConfig()
    search: SearchConfig = SearchConfig()
    importance: ImportanceConfig = ImportanceConfig()


# --- evaluate, deploy ------------------------------------------------------------------

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
    """The champion/challenger gate, the model registry and the serving store.

    `registered_model` names the MLflow registered model, its BentoML models
    (`<name>:v3`) and Bentos; unset, it is the data contract's name
    (`registered_model_name`).
    """

    registered_model: str | None = None
    primary_metric: RankingMetric = "average_precision"
    thresholds: dict[GateMetric, float] = {"roc_auc": 0.85, "average_precision": 0.5}  # noqa: RUF012
    tolerance: float = Field(0.01, ge=0, le=1)
    bootstrap: BootstrapConfig = BootstrapConfig()
    infra_validation: InfraValidationConfig = InfraValidationConfig()
    recent_window: RecentWindowConfig = RecentWindowConfig()
    rollout: RolloutConfig = RolloutConfig()

    @field_validator("registered_model")
    @classmethod
    def _names_a_model(cls, value: str | None) -> str | None:
        problem = None if value is None else model_name_problem(value)
        if problem is not None:
            raise ValueError(f"{value!r} cannot name a registered model: {problem}")
        return value

    @model_validator(mode="after")
    def _thresholds_are_shares(self) -> DeployConfig:
        require_shares(self.thresholds, "deploy.thresholds")
        return self


def registered_model_name(configured: str | None, contract_name: str | Callable[[], str]) -> str:
    """The registered model's name: `deploy.registered_model`, else the contract's name as a slug.

    Every reader of the name (deploy, monitor, the `lifecycle` commands) asks here, passing
    `params.deploy.registered_model`: `Breast Cancer` -> `breast-cancer`. `contract_name`
    may be a function that loads the contract, called only when the name is derived (a set
    name needs no contract file). A name that cannot be derived fails in one line.
    """
    if configured is not None:
        return configured
    raw = contract_name() if callable(contract_name) else contract_name
    name = slugify(raw)
    problem = model_name_problem(name) if name else "it holds no ASCII letter or digit"
    if problem is not None:
        raise ConfigError(
            f"the data contract's name {raw!r} cannot name the registered model "
            f"({problem}); rename the contract or set deploy.registered_model in params.yaml"
        )
    return name
