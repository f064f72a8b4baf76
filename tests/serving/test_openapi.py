"""The served OpenAPI document tells the truth: schemathesis with all checks finds nothing.

A small real model is served by a real `lifecycle serve` with an API key. Schemathesis
reads the service's own `/docs.json` and, with every check it has (status codes, content
types, response schemas, positive and negative data, auth, methods), runs its examples,
coverage and fuzzing phases against it. Beside it: the document's corrections in process
(no server), and `/admin/reload` refusing bad bodies as the other routes do, one log line each.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from pydantic import BaseModel

from serving.openapi import correct_document, openapi_components
from serving.prediction_log import read_prediction_log
from serving.schema import InvalidRequest
from tests.serving.server import (
    BIN,
    CONTRACT_PATH,
    RunningServer,
    promote,
    request_rows,
    serve,
    train_tiny_model,
    write_project,
)

KEY_ENV = "LIFECYCLE_OPENAPI_API_KEY"
API_KEY = "openapi-test-key"
EXAMPLES = 25  # per operation and phase: some hundred requests, well under a minute here


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    root = tmp_path_factory.mktemp("openapi")
    promote(train_tiny_model(root / "model-v1", max_iter=20, rows=2000), root / ".bentoml", 1)
    write_project(
        root,
        {
            "store": ".bentoml",
            "api_key_env": KEY_ENV,
            "workers": 1,
            "max_batch_rows": 20,
            "prediction_log": {"directory": "predictions", "flush_interval_s": 0.2},
        },
    )
    with serve(root, env={KEY_ENV: API_KEY}) as running:
        yield running


@pytest.mark.slow
def test_schemathesis_with_all_checks_finds_no_failure(
    service: RunningServer, tmp_path: Path
) -> None:
    done = subprocess.run(
        [
            str(BIN / "schemathesis"),
            "run",
            f"{service.url}/docs.json",
            "--checks",
            "all",
            "--max-examples",
            str(EXAMPLES),
            "--header",
            f"X-API-Key: {API_KEY}",
            "--generation-database",
            "none",
            "--seed",
            "12",
            "--no-color",
        ],
        cwd=tmp_path,  # any report or cache stays out of the work tree
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-6000:]
    assert "No issues found" in output, output[-3000:]
    paths = httpx.get(f"{service.url}/docs.json", timeout=10).json()["paths"]
    assert {"/predict", "/predict_batch", "/admin/reload"} <= set(paths)
    operations = sum(len(item) for item in paths.values())
    assert f"{operations} selected / {operations} total" in output, output[-3000:]
    assert "Traceback" not in service.log.read_text(errors="replace"), service.tail()


def _log_lines(service: RunningServer) -> list[str]:
    return service.log.read_text(errors="replace").splitlines()


@pytest.mark.slow
@pytest.mark.parametrize(
    ("body", "field"),
    [("[1]", None), ('{"force": true}', "force"), ('"reload"', None), ("{", None)],
    ids=["array", "unknown-field", "string", "broken-json"],
)
def test_a_bad_reload_body_is_a_400_like_the_others_with_one_log_line(
    service: RunningServer, body: str, field: str | None
) -> None:
    before = len(_log_lines(service))
    answer = httpx.post(
        f"{service.url}/admin/reload",
        content=body,
        headers={"X-API-Key": API_KEY, "Content-Type": "application/json"},
        timeout=10,
    )
    assert answer.status_code == 400, answer.text
    refused = InvalidRequest.model_validate(answer.json())  # the format of /predict's 400
    assert refused.error.startswith("invalid request: ")
    assert refused.detail[0].field == field, refused
    deadline = time.monotonic() + 5
    while not any("path=/admin/reload" in line for line in _log_lines(service)[before:]):
        assert time.monotonic() < deadline, service.tail()
        time.sleep(0.05)
    time.sleep(0.3)  # anything else this request logs (a traceback) comes with its access line
    added = _log_lines(service)[before:]
    assert len(added) == 1 and "status=400" in added[0], "\n".join(added)


@pytest.mark.slow
def test_an_empty_reload_body_still_reloads(service: RunningServer) -> None:
    for body in (b"", b"{}"):
        answer = httpx.post(
            f"{service.url}/admin/reload",
            content=body,
            headers={"X-API-Key": API_KEY},
            timeout=10,
        )
        assert answer.status_code == 200, answer.text
        assert answer.json()["error"] is None and answer.json()["model_version"] == "v1"


# --- a contract without an `answer:` block ------------------------------------------


@pytest.mark.slow
def test_without_an_answer_block_the_answer_and_document_speak_the_contracts_words(
    tmp_path: Path,
) -> None:
    """The milling columns renamed as a user's own data: label `Outcome`, no `answer:`."""
    raw = yaml.safe_load(CONTRACT_PATH.read_text(encoding="utf-8"))
    del raw["answer"]
    raw.update(name="plant", description="Readings of a machine with an outcome.")
    raw["columns"] = [
        {**c, "name": "Outcome", "description": "1 when the run went wrong."}
        if c["role"] == "label"
        else c
        for c in raw["columns"]
        if c["role"] != "ignore"  # the failure modes
    ]
    contract = tmp_path / "plant.yaml"
    contract.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    promote(train_tiny_model(tmp_path / "model", max_iter=5, rows=1000), tmp_path / ".bentoml", 1)
    params = {
        "data": {"contract": str(contract)},
        "serving": {"store": ".bentoml", "workers": 1, "prediction_log": {"directory": "log"}},
    }
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params), encoding="utf-8")
    record = request_rows(1, seed=5).to_dict(orient="records")[0]

    with serve(tmp_path) as running:
        single = httpx.post(f"{running.url}/predict", json=record, timeout=10).json()
        batch = httpx.post(
            f"{running.url}/predict_batch", json={"records": [record]}, timeout=10
        ).json()
        document = httpx.get(f"{running.url}/docs.json", timeout=10).text

    assert list(single) == ["probability", "outcome", "threshold", "model_version", "request_id"]
    assert list(batch["predictions"][0]) == ["probability", "outcome", "model_version"]
    assert single["outcome"] == (single["probability"] >= single["threshold"])
    assert "failure" not in document.lower() and "milling" not in document.lower()
    assert "'Outcome' is 1" in document and "plant: predictions of 'Outcome'" in document
    logged = read_prediction_log(tmp_path / "log")  # flushed when the server stopped
    assert logged["probability"].tolist() == [single["probability"]] + [
        p["probability"] for p in batch["predictions"]
    ]
    assert "predicted" in logged.columns and "outcome" not in logged.columns


