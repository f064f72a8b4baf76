"""The registry edge against real MLflow stores: a SQLite file and a real `mlflow server`.

Nothing is mocked. Each backend logs two tiny scikit-learn models once per module; each
test registers them under a registered-model name of its own, so tests do not share state.
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeClassifier
from typer.testing import CliRunner

from core.model_files import model_content_hash
from lifecycle.cli import app
from pipelines.edges import alias_history, registry
from pipelines.edges.registry import RegistryError, RegistryUnavailableError
from tests.conftest import CONTRACT_PATH
from tests.mlflow_server import MlflowServer, free_port

runner = CliRunner()
FRAME = pd.DataFrame(
    np.random.default_rng(0).normal(size=(50, 3)), columns=["torque", "speed", "wear"]
)
LABEL = (FRAME["torque"] + 0.5 * FRAME["wear"] > 0).astype(int)


@dataclass(frozen=True)
class Logged:
    model_uri: str
    run_id: str
    sha256: str
    pipeline: Pipeline


@dataclass(frozen=True)
class Backend:
    uri: str
    first: Logged
    second: Logged


def _log_pipelines(
    uri: str, artifact_root: Path | None, pipelines: dict[str, tuple[Pipeline, list[str]]]
) -> list[Logged]:
    """Fit and log pipelines (name: pipeline, skops trusted types) in one run."""
    import mlflow
    from mlflow.tracking._tracking_service.utils import _use_tracking_uri

    logged = []
    # mlflow.set_tracking_uri also writes (and on restore to None, deletes) the environment
    # variable MLFLOW_TRACKING_URI: the MonkeyPatch context puts the variable back afterwards
    with pytest.MonkeyPatch.context() as patch, _use_tracking_uri(uri):
        patch.setenv("MLFLOW_TRACKING_URI", uri)
        client = mlflow.MlflowClient(uri)
        experiment = client.create_experiment(
            f"registry-{uuid.uuid4().hex[:8]}",
            artifact_location=artifact_root.as_uri() if artifact_root else None,
        )
        with mlflow.start_run(experiment_id=experiment) as run:
            for name, (pipeline, trusted) in pipelines.items():
                pipeline.fit(FRAME, LABEL)
                info = mlflow.sklearn.log_model(
                    pipeline,
                    name=name,  # no dots: MLflow 3 refuses them in logged-model names
                    serialization_format="skops",
                    skops_trusted_types=trusted,
                    pip_requirements=["scikit-learn"],  # inferring them spawns a subprocess
                )
                assert info.model_uri.startswith("models:/m-")
                logged.append(
                    Logged(info.model_uri, run.info.run_id, model_content_hash(pipeline), pipeline)
                )
    return logged


def _log_models(uri: str, artifact_root: Path | None) -> tuple[Logged, Logged]:
    """Two different tiny pipelines; MLflow 3 gives each a `models:/m-<id>` URI."""
    first, second = _log_pipelines(
        uri,
        artifact_root,
        {
            "model-a": (make_pipeline(StandardScaler(), LogisticRegression(C=1.0)), []),
            "model-b": (make_pipeline(StandardScaler(), LogisticRegression(C=0.01)), []),
        },
    )
    return first, second


@pytest.fixture(autouse=True)
def _in_tmp_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run in tmp_path: a lost MLFLOW_TRACKING_URI falls back to ./mlflow.db, not the repo's."""
    monkeypatch.chdir(tmp_path)


@pytest.fixture(scope="module")
def sqlite_backend(tmp_path_factory: pytest.TempPathFactory) -> Backend:
    root = tmp_path_factory.mktemp("sqlite-store")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    return Backend(uri, *_log_models(uri, root / "artifacts"))


@pytest.fixture(scope="module")
def server_backend(mlflow_server: MlflowServer) -> Backend:
    return Backend(mlflow_server.url, *_log_models(mlflow_server.url, None))


@pytest.fixture(params=["sqlite", pytest.param("server", marks=pytest.mark.slow)])
def backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[Backend]:
    """Each backend in turn, as the configured tracking URI."""
    chosen: Backend = request.getfixturevalue(f"{request.param}_backend")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", chosen.uri)
    yield chosen


@pytest.fixture
def sqlite(sqlite_backend: Backend, monkeypatch: pytest.MonkeyPatch) -> Backend:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", sqlite_backend.uri)
    return sqlite_backend


@pytest.fixture
def name() -> str:
    return f"model-{uuid.uuid4().hex[:8]}"


def _register_both(backend: Backend, name: str) -> tuple[int, int]:
    first, _ = registry.register(
        name, backend.first.model_uri, backend.first.run_id, backend.first.sha256
    )
    second, _ = registry.register(
        name, backend.second.model_uri, backend.second.run_id, backend.second.sha256
    )
    return int(first.version), int(second.version)


