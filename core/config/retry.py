"""Retry settings: backoff for one call, and the retry of whole stages on transient errors."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, ValidationError, model_validator

from core.config.base import Frozen


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
    stages: dict[str, RetryOverride] = {}  # by stage name, e.g. {"train": {"attempts": 5}}  # noqa: RUF012
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
