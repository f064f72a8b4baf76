"""The closed loop, end to end, with every part real.

A temporary copy of the repository runs `dvc repro` (champion v1), then `lifecycle serve`
serves it. `lifecycle simulate` sends traffic over HTTP and delivers the labels;
`lifecycle watch --once` runs one iteration of the loop:

1. traffic of the published process: no drift, no retrain, the champion stays;
2. traffic where failures follow another mechanism (`failure_mechanism`: the inputs shift
   and the failure rules change): drift detected, the window's labelled rows become a
   feedback batch, `dvc repro` retrains, the gate promotes the challenger only because it
   beats the champion on the newest batch's holdout rows, and the running service answers
   with the new version, while a client sending requests throughout sees no failure.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import BIN, ProjectCopy
from tests.serving.server import RunningServer, request_rows, serve

pytestmark = pytest.mark.slow

SWITCH_TIMEOUT_S = 60.0


def lifecycle(project: Path, *args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "LIFECYCLE_"))}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    return subprocess.run(
        [str(BIN / "lifecycle"), *args],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def watch_records(project: Path) -> list[dict]:
    log = project / "reports" / "watch" / "iterations.jsonl"
    return [json.loads(line) for line in log.read_text().splitlines() if line.strip()]


class SteadyClient:
    """Sends one real request after another in a thread and counts answers by version."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.versions: Counter[str] = Counter()
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        row = request_rows(1, seed=99).drop(columns=["UDI", "Product ID"])  # no ids: unlabelled
        self._record = row.to_dict(orient="records")[0]

    def __enter__(self) -> SteadyClient:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        with httpx.Client(timeout=10) as client:
            while not self._stop.is_set():
                try:
                    answer = client.post(f"{self.url}/predict", json=self._record)
                except httpx.HTTPError as exc:
                    self.failures.append(repr(exc))
                    continue
                if answer.status_code != 200:
                    self.failures.append(f"{answer.status_code}: {answer.text[:200]}")
                else:
                    self.versions[answer.json()["model_version"]] += 1
                time.sleep(0.02)


@pytest.fixture(scope="module")
def served(project_copy: ProjectCopy) -> Iterator[tuple[ProjectCopy, RunningServer]]:
    first = project_copy.repro()
    assert first.returncode == 0, first.output[-3000:]
    with serve(project_copy.path) as server:
        yield project_copy, server


def simulate(project: Path, url: str, scenario: str, rows: int, seed: int) -> str:
    done = lifecycle(
        project, "simulate", "--scenario", scenario, "--rows", str(rows), "--seed", str(seed),
        "--url", url,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_traffic_without_drift_does_not_retrain(served):
    project, server = served
    simulate(project.path, server.url, "none", 1000, seed=11)
    done = lifecycle(project.path, "watch", "--once")
    assert done.returncode == 0, done.stdout + done.stderr

    record = watch_records(project.path)[-1]
    assert record["window"]["rows"] == 1000
    assert record["window"]["labelled_rows"] == 1000
    assert record["verdict"]["retrain"] is False, record["verdict"]["reasons"]
    assert record["verdict"]["reasons"][0].startswith("keep the champion")
    assert record["action"] == "none"
    decision = json.loads(project.read("reports/monitor/decision.json"))
    assert decision["drift"]["dataset_drift"] is False
    assert decision["drift"]["prediction_drift"] is False
    assert not list((project.path / "data" / "feedback").glob("batch-*.parquet"))
    assert httpx.post(f"{server.url}/admin/reload").json()["model_version"] == "v1"


def test_changed_failure_mechanism_retrains_and_the_service_switches(served):
    project, server = served
    with SteadyClient(server.url) as client:
        simulate(project.path, server.url, "failure_mechanism", 5000, seed=12)
        done = lifecycle(project.path, "watch", "--once")
        assert done.returncode == 0, done.stdout + done.stderr
        deadline = time.monotonic() + SWITCH_TIMEOUT_S
        while client.versions["v2"] < 20 and time.monotonic() < deadline:
            time.sleep(0.2)

    record = watch_records(project.path)[-1]
    assert record["verdict"]["retrain"] is True, record["verdict"]["reasons"]
    assert record["action"] == "retrained", record
    # the window's labelled rows: the newest of the 6,000 simulated (the steady client's
    # requests carry no id and get no label); benchmarks/results/retrain.md shows why about
    # 5,000 new rows are needed for the retrained model to pass the whole gate
    assert 4500 <= record["feedback"]["rows"] <= 5000
    assert record["deploy"]["promoted"] is True, record["deploy"]["reasons"]
    assert record["deploy"]["champion_after"] == 2

    decision = json.loads(project.read("reports/deploy/decision.json"))
    recent = decision["recent_window"]
    assert recent["passed"] is True
    assert recent["challenger"] > recent["champion"], recent
    monitor = json.loads(project.read("reports/monitor/decision.json"))
    assert monitor["champion"]["version"] == 2  # the monitor now watches the new champion

    assert client.failures == []
    assert client.versions["v1"] > 0 and client.versions["v2"] >= 20, client.versions
    answer = httpx.post(f"{server.url}/predict", json=request_rows(1).to_dict("records")[0])
    assert answer.json()["model_version"] == "v2"