def _history(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


# --- registering ----------------------------------------------------------------------


def test_registering_the_same_hash_twice_makes_one_version(backend: Backend, name: str) -> None:
    first = backend.first
    version, created = registry.register(
        name, first.model_uri, first.run_id, first.sha256, tags={"family": "logistic_regression"}
    )
    again, created_again = registry.register(name, first.model_uri, first.run_id, first.sha256)
    assert created and not created_again
    assert int(again.version) == int(version.version) == 1
    assert version.tags["model_sha256"] == first.sha256
    assert version.tags["family"] == "logistic_regression"
    assert version.run_id == first.run_id

    found = registry.find_version(name, first.sha256)
    assert found is not None and int(found.version) == 1
    assert registry.find_version(name, backend.second.sha256) is None
    assert registry.find_version(f"{name}-other", first.sha256) is None


def test_a_malformed_hash_is_refused(sqlite: Backend, name: str) -> None:
    with pytest.raises(RegistryError, match="not a sha256 hex digest"):
        registry.register(name, sqlite.first.model_uri, sqlite.first.run_id, "abc")


# --- promoting and rolling back ---------------------------------------------------------


def test_promote_then_roll_back_and_forward(backend: Backend, name: str, tmp_path: Path) -> None:
    history = tmp_path / "reports" / "alias_history.jsonl"
    v1, v2 = _register_both(backend, name)
    assert registry.champion(name) is None and registry.previous(name) is None

    first = registry.promote(name, v1, {"holdout_roc_auc": 0.91}, history=history)
    assert (first.from_version, first.to_version, first.previous_version) == (None, v1, None)

    second = registry.promote(name, v2, {"holdout_roc_auc": np.float64(0.95)}, history=history)
    assert second.changed and (second.from_version, second.to_version) == (v1, v2)
    champion, previous = registry.champion(name), registry.previous(name)
    assert champion is not None and previous is not None
    assert (champion.version, previous.version) == (v2, v1)
    assert champion.sha256 == backend.second.sha256 and champion.run_id == backend.second.run_id
    assert champion.source == backend.second.model_uri
    assert champion.tags["model_sha256"] == backend.second.sha256

    noop = registry.promote(name, v2, {"holdout_roc_auc": 0.95}, history=history)
    assert not noop.changed and "already the champion" in noop.describe()

    back = registry.rollback(name, {"reason": "alerts"}, history=history)
    assert (back.from_version, back.to_version, back.previous_version) == (v2, v1, v2)
    assert "roll back again" in back.describe()
    assert registry.champion(name).version == v1 and registry.previous(name).version == v2

    forward = registry.rollback(name, {"reason": "false alarm"}, history=history)
    assert (forward.to_version, forward.previous_version) == (v2, v1)

    lines = _history(history)  # one line per move; the no-op is not a move
    assert [(line["action"], line["from_version"], line["to_version"]) for line in lines] == [
        ("promote", None, v1),
        ("promote", v1, v2),
        ("rollback", v2, v1),
        ("rollback", v1, v2),
    ]
    assert lines[1]["evidence"] == {"holdout_roc_auc": 0.95}
    assert lines[2]["evidence"] == {"reason": "alerts"}
    assert lines[2]["from_sha256"] == backend.second.sha256
    assert lines[2]["to_sha256"] == backend.first.sha256
    assert all(line["model"] == name and line["time"].endswith("Z") for line in lines)

    import mlflow

    tags = mlflow.MlflowClient(backend.uri).get_model_version(name, str(v2)).tags
    assert json.loads(tags["promotion_evidence"])["evidence"] == {"reason": "false alarm"}
    assert tags["champion_since"] == lines[3]["time"]
    assert json.loads(tags["demotion_evidence"])["action"] == "rollback"


def test_the_champion_loads_and_predicts_like_the_logged_pipeline(
    backend: Backend, name: str, tmp_path: Path
) -> None:
    _, v2 = _register_both(backend, name)
    registry.promote(name, v2, {}, history=tmp_path / "history.jsonl")
    loaded = registry.load_champion_model(name)
    expected = backend.second.pipeline.predict_proba(FRAME)
    np.testing.assert_allclose(loaded.predict_proba(FRAME), expected)


def test_loading_refuses_types_outside_the_allow_list(
    sqlite: Backend, name: str, tmp_path: Path
) -> None:
    tree = "sklearn.tree._tree.Tree"
    (logged,) = _log_pipelines(
        sqlite.uri,
        tmp_path / "artifacts",
        {"tree": (make_pipeline(DecisionTreeClassifier(max_depth=2)), [tree])},
    )
    version, _ = registry.register(name, logged.model_uri, logged.run_id, logged.sha256)
    registry.promote(name, version.version, {}, history=tmp_path / "history.jsonl")
    with pytest.raises(RegistryError, match=re.escape(f"not trusted: ['{tree}']")):
        registry.load_champion_model(name, trusted_types=[])
    loaded = registry.load_champion_model(name)  # the project's list trusts a tree
    assert (loaded.predict(FRAME) == logged.pipeline.predict(FRAME)).all()


def test_rollback_without_previous_is_a_clear_error(
    backend: Backend, name: str, tmp_path: Path
) -> None:
    history = tmp_path / "history.jsonl"
    v1, _ = _register_both(backend, name)
    with pytest.raises(RegistryError, match="has no 'previous' version to roll back to"):
        registry.rollback(name, {"reason": "test"}, history=history)
    registry.promote(name, v1, {}, history=history)
    with pytest.raises(RegistryError, match=r"no 'previous' version .*champion is v1"):
        registry.rollback(name, {"reason": "test"}, history=history)
    assert registry.champion(name).version == v1
    assert len(_history(history)) == 1  # only the promotion


def test_promoting_a_missing_version_is_a_clear_error(
    backend: Backend, name: str, tmp_path: Path
) -> None:
    _register_both(backend, name)
    with pytest.raises(RegistryError, match="has no version 9"):
        registry.promote(name, 9, {}, history=tmp_path / "h.jsonl")
    with pytest.raises(RegistryError, match="no registered model named 'nope"):
        registry.promote("nope", 1, {}, history=tmp_path / "h.jsonl")
    with pytest.raises(RegistryError, match="no registered model named 'nope"):
        registry.require_model("nope")
    assert registry.champion("nope") is None  # the first deployment has no champion
    assert not (tmp_path / "h.jsonl").exists()


def test_large_evidence_is_cut_to_fit_a_tag_but_kept_whole_in_the_history(
    sqlite: Backend, name: str, tmp_path: Path
) -> None:
    import mlflow

    history = tmp_path / "history.jsonl"
    v1, _ = _register_both(sqlite, name)
    evidence = {"report": 'x"\\' * 10_000}
    registry.promote(name, v1, evidence, history=history)
    tag = mlflow.MlflowClient(sqlite.uri).get_model_version(name, str(v1)).tags
    assert len(tag["promotion_evidence"]) <= alias_history.TAG_VALUE_LIMIT
    summary = json.loads(tag["promotion_evidence"])
    assert summary["to_version"] == v1 and "evidence_truncated" in summary
    assert _history(history)[0]["evidence"] == evidence


# --- the command line -------------------------------------------------------------------


def test_cli_champion_and_rollback(backend: Backend, name: str, tmp_path: Path) -> None:
    history = tmp_path / "history.jsonl"
    v1, v2 = _register_both(backend, name)
    registry.promote(name, v1, {}, history=history)

    result = runner.invoke(app, ["rollback", "--model", name, "--history", str(history)])
    assert result.exit_code == 2
    assert f"'{name}' has no 'previous' version to roll back to" in result.output

    registry.promote(name, v2, {}, history=history)
    result = runner.invoke(app, ["champion", "--model", name])
    assert result.exit_code == 0, result.output
    assert f"champion  v{v2}  sha256 {backend.second.sha256}  run {backend.second.run_id}" in (
        result.output
    )
    assert f"previous  v{v1}  sha256 {backend.first.sha256}" in result.output

    result = runner.invoke(
        app, ["rollback", "--model", name, "--reason", "bad canary", "--history", str(history)]
    )
    assert result.exit_code == 0, result.output
    assert f"rollback {name}: champion v{v2}" in result.output
    assert f"-> v{v1}" in result.output
    assert registry.champion(name).version == v1
    assert _history(history)[-1]["evidence"]["reason"] == "bad canary"


def test_cli_unknown_model_and_missing_store(sqlite: Backend, tmp_path: Path, monkeypatch) -> None:
    result = runner.invoke(app, ["champion", "--model", "no-such-model"])
    assert result.exit_code == 2
    assert "no registered model named 'no-such-model'" in result.output

    missing = tmp_path / "nowhere" / "mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{missing}")
    result = runner.invoke(app, ["rollback", "--model", "m", "--history", str(tmp_path / "h")])
    assert result.exit_code == 2
    assert "no MLflow store at" in result.output
    assert registry.find_version("m", sqlite.first.sha256) is None
    assert registry.champion("m") is None
    assert not missing.exists()  # a read or a rollback never creates a store


