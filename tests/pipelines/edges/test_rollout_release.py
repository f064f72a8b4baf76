# ruff: noqa: F811  (the registry fixtures are imported from test_registry, then requested)
"""A deploy while a rollout is in progress: the rollout it replaces ends on the record.

A real SQLite registry and serving store (`tests.pipelines.edges.test_rollout_control`'s
`Project`, with a third version); `release` is the deploy stage's call.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.config.rollout import RolloutConfig
from core.records.rollout import read_verdicts
from pipelines.edges import registry
from pipelines.edges.rollout_release import release
from serving.model_store import export_model, load_served_model, pointer_rollout
from tests.pipelines.edges.test_registry import (
    Backend,
    _in_tmp_path,  # noqa: F401
    name,  # noqa: F401
    sqlite,  # noqa: F401
    sqlite_backend,  # noqa: F401
)
from tests.pipelines.edges.test_rollout_control import ROLLOUT, Project, tiny  # noqa: F401

STARTED = "2026-12-01T12:00:00.000Z"
LATER = "2026-12-01T12:05:00.000Z"


@pytest.fixture
def project(tmp_path: Path, sqlite: Backend, name: str, tiny) -> Project:
    """v1 champion, v2 the candidate of a shadow rollout, v3 registered and exported."""
    project = Project(tmp_path, sqlite, name, tiny, ROLLOUT)
    third, _ = registry.register(name, sqlite.first.model_uri, sqlite.first.run_id, "c" * 64)
    assert int(third.version) == 3
    export_model(tiny[0].directory, name, 3, "run-3", tiny[0].content_sha256, 0.5, project.store)
    deploy(project, 2, STARTED)
    return project


def deploy(project: Project, version: int, now: str, strategy: str = "shadow"):
    config = RolloutConfig(**{**ROLLOUT, "strategy": strategy})
    served = load_served_model(f"{project.name}:v{version}", project.store)
    return release(
        project.name,
        project.store,
        None,
        config,
        version,
        served,
        {"gate": "ok"},
        now,
        project.history,
        project.rollout_history,
    )


def alias_moves(project: Project) -> list[dict]:
    return [json.loads(line) for line in project.history.read_text().splitlines()]


def test_a_new_candidate_ends_the_rollout_in_progress_with_an_abort(project: Project) -> None:
    old = pointer_rollout(project.pointer())
    new = deploy(project, 3, LATER)

    assert new.kind == "shadow" and new.model.tag == f"{project.name}:v3" and new.id != old.id
    assert pointer_rollout(project.pointer()) == new
    assert project.pointer()["tag"] == f"{project.name}:v1"
    assert registry.candidate(project.name).version == 3
    assert registry.champion(project.name).version == 1
    [verdict] = read_verdicts(project.rollout_history)
    assert (verdict.rollout_id, verdict.outcome, verdict.other_version) == (old.id, "abort", 2)
    assert verdict.reasons == [
        "replaced by candidate v3: a new deploy ended this shadow before its verdict"
    ]
    assert (verdict.rows, verdict.guards, verdict.elapsed_s) == (0, [], 300.0)
    moves = alias_moves(project)
    assert [m["action"] for m in moves] == ["promote", "candidate", "abort", "candidate"]
    assert moves[2]["candidate_version"] == 2
    assert moves[2]["evidence"]["rollout_id"] == old.id
    assert moves[2]["evidence"]["reasons"] == verdict.reasons


def test_an_immediate_deploy_ends_the_rollout_in_progress_too(project: Project) -> None:
    old = pointer_rollout(project.pointer())
    assert deploy(project, 3, LATER, strategy="immediate") is None

    assert registry.champion(project.name).version == 3
    assert registry.candidate(project.name) is None
    assert project.pointer()["tag"] == f"{project.name}:v3"
    assert pointer_rollout(project.pointer()) is None
    [verdict] = read_verdicts(project.rollout_history)
    assert (verdict.rollout_id, verdict.outcome) == (old.id, "abort")
    assert verdict.reasons[0].startswith("replaced by champion v3: ")
    assert [m["action"] for m in alias_moves(project)] == [
        "promote", "candidate", "abort", "promote",
    ]  # fmt: skip


def test_deploying_the_candidate_or_the_champion_again_keeps_the_rollout(
    project: Project,
) -> None:
    old = pointer_rollout(project.pointer())
    assert deploy(project, 2, LATER) == old  # the same candidate: its rollout and clock stay
    assert deploy(project, 1, LATER) is None  # the champion again: the rollout goes on
    assert pointer_rollout(project.pointer()) == old
    assert registry.candidate(project.name).version == 2
    assert read_verdicts(project.rollout_history) == []
    assert [m["action"] for m in alias_moves(project)] == ["promote", "candidate"]
