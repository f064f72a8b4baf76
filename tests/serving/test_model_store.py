"""The BentoML model store edge: export, load with trusted types, and the champion pointer."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from core.io import read_json, write_json
from core.model_files import META_FILE, ModelFileError
from serving.model_store import (
    ModelStoreError,
    ServedModel,
    export_model,
    load_served_model,
    read_champion_pointer,
    use_store,
    write_champion_pointer,
)
from tests.serving.server import TinyModel, request_rows, train_tiny_model

NAME = "milling-failure"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> TinyModel:
    return train_tiny_model(tmp_path_factory.mktemp("tiny") / "model", max_iter=10)


def _export(tiny: TinyModel, store: Path, version: int = 1, threshold: float = 0.4) -> str:
    return export_model(
        tiny.directory, NAME, version, "run-abc", tiny.content_sha256, threshold, store
    )


def test_export_then_load_serves_the_same_model(tiny: TinyModel, tmp_path: Path) -> None:
    tag = _export(tiny, tmp_path / "store", version=3, threshold=0.42)
    served = load_served_model(tag, tmp_path / "store")

    assert tag == "milling-failure:v3"
    assert (served.tag, served.version, served.threshold) == (tag, "v3", 0.42)
    assert (served.content_sha256, served.run_id) == (tiny.content_sha256, "run-abc")
    rows = request_rows(20)
    assert (
        served.pipeline.predict_proba(rows).tolist() == tiny.pipeline.predict_proba(rows).tolist()
    )


def test_export_is_idempotent(tiny: TinyModel, tmp_path: Path) -> None:
    store = tmp_path / "store"
    first = _export(tiny, store)
    stamp = (store / "models" / NAME / "v1" / "model.yaml").stat().st_mtime_ns

    assert _export(tiny, store) == first
    assert sorted(p.name for p in (store / "models" / NAME).iterdir() if p.is_dir()) == ["v1"]
    assert (store / "models" / NAME / "v1" / "model.yaml").stat().st_mtime_ns == stamp


def test_export_labels_name_the_registry_version(tiny: TinyModel, tmp_path: Path) -> None:
    import bentoml
    from bentoml._internal.models.model import ModelStore

    tag = _export(tiny, tmp_path / "store", version=7, threshold=0.25)
    stored = bentoml.models.get(tag, _model_store=ModelStore(tmp_path / "store" / "models"))

    assert stored.info.labels["registry_version"] == "7"
    assert stored.info.labels["run_id"] == "run-abc"
    assert stored.info.labels["content_sha256"] == tiny.content_sha256
    assert stored.info.metadata["threshold"] == 0.25
    assert sorted(p.name for p in Path(stored.path).iterdir()) == [
        "meta.json",
        "model.skops",
        "model.yaml",
    ]


def test_a_tag_is_never_overwritten(tiny: TinyModel, tmp_path: Path) -> None:
    store = tmp_path / "store"
    _export(tiny, store)
    other = train_tiny_model(tmp_path / "other", max_iter=3)

    with pytest.raises(ModelStoreError, match="never overwritten"):
        export_model(other.directory, NAME, 1, "run-2", other.content_sha256, 0.5, store)


def test_export_refuses_a_hash_that_is_not_the_models(tiny: TinyModel, tmp_path: Path) -> None:
    with pytest.raises(ModelStoreError, match="holds the model with content sha256"):
        export_model(tiny.directory, NAME, 1, "run", "0" * 64, 0.5, tmp_path / "store")


def test_load_refuses_types_meta_does_not_trust(tiny: TinyModel, tmp_path: Path) -> None:
    doctored = tmp_path / "doctored"
    shutil.copytree(tiny.directory, doctored)
    meta = read_json(doctored / META_FILE)
    assert meta["trusted_types"], "the model needs a non-default type for this test"
    write_json({**meta, "trusted_types": []}, doctored / META_FILE)
    tag = export_model(doctored, NAME, 1, "run", tiny.content_sha256, 0.5, tmp_path / "store")

    with pytest.raises(ModelFileError, match="refusing untrusted types"):
        load_served_model(tag, tmp_path / "store")


def test_load_wants_the_exact_tag(tiny: TinyModel, tmp_path: Path) -> None:
    # BentoML's own `get` falls back to a prefix match: asking for v1 would return v12
    _export(tiny, tmp_path / "store", version=12)

    with pytest.raises(ModelStoreError, match="milling-failure:v1 is not in the model store"):
        load_served_model("milling-failure:v1", tmp_path / "store")


def test_load_from_a_missing_store_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(ModelStoreError, match="run `dvc repro`"):
        load_served_model("milling-failure:v1", tmp_path / "nowhere")


def test_pointer_round_trip(tiny: TinyModel, tmp_path: Path) -> None:
    store = tmp_path / "store"
    served = load_served_model(_export(tiny, store, version=2, threshold=0.3), store)
    assert read_champion_pointer(store) is None

    written = write_champion_pointer(store, served)
    pointer = read_champion_pointer(store)

    assert pointer == written
    assert isinstance(served, ServedModel)
    assert {k: pointer[k] for k in ("tag", "version", "run_id", "content_sha256")} == {
        "tag": "milling-failure:v2",
        "version": "v2",
        "run_id": "run-abc",
        "content_sha256": tiny.content_sha256,
    }
    assert pointer["threshold"] == 0.3 and pointer["updated_at"]
    assert not list(store.glob(".champion.json.*"))  # no temporary file left behind


def test_pointer_from_a_dict_takes_a_version_number(tiny: TinyModel, tmp_path: Path) -> None:
    pointer = write_champion_pointer(
        tmp_path,
        {
            "tag": "milling-failure:v4",
            "version": 4,
            "run_id": "r",
            "content_sha256": tiny.content_sha256,
            "threshold": 0.5,
        },
    )
    assert pointer["version"] == "v4"
    assert read_champion_pointer(tmp_path)["tag"] == "milling-failure:v4"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not valid JSON"),
        ('{"tag": "m:v1"}', "missing"),
        (
            '{"tag": "m:latest", "version": "latest", "run_id": null, "content_sha256": "'
            + "a" * 64
            + '", "threshold": 0.5, "updated_at": "now"}',
            "must look like",
        ),
    ],
)
def test_a_bad_pointer_is_an_error(tmp_path: Path, content: str, message: str) -> None:
    (tmp_path / "champion.json").write_text(content)
    with pytest.raises(ModelStoreError, match=message):
        read_champion_pointer(tmp_path)


def test_use_store_points_bentoml_at_the_project_store(
    tiny: TinyModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import bentoml
    from bentoml._internal.configuration.containers import BentoMLContainer

    monkeypatch.delenv("BENTOML_HOME", raising=False)
    providers = (BentoMLContainer.bentoml_home, BentoMLContainer.model_store)
    providers += (BentoMLContainer.bento_store,)
    tag = _export(tiny, tmp_path / "store")
    try:
        home = use_store(tmp_path / "store")
        assert home == (tmp_path / "store").resolve()
        assert BentoMLContainer.bentoml_home.get() == str(home)
        assert [str(model.tag) for model in bentoml.models.list()] == [tag]
    finally:
        for provider in providers:
            provider.reset()
