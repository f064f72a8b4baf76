"""What the deploy stage decided (`reports/deploy/decision.json`) and which model it left as
champion (`reports/deploy/champion.json`, `{}` before the first promotion).

The monitor stage, `lifecycle watch` and `lifecycle status` read them, each through
`read_champion` / `read_deploy_decision`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field

from core.paths import CHAMPION, DEPLOY_DECISION
from core.records import Record, read_record

WRITER = "the deploy stage (dvc repro deploy)"


class ChampionRecord(Record):
    """The registry version that serves, as the deploy stage last recorded it."""

    version: int = Field(ge=1)
    content_sha256: str | None = None
    mlflow_run_id: str | None = None


class _ChampionFile(Record):
    """The file's shape: a `ChampionRecord`, or `{}` when nothing was promoted yet."""

    version: int | None = Field(None, ge=1)
    content_sha256: str | None = None
    mlflow_run_id: str | None = None


class GateCheck(Record):
    name: str
    value: float | None
    bound: float
    passed: bool


class Challenger(Record):
    family: str
    content_sha256: str
    mlflow_run_id: str | None
    holdout: dict[str, float | int | None]


class DeployDecision(Record):
    """The gate's verdict on the challenger, with every piece of evidence it used."""

    promote: bool
    reasons: list[str]
    registered_model: str
    registered_version: int | None = None
    version_created: bool | None = None
    bento: str | None = None
    challenger: Challenger
    champion_before: ChampionRecord | None = None
    champion_after: ChampionRecord | None = None
    champion_holdout: dict[str, Any] | None = None
    checks: tuple[GateCheck, ...] = ()
    comparison: dict[str, Any] | None = None
    comparison_rows: dict[str, Any] | None = None
    recent_window: dict[str, Any] | None = None
    infra_check: dict[str, Any] | None = None


def read_champion(path: Path = CHAMPION) -> ChampionRecord | None:
    """The recorded champion; None before the first promotion. Raises `RecordError`."""
    found = read_record(path, _ChampionFile, writer=WRITER)
    if found.version is None:
        return None
    return ChampionRecord(**found.model_dump())


def read_deploy_decision(path: Path = DEPLOY_DECISION) -> DeployDecision:
    return read_record(path, DeployDecision, writer=WRITER)
