"""The shared serving store over a local folder: publish, pointer, fetch, and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.config import ConfigError, load_params
from serving.model_store import load_served_model, read_champion_pointer
from serving.shared_store import (
    PUBLISHED_FILE,
    SharedStoreError,
    check_url,
    fetch_model,
    model_prefix,
    open_shared_store,
    pointer_url,
    publish_model,
    read_published,
    read_shared_pointer,
    shared_store_url,
    storage_options,
    write_shared_pointer,
)
from tests.serving.server import MODEL_NAME, TinyModel, promote, train_tiny_model, write_project


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> TinyModel:
    return train_tiny_model(tmp_path_factory.mktemp("model") / "model", max_iter=5, rows=400)


@pytest.fixture
def published(tiny: TinyModel, tmp_path: Path):
    store, shared = tmp_path / "store", open_shared_store(str(tmp_path / "shared"))
    tag = promote(tiny, store, 3)
    return shared, publish_model(shared, load_served_model(tag, store), store), store


# --- pure helpers ---------------------------------------------------------------------------


def test_urls_and_keys() -> None:
    assert check_url("s3://bucket/serving/") == "s3://bucket/serving"
    assert check_url("file:///srv/shared") == "file:///srv/shared"
    assert model_prefix("s3://b/s", "m", 3) == "s3://b/s/models/m/v3"
    assert pointer_url("/srv/shared/") == "/srv/shared/champion.json"
    options = storage_options("s3://b/s", {"AWS_ENDPOINT_URL": "http://127.0.0.1:5000"})
    assert options["endpoint_url"] == "http://127.0.0.1:5000"
    assert "endpoint_url" not in storage_options("s3://b/s", {})
    assert storage_options("/srv", {"AWS_ENDPOINT_URL": "x"}) == {}


def test_s3_calls_have_bounded_timeouts() -> None:
    """A server that accepts and never answers must not hold a call for minutes."""
    options = storage_options("s3://b/s", {})
    config = options["config_kwargs"]
    shared = open_shared_store("s3://b/s")
    tries = shared.fs.retries * config["retries"]["max_attempts"]
    assert tries * (config["connect_timeout"] + config["read_timeout"]) <= 60, options
    assert shared.fs.config_kwargs["read_timeout"] == config["read_timeout"]


def test_an_unset_or_empty_variable_means_no_shared_store() -> None:
    assert shared_store_url("LIFECYCLE_SHARED_STORE", {}) is None
    assert shared_store_url("LIFECYCLE_SHARED_STORE", {"LIFECYCLE_SHARED_STORE": " "}) is None
    assert shared_store_url("X", {"X": "/srv/s"}) == "/srv/s"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("nosuch://bucket/x", "unknown protocol 'nosuch'"),
        ("relative/folder", "is a relative path"),
        ("s3://", "names no bucket or folder"),
    ],
)
def test_a_bad_url_is_a_one_line_error(url: str, message: str) -> None:
    with pytest.raises(SharedStoreError, match=message) as caught:
        shared_store_url("LIFECYCLE_SHARED_STORE", {"LIFECYCLE_SHARED_STORE": url})
    assert "\n" not in str(caught.value) and "LIFECYCLE_SHARED_STORE" in str(caught.value)


def test_credentials_in_a_url_are_not_repeated_in_errors() -> None:
    with pytest.raises(SharedStoreError) as caught:
        check_url("nosuch://key:secret@bucket/x")
    assert "secret" not in str(caught.value)


def test_config_names_of_variables_are_checked(tmp_path: Path) -> None:
    write_project(tmp_path, {"shared_store_env": "not a name"})
    with pytest.raises(ConfigError, match="shared_store_env"):
        load_params(tmp_path / "params.yaml")


# --- IO over a local folder ---------------------------------------------------------------


def test_publish_writes_the_files_then_the_record(published, tiny: TinyModel) -> None:
    shared, record, _ = published
    folder = Path(shared.root) / "models" / MODEL_NAME / "v3"
    assert sorted(path.name for path in folder.iterdir()) == sorted([*record.files, PUBLISHED_FILE])
    assert record.content_sha256 == tiny.content_sha256 and record.threshold == 0.5
    assert read_published(shared, MODEL_NAME, 3) == record
    assert read_published(shared, MODEL_NAME, 4) is None


def test_publishing_again_is_a_no_op_but_other_content_is_refused(published) -> None:
    shared, record, store = published
    served = load_served_model(record.tag, store)
    assert publish_model(shared, served, store) == record
    other = served.__class__(**{**served.__dict__, "content_sha256": "0" * 64})
    with pytest.raises(SharedStoreError, match="never overwritten"):
        publish_model(shared, other, store)


def test_the_pointer_round_trips_and_needs_a_published_model(published) -> None:
    shared, record, _ = published
    assert read_shared_pointer(shared) is None
    pointer = write_shared_pointer(shared, record)
    assert read_shared_pointer(shared) == pointer and pointer["tag"] == f"{MODEL_NAME}:v3"
    assert not [p for p in Path(shared.root).iterdir() if p.name.endswith(".tmp")]
    with pytest.raises(SharedStoreError, match="not published"):
        write_shared_pointer(shared, {**pointer, "tag": f"{MODEL_NAME}:v9", "version": "v9"})
    assert read_shared_pointer(shared)["tag"] == f"{MODEL_NAME}:v3"


def test_a_damaged_pointer_is_an_error(published) -> None:
    shared, _, _ = published
    (Path(shared.root) / "champion.json").write_text(json.dumps({"tag": "x"}))
    with pytest.raises(SharedStoreError, match="missing"):
        read_shared_pointer(shared)


def test_fetch_brings_the_model_into_another_store(published, tmp_path: Path) -> None:
    shared, record, _ = published
    other = tmp_path / "replica-store"
    assert fetch_model(shared, record.tag, other) == record.tag
    served = load_served_model(record.tag, other)  # trusted types checked here
    assert served.content_sha256 == record.content_sha256 and served.threshold == 0.5
    assert read_champion_pointer(other) is None  # fetching does not point anything at it
    assert not list((other / "tmp").iterdir())


def test_fetch_refuses_a_file_whose_hash_changed(published, tmp_path: Path) -> None:
    shared, record, _ = published
    model_file = Path(shared.root) / "models" / MODEL_NAME / "v3" / "model.skops"
    model_file.write_bytes(model_file.read_bytes() + b"x")
    with pytest.raises(SharedStoreError, match="does not match its hash"):
        fetch_model(shared, record.tag, tmp_path / "replica-store")


def test_a_half_published_model_cannot_be_fetched(published, tmp_path: Path) -> None:
    shared, record, _ = published
    (Path(shared.root) / "models" / MODEL_NAME / "v3" / PUBLISHED_FILE).unlink()
    with pytest.raises(SharedStoreError, match="not published"):
        fetch_model(shared, record.tag, tmp_path / "replica-store")


def test_an_unreachable_store_is_one_clear_error(published, tmp_path: Path) -> None:
    _, record, _ = published
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    broken = open_shared_store(str(blocker / "shared"))
    with pytest.raises(SharedStoreError, match="unreachable"):
        write_shared_pointer(broken, record)
