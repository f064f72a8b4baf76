"""The CLI with a shared serving store: `serve`'s checks and rollback's shared pointer."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from lifecycle.cli import app
from lifecycle.registry_commands import _point_serving_at
from serving.model_store import load_served_model, read_champion_pointer
from serving.shared_store import open_shared_store, publish_model, read_shared_pointer
from tests.serving.server import MODEL_NAME, promote, train_tiny_model, write_project

ENV = "LIFECYCLE_SHARED_STORE"


def test_serve_with_a_bad_shared_store_url_exits_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_project(tmp_path, {"store": "empty-store"})
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(ENV, "nosuch://bucket/serving")

    result = CliRunner().invoke(app, ["serve"])

    assert result.exit_code == 2
    assert "unknown protocol 'nosuch'" in result.output and "Traceback" not in result.output


def test_serve_refuses_a_bad_replica_id(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_project(tmp_path, {"store": "empty-store"})
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(ENV, str(tmp_path / "shared"))
    monkeypatch.setenv("LIFECYCLE_REPLICA_ID", "eu west/1")

    result = CliRunner().invoke(app, ["serve"])

    assert result.exit_code == 2
    assert "LIFECYCLE_REPLICA_ID='eu west/1': a replica id is" in result.output


def test_rollback_moves_the_shared_pointer_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_project(tmp_path, {"store": "store"})
    store, shared_root = tmp_path / "store", tmp_path / "shared"
    model = train_tiny_model(tmp_path / "model", max_iter=5, rows=400)
    shared = open_shared_store(str(shared_root))
    for version in (1, 2):  # what deploy left: both published, v2 the champion
        tag = promote(model, store, version)
        publish_model(shared, load_served_model(tag, store), store)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(ENV, str(shared_root))

    _point_serving_at(MODEL_NAME, 1)

    assert read_champion_pointer(store)["tag"] == f"{MODEL_NAME}:v1"
    assert read_shared_pointer(shared)["tag"] == f"{MODEL_NAME}:v1"
