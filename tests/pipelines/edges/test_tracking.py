"""The MLflow edge: an unreachable or failing tracking server is a `TrackingUnavailableError`
with a message a user can act on; a reachable one records the stage's run for the ledger."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from pipelines.edges import ledger
from pipelines.edges.mlflow_connection import HTTP_LIMITS
from pipelines.edges.tracking import (
    EXPERIMENT_KIND_TAG,
    TrackingUnavailableError,
    start_tracking,
    unavailable_error,
)
from tests.mlflow_server import MlflowServer, free_port


@pytest.fixture(autouse=True)
def http_limits_restored(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Unset MLflow's HTTP limits for the test and remove what `start_tracking` sets."""
    for name in HTTP_LIMITS:
        monkeypatch.setenv(name, "unset")  # recorded, so the deletion below is undone too
        monkeypatch.delenv(name)
    yield


@pytest.fixture
def failing_server() -> Iterator[str]:
    """A real HTTP server that answers every request with 503 and an HTML page."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b"<html>upstream unavailable</html>"
            self.send_response(503)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_POST = do_GET

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_a_refused_connection_fails_in_seconds_with_the_uri(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    uri = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    start = time.monotonic()
    with pytest.raises(TrackingUnavailableError) as error:
        start_tracking("lifecycle")
    elapsed = time.monotonic() - start
    assert str(error.value) == (
        f"MLflow tracking server unreachable at {uri} (connection refused) while setting the "
        "experiment 'lifecycle'"
    )
    assert elapsed < 8, f"MLflow took {elapsed:.1f} s to give up (its default is minutes)"
    assert {name: os.environ[name] for name in HTTP_LIMITS} == HTTP_LIMITS


def test_server_errors_are_unavailable_too(
    monkeypatch: pytest.MonkeyPatch, failing_server: str
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", failing_server)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # a variable set wins
    with pytest.raises(TrackingUnavailableError) as error:
        start_tracking("lifecycle")
    assert str(error.value) == (
        f"MLflow tracking server unreachable at {failing_server} (HTTP 503 after 0 retries) "
        "while setting the experiment 'lifecycle'"
    )


def test_credentials_never_reach_the_message(monkeypatch: pytest.MonkeyPatch) -> None:
    port = free_port()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://user:s3cret@127.0.0.1:{port}")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    with pytest.raises(TrackingUnavailableError) as error:
        start_tracking("lifecycle")
    assert str(error.value).startswith(
        f"MLflow tracking server unreachable at http://127.0.0.1:{port} "
    )
    assert "s3cret" not in str(error.value)


def test_other_errors_are_left_alone() -> None:
    from mlflow.exceptions import MlflowException

    assert unavailable_error(ValueError("bad value")) is None
    missing = MlflowException("Run 'x' not found", error_code="RESOURCE_DOES_NOT_EXIST")
    assert unavailable_error(missing) is None


def test_the_stage_run_is_noted_for_the_ledger_and_other_errors_pass_through(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mlflow_server: MlflowServer
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server.url)
    tracking = start_tracking("tracking-tests")
    path = tmp_path / "ledger.jsonl"
    started = ledger.start_attempt("tracking-test", "train", 1, 1, ledger=path)
    with pytest.raises(ValueError, match="a bug in the stage"), tracking.stage_run("train") as run:
        raise ValueError("a bug in the stage")
    record = ledger.finish_attempt(started, "failed", None, None, ledger=path)
    assert record.mlflow_run_id == run.info.run_id
    import mlflow

    assert mlflow.MlflowClient(mlflow_server.url).get_run(run.info.run_id).info.status == "FAILED"


def test_the_experiment_is_a_model_development_one_so_the_ui_opens_its_runs(
    monkeypatch: pytest.MonkeyPatch, mlflow_server: MlflowServer
) -> None:
    import mlflow

    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server.url)
    client = mlflow.MlflowClient(mlflow_server.url)

    def kind(name: str) -> str | None:
        return client.get_experiment_by_name(name).tags.get(EXPERIMENT_KIND_TAG)

    start_tracking("kind-new")  # created here
    assert kind("kind-new") == "custom_model_development"

    client.create_experiment("kind-old")  # made before, as MLflow makes them: no kind
    assert kind("kind-old") is None
    start_tracking("kind-old")
    assert kind("kind-old") == "custom_model_development"

    chosen = client.create_experiment("kind-chosen")
    client.set_experiment_tag(chosen, EXPERIMENT_KIND_TAG, "genai_development")  # a user's
    start_tracking("kind-chosen")
    assert kind("kind-chosen") == "genai_development"
