"""Two serving replicas that share nothing but a shared store (a local folder here).

Each replica is a `lifecycle serve` in its own project folder with its own params.yaml and
BentoML store; both follow `<shared>/champion.json`. The shared folder is reached through a
symlink, which the tests swap for a plain file to make the store unreachable (the path then
fails with NotADirectoryError, as an unreachable S3 endpoint fails every call) and back.
The module keeps its order: a replica that starts while the store is down, one promotion
and one rollback under load, then the store going away under a serving replica.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from core.clock import now_text
from core.records.rollout import RolloutSlot, SlotModel
from serving.model_store import load_served_model
from serving.prediction_log import read_prediction_log
from serving.prediction_log.shared import sync_shared_log
from serving.shared_store import (
    Published,
    open_shared_store,
    publish_model,
    read_published,
    write_shared_pointer,
)
from tests.mlflow_server import free_port
from tests.serving.server import (
    BIN,
    MODEL_NAME,
    RunningServer,
    promote,
    request_rows,
    serve,
    serve_command,
    train_tiny_model,
    write_project,
)

pytestmark = pytest.mark.slow

POLL_S = 0.3
FOLLOW_TIMEOUT_S = 20.0


@dataclass
class Stack:
    root: Path
    link: Path  # the URL every replica is given: a symlink to `real`, or a file when down
    real: Path
    v1: Published
    v2: Published

    def down(self) -> None:
        self.link.unlink()
        self.link.write_text("the shared store is unreachable\n")

    def up(self) -> None:
        self.link.unlink()
        self.link.symlink_to(self.real, target_is_directory=True)

    def point_at(self, published: Published) -> None:
        write_shared_pointer(open_shared_store(str(self.link)), published)


def _replica_project(root: Path, name: str) -> Path:
    project = root / name
    project.mkdir()
    write_project(
        project,
        {
            "store": "store",  # each replica's own BentoML store
            "reload_poll_s": POLL_S,
            "workers": 1,
            "threads": 4,
            "batching": {"enabled": False},
            "prediction_log": {
                "directory": "predictions",
                "flush_interval_s": 0.2,
                "to_shared_store": True,  # one object per flush in <shared>/predictions/
            },
        },
    )
    return project


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Stack:
    """Deploy's side: two models published to the shared store, the pointer at v1."""
    root = tmp_path_factory.mktemp("replicas")
    deploy_store, real, link = root / "deploy-store", root / "shared", root / "link"
    real.mkdir()
    link.symlink_to(real, target_is_directory=True)
    shared = open_shared_store(str(link))
    published = []
    for version, max_iter in ((1, 20), (2, 5)):
        model = train_tiny_model(root / f"model-v{version}", max_iter=max_iter, rows=1500)
        tag = promote(model, deploy_store, version)
        published.append(publish_model(shared, load_served_model(tag, deploy_store), deploy_store))
    write_shared_pointer(shared, published[0])
    return Stack(root=root, link=link, real=real, v1=published[0], v2=published[1])


def _env(stack: Stack, replica: str) -> dict[str, str]:
    return {"LIFECYCLE_SHARED_STORE": str(stack.link), "LIFECYCLE_REPLICA_ID": replica}


@pytest.fixture(scope="module")
def replica_a(stack: Stack) -> Iterator[RunningServer]:
    """Started while the shared store is down: it must come up not ready."""
    project = _replica_project(stack.root, "replica-a")
    port = free_port()
    argv = [str(BIN / "lifecycle"), "serve", "--port", str(port)]
    stack.down()
    try:
        with serve_command(argv, project, port, _env(stack, "a"), ready=False) as server:
            yield server
    finally:
        if not stack.link.is_symlink():
            stack.up()


@pytest.fixture(scope="module")
def replica_b(stack: Stack, replica_a: RunningServer) -> Iterator[RunningServer]:
    with serve(_replica_project(stack.root, "replica-b"), env=_env(stack, "b")) as server:
        yield server


