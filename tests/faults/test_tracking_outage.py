"""The MLflow tracking server killed in the middle of a lifecycle run, then brought back.

A temporary copy of the repository tracks to a real `mlflow server` (its own SQLite store
and artifact root). A first run makes champion v1, which a real `lifecycle serve` serves.
Then a train parameter changes, `dvc repro` starts, and the tracking server is SIGKILLed
once training has begun: the train stage fails, after its retries, naming the server it
could not reach; nothing after it runs; the service keeps answering with v1. The server
is restarted on the same port and store, and the next `dvc repro` resumes at train
(ingest and validate are not re-run) and completes.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import ProjectCopy
from tests.faults.conftest import (
    STAGES,
    assert_consistent,
    champion,
    digests,
    fast_lifecycle,
    lifecycle_status,
    start_repro,
)
from tests.mlflow_server import free_port, start_mlflow_server
from tests.serving.server import RunningServer, request_rows, serve

pytestmark = pytest.mark.slow

# What train's failure must leave alone: the later stages' records and the champion's.
UNTOUCHED = [
    "reports/evaluate/metrics.json",
    "reports/deploy/decision.json",
    "reports/deploy/champion.json",
    "reports/deploy/alias_history.jsonl",
    "reports/monitor/metrics.json",
    "reports/monitor/decision.json",
    ".bentoml/champion.json",
]
RECORD = request_rows(1, seed=5).to_dict(orient="records")[0]


class TrackingServer:
    """`mlflow server` on a fixed port and store, which can be killed and started again."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None
        self.starts = 0

    @property
    def log(self) -> Path:
        return self.root / f"server-{self.starts}.log"

    def start(self) -> None:
        self.starts += 1
        self.process = start_mlflow_server(self.root, self.port, self.log)

    def kill(self) -> None:
        """SIGKILL the server and its workers: no clean shutdown."""
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)


@pytest.fixture(scope="module")
def tracking(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TrackingServer]:
    server = TrackingServer(tmp_path_factory.mktemp("mlflow-outage"))
    server.start()
    try:
        yield server
    finally:
        server.kill()


@pytest.fixture(scope="module")
def deployed(
    project_copy: ProjectCopy, tracking: TrackingServer
) -> Iterator[tuple[ProjectCopy, RunningServer]]:
    """Champion v1 from a first run tracked to the server, served by `lifecycle serve`."""
    project_copy.edit_params(fast_lifecycle)
    first = project_copy.repro(env={"MLFLOW_TRACKING_URI": tracking.url})
    assert first.returncode == 0, first.output[-3000:]
    assert first.ran == STAGES
    with serve(project_copy.path) as service:
        yield project_copy, service


def _predicted_version(service: RunningServer) -> str:
    answer = httpx.post(f"{service.url}/predict", json=RECORD, timeout=10)
    assert answer.status_code == 200, answer.text
    return answer.json()["model_version"]


def test_training_fails_clearly_while_the_tracking_server_is_down(
    deployed: tuple[ProjectCopy, RunningServer], tracking: TrackingServer
) -> None:
    copy, service = deployed
    state = champion(copy, tracking.url)
    assert state.aliases == {"champion": 1} and _predicted_version(service) == "v1"
    before = digests(copy, UNTOUCHED)
    copy.edit_params(lambda raw: raw["train"]["hist_gradient_boosting"].update(max_iter=60))

    run = start_repro(copy, env={"MLFLOW_TRACKING_URI": tracking.url}, name="outage")
    try:
        run.wait_for("stage train: started")
        tracking.kill()  # mid-run: the stage has begun
        result = run.finish()
    finally:
        run.kill()

    assert result.returncode != 0
    assert result.ran == ["train"]  # ingest and validate were up to date; nothing after
    unreachable = f"MLflow tracking server unreachable at {tracking.url}"
    assert unreachable in result.output, result.output[-3000:]
    assert "stage train: attempt 2 of 3 failed (TrackingUnavailableError" in result.output
    assert "ERROR: failed to reproduce 'train'" in result.output
    train = lifecycle_status(copy)["train"]
    assert (train["state"], train["attempts"]) == ("failed", 3), train
    assert train["error"]["class"] == "TrackingUnavailableError", train

    # the service never needed the tracking server: it keeps answering with the champion
    assert _predicted_version(service) == "v1"
    assert httpx.get(f"{service.url}/readyz", timeout=5).status_code == 200
    assert digests(copy, UNTOUCHED) == before
    # DVC deleted train's outputs before running it; train reaches the tracking server
    # before any work, so each attempt failed in seconds and wrote nothing
    assert not (copy.path / "artifacts/model").exists()
    assert "fit hist_gradient_boosting: started" not in result.output


def test_after_a_restart_the_next_run_resumes_at_train(
    deployed: tuple[ProjectCopy, RunningServer], tracking: TrackingServer
) -> None:
    copy, service = deployed
    tracking.start()  # the same port and store
    assert champion(copy, tracking.url).aliases == {"champion": 1}  # the registry kept it

    result = copy.repro(env={"MLFLOW_TRACKING_URI": tracking.url})

    assert result.returncode == 0, result.output[-3000:]
    assert result.ran[:3] == ["train", "evaluate", "deploy"]
    assert set(result.ran) <= {"train", "evaluate", "deploy", "monitor"}
    state = champion(copy, tracking.url)
    assert_consistent(state)  # promoted or not, registry, record and pointer agree
    deadline = time.monotonic() + 30  # the service follows the pointer within a poll
    while _predicted_version(service) != f"v{state.version}":
        assert time.monotonic() < deadline, service.tail()
        time.sleep(0.2)
