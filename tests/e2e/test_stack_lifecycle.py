"""The default lifecycle on the production stack, then its faults under two serving replicas.

One project copy for the module; the tests run in order and each needs the state the earlier
ones left (`_needs` fails clearly when it is missing). Two full trainings: the default
lifecycle (test 1) and the challenger trained while PostgreSQL restarts (test 4). The stack
is the session's (tests/stack_servers.py): PostgreSQL 15, moto_server (S3), `mlflow server`.

S3 "unreachable" is `pause_s3()` (SIGSTOP): requests hang instead of being refused, and the
objects (MLflow's artifacts, the DVC remote, v1 in the shared store) survive, which
`stop_s3()` would lose. The shared store bounds its S3 calls (serving.shared_store
.S3_CLIENT_CONFIG); the MLflow client in the failing deploy gets a 10 s request timeout and
no HTTP retries (its defaults, 120 s and 7 retries, would hold the stage for many minutes
while the tracking server's own S3 upload hangs).
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from lifecycle.stack.services import configure_dvc_remote
from tests.e2e.conftest import BIN, ProjectCopy, copy_project
from tests.faults.conftest import MODEL, STAGES, repro_env, start_repro
from tests.mlflow_server import free_port
from tests.serving.server import RunningServer, request_rows, serve_command, write_project
from tests.stack_servers import Stack

pytestmark = pytest.mark.slow

POLL_S = 0.5  # the replicas' serving.reload_poll_s
FOLLOW_MARGIN_S = 15.0  # fetching a model from S3 and loading it, on a busy CI machine
STATE: dict[str, Any] = {}  # what each test leaves for the next ones


def _needs(*keys: str) -> None:
    missing = [key for key in keys if key not in STATE]
    if missing:
        pytest.fail(
            f"needs {missing} from an earlier test of this module, which failed or did not run"
        )


def _git(repo: Path, *args: str) -> None:
    git = ["git", "-c", "user.name=test", "-c", "user.email=test@example.com"]
    subprocess.run([*git, *args], cwd=repo, check=True, capture_output=True)


def _dvc(repo: Path, stack: Stack, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / "dvc"), *args],
        cwd=repo,
        env=repro_env(stack.env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _client(stack: Stack) -> Any:
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=stack.tracking_uri, registry_uri=stack.tracking_uri)


def _shared_pointer(stack: Stack) -> dict[str, Any]:
    body = stack.s3().get_object(Bucket=stack.bucket, Key="serving/champion.json")["Body"]
    return json.loads(body.read())


def _local_pointer(copy: ProjectCopy) -> str:
    return json.loads(copy.read(".bentoml/champion.json"))["tag"]


@pytest.fixture(scope="module")
def copy(tmp_path_factory: pytest.TempPathFactory, stack: Stack) -> ProjectCopy:
    project = copy_project(tmp_path_factory.mktemp("stack-lifecycle"))
    configure_dvc_remote(project.path, stack.bucket, stack.s3_endpoint)
    return project


# --- 1. the default lifecycle ----------------------------------------------------------------


def test_the_default_lifecycle_runs_on_the_stack(copy: ProjectCopy, stack: Stack) -> None:
    import psycopg2

    result = copy.repro(env=stack.env, timeout=900)
    assert result.returncode == 0, result.output[-4000:]
    assert result.ran == STAGES, result.ran
    assert not (copy.path / "mlflow.db").exists()  # everything went to the server

    client = _client(stack)
    experiment = client.get_experiment_by_name("lifecycle")
    runs = client.search_runs([experiment.experiment_id])
    parents = [run for run in runs if (run.info.run_name or "").startswith("lifecycle ")]
    assert len(parents) == 1, [run.info.run_name for run in runs]
    children = {
        run.data.tags.get("stage"): run
        for run in runs
        if run.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id
    }
    assert {"train", "deploy", "monitor"} <= set(children), sorted(map(str, children))
    train = children["train"]
    datasets = [item.dataset.name for item in train.inputs.dataset_inputs]
    assert any(name.startswith("train-split") for name in datasets), datasets
    evaluation = {item.path for item in client.list_artifacts(train.info.run_id, "evaluation")}
    assert "evaluation/plots.png" in evaluation, evaluation

    champion = client.get_model_version_by_alias(MODEL, "champion")
    assert champion.version == "1" and champion.run_id == train.info.run_id
    assert {"champion_since", "promotion_evidence", "family"} <= set(champion.tags), champion.tags
    card = [item.path for item in client.list_artifacts(champion.run_id, "model_card")]
    assert card and champion.description, (card, champion.description)

    listed = stack.s3().list_objects_v2(Bucket=stack.bucket, Prefix="mlflow/")
    keys = [item["Key"] for item in listed.get("Contents", [])]
    assert any(key.endswith(f"{train.info.run_id}/artifacts/evaluation/plots.png") for key in keys)
    assert any("/model_card/" in key for key in keys), keys[:20]

    with psycopg2.connect(stack.postgres_dsn) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT run_uuid FROM runs")
        rows = {row[0] for row in cursor.fetchall()}
        cursor.execute("SELECT version FROM model_versions WHERE name = %s", (MODEL,))
        versions = [row[0] for row in cursor.fetchall()]
    assert {run.info.run_id for run in runs} <= rows and versions == [1]

    assert _shared_pointer(stack)["tag"] == f"{MODEL}:v1"
    assert _local_pointer(copy) == f"{MODEL}:v1"
    _git(copy.path, "add", "-A")  # dvc.lock of this run, for the clone of test 2
    _git(copy.path, "commit", "-qm", "the default lifecycle on the stack")
    STATE["v1"] = f"{MODEL}:v1"


# --- 2. the DVC remote ----------------------------------------------------------------------


def test_a_second_clone_pulls_everything_and_reproduces_nothing(
    copy: ProjectCopy, stack: Stack, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """`dvc push` after the run (its dvc.lock and the three uncached records committed, as
    docs/stack.md says); a clone `dvc pull`s every cached output from the stack's remote, and
    its `dvc repro` runs no stage: it lacks nothing git and the remote do not hold."""
    _needs("v1")
    pushed = _dvc(copy.path, stack, "push")
    assert pushed.returncode == 0, pushed.stdout + pushed.stderr
    clone = tmp_path_factory.mktemp("clone") / "project"
    subprocess.run(["git", "clone", "-q", str(copy.path), str(clone)], check=True)
    configure_dvc_remote(clone, stack.bucket, stack.s3_endpoint)
    pulled = _dvc(clone, stack, "pull")
    assert pulled.returncode == 0, pulled.stdout + pulled.stderr
    status = _dvc(clone, stack, "status", "--json")
    assert status.returncode == 0, status.stdout + status.stderr
    assert json.loads(status.stdout) == {}, status.stdout  # nothing changed, nothing missing
    repro = _dvc(clone, stack, "repro")
    assert repro.returncode == 0, repro.stdout + repro.stderr
    assert "Running stage" not in repro.stdout, repro.stdout
    assert (clone / "artifacts/model/model.skops").read_bytes() == copy.read(
        "artifacts/model/model.skops"
    )
    assert (clone / "reports/evaluate/metrics.json").read_bytes() == copy.read(
        "reports/evaluate/metrics.json"
    )


# --- 3. two replicas on the shared S3 store --------------------------------------------------


@dataclass
class Replicas:
    servers: dict[str, RunningServer] = field(default_factory=dict)


def _replica_env(stack: Stack, project: Path, name: str) -> dict[str, str]:
    env = {k: v for k, v in stack.env.items() if not k.startswith("MLFLOW_")}
    env.update(
        LIFECYCLE_REPLICA_ID=name, BENTOML_HOME=str(project / "bentoml-home"), PYTHONUNBUFFERED="1"
    )
    return env


def _start_replica(exits: ExitStack, root: Path, stack: Stack, name: str) -> RunningServer:
    project = root / f"replica-{name}"
    project.mkdir()
    write_project(
        project,
        {
            "store": "store",  # its own serving store
            "reload_poll_s": POLL_S,
            "workers": 1,
            "threads": 4,
            "batching": {"enabled": False},
        },
    )
    port = free_port()
    argv = [str(BIN / "lifecycle"), "serve", "--port", str(port)]
    env = _replica_env(stack, project, name)
    return exits.enter_context(serve_command(argv, project, port, env, ready=False))


@pytest.fixture(scope="module")
def replicas(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Replicas, ExitStack]]:
    with ExitStack() as exits:
        yield Replicas(), exits


def _readyz(server: RunningServer) -> httpx.Response:
    return httpx.get(f"{server.url}/readyz", timeout=10)


def _wait_for_model(server: RunningServer, tag: str, timeout_s: float) -> float:
    """Seconds until the replica's /readyz names `tag`; fails after `timeout_s`."""
    start = time.monotonic()
    while True:
        answer = _readyz(server)
        if answer.status_code == 200 and answer.json().get("model") == tag:
            return time.monotonic() - start
        assert time.monotonic() - start < timeout_s, f"not {tag}: {answer.text}\n{server.tail()}"
        time.sleep(0.05)


