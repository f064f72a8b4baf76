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


# --- the shared store: the pointer's rollout block and a replica following it ----------


def test_a_rollout_through_the_shared_store_and_a_replica_following_it(
    tmp_path: Path, sqlite: Backend, name: str, tiny, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Deploy's release publishes the candidate and writes the shared pointer with the
    rollout block; a replica (its own empty store, following the shared pointer) fetches
    both models and serves the champion with the candidate beside it; the watch step's
    promotion moves the shared pointer, and the replica follows."""
    from core.clock import format_time, utc_now
    from serving.champion_source import ChampionSource
    from serving.shared_store import (
        SharedStoreError,
        open_shared_store,
        publish_model,
        read_published,
        read_shared_pointer,
        write_shared_pointer,
    )

    project = Project(tmp_path, sqlite, name, tiny, ROLLOUT)
    shared_root = tmp_path / "shared"
    shared = open_shared_store(str(shared_root))
    v1 = load_served_model(f"{name}:v1", project.store)
    publish_model(shared, v1, project.store)
    write_shared_pointer(shared, v1)
    v2 = load_served_model(f"{name}:v2", project.store)

    # a block naming an unpublished candidate is refused, and the pointer stays as it was
    from core.records.rollout import RolloutSlot
    from serving.model_store import slot_model

    unpublished = RolloutSlot(id="r", kind="shadow", model=slot_model(v2), started_at=STARTED)
    with pytest.raises(SharedStoreError, match=rf"{name}:v2 is not published in .*; publish it"):
        write_shared_pointer(shared, v1, unpublished)
    assert "rollout" not in read_shared_pointer(shared)

    started = format_time(utc_now())
    config = RolloutConfig(**{**ROLLOUT, "strategy": "shadow"})
    slot = release(
        name, project.store, shared, config, 2, v2, {"gate": "ok"}, started,
        project.history, project.rollout_history,
    )  # fmt: skip
    assert read_published(shared, name, 2) is not None
    pointer = read_shared_pointer(shared)
    assert pointer["tag"] == f"{name}:v1" and pointer_rollout(pointer) == slot
    assert pointer_rollout(project.pointer()) == slot  # the local pointer says the same

    replica = ChampionSource(tmp_path / "replica-store", str(shared_root), None)
    seen = replica.find()
    assert (seen.tag, seen.source, seen.rollout, seen.rollout_error) == (
        f"{name}:v1", "shared", slot, None,
    )  # fmt: skip
    for version in (1, 2):  # both fetched into the replica's own store, and loadable
        load_served_model(f"{name}:v{version}", tmp_path / "replica-store")

    # the watch step judges the rows both scored and promotes: the shared pointer moves
    monkeypatch.setenv("LIFECYCLE_SHARED_STORE", str(shared_root))
    assert project.ctx().shared is not None
    project.write_rows("v1", "v2")
    step = project.control()
    assert step.verdict.outcome == "promote", step.verdict.reasons
    pointer = read_shared_pointer(shared)
    assert pointer["tag"] == f"{name}:v2" and pointer_rollout(pointer) is None
    seen = replica.find(current=f"{name}:v1", current_other=f"{name}:v2")
    assert (seen.tag, seen.rollout) == (f"{name}:v2", None)