def _readyz(server: RunningServer) -> httpx.Response:
    return httpx.get(f"{server.url}/readyz", timeout=5)


def _wait_for(server: RunningServer, model: str) -> None:
    deadline = time.monotonic() + FOLLOW_TIMEOUT_S
    while _readyz(server).json().get("model") != model:
        assert time.monotonic() < deadline, f"still not {model}:\n{server.tail()}"
        time.sleep(0.05)


def test_a_replica_started_while_the_store_is_down_waits_then_serves(
    stack: Stack, replica_a: RunningServer
) -> None:
    waiting = _readyz(replica_a)
    stack.up()
    _wait_for(replica_a, stack.v1.tag)

    assert waiting.status_code == 503, waiting.text
    assert waiting.json()["ready"] is False and "unreachable" in waiting.json()["reason"]
    assert _readyz(replica_a).json() == {
        "ready": True,
        "model": stack.v1.tag,
        "source": "shared",
        "rollout": None,
    }
    assert (stack.root / "replica-a" / "store" / "models" / MODEL_NAME / "v1").is_dir()


def test_both_replicas_follow_a_promotion_and_a_rollback_under_load(
    stack: Stack, replica_a: RunningServer, replica_b: RunningServer
) -> None:
    _wait_for(replica_b, stack.v1.tag)
    records = [row.to_dict() for _, row in request_rows(20, seed=3).iterrows()]
    stop = threading.Event()
    seen: dict[str, list[tuple[int, str]]] = {}

    def hammer(name: str, server: RunningServer) -> None:
        answers = seen.setdefault(name, [])
        with httpx.Client(base_url=server.url, timeout=10) as http:
            sent = 0
            while not stop.is_set() or sent < 10:
                answer = http.post("/predict", json=records[sent % len(records)])
                version = answer.json().get("model_version", "?") if answer.is_success else "?"
                answers.append((answer.status_code, version))
                sent += 1

    threads = [
        threading.Thread(target=hammer, args=(f"{name}{i}", server))
        for name, server in (("a", replica_a), ("b", replica_b))
        for i in range(2)
    ]
    for thread in threads:
        thread.start()
    try:
        deadline = time.monotonic() + FOLLOW_TIMEOUT_S
        while len(seen) < len(threads) or min(map(len, seen.values())) < 3:  # load on v1 first
            assert time.monotonic() < deadline, "the clients sent nothing"
            time.sleep(0.05)
        stack.point_at(stack.v2)  # a promotion
        _wait_for(replica_a, stack.v2.tag)
        _wait_for(replica_b, stack.v2.tag)
        time.sleep(2 * POLL_S)  # some load on v2 in every client
        stack.point_at(stack.v1)  # a rollback: the model is already published
        _wait_for(replica_a, stack.v1.tag)
        _wait_for(replica_b, stack.v1.tag)
    finally:
        stop.set()
        for thread in threads:
            thread.join()

    answers = [answer for client in seen.values() for answer in client]
    assert {status for status, _ in answers} == {200}, f"{len(answers)} answers"
    for client, got in seen.items():  # v1, then v2, then v1 again: never mixed
        versions = [version for _, version in got]
        changes = [v for i, v in enumerate(versions) if i == 0 or v != versions[i - 1]]
        assert changes == ["v1", "v2", "v1"], (client, changes)


