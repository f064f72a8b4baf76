"""Config of the data: the contract, the ingest sources and the validate stage's limits."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from core.config.base import Frozen
from core.config.retry import RetryConfig

# --- data -----------------------------------------------------------------------------


class DataConfig(Frozen):
    contract: Path = Path("features/contracts/milling.yaml")
    seed: int = 42


# --- ingest ---------------------------------------------------------------------------

Scenario = Literal[
    "none", "sensor_offset", "product_mix", "tool_change_policy", "failure_mechanism"
]


class SyntheticSourceConfig(Frozen):
    """The synthetic milling process (features/synthetic.py): size, seed, drift and its onset."""

    rows: int = Field(20_000, gt=0, le=50_000_000)
    seed: int = 2020
    scenario: Scenario = "none"
    # Rows over which the scenario's change grows from none (first row) to full; 0: a step.
    ramp_rows: int = Field(0, ge=0, le=50_000_000)
    # Amplitude in kelvin of a daily cycle of the air temperature (the process follows it);
    # 0: none, as in the real AI4I file, whose spectrum shows no daily peak.
    daily_cycle_k: float = Field(0.0, ge=0.0, le=10.0)
    # Rows per day of that cycle: a process adds 2.6 min of tool wear on average, so a
    # machine running around the clock makes about 550 a day.
    rows_per_day: int = Field(550, ge=2, le=50_000_000)


class FileSourceConfig(Frozen):
    path: Path | None = None


_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class _UrlOrEnv(Frozen):
    """`url` in params.yaml, or `url_env`: the name of an environment variable holding the
    URL with its credentials (so secrets stay out of params.yaml and git). Not both."""

    url: str | None = None
    url_env: str | None = None

    @model_validator(mode="after")
    def _url_or_its_variable(self) -> _UrlOrEnv:
        if self.url and self.url_env:
            raise ValueError(
                "set url or url_env, not both (url_env names an environment variable "
                "holding the URL with its credentials)"
            )
        if self.url_env is not None and not _ENV_NAME.match(self.url_env):
            raise ValueError(
                f"url_env must be an environment variable's name (letters, digits, _), "
                f"got {self.url_env!r}"
            )
        return self


class HttpSourceConfig(_UrlOrEnv):
    format: Literal["auto", "csv", "parquet"] = "auto"
    connect_timeout_s: float = Field(10.0, gt=0)
    read_timeout_s: float = Field(60.0, gt=0)
    retry: RetryConfig = RetryConfig()


class SqlSourceConfig(_UrlOrEnv):
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
            "http": [("url (or url_env)", self.http.url or self.http.url_env)],
            "sql": [
                ("url (or url_env)", self.sql.url or self.sql.url_env),
                ("query", self.sql.query),
            ],
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
