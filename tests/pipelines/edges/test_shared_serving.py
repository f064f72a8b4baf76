"""Deploy's shared-store helpers: the store from the environment, and finishing a promotion."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipelines.edges.registry import ChampionInfo
from pipelines.edges.shared_serving import repair_shared_pointer, shared_store
from serving.shared_store import SharedStoreError, read_published, read_shared_pointer
from tests.serving.server import MODEL_NAME, promote, train_tiny_model


def _champion(version: int, sha256: str) -> ChampionInfo:
    return ChampionInfo(MODEL_NAME, "champion", version, f"run-{version}", sha256, "s", {})


def test_no_variable_means_no_shared_store(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LIFECYCLE_SHARED_STORE", raising=False)
    assert shared_store("LIFECYCLE_SHARED_STORE") is None


def test_a_bad_url_fails_the_stage_with_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIFECYCLE_SHARED_STORE", "ftps3://bucket")
    with pytest.raises(SharedStoreError, match="unknown protocol 'ftps3'"):
        shared_store("LIFECYCLE_SHARED_STORE")


def test_a_rerun_publishes_the_champion_and_points_the_replicas_at_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = train_tiny_model(tmp_path / "model", max_iter=5, rows=400)
    store = tmp_path / "store"
    promote(model, store, 2)  # the local pointer moved; the run stopped before the shared one
    monkeypatch.setenv("LIFECYCLE_SHARED_STORE", str(tmp_path / "shared"))
    shared = shared_store("LIFECYCLE_SHARED_STORE")

    repair_shared_pointer(_champion(2, model.content_sha256), shared, store)

    assert read_published(shared, MODEL_NAME, 2) is not None
    pointer = read_shared_pointer(shared)
    assert pointer["tag"] == f"{MODEL_NAME}:v2"
    repair_shared_pointer(_champion(2, model.content_sha256), shared, store)  # a no-op now
    assert read_shared_pointer(shared) == pointer
    repair_shared_pointer(_champion(7, model.content_sha256), shared, store)  # not stored here
    assert read_shared_pointer(shared) == pointer
