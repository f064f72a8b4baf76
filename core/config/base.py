"""The base of every config block, and the error a bad `params.yaml` raises."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class ConfigError(ValueError):
    """A configuration file that cannot be used; the message names the offending key."""


class Frozen(BaseModel):
    """Base for every config block: immutable, and unknown keys are errors.

    Mutable defaults (`= {}`) are safe: pydantic copies them. Ruff cannot see this base
    from the other modules, hence their `noqa: RUF012`.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")
