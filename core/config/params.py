"""The whole of `params.yaml`: `Params`, parsed once, with one readable message for its errors."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from core.config.base import ConfigError, Frozen
from core.config.data import DataConfig, IngestConfig, ValidateConfig
from core.config.model import DeployConfig, EvaluateConfig, TrainConfig
from core.config.monitor import MonitorConfig
from core.config.retry import StageRetryConfig
from core.config.serving import ServingConfig

DEFAULT_PARAMS = Path("params.yaml")


class TrackingConfig(Frozen):
    """MLflow: where runs go. The tracking URI comes from MLFLOW_TRACKING_URI, not from here."""

    experiment: str = Field("lifecycle", min_length=1)


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
