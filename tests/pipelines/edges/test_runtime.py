"""run_stage: retries on transient errors only, one ledger attempt each, readable failures.

Stages run in-process with `run_stage` in a temporary project (a copy of dvc.yaml and a
small params.yaml); the MLflow cases use a real port with nothing listening and the real
`mlflow server` fixture.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from core.config import ConfigError, load_params
from core.paths import LEDGER
from features.validation import DataValidationError
from pipelines.edges.mlflow_connection import HTTP_LIMITS
from pipelines.edges.runtime import run_stage
from pipelines.edges.sources import TransientSourceError
from tests.mlflow_server import MlflowServer, free_port

ROOT = Path(__file__).resolve().parents[3]
FAST = {"attempts": 3, "backoff_initial_s": 0.2, "backoff_max_s": 1.0, "jitter_s": 0.0}


def make_project(folder: Path, retry: dict[str, Any] | None = None) -> None:
    """dvc.yaml as the project has it, and a small params.yaml with a retry block."""
    shutil.copy(ROOT / "dvc.yaml", folder / "dvc.yaml")
    params = {
        "data": {"contract": "contracts/milling.yaml"},
        "ingest": {"feedback": {"directory": "feedback"}},
        "retry": retry or {"default": FAST},
    }
    (folder / "params.yaml").write_text(yaml.safe_dump(params), encoding="utf-8")


def ledger_records(folder: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (folder / LEDGER).read_text().splitlines()]


def finished(folder: Path) -> list[dict[str, Any]]:
    return [r for r in ledger_records(folder) if r["event"] == "finished"]


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    make_project(tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LIFECYCLE_RUN_ID", "run-1")
    return tmp_path


@pytest.fixture
def http_limits_restored(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Unset MLflow's HTTP limits for the test and remove what `start_tracking` sets."""
    for name in HTTP_LIMITS:
        monkeypatch.setenv(name, "unset")  # recorded, so the deletion below is undone too
        monkeypatch.delenv(name)
    yield


class Flaky:
    """A stage body that raises `error` on its first `failures` calls, then succeeds."""

    def __init__(self, error: Exception, failures: int) -> None:
        self.error, self.failures, self.calls = error, failures, 0

    def __call__(self) -> None:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error


