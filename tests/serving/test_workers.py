"""Two serving workers (`serving.workers: 2`) over real HTTP: one log, one metrics, one switch.

Each worker is its own process with its own model, prediction logger and champion poller.
This module starts `lifecycle serve` with two workers and shows that requests reach both,
that a promotion reaches both without a failed request (either version may answer for a
bounded moment while the workers switch one after the other), that `/metrics` counts every
worker's predictions, that a keep-alive client is moved between workers by connection
recycling, and that after a graceful stop the log holds every answered request.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from serving.prediction_log import read_prediction_log
from tests.serving.server import promote, request_rows, serve, train_tiny_model, write_project

pytestmark = pytest.mark.slow

CLIENTS = 8
POLL_S = 0.5
RECYCLE_EVERY = 20  # small, so one keep-alive client is recycled many times in the test
KEEP_ALIVE_REQUESTS = 300
OVERLAP_BOUND_S = POLL_S + 4.0  # the poll, plus loading a model on a busy 2-core machine


def _records(count: int, seed: int) -> list[dict[str, Any]]:
    return json.loads(request_rows(count, seed=seed).to_json(orient="records"))


def _metric(text: str, name: str, **labels: str) -> float:
    """The sum of Prometheus sample `name` over every series whose labels include `labels`."""
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and labels.items() <= sample.labels.items()
    )


def test_two_workers_share_the_load_switch_together_and_log_everything(tmp_path: Path) -> None:
    v1 = train_tiny_model(tmp_path / "model-v1", max_iter=30)
    v2 = train_tiny_model(tmp_path / "model-v2", max_iter=5)
    store = tmp_path / ".bentoml"
    promote(v1, store, 1)
    write_project(
        tmp_path,
        {
            "store": ".bentoml",
            "workers": 2,
            "reload_poll_s": POLL_S,
            "recycle_connection_every": RECYCLE_EVERY,
            "prediction_log": {"directory": "predictions", "flush_interval_s": 0.2},
        },
    )
    records = _records(50, seed=5)
    answered: Counter[str] = Counter()  # request id -> answers (one each)
    seen: list[list[tuple[int, str, float]]] = [[] for _ in range(CLIENTS)]
    lock = threading.Lock()
    stop = threading.Event()

    with serve(tmp_path) as server:

        def client(number: int) -> None:
            sent = 0
            while not stop.is_set() or sent < 30:
                # a new connection per request, so the kernel spreads them over the workers
                answer = httpx.post(f"{server.url}/predict", json=records[sent % 50], timeout=10)
                body = answer.json() if answer.is_success else {}
                version = body.get("model_version", "?")
                seen[number].append((answer.status_code, version, time.monotonic()))
                if answer.is_success:
                    with lock:
                        answered[body["request_id"]] += 1
                sent += 1

        kept_alive: list[httpx.Response] = []

        def keep_alive_client() -> None:
            # one pooled connection, reused until an answer says Connection: close
            with httpx.Client(base_url=server.url, timeout=10) as http:
                for number in range(KEEP_ALIVE_REQUESTS):
                    kept_alive.append(http.post("/predict", json=records[number % 50]))

        threads = [threading.Thread(target=client, args=(i,)) for i in range(CLIENTS)]
        threads.append(threading.Thread(target=keep_alive_client))
        for thread in threads:
            thread.start()
        time.sleep(1.0)  # the load runs on v1 first
        promote(v2, store, 2, threshold=0.4)
        # no reload call: each worker's own poller must find the new champion
        deadline, probes = time.monotonic() + 20, 0
        while True:
            probe = [httpx.post(f"{server.url}/predict", json=records[0]) for _ in range(20)]
            probes += len(probe)
            versions = {answer.json()["model_version"] for answer in probe}
            if versions == {"v2"}:
                break
            assert time.monotonic() < deadline, f"still answering {versions}:\n{server.tail()}"
            time.sleep(0.2)
        time.sleep(1.0)
        stop.set()
        for thread in threads:
            thread.join()
        metrics = httpx.get(f"{server.url}/metrics").text
        returncode = server.stop()

    answers = [answer for client_seen in seen for answer in client_seen]
    answers += [(r.status_code, r.json().get("model_version", "?"), 0.0) for r in kept_alive]
    assert Counter(status for status, _, _ in answers) == {200: len(answers)}
    # while the workers switch, one at a time, either version may answer; the overlap is
    # bounded by the poll interval plus a model load, and after it only v2 answers
    timed = [answer for client_seen in seen for answer in client_seen]
    last_v1 = max(moment for _, version, moment in timed if version == "v1")
    first_v2 = min(moment for _, version, moment in timed if version == "v2")
    assert last_v1 - first_v2 < OVERLAP_BOUND_S, (last_v1 - first_v2, server.tail())
    for client_seen in seen:
        assert client_seen[0][1] == "v1" and client_seen[-1][1] == "v2"

    # /metrics sums the workers: every client request plus the probes
    counted = _metric(metrics, "lifecycle_predictions_total", endpoint="predict")
    assert counted == len(answers) + probes, metrics[-3000:]
    assert _metric(metrics, "lifecycle_model_reloads_total", outcome="swapped") == 2.0

    assert returncode is not None, f"the server did not stop on SIGTERM:\n{server.tail()}"
    log = read_prediction_log(tmp_path / "predictions")
    logged = Counter(log["request_id"])
    assert all(logged[rid] == 1 for rid in answered), "an answered request is missing"
    served_by = _worker_of_each_request(tmp_path / "predictions")
    assert len(set(served_by.values())) == 2, "one worker took every request"

    # the keep-alive client was told to reconnect now and then, lost no request, and its
    # one client-side pool was served by both workers in turn
    closes = [r for r in kept_alive if r.headers.get("connection", "").lower() == "close"]
    assert len(kept_alive) == KEEP_ALIVE_REQUESTS and closes
    workers = Counter(served_by[r.json()["request_id"]] for r in kept_alive)
    assert len(workers) == 2, workers


def _worker_of_each_request(directory: Path) -> dict[str, str]:
    """Request id -> the pid of the worker that logged it (each process has its own part file)."""
    owner = {}
    for part in directory.rglob("part-*.jsonl"):
        pid = part.name.split("-")[1]
        for line in part.read_text().splitlines():
            owner[json.loads(line)["request_id"]] = pid
    return owner