def test_cli_reads_the_model_name_from_params(sqlite: Backend, name: str, tmp_path: Path) -> None:
    (tmp_path / "params.yaml").write_text(f"deploy:\n  registered_model: {name}\n")  # cwd
    _register_both(sqlite, name)
    result = runner.invoke(app, ["champion"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith(name) and "champion  none" in result.output


def test_cli_names_the_model_after_the_contract_when_params_do_not(
    sqlite: Backend, name: str, tmp_path: Path
) -> None:
    contract = yaml.safe_load(CONTRACT_PATH.read_text())
    contract["name"] = name.upper()  # the derived name is lowercase
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(contract))
    (tmp_path / "params.yaml").write_text(  # cwd
        "data:\n  contract: c.yaml\ndeploy:\n  registered_model: null\n"
    )
    _register_both(sqlite, name)
    result = runner.invoke(app, ["champion"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith(name)

    (tmp_path / "c.yaml").unlink()
    result = runner.invoke(app, ["champion"])
    assert result.exit_code == 2
    assert "c.yaml: data contract not found" in result.output and "or pass --model" in result.output


# --- the model card ---------------------------------------------------------------------


def _card(title: str, sections: int) -> str:
    body = "".join(f"\n\n## Part {i}\n\n" + f"line {i} " * 60 for i in range(sections))
    return f"# Model card: {title}{body}\n"


def test_a_published_card_is_the_description_an_artifact_and_what_the_cli_prints(
    backend: Backend, name: str, tmp_path: Path
) -> None:
    import mlflow

    from pipelines.edges import model_card

    v1, v2 = _register_both(backend, name)
    registry.promote(name, v1, {}, history=tmp_path / "history.jsonl")
    card = _card(f"{name} v{v1}", 3)
    assert model_card.publish_card(name, v1, backend.first.run_id, card, "<p>page</p>") == card
    client = mlflow.MlflowClient(backend.uri)
    assert client.get_model_version(name, str(v1)).description == card
    listed = {a.path for a in client.list_artifacts(backend.first.run_id, "model_card")}
    assert listed == {"model_card/card.md", "model_card/card.html"}
    result = runner.invoke(app, ["champion", "--model", name, "--card"])
    assert result.exit_code == 0, result.output
    assert result.output == card

    # too long for MLflow's 5,000 characters: the description is shortened, the CLI prints
    # the whole card from the run's artifact
    long_card = _card(f"{name} v{v2}", 40)
    description = model_card.publish_card(name, v2, backend.second.run_id, long_card, "<p/>")
    assert len(long_card) > 5000 >= len(description)
    assert client.get_model_version(name, str(v2)).description == description
    assert "the full card is `model_card/card.md`" in description
    registry.promote(name, v2, {}, history=tmp_path / "history.jsonl")
    assert model_card.champion_card(name) == long_card


def test_cli_card_without_a_champion_or_a_card_is_one_line(
    sqlite: Backend, name: str, tmp_path: Path
) -> None:
    # a run of its own: the module's runs may hold cards other tests logged
    (logged,) = _log_pipelines(
        sqlite.uri, tmp_path / "artifacts", {"plain": (make_pipeline(LogisticRegression()), [])}
    )
    version, _ = registry.register(name, logged.model_uri, logged.run_id, logged.sha256)
    v1 = int(version.version)
    result = runner.invoke(app, ["champion", "--model", name, "--card"])
    assert result.exit_code == 2
    assert result.output == f"error: '{name}' has no champion: no version was promoted yet\n"

    registry.promote(name, v1, {}, history=tmp_path / "history.jsonl")
    result = runner.invoke(app, ["champion", "--model", name, "--card"])
    assert result.exit_code == 2
    assert result.output == (
        f"error: '{name}' v{v1} has no model card (the deploy stage writes one when it "
        "promotes a version)\n"
    )


# --- an unavailable tracking server -----------------------------------------------------


def test_an_unreachable_server_fails_fast_naming_the_uri(monkeypatch, tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", url.replace("http://", "http://user:secret@"))
    start = time.monotonic()
    with pytest.raises(RegistryUnavailableError) as caught:
        registry.champion("milling-failure")
    assert time.monotonic() - start < 15
    message = str(caught.value)
    assert url in message and "connection refused" in message and "secret" not in message

    result = runner.invoke(app, ["rollback", "--model", "m", "--history", str(tmp_path / "h")])
    assert result.exit_code == 1 and url in result.output


class _Always503(BaseHTTPRequestHandler):
    def _answer(self) -> None:
        body = b"<html>maintenance</html>"
        self.send_response(503)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PATCH = _answer

    def log_message(self, *args: object) -> None:
        pass


def test_a_failing_server_is_reported_as_unavailable(monkeypatch) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Always503)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
        start = time.monotonic()
        with pytest.raises(RegistryUnavailableError, match="HTTP 503") as caught:
            registry.champion("milling-failure")
        assert time.monotonic() - start < 15
        assert url in str(caught.value)
    finally:
        server.shutdown()
        server.server_close()
