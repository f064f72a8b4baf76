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


def require_shares(values: dict[str, float], key: str) -> None:
    """Raise naming `key` when any of `values` (metric floors, rates) lies outside [0, 1]."""
    outside = sorted(name for name, value in values.items() if not 0 <= value <= 1)
    if outside:
        raise ValueError(f"{key} {outside} must lie between 0 and 1")
