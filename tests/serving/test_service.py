"""The prediction service over real HTTP: `lifecycle serve` in a subprocess, one per module.

The module trains two tiny real models, exports the first to a temporary project store,
points the champion at it and starts the server once. Every successful prediction is
recorded, so the last test can stop the server and find exactly those in the log.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
from typer.testing import CliRunner

from features.contract import load_contract
from lifecycle.cli import app
from serving.model_store import (
    load_served_model,
    read_champion_pointer,
    write_champion_pointer,
)
from serving.prediction_log import read_prediction_log
from tests.serving.server import (
    CONTRACT_PATH,
    MODEL_NAME,
    RunningServer,
    TinyModel,
    promote,
    request_rows,
    serve,
    train_tiny_model,
    write_project,
)

NAME = MODEL_NAME
KEY_ENV = "LIFECYCLE_TEST_API_KEY"
API_KEY = "s3cret-test-key"
MAX_BODY_BYTES = 65536
MAX_BATCH_ROWS = 50
CONTRACT = load_contract(CONTRACT_PATH)


@dataclass
class Deployment:
    """The project folder, its store, the two models, and every answered request."""

    root: Path
    store: Path
    predictions: Path
    v1: TinyModel
    v2: TinyModel
    answered: dict[str, int] = field(default_factory=dict)  # request id -> rows
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, response: httpx.Response) -> httpx.Response:
        if response.status_code == 200 and response.url.path.startswith("/predict"):
            body = response.json()
            rows = len(body["predictions"]) if "predictions" in body else 1
            with self.lock:
                self.answered[body["request_id"]] = rows
        return response


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Deployment:
    root = tmp_path_factory.mktemp("serving-project")
    v1 = train_tiny_model(root / "model-v1", max_iter=30)
    v2 = train_tiny_model(root / "model-v2", max_iter=5)
    store = root / ".bentoml"
    promote(v1, store, 1)
    write_project(
        root,
        {
            "store": ".bentoml",
            "api_key_env": KEY_ENV,
            "max_body_bytes": MAX_BODY_BYTES,
            "max_batch_rows": MAX_BATCH_ROWS,
            "reload_poll_s": 0.5,
            # one worker: a client then sees v1, then v2, never back, and one swap per
            # change; tests/serving/test_workers.py covers the default of two
            "workers": 1,
            "threads": 4,
            "batching": {"enabled": True, "max_batch_size": 16, "max_latency_ms": 5},
            "prediction_log": {"directory": "predictions", "flush_interval_s": 0.2},
        },
    )
    return Deployment(root=root, store=store, predictions=root / "predictions", v1=v1, v2=v2)


@pytest.fixture(scope="module")
def server(deployment: Deployment) -> Iterator[RunningServer]:
    with serve(deployment.root, env={KEY_ENV: API_KEY}) as running:
        yield running


@pytest.fixture(scope="module")
def client(server: RunningServer, deployment: Deployment) -> Iterator[httpx.Client]:
    def record(response: httpx.Response) -> None:
        response.read()
        deployment.record(response)

    hooks = {"response": [record]}
    with httpx.Client(
        base_url=server.url, headers={"X-API-Key": API_KEY}, timeout=10, event_hooks=hooks
    ) as http:
        yield http


def _records(rows: pd.DataFrame) -> list[dict[str, Any]]:
    return json.loads(rows.to_json(orient="records"))


def _expected(model: TinyModel, rows: pd.DataFrame) -> list[float]:
    return model.pipeline.predict_proba(rows[CONTRACT.features])[:, 1].tolist()


VALID = _records(request_rows(1, seed=11))[0]


def _valid_record() -> dict[str, Any]:
    return dict(VALID)


# --- valid requests -------------------------------------------------------------------


@pytest.mark.slow
def test_single_predictions_match_the_model_in_process(
    client: httpx.Client, deployment: Deployment
) -> None:
    rows = request_rows(12, seed=3)
    answers = [client.post("/predict", json=record) for record in _records(rows)]

    assert [answer.status_code for answer in answers] == [200] * len(rows)
    bodies = [answer.json() for answer in answers]
    assert [b["failure_probability"] for b in bodies] == pytest.approx(
        _expected(deployment.v1, rows), rel=1e-9, abs=1e-12
    )
    assert {b["model_version"] for b in bodies} == {"v1"}
    assert all(b["failure"] == (b["failure_probability"] >= 0.5) for b in bodies)
    assert all(b["threshold"] == 0.5 for b in bodies)


@pytest.mark.slow
def test_batch_predictions_match_the_model_in_process(
    client: httpx.Client, deployment: Deployment
) -> None:
    rows = request_rows(MAX_BATCH_ROWS, seed=4)
    answer = client.post("/predict_batch", json={"records": _records(rows)})

    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert [p["failure_probability"] for p in body["predictions"]] == pytest.approx(
        _expected(deployment.v1, rows), rel=1e-9, abs=1e-12
    )
    assert (body["model_version"], body["threshold"]) == ("v1", 0.5)


@pytest.mark.slow
def test_snake_case_names_are_accepted(client: httpx.Client) -> None:
    record = {
        "type": "M",
        "air_temperature_k": 300.0,
        "process_temperature_k": 310.0,
        "rotational_speed_rpm": 1500,
        "torque_nm": 40,
        "tool_wear_min": 100,
    }
    assert client.post("/predict", json=record).status_code == 200


@pytest.mark.slow
def test_concurrent_single_requests_are_batched_correctly(
    server: RunningServer, deployment: Deployment
) -> None:
    rows = request_rows(64, seed=5)
    records, expected = _records(rows), _expected(deployment.v1, rows)
    results: dict[int, float] = {}

    def send(indexes: range) -> None:
        with httpx.Client(base_url=server.url, headers={"X-API-Key": API_KEY}) as http:
            for index in indexes:
                answer = deployment.record(http.post("/predict", json=records[index]))
                results[index] = answer.json()["failure_probability"]

    threads = [threading.Thread(target=send, args=(range(i, 64, 8),)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert [results[i] for i in range(64)] == pytest.approx(expected, rel=1e-9, abs=1e-12)


@pytest.mark.slow
def test_the_request_id_is_taken_from_the_header(client: httpx.Client) -> None:
    answer = client.post("/predict", json=_valid_record(), headers={"X-Request-ID": "job-42.7"})

    assert answer.json()["request_id"] == "job-42.7"
    assert answer.headers["X-Request-ID"] == "job-42.7"


@pytest.mark.slow
def test_a_new_request_id_replaces_an_unsafe_one(client: httpx.Client) -> None:
    answer = client.post("/predict", json=_valid_record(), headers={"X-Request-ID": "a b\tc"})

    assert answer.status_code == 200
    assert answer.json()["request_id"] != "a b\tc"
    assert answer.headers["X-Request-ID"] == answer.json()["request_id"]


# --- invalid requests -----------------------------------------------------------------


def _without(name: str) -> dict[str, Any]:
    return {k: v for k, v in _valid_record().items() if k != name}


def _with(name: str, value: Any) -> dict[str, Any]:
    return {**_valid_record(), name: value}


BAD_REQUESTS = {
    "malformed JSON": ("/predict", b'{"Type": "L",', None),
    "missing field": ("/predict", _without("Torque [Nm]"), "Torque [Nm]"),
    "wrong type": ("/predict", _with("Air temperature [K]", "hot"), "Air temperature [K]"),
    "out of range": ("/predict", _with("Torque [Nm]", -5.0), "Torque [Nm]"),
    "unknown category": ("/predict", _with("Type", "X"), "Type"),
    "extra field": ("/predict", _with("Torque", 3.0), "Torque"),
    "empty batch": ("/predict_batch", {"records": []}, "records"),
    "oversized batch": (
        "/predict_batch",
        {"records": [_valid_record()] * (MAX_BATCH_ROWS + 1)},
        "records",
    ),
    "bad row in a batch": (
        "/predict_batch",
        {"records": [_valid_record(), _with("Tool wear [min]", 9999)]},
        "Tool wear [min]",
    ),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", list(BAD_REQUESTS))
def test_a_bad_request_gets_a_4xx_naming_the_field(
    client: httpx.Client, server: RunningServer, case: str
) -> None:
    path, payload, field_name = BAD_REQUESTS[case]
    content = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    answer = client.post(path, content=content, headers={"Content-Type": "application/json"})

    assert 400 <= answer.status_code < 500, answer.text
    body = answer.json()
    if field_name is None:
        assert "Invalid JSON" in body["error"]
        assert "value" not in body["detail"][0]  # the body is not echoed back
    else:
        assert field_name in body["error"]
        assert field_name in [problem["field"] for problem in body["detail"]]
    assert answer.headers["X-Request-ID"]
    assert httpx.get(f"{server.url}/readyz").status_code == 200


@pytest.mark.slow
def test_a_bad_row_in_a_batch_is_located(client: httpx.Client) -> None:
    batch = {"records": [_valid_record(), _with("Type", "Z")]}
    problem = client.post("/predict_batch", json=batch).json()["detail"][0]

    assert (problem["field"], problem["record"], problem["value"]) == ("Type", 1, "Z")


@pytest.mark.slow
def test_long_values_are_not_echoed_in_full(client: httpx.Client) -> None:
    problem = client.post("/predict", json=_with("Product ID", "Q" * 5000)).json()["detail"][0]

    assert problem["field"] == "Product ID"
    assert len(problem["value"]) < 100


@pytest.mark.slow
def test_a_body_over_the_limit_is_refused_before_parsing(client: httpx.Client) -> None:
    content = b'{"records": [' + b" " * MAX_BODY_BYTES + b"]}"
    declared = client.post(
        "/predict_batch", content=content, headers={"Content-Type": "application/json"}
    )
    chunked = client.post(
        "/predict_batch",
        content=iter([content[:1000], content[1000:]]),  # no Content-Length: chunked
        headers={"Content-Type": "application/json"},
    )

    assert declared.status_code == 413 and chunked.status_code == 413
    assert "max_body_bytes" in declared.json()["error"]


@pytest.mark.slow
def test_a_body_that_is_not_json_is_refused(client: httpx.Client) -> None:
    answer = client.post("/predict", data={"Type": "L"})

    assert answer.status_code == 415
    assert "application/json" in answer.json()["error"]


# --- security, health, metrics, documentation -----------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("path", ["/predict", "/predict_batch", "/admin/reload"])
def test_the_api_key_is_required(server: RunningServer, deployment: Deployment, path: str) -> None:
    bodies = {"/predict": _valid_record(), "/predict_batch": {"records": [_valid_record()]}}
    body = bodies.get(path, {})  # /admin/reload takes no parameters
    url = f"{server.url}{path}"
    without = httpx.post(url, json=body)
    wrong = httpx.post(url, json=body, headers={"X-API-Key": "no"})
    right = deployment.record(httpx.post(url, json=body, headers={"X-API-Key": API_KEY}))

    assert (without.status_code, wrong.status_code) == (401, 401)
    assert "X-API-Key" in without.json()["error"]
    assert right.status_code == 200


@pytest.mark.slow
@pytest.mark.parametrize("path", ["/livez", "/readyz", "/metrics", "/docs.json"])
def test_health_metrics_and_docs_stay_open(server: RunningServer, path: str) -> None:
    assert httpx.get(f"{server.url}{path}").status_code == 200


@pytest.mark.slow
def test_metrics_show_the_custom_counters(client: httpx.Client, server: RunningServer) -> None:
    client.post("/predict", json=_valid_record())
    text = httpx.get(f"{server.url}/metrics").text

    assert 'lifecycle_predictions_total{endpoint="predict",model_version="v1"}' in text
    assert 'lifecycle_prediction_latency_seconds_count{endpoint="predict"}' in text
    assert "lifecycle_prediction_log_dropped_rows_total 0.0" in text
    assert "lifecycle_prediction_log_write_errors_total 0.0" in text
    assert 'lifecycle_model_reloads_total{outcome="swapped"}' in text


@pytest.mark.slow
def test_openapi_documents_the_fields(server: RunningServer) -> None:
    spec = httpx.get(f"{server.url}/docs.json").json()
    schemas = spec["components"]["schemas"]
    record = next(schema for name, schema in schemas.items() if name.startswith("ProcessRecord"))

    assert {"/predict", "/predict_batch", "/admin/reload"} <= set(spec["paths"])
    described = {prop["title"]: prop.get("description") for prop in record["properties"].values()}
    for column in (c for c in CONTRACT.columns if c.role in ("id", "feature")):
        assert described[column.name] == column.description


# --- reloads --------------------------------------------------------------------------


@pytest.mark.slow
def test_a_reload_under_load_fails_no_request(
    client: httpx.Client, server: RunningServer, deployment: Deployment
) -> None:
    records = _records(request_rows(40, seed=9))
    stop = threading.Event()
    seen: list[list[tuple[int, str]]] = [[] for _ in range(4)]

    def hammer(worker: int) -> None:
        with httpx.Client(base_url=server.url, headers={"X-API-Key": API_KEY}) as http:
            sent = 0
            while not stop.is_set() or sent < 20:
                answer = deployment.record(http.post("/predict", json=records[sent % 40]))
                version = answer.json().get("model_version", "?") if answer.is_success else "?"
                seen[worker].append((answer.status_code, version))
                sent += 1

    threads = [threading.Thread(target=hammer, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    time.sleep(0.5)  # let the load run on v1 first
    v2 = deployment.v2
    tag = promote(v2, deployment.store, 2, threshold=0.4)
    reload = client.post("/admin/reload")
    after = client.post("/predict", json=records[0])
    time.sleep(0.5)
    stop.set()
    for thread in threads:
        thread.join()

    assert reload.status_code == 200 and reload.json()["tag"] == tag
    assert after.json()["model_version"] == "v2"
    answers = [answer for worker in seen for answer in worker]
    assert {status for status, _ in answers} == {200}, f"failed: {len(answers)} answers"
    for worker in seen:  # each client sees v1, then v2, never back
        versions = [version for _, version in worker]
        assert versions == sorted(versions), versions
        assert (versions[0], versions[-1]) == ("v1", "v2"), versions
    assert after.json()["failure_probability"] == pytest.approx(
        _expected(v2, pd.DataFrame([records[0]]))[0], rel=1e-9
    )


@pytest.mark.slow
def test_the_poller_follows_the_pointer(
    client: httpx.Client, deployment: Deployment, server: RunningServer
) -> None:
    write_champion_pointer(
        deployment.store, load_served_model(f"{NAME}:v1", deployment.store)
    )  # a rollback
    deadline = time.monotonic() + 15
    while client.post("/predict", json=_valid_record()).json()["model_version"] != "v1":
        assert time.monotonic() < deadline, f"still not v1:\n{server.tail()}"
        time.sleep(0.1)
    metrics = httpx.get(f"{server.url}/metrics").text
    assert 'lifecycle_model_reloads_total{outcome="swapped"} 2.0' in metrics


@pytest.mark.slow
def test_a_champion_that_cannot_load_leaves_the_current_one_serving(
    client: httpx.Client, deployment: Deployment
) -> None:
    good = read_champion_pointer(deployment.store)
    write_champion_pointer(deployment.store, {**good, "tag": f"{NAME}:v9", "version": "v9"})
    try:
        reload = client.post("/admin/reload")
        answer = client.post("/predict", json=_valid_record())
    finally:
        write_champion_pointer(deployment.store, good)

    assert reload.status_code == 500
    assert "v9" in reload.json()["error"] and reload.json()["tag"] == f"{NAME}:v1"
    assert answer.status_code == 200 and answer.json()["model_version"] == "v1"


# --- the prediction log, after a graceful shutdown (keep this test last) ---------------


@pytest.mark.slow
def test_the_log_holds_every_answered_request_after_shutdown(
    server: RunningServer, deployment: Deployment
) -> None:
    assert deployment.answered, "earlier tests should have made predictions"
    returncode = server.stop()
    log = read_prediction_log(deployment.predictions, contract=CONTRACT)

    assert returncode is not None, f"the server did not stop on SIGTERM:\n{server.tail()}"
    assert log.groupby("request_id").size().to_dict() == deployment.answered
    assert log[CONTRACT.features].notna().all().all()
    assert set(log["model_version"]) == {"v1", "v2"}


# --- in-process: the command line and the service's parts ------------------------------


def test_serve_without_a_champion_exits_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_project(tmp_path, {"store": "empty-store"})
    monkeypatch.chdir(tmp_path)

    result = CliRunner().invoke(app, ["serve"])

    assert result.exit_code == 2
    assert "no champion in the model store" in result.output
    assert "run `dvc repro` first" in result.output


def test_serve_sets_threads_store_and_tracking(tmp_path: Path) -> None:
    from lifecycle.serve_command import _serve_invocation

    # 2, not the suite's own OMP_NUM_THREADS=1 (tests/conftest.py): the setting must win
    argv, env = _serve_invocation("127.0.0.1", 3123, 2, tmp_path, tmp_path / "params.yaml")

    assert argv[-4:] == ["--host", "127.0.0.1", "--port", "3123"]
    assert "serving.service:Predictor" in argv
    assert env["OMP_NUM_THREADS"] == env["OPENBLAS_NUM_THREADS"] == env["MKL_NUM_THREADS"] == "2"
    assert env["BENTOML_HOME"] == str(tmp_path)
    assert env["BENTOML_DO_NOT_TRACK"] == "true"


def test_the_gate_lets_requests_through_when_no_key_is_set(service_module: Any) -> None:
    import asyncio

    async def echo(scope: dict, receive: Any, send: Any) -> None:
        body = (await receive())["body"]
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})

    gate = service_module.RequestGate(
        echo,
        protected=("/predict",),
        schemas={"/predict": service_module.ProcessRecord},
        api_key_env="LIFECYCLE_TEST_UNSET_KEY_VARIABLE",
        max_body_bytes=4096,
    )

    async def call() -> httpx.Response:
        transport = httpx.ASGITransport(app=gate)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            return await http.post("/predict", json=_valid_record())

    answer = asyncio.run(call())
    assert answer.status_code == 200
    assert json.loads(answer.content) == _valid_record()
    assert answer.headers["X-Request-ID"]


def test_the_gate_asks_for_a_new_connection_every_nth_answer(service_module: Any) -> None:
    import asyncio

    async def ok(scope: dict, receive: Any, send: Any) -> None:
        headers = [(b"connection", b"keep-alive"), (b"content-type", b"application/json")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"{}"})

    def gate(close_every: int) -> Any:
        return service_module.RequestGate(
            ok,
            protected=("/predict",),
            schemas={},
            api_key_env="LIFECYCLE_TEST_UNSET_KEY_VARIABLE",
            max_body_bytes=4096,
            close_every=close_every,
        )

    async def connection_headers(app: Any, calls: int) -> list[list[str]]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            answers = [await http.post("/predict", json={}) for _ in range(calls)]
            await http.get("/livez")  # not a protected route: not counted, not changed
        return [answer.headers.get_list("connection") for answer in answers]

    seen = asyncio.run(connection_headers(gate(3), 7))
    assert seen == [["keep-alive"], ["keep-alive"], ["close"]] * 2 + [["keep-alive"]]
    assert asyncio.run(connection_headers(gate(0), 4)) == [["keep-alive"]] * 4


def test_the_batcher_scores_concurrent_rows_together_in_order(service_module: Any) -> None:
    import asyncio

    import numpy as np

    calls: list[list[int]] = []

    def score(rows: list[int]) -> list[tuple[str, float]]:
        calls.append(list(rows))
        time.sleep(0.01)
        return [("model", value) for value in (np.array(rows, dtype=float) / 100).tolist()]

    async def run_in_thread(func: Any, *args: Any) -> Any:
        return await asyncio.to_thread(func, *args)

    async def main() -> list[tuple[str, float]]:
        batcher = service_module.RowBatcher(score, 8, 50, run_in_thread)
        answers = await asyncio.gather(*(batcher.submit(i) for i in range(20)))
        batcher.stop()
        return answers

    answers = asyncio.run(main())
    assert answers == [("model", i / 100) for i in range(20)]
    assert sorted(row for call in calls for row in call) == list(range(20))
    assert max(len(call) for call in calls) == 8 and len(calls) < 20


def test_the_batcher_fails_only_the_rows_of_a_failed_call(service_module: Any) -> None:
    import asyncio

    def score(rows: list[int]) -> Any:
        raise ValueError("model broke")

    async def run_in_thread(func: Any, *args: Any) -> Any:
        return func(*args)

    async def main() -> None:
        batcher = service_module.RowBatcher(score, 8, 5, run_in_thread)
        with pytest.raises(ValueError, match="model broke"):
            await batcher.submit(1)
        batcher.stop()

    asyncio.run(main())