def test_a_replica_started_while_s3_is_paused_waits_then_serves(
    stack: Stack, replicas: tuple[Replicas, ExitStack], tmp_path_factory: pytest.TempPathFactory
) -> None:
    _needs("v1")
    group, exits = replicas
    root = tmp_path_factory.mktemp("replicas")
    group.servers["a"] = _start_replica(exits, root, stack, "a")
    _wait_for_model(group.servers["a"], STATE["v1"], 60)
    stack.pause_s3()
    try:
        started = time.monotonic()
        group.servers["b"] = _start_replica(exits, root, stack, "b")
        waiting = _readyz(group.servers["b"])
        answered_after_s = time.monotonic() - started
        serving = _readyz(group.servers["a"])
    finally:
        stack.resume_s3()
    _wait_for_model(group.servers["b"], STATE["v1"], 60)

    assert waiting.status_code == 503, waiting.text
    assert waiting.json()["ready"] is False and "unreachable" in waiting.json()["reason"]
    assert answered_after_s < 90, answered_after_s  # bounded S3 timeouts, not botocore's
    assert serving.status_code == 200  # the running replica stays ready
    assert _readyz(group.servers["b"]).json() == {
        "ready": True,
        "model": STATE["v1"],
        "source": "shared",
        "rollout": None,
    }
    assert (root / "replica-b" / "store" / "models" / MODEL / "v1").is_dir()
    STATE["replicas"] = group