def test_a_store_that_goes_away_leaves_the_replicas_serving(
    stack: Stack, replica_a: RunningServer, replica_b: RunningServer
) -> None:
    stack.down()
    try:
        time.sleep(4 * POLL_S)  # several polls against the unreachable store
        answers = [
            httpx.post(f"{server.url}/predict", json=request_rows(1).iloc[0].to_dict(), timeout=10)
            for server in (replica_a, replica_b)
        ]
        metrics = httpx.get(f"{replica_b.url}/metrics", timeout=5).text
    finally:
        stack.up()

    assert [answer.status_code for answer in answers] == [200, 200]
    assert {answer.json()["model_version"] for answer in answers} == {"v1"}
    assert all(_readyz(server).status_code == 200 for server in (replica_a, replica_b))
    failed = [
        line
        for line in metrics.splitlines()
        if line.startswith('lifecycle_model_reloads_total{outcome="failed"}')
    ]
    assert failed and float(failed[0].split()[-1]) >= 2, metrics
    lines = replica_b.tail(400).splitlines()
    reloads = [line for line in lines if "reload failed" in line and "unreachable" in line]
    assert len(reloads) == 1, reloads  # logged once per message, however many polls
    writes = [line for line in lines if "prediction log: cannot write" in line]
    assert len(writes) <= 1, writes  # the log keeps its rows and warns once
    assert read_published(open_shared_store(str(stack.link)), MODEL_NAME, 2) is not None


SHARED_ROLLOUT = "shared-shadow"


def test_both_replicas_follow_a_shadow_rollout_in_the_shared_pointer(
    stack: Stack, replica_a: RunningServer, replica_b: RunningServer
) -> None:
    """The shared pointer's rollout block (deploy's `write_shared_pointer` with a slot):
    every replica fetches the candidate, scores in shadow, answers from the champion; the
    block's removal (an abort) takes it out again."""
    v2 = stack.v2
    model = SlotModel(tag=v2.tag, version="v2", run_id=v2.run_id,
                      content_sha256=v2.content_sha256, threshold=v2.threshold)  # fmt: skip
    slot = RolloutSlot(id=SHARED_ROLLOUT, kind="shadow", model=model, started_at=now_text())
    write_shared_pointer(open_shared_store(str(stack.link)), stack.v1, slot)
    expected = {"id": SHARED_ROLLOUT, "kind": "shadow", "version": "v2", "share": 0.0}
    for server in (replica_a, replica_b):
        deadline = time.monotonic() + FOLLOW_TIMEOUT_S
        while _readyz(server).json().get("rollout") != expected:
            assert time.monotonic() < deadline, f"no rollout:\n{server.tail()}"
            time.sleep(0.05)
    records = [row.to_dict() for _, row in request_rows(20, seed=5).iterrows()]
    answers = [
        httpx.post(f"{server.url}/predict", json=record, timeout=10)
        for server in (replica_a, replica_b)
        for record in records
    ]
    assert {a.status_code for a in answers} == {200}
    assert {a.json()["model_version"] for a in answers} == {"v1"}  # the champion answers

    stack.point_at(stack.v1)  # the rollout aborted: the pointer without its block
    for server in (replica_a, replica_b):
        deadline = time.monotonic() + FOLLOW_TIMEOUT_S
        while _readyz(server).json().get("rollout") is not None:
            assert time.monotonic() < deadline, f"still rolling out:\n{server.tail()}"
            time.sleep(0.05)
        assert _readyz(server).json()["model"] == stack.v1.tag


def test_the_monitor_reads_both_replicas_traffic_from_the_shared_log(
    stack: Stack, replica_a: RunningServer, replica_b: RunningServer
) -> None:
    for server in (replica_a, replica_b):
        assert server.stop() is not None, server.tail()  # a graceful stop flushes the log
    local = stack.root / "monitor" / "predictions"
    copied = sync_shared_log(open_shared_store(str(stack.link)), local)
    log = read_prediction_log(local)

    assert copied > 2
    assert {path.name for path in local.glob("date=*/hour=*/replica=*")} == {
        "replica=a",
        "replica=b",
    }
    assert set(log["model_version"]) == {"v1", "v2"} and log["request_id"].notna().all()
    shadowed = log[log["rollout_id"] == SHARED_ROLLOUT]  # both replicas' shadow scores
    assert len(shadowed) == 40 and set(shadowed["shadow_version"]) == {"v2"}
    assert shadowed["shadow_probability"].notna().all()
    for name in ("replica-a", "replica-b"):  # nothing in the replicas' local folders
        assert not (stack.root / name / "predictions").exists()
