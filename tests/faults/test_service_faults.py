"""The prediction service under fuzzed requests, and restarted.

A small real model is exported to a temporary project's store and served by a real
`lifecycle serve` with an API key, as in production. Schemathesis generates requests for
every operation of the service's own OpenAPI document (`/docs.json`), valid and malformed
ones (wrong types, missing and unknown fields, out-of-range values, odd bodies): none may
get a 5xx, and the service must be healthy afterwards. Then the service is stopped and
started again in the same project: it comes back ready, serving the champion, and the
prediction log still holds every row logged before the restart.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from serving.prediction_log import read_prediction_log
from tests.serving.server import (
    RunningServer,
    promote,
    request_rows,
    serve,
    train_tiny_model,
    write_project,
)

pytestmark = pytest.mark.slow

KEY_ENV = "LIFECYCLE_FAULTS_API_KEY"
API_KEY = "fuzz-test-key"
KEY_HEADER = {"X-API-Key": API_KEY}
EXAMPLES = 100  # per operation and mode: about 600 requests, some seconds here
RECORDS: list[dict[str, Any]] = request_rows(3, seed=21).to_dict(orient="records")


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project folder whose store's champion is a small real model, v1."""
    root = tmp_path_factory.mktemp("service-faults")
    model = train_tiny_model(root / "model-v1", max_iter=20, rows=2000)
    store = root / ".bentoml"
    promote(model, store, 1)
    write_project(
        root,
        {
            "store": ".bentoml",
            "api_key_env": KEY_ENV,
            "max_batch_rows": 20,
            "prediction_log": {"directory": "predictions", "flush_interval_s": 0.2},
        },
    )
    return root


@pytest.fixture(scope="module")
def service(project: Path) -> Iterator[RunningServer]:
    with serve(project, env={KEY_ENV: API_KEY}) as running:
        yield running


@pytest.mark.parametrize("mode", list(GenerationMode), ids=lambda mode: mode.value)
def test_fuzzed_requests_never_get_a_server_error(
    service: RunningServer, mode: GenerationMode
) -> None:
    # Strategies per operation, run with Hypothesis here: schemathesis' own pytest loader
    # for a schema from a fixture (`schemathesis.pytest.from_fixture`) fails on pytest 9
    # (it sets `Function._nodeid`, which pytest 9 no longer has).
    schema = schemathesis.openapi.from_url(f"{service.url}/docs.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    names = {f"{op.method.upper()} {op.path}" for op in operations}
    assert {"POST /predict", "POST /predict_batch", "POST /admin/reload"} <= names, names
    statuses: Counter[int] = Counter()
    unbreakable: set[str] = set()

    for operation in operations:

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,  # no .hypothesis/ folder in the work tree
            suppress_health_check=list(HealthCheck),
        )
        def call(case: Any) -> None:
            response = case.call(base_url=service.url, headers=KEY_HEADER, timeout=30)
            statuses[response.status_code] += 1
            assert response.status_code < 500, (
                f"{response.status_code} {response.text[:500]}\n{case.as_curl_command()}"
            )

        try:
            call()
        except Unsatisfiable:  # negative mode: nothing in the operation can be malformed
            assert mode is GenerationMode.NEGATIVE, operation.label
            unbreakable.add(f"{operation.method.upper()} {operation.path}")

    assert not unbreakable & {"POST /predict", "POST /predict_batch"}, unbreakable
    assert sum(statuses.values()) >= EXAMPLES, statuses
    if mode is GenerationMode.NEGATIVE:  # malformed requests are refused, not served
        assert sum(n for code, n in statuses.items() if 400 <= code < 500) > 0, statuses


def test_the_service_is_healthy_after_the_fuzzing(service: RunningServer) -> None:
    assert service.process.poll() is None, service.tail()
    assert httpx.get(f"{service.url}/readyz", timeout=5).status_code == 200
    answer = httpx.post(f"{service.url}/predict", json=RECORDS[0], headers=KEY_HEADER, timeout=10)
    assert answer.status_code == 200 and answer.json()["model_version"] == "v1", answer.text
    # no request reached the model and failed there (BentoML logs those as "Exception on")
    assert "Exception on /predict" not in service.log.read_text(errors="replace"), service.tail()


def test_an_integer_beyond_int64_is_refused_naming_the_field(service: RunningServer) -> None:
    # found by the fuzzing: an id over 2**63 - 1 passed validation, then overflowed the
    # model's int64 frame, a 500 for the request and for every row batched with it
    record = {**RECORDS[0], "UDI": 2**63}
    for path, body in (("/predict", record), ("/predict_batch", {"records": [record]})):
        answer = httpx.post(f"{service.url}{path}", json=body, headers=KEY_HEADER, timeout=10)
        assert answer.status_code == 400, answer.text
        assert "UDI" in answer.text and "9223372036854775807" in answer.text, answer.text


# --- a restart (keep it last: it stops the module's service) ---------------------------


def _predict(url: str, record: dict[str, Any]) -> dict[str, Any]:
    answer = httpx.post(f"{url}/predict", json=record, headers=KEY_HEADER, timeout=10)
    assert answer.status_code == 200, answer.text
    return answer.json()


def _logged_ids(project: Path) -> list[str]:
    return read_prediction_log(project / "predictions")["request_id"].tolist()


def test_a_restarted_service_comes_back_with_the_champion_and_its_log(
    project: Path, service: RunningServer
) -> None:
    sent = [_predict(service.url, record)["request_id"] for record in RECORDS]
    assert service.stop() is not None, f"no clean stop on SIGTERM:\n{service.tail()}"
    logged = _logged_ids(project)
    assert set(sent) <= set(logged)  # flushed on shutdown

    with serve(project, env={KEY_ENV: API_KEY}) as again:  # waits for /readyz
        answer = _predict(again.url, RECORDS[0])
        deadline = time.monotonic() + 10
        while answer["request_id"] not in (after := _logged_ids(project)):
            assert time.monotonic() < deadline, "the new prediction was not logged"
            time.sleep(0.1)

    assert answer["model_version"] == "v1"
    assert after[: len(logged)] == logged  # the earlier rows are kept, in order
    assert len(after) == len(logged) + 1