# --- 4. faults under load on both replicas ---------------------------------------------------


class Load:
    """Two client threads per replica, each posting one record after another."""

    def __init__(self, servers: dict[str, RunningServer]) -> None:
        self.records = [row.to_dict() for _, row in request_rows(20, seed=5).iterrows()]
        self.answers: dict[str, list[tuple[int, str]]] = {}
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._hammer, args=(f"{name}{i}", server), daemon=True)
            for name, server in servers.items()
            for i in range(2)
        ]
        for thread in self._threads:
            thread.start()

    def _hammer(self, client: str, server: RunningServer) -> None:
        answers = self.answers.setdefault(client, [])
        with httpx.Client(base_url=server.url, timeout=30) as http:
            sent = 0
            while not self._stop.is_set():
                try:
                    answer = http.post("/predict", json=self.records[sent % len(self.records)])
                    ok = answer.is_success
                    answers.append(
                        (answer.status_code, answer.json()["model_version"] if ok else "?")
                    )
                except httpx.HTTPError as exc:
                    answers.append((0, type(exc).__name__))
                sent += 1
                time.sleep(0.02)  # steady load, leaving the stages their share of two cores

    def failed(self) -> list[tuple[int, str]]:
        return [a for client in list(self.answers.values()) for a in list(client) if a[0] != 200]

    def versions(self) -> set[str]:
        return {v for client in list(self.answers.values()) for _, v in list(client)}

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=60)


@pytest.fixture(scope="module")
def load() -> Iterator[dict[str, Load]]:
    holder: dict[str, Load] = {}
    yield holder
    if "load" in holder:
        holder["load"].stop()


def _challenger_params(raw: dict) -> None:
    raw["train"]["hist_gradient_boosting"]["max_iter"] = 100  # a new model: train re-runs
    # The gate promotes a challenger that trails the champion by at most `tolerance`; the
    # shorter model may trail v1 a little, and these tests are about the stack, not the gate.
    raw["deploy"]["tolerance"] = 1.0
    # One attempt: the S3 fault's deploy fails once, fast, instead of three times.
    raw["retry"]["stages"] = {"deploy": {"attempts": 1}}


def test_postgres_restarted_while_training(
    copy: ProjectCopy, stack: Stack, load: dict[str, Load]
) -> None:
    _needs("v1", "replicas")
    load["load"] = Load(STATE["replicas"].servers)
    copy.edit_params(_challenger_params)
    client = _client(stack)
    experiment = client.get_experiment_by_name("lifecycle").experiment_id
    trained = len(client.search_runs([experiment], "tags.stage = 'train'"))
    running = start_repro(copy, "evaluate", env=stack.env, name="postgres")
    try:
        running.wait_for("Running stage 'train'")
        deadline = time.monotonic() + 300
        while len(client.search_runs([experiment], "tags.stage = 'train'")) == trained:
            assert running.process.poll() is None, running.output[-3000:]
            assert time.monotonic() < deadline, "no train run in MLflow"
            time.sleep(0.2)
        stack.stop_postgres()
        stack.start()
        result = running.finish(timeout_s=900)
    finally:
        running.kill()

    failed_lines = [line for line in result.output.splitlines() if "stage train failed" in line]
    if result.returncode != 0:  # allowed: one clear line, then the run is finished
        assert failed_lines, result.output[-4000:]
        result = copy.repro("evaluate", env=stack.env, timeout=900)
        assert result.returncode == 0, result.output[-4000:]
    assert "Running stage 'evaluate'" in result.output
    # Train registers nothing (deploy does): only v1, still the champion everywhere.
    versions = sorted(int(v.version) for v in client.search_model_versions(f"name = '{MODEL}'"))
    assert versions == [1], versions
    assert client.get_model_version_by_alias(MODEL, "champion").version == "1"
    assert _local_pointer(copy) == _shared_pointer(stack)["tag"] == STATE["v1"]
    assert load["load"].failed() == [], load["load"].failed()[:5]
    STATE["challenger"] = json.loads(copy.read("artifacts/model/meta.json"))["content_sha256"]


