# ruff: noqa: F811  (the fixtures are imported from test_registry, then requested by name)
"""The rollout's `candidate` alias against a real MLflow store (SQLite): set it, promote it,
abort it; every move in the alias history and on the version tags."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipelines.edges import registry
from pipelines.edges.registry import RegistryError
from tests.pipelines.edges.test_registry import (  # noqa: F401  (fixtures)
    Backend,
    _history,
    _in_tmp_path,
    _register_both,
    name,
    sqlite,
    sqlite_backend,
)


def _tags(backend: Backend, name: str, version: int) -> dict[str, str]:
    import mlflow

    return dict(mlflow.MlflowClient(backend.uri).get_model_version(name, str(version)).tags)


def test_a_candidate_is_set_then_promoted(sqlite: Backend, name: str, tmp_path: Path) -> None:
    history = tmp_path / "alias_history.jsonl"
    v1, v2 = _register_both(sqlite, name)
    registry.promote(name, v1, {"gate": "first"}, history=history)

    move = registry.set_candidate(name, v2, {"rollout": "r-1"}, history=history)
    assert move.action == "candidate" and move.changed and move.candidate_version == v2
    assert registry.candidate(name).version == v2 and registry.champion(name).version == v1
    assert registry.previous(name) is None
    assert "starts a rollout beside the champion v1" in move.describe()
    assert _tags(sqlite, name, v2)["candidate_since"] == move.time
    again = registry.set_candidate(name, v2, {"rollout": "r-1"}, history=history)
    assert not again.changed

    promoted = registry.promote_candidate(name, v2, {"verdict": "promote"}, history=history)
    assert promoted.changed and (promoted.from_version, promoted.to_version) == (v1, v2)
    assert registry.champion(name).version == v2 and registry.previous(name).version == v1
    assert registry.candidate(name) is None
    assert json.loads(_tags(sqlite, name, v2)["promotion_evidence"])["candidate_version"] == v2
    assert not registry.promote_candidate(name, v2, {}, history=history).changed  # done
    lines = _history(history)
    assert [line["action"] for line in lines] == ["promote", "candidate", "promote"]
    assert lines[1]["candidate_version"] == v2 and lines[1]["evidence"] == {"rollout": "r-1"}
    assert lines[2]["evidence"] == {"verdict": "promote"} and lines[2]["previous_version"] == v1


def test_an_interrupted_promotion_completes_when_run_again(
    sqlite: Backend, name: str, tmp_path: Path
) -> None:
    import mlflow

    history = tmp_path / "alias_history.jsonl"
    v1, v2 = _register_both(sqlite, name)
    registry.promote(name, v1, {}, history=history)
    registry.set_candidate(name, v2, {}, history=history)
    client = mlflow.MlflowClient(sqlite.uri)  # the promotion stopped after its second call
    client.set_registered_model_alias(name, "previous", str(v1))
    client.set_registered_model_alias(name, "champion", str(v2))

    move = registry.promote_candidate(name, v2, {"verdict": "promote"}, history=history)
    assert move.changed and (move.from_version, move.previous_version) == (v1, v1)
    assert registry.candidate(name) is None and registry.champion(name).version == v2
    assert _history(history)[-1]["action"] == "promote"


def test_an_aborted_candidate_leaves_the_champion(
    sqlite: Backend, name: str, tmp_path: Path
) -> None:
    history = tmp_path / "alias_history.jsonl"
    v1, v2 = _register_both(sqlite, name)
    registry.promote(name, v1, {}, history=history)
    registry.set_candidate(name, v2, {}, history=history)

    move = registry.abort_candidate(name, v2, {"reason": "breached error_rate"}, history=history)
    assert move.action == "abort" and move.changed and move.to_version == v1
    assert "candidate v2 removed; champion v1" in move.describe()
    assert registry.candidate(name) is None and registry.champion(name).version == v1
    tags = _tags(sqlite, name, v2)
    assert tags["aborted_at"] == move.time
    assert json.loads(tags["abort_evidence"])["evidence"] == {"reason": "breached error_rate"}
    assert "champion_since" not in tags
    assert not registry.abort_candidate(name, v2, {}, history=history).changed
    assert [line["action"] for line in _history(history)] == ["promote", "candidate", "abort"]


def test_candidate_moves_that_cannot_be_made_are_clear_errors(
    sqlite: Backend, name: str, tmp_path: Path
) -> None:
    history = tmp_path / "alias_history.jsonl"
    v1, v2 = _register_both(sqlite, name)
    with pytest.raises(RegistryError, match="has no champion to roll v2 out beside"):
        registry.set_candidate(name, v2, {}, history=history)
    registry.promote(name, v1, {}, history=history)
    with pytest.raises(RegistryError, match="cannot be its own candidate"):
        registry.set_candidate(name, v1, {}, history=history)
    with pytest.raises(RegistryError, match="v2 is not the candidate"):
        registry.promote_candidate(name, v2, {}, history=history)
    assert registry.champion(name).version == v1 and registry.candidate(name) is None