def test_a_transient_error_is_retried_and_each_attempt_recorded(
    project: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    body = Flaky(TransientSourceError("HTTP 503 Service Unavailable"), failures=1)
    run_stage("ingest", body)
    assert body.calls == 2
    assert (
        "stage ingest: attempt 1 of 3 failed (TransientSourceError: HTTP 503 Service "
        "Unavailable); retrying in 0.2 s"
    ) in caplog.messages
    records = ledger_records(project)
    assert [(r["event"], r["attempt"]) for r in records] == [
        ("started", 1),
        ("finished", 1),
        ("started", 2),
        ("finished", 2),
    ]
    first, second = records[1], records[3]
    assert first["status"] == "failed" and first["retrying"] is True
    assert first["error"] == {
        "class": "TransientSourceError",
        "message": "HTTP 503 Service Unavailable",
    }
    assert second["status"] == "succeeded" and second["error"] is None
    assert second["retrying"] is False
    for record in records:
        assert record["lifecycle_run"] == "run-1"
        assert record["stage"] == "ingest"
        assert record["pid"] == os.getpid()
        assert record["max_attempts"] == 3
    # the deps of dvc.yaml's ingest stage; none of them exists in this folder
    assert second["inputs"]["pipelines/ingest.py"] is None
    assert second["inputs"]["contracts/milling.yaml"] is None  # ${data.contract}
    assert second["inputs"]["feedback"] is None  # ${ingest.feedback.directory}
    assert second["mlflow_run_id"] is None


def test_a_non_transient_error_fails_at_once(
    project: Path, caplog: pytest.LogCaptureFixture
) -> None:
    body = Flaky(DataValidationError("data contract 'milling': 1 of 65 expectations failed"), 9)
    with pytest.raises(SystemExit) as exit_:
        run_stage("validate", body)
    assert exit_.value.code == 1
    assert body.calls == 1
    assert (
        "stage validate failed: data contract 'milling': 1 of 65 expectations failed"
        in caplog.messages
    )
    (only,) = finished(project)
    assert only["status"] == "failed" and only["retrying"] is False
    assert only["error"]["class"] == "DataValidationError"


def test_retries_stop_after_the_stage_s_own_attempts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    make_project(tmp_path, {"default": FAST, "stages": {"train": {"attempts": 2}}})
    monkeypatch.chdir(tmp_path)
    body = Flaky(TransientSourceError("connect timed out"), failures=9)
    with pytest.raises(SystemExit):
        run_stage("train", body)
    assert body.calls == 2
    assert "stage train failed after 2 attempts: connect timed out" in caplog.messages
    records = finished(tmp_path)
    assert [(r["attempt"], r["retrying"]) for r in records] == [(1, True), (2, False)]
    assert {r["max_attempts"] for r in records} == {2}


def test_a_broken_params_yaml_fails_at_once_with_the_config_error(
    project: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (project / "params.yaml").write_text("retry:\n  default: {attempts: many}\n")
    calls = []

    def body() -> None:
        calls.append(1)
        load_params()

    with pytest.raises(SystemExit):
        run_stage("train", body)
    assert len(calls) == 1
    assert (
        "stage train failed: params.yaml: 1 problem(s)\n"
        "  - retry.default.attempts: Input should be a valid integer, unable to parse string "
        "as an integer (got 'many')"
    ) in caplog.messages
    (only,) = finished(project)
    assert only["error"]["class"] == ConfigError.__name__


def test_ctrl_c_is_recorded_as_interrupted(project: Path) -> None:
    with pytest.raises(KeyboardInterrupt):
        run_stage("train", Flaky(KeyboardInterrupt(), failures=1))
    (only,) = finished(project)
    assert only["status"] == "interrupted"
    assert only["error"]["class"] == "KeyboardInterrupt"


def test_a_ledger_that_cannot_be_written_never_fails_the_stage(
    project: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (project / ".lifecycle").write_text("a file where the ledger's folder should be")
    run_stage("ingest", lambda: None)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2  # started and finished
    assert warnings[0].startswith(
        "ledger .lifecycle/ledger.jsonl: could not record started attempt 1 of stage ingest "
        "(FileExistsError: "
    )
    assert warnings[0].endswith("; the stage goes on")


# --- the MLflow tracking server -------------------------------------------------------------


def tracked_body(stage: str) -> None:
    """What a tracking stage does: start tracking, open the stage's run, log to it."""
    from pipelines.edges.tracking import start_tracking

    tracking = start_tracking("lifecycle")
    with tracking.stage_run(stage):
        tracking.mlflow.log_metric("rows", 3)


@pytest.mark.usefixtures("http_limits_restored")
def test_an_unreachable_tracking_server_fails_after_the_attempts_in_bounded_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    make_project(tmp_path, {"default": {**FAST, "attempts": 2}})
    monkeypatch.chdir(tmp_path)
    uri = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    unreachable = (
        f"MLflow tracking server unreachable at {uri} (connection refused) while setting "
        "the experiment 'lifecycle'"
    )
    start = time.monotonic()
    with pytest.raises(SystemExit):
        run_stage("train", lambda: tracked_body("train"))
    elapsed = time.monotonic() - start
    # registry.HTTP_LIMITS: MLflow gives up on a refused connection in about 3 s
    assert elapsed < 15, f"two attempts took {elapsed:.1f} s"
    assert f"stage train failed after 2 attempts: {unreachable}" in caplog.messages
    assert (
        f"stage train: attempt 1 of 2 failed (TrackingUnavailableError: {unreachable}); "
        "retrying in 0.2 s"
    ) in caplog.messages
    records = finished(tmp_path)
    assert [r["attempt"] for r in records] == [1, 2]
    for record in records:
        assert record["error"] == {"class": "TrackingUnavailableError", "message": unreachable}
        assert record["mlflow_run_id"] is None


def test_mlflow_errors_from_calls_outside_stage_run_are_retried_too(
    project: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Like evaluate, which logs to the train run with `mlflow.start_run(run_id=...)`."""
    import mlflow

    import pipelines.edges.tracking  # noqa: F401  (a tracking stage has imported it)

    uri = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    with pytest.raises(SystemExit):
        run_stage("evaluate", lambda: mlflow.MlflowClient(uri).get_run("0" * 32))
    assert (
        f"stage evaluate failed after 3 attempts: MLflow tracking server unreachable at {uri} "
        "(connection refused)"
    ) in caplog.messages
    assert [r["error"]["class"] for r in finished(project)] == ["TrackingUnavailableError"] * 3


@pytest.mark.usefixtures("http_limits_restored")
def test_the_ledger_holds_the_stage_s_mlflow_run_under_the_same_lifecycle_run(
    project: Path, monkeypatch: pytest.MonkeyPatch, mlflow_server: MlflowServer
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server.url)
    monkeypatch.setenv("LIFECYCLE_RUN_ID", f"runtime-{project.name}")
    run_stage("monitor", lambda: tracked_body("monitor"))
    (record,) = finished(project)
    assert record["status"] == "succeeded"
    import mlflow

    run = mlflow.MlflowClient(mlflow_server.url).get_run(record["mlflow_run_id"])
    assert run.data.tags["stage"] == "monitor"
    assert run.data.tags["lifecycle_run"] == record["lifecycle_run"] == f"runtime-{project.name}"
    assert run.data.metrics == {"rows": 3.0}


# --- two lifecycle runs at once ---------------------------------------------------------------


def test_a_stage_refuses_to_run_beside_another_dvc_repro_of_the_project(
    project: Path, tmp_path_factory: pytest.TempPathFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """A stand-in `dvc repro` (an executable named dvc, run as `dvc repro`) busy in the
    project: a stage it did not start refuses to run, and leaves no ledger attempt."""
    bin_ = tmp_path_factory.mktemp("bin")
    fake_dvc, ready = bin_ / "dvc", bin_ / "ready"
    fake_dvc.write_text(
        f"#!{sys.executable}\nimport pathlib, time\n"
        f"pathlib.Path({str(ready)!r}).touch()\ntime.sleep(60)\n"
    )
    fake_dvc.chmod(0o755)
    repro = subprocess.Popen([str(fake_dvc), "repro"], cwd=project)
    try:
        deadline = time.monotonic() + 30
        while not ready.exists():  # running, not half-way through exec
            assert repro.poll() is None and time.monotonic() < deadline
            time.sleep(0.01)
        calls = []
        with pytest.raises(SystemExit) as exit_:
            run_stage("ingest", lambda: calls.append(1))
        assert exit_.value.code == 1 and calls == []
        assert (
            f"stage ingest refused: another `dvc repro` is running in this project "
            f"(pid {repro.pid}: {sys.executable} {fake_dvc} repro); two lifecycle runs at once "
            "overwrite each other's files. Wait for it to finish (`lifecycle status` shows its "
            "stages) or stop it, then run dvc repro again"
        ) in caplog.messages
        assert not (project / LEDGER).exists()

        elsewhere = tmp_path_factory.mktemp("another-project")
        make_project(elsewhere)
        os.chdir(elsewhere)  # the project fixture's monkeypatch.chdir restores the folder
        run_stage("ingest", lambda: calls.append(1))  # a repro of another project: no matter
        assert calls == [1]
    finally:
        repro.kill()
        repro.wait(timeout=30)