# --- the document's corrections, in process ------------------------------------------


class _Inner(BaseModel):
    size: int


class _Sample(BaseModel):
    name: str | None = None
    inner: _Inner | None = None
    kind: str = "a"


def test_pydantic_nullables_become_openapi_30_nullables() -> None:
    components = openapi_components(_Sample, "validation")
    sample = components["_Sample"]["properties"]
    assert sample["name"] == {"type": "string", "default": None, "title": "Name", "nullable": True}
    assert sample["inner"]["allOf"] == [{"$ref": "#/components/schemas/_Inner"}]
    assert sample["inner"]["nullable"] is True
    assert "anyOf" not in str(components)
    assert components["_Inner"]["required"] == ["size"]


def test_the_document_states_bodies_answers_and_nulls(service_module: Any) -> None:
    from serving.api_models import service_document
    from serving.bentoml_patches import bentoml_openapi_document

    settings = service_module._SETTINGS
    document = correct_document(
        bentoml_openapi_document(service_module.Predictor),
        service_document(settings, service_module._MODELS),
    )
    paths, schemas = document["paths"], document["components"]["schemas"]
    predict, reload = paths["/predict"]["post"], paths["/admin/reload"]["post"]
    assert predict["requestBody"]["required"] is True
    assert paths["/predict_batch"]["post"]["requestBody"]["required"] is True
    assert reload["requestBody"]["required"] is False
    assert set(predict["responses"]) >= {"200", "400", "413", "415", "500", "503"}
    assert predict["responses"]["400"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/InvalidRequest"
    }
    assert schemas["InvalidRequest"]["properties"]["detail"]["type"] == "array"
    assert schemas["ProcessRecord"]["properties"]["product_id"]["nullable"] is True
    assert "nullable" not in schemas["ProcessRecord"]["properties"]["torque_nm"]
    assert schemas["ReloadResult"]["properties"]["error"]["nullable"] is True
    assert schemas["ReloadRequest"]["additionalProperties"] is False
    answer = schemas["Prediction"]["properties"]
    contract = settings.contract
    assert list(answer)[:2] == [contract.probability_field, contract.label_field]
    assert not any(name.endswith("IODescriptor") for name in schemas)  # one schema per model
    # a batch row names the version that answered it; the top-level fields are the champion's
    row_version = schemas["RecordPrediction"]["properties"]["model_version"]["description"]
    assert "answered this record" in row_version and "canary" in row_version
    batch = schemas["BatchPrediction"]["properties"]
    assert "champion" in batch["model_version"]["description"]
    assert schemas["ReloadResult"]["properties"]["rollout"]["nullable"] is True
    assert document["info"]["title"] == f"{contract.name}: predictions of '{contract.label}'"