def test_s3_paused_during_deploy_fails_clearly_and_moves_nothing(
    copy: ProjectCopy, stack: Stack, load: dict[str, Load]
) -> None:
    _needs("challenger", "replicas")
    env = {**stack.env, "MLFLOW_HTTP_REQUEST_TIMEOUT": "10", "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0"}
    stack.pause_s3()
    try:
        started = time.monotonic()
        result = copy.repro("deploy", env=env, timeout=600)
        took_s = time.monotonic() - started
        pointer_local = _local_pointer(copy)
        alias = _client(stack).get_model_version_by_alias(MODEL, "champion").version
    finally:
        stack.resume_s3()

    assert result.returncode != 0, result.output[-4000:]
    lines = [line for line in result.output.splitlines() if "stage deploy failed" in line]
    assert lines, result.output[-4000:]
    print(f"deploy with S3 paused failed after {took_s:.0f} s: {lines[0]}")
    assert alias == "1" and pointer_local == STATE["v1"]
    assert _shared_pointer(stack)["tag"] == STATE["v1"]
    for server in STATE["replicas"].servers.values():
        assert _readyz(server).json()["model"] == STATE["v1"]
    assert load["load"].failed() == [], load["load"].failed()[:5]
    assert load["load"].versions() == {"v1"}
    STATE["deploy_failed"] = True


def test_with_s3_back_deploy_promotes_v2_and_both_replicas_follow(
    copy: ProjectCopy, stack: Stack, load: dict[str, Load]
) -> None:
    _needs("deploy_failed", "replicas")
    result = copy.repro("deploy", env=stack.env, timeout=600)
    moved = time.monotonic()
    assert result.returncode == 0, result.output[-4000:]
    assert _client(stack).get_model_version_by_alias(MODEL, "champion").version == "2"
    v2 = f"{MODEL}:v2"
    assert _shared_pointer(stack)["tag"] == _local_pointer(copy) == v2
    for server in STATE["replicas"].servers.values():
        _wait_for_model(server, v2, POLL_S + FOLLOW_MARGIN_S - (time.monotonic() - moved))
    assert load["load"].failed() == [], load["load"].failed()[:5]
    STATE["v2"] = v2


def test_rollback_moves_both_replicas_back_to_v1(
    copy: ProjectCopy, stack: Stack, load: dict[str, Load]
) -> None:
    _needs("v2", "replicas")
    done = subprocess.run(
        [str(BIN / "lifecycle"), "rollback", "--reason", "stack test"],
        cwd=copy.path,
        env=repro_env(stack.env),
        capture_output=True,
        text=True,
        timeout=120,
    )
    moved = time.monotonic()
    assert done.returncode == 0, done.stdout + done.stderr
    assert _shared_pointer(stack)["tag"] == STATE["v1"]
    for server in STATE["replicas"].servers.values():
        _wait_for_model(server, STATE["v1"], POLL_S + FOLLOW_MARGIN_S - (time.monotonic() - moved))
    deadline = time.monotonic() + FOLLOW_MARGIN_S  # every client has an answer from v1 again
    while any(not a or a[-1][1] != "v1" for a in list(load["load"].answers.values())):
        assert time.monotonic() < deadline, "a client got no answer from v1 after the rollback"
        time.sleep(0.05)
    load["load"].stop()
    assert load["load"].failed() == [], load["load"].failed()[:5]
    for client, answers in load["load"].answers.items():  # v1, v2, v1: never mixed
        versions = [v for _, v in answers]
        changes = [v for i, v in enumerate(versions) if i == 0 or v != versions[i - 1]]
        assert changes == ["v1", "v2", "v1"], (client, changes)
