"""Share-nothing workers (`lifecycle export --mode workers`) for real, under Prefect.

Each task clones the project's Git repository into a fresh folder, runs `lifecycle task
STAGE --pull --push` there (`dvc repro --pull STAGE`, then `dvc push`) and hands its
dvc.lock to the tasks downstream. What the workers share is only what a share-nothing
deployment shares: the Git repository (with its DVC remote, a local folder here, named in
the committed .dvc/config), the DVC remote, an MLflow tracking server (a real `mlflow
server`; its artifact root stands in for an object store) and the BentoML store the
service loads from (`serving.store`, an absolute folder). Reduced params keep it quick:
it proves the mechanism (pull, push, the lock carried forward, no stage run twice, a
second run skipping everything DVC skips), not the default lifecycle. Prefect itself is one
real `prefect server start` for the module (SQLite in a temporary PREFECT_HOME), which every
flow run reaches through PREFECT_API_URL, as a production deployment reaches its server.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from lifecycle.orchestrators.graph import Pipeline, load_pipeline
from tests.e2e.conftest import ProjectCopy, copy_project
from tests.mlflow_server import MlflowServer, run_mlflow_server
from tests.orchestrators.conftest import BIN, export
from tests.orchestrators.prefect_run import (
    Done,
    PrefectServer,
    flow_command,
    prefect_env,
    prefect_server,
    run,
)

pytestmark = pytest.mark.slow

GIT = ["git", "-c", "user.name=test", "-c", "user.email=test@example.com"]


def quick(store: Path):
    """Reduced params: a small table, a quick model, few resamples; the shared store."""

    def edit(params: dict) -> None:
        params["ingest"]["synthetic"]["rows"] = 2000
        params["train"]["model"] = "logistic_regression"
        params["train"]["cv_folds"] = 3
        params["train"]["importance"]["enabled"] = False
        params["monitor"]["calibration"]["enabled"] = False
        params["monitor"]["estimation"]["resamples"] = 100
        params["monitor"]["quality"]["resamples"] = 100
        params["deploy"]["bootstrap"]["resamples"] = 100
        params["deploy"]["infra_validation"]["replay_rows"] = 20
        params["deploy"]["thresholds"] = {"roc_auc": 0.5, "average_precision": 0.01}
        params["serving"]["store"] = str(store)

    return edit


@dataclass
class Workers:
    copy: ProjectCopy
    folder: Path
    env: dict[str, str]
    pipeline: Pipeline
    remote: Path
    store: Path
    mlflow: MlflowServer
    prefect: PrefectServer

    def flow(self, *argv: str) -> Done:
        return run(flow_command(*argv), self.folder, self.env)

    def git(self, *argv: str) -> None:
        subprocess.run([*GIT, *argv], cwd=self.copy.path, check=True, capture_output=True)


@pytest.fixture(scope="module")
def workers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workers]:
    root = tmp_path_factory.mktemp("workers")
    copy = copy_project(root / "project")
    store, remote = root / "shared" / "bentoml", root / "dvc-remote"
    remote.mkdir()
    copy.edit_params(quick(store))
    dvc = [str(BIN / "dvc"), "remote", "add", "--default", "local", str(remote)]
    subprocess.run(dvc, cwd=copy.path, check=True, capture_output=True)
    subprocess.run([*GIT, "commit", "-qam", "workers: a DVC remote"], cwd=copy.path, check=True)
    folder = export(copy, "prefect", "--mode", "workers")
    home = root / "prefect-home"
    with run_mlflow_server(root / "mlflow") as server, prefect_server(home) as prefect:
        env = prefect_env(copy, home, prefect, MLFLOW_TRACKING_URI=server.url)
        pipeline = load_pipeline(copy.path)
        yield Workers(copy, folder, env, pipeline, remote, store, server, prefect)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["run", "--dvc-lock", "/nowhere/dvc.lock"],
            "--dvc-lock /nowhere/dvc.lock: no such folder",
        ),
        (["watch", "--dvc-lock", "dvc.lock"], "--dvc-lock goes with run, not watch"),
    ],
)
def test_a_bad_dvc_lock_argument_fails_in_one_line_before_any_run(
    workers: Workers, argv: list[str], message: str
) -> None:
    """Refused before Prefect starts: run without PREFECT_API_URL, where any flow run would
    first start Prefect's ephemeral server (and say so), and no flow run reaches the
    module's server either."""
    ephemeral = {k: v for k, v in workers.env.items() if k != "PREFECT_API_URL"}
    done = run(flow_command(*argv), workers.folder, ephemeral)
    assert done.returncode == 2
    assert message in done.stderr.strip().splitlines()[-1], done.stderr
    assert "Starting temporary server" not in done.stderr  # refused before Prefect started
    before = workers.prefect.post("flow_runs/count", {})
    done = workers.flow(*argv)  # against the real server
    assert done.returncode == 2
    assert message in done.stderr.strip().splitlines()[-1], done.stderr
    assert workers.prefect.post("flow_runs/count", {}) == before  # no flow run created


def test_each_stage_runs_once_in_its_own_clone_and_pushes_its_outs(workers: Workers) -> None:
    names = [stage.name for stage in workers.pipeline.stages]
    lock = workers.copy.path / "dvc.lock"
    committed = lock.read_text()
    done = workers.flow("run", "--dvc-lock", str(lock))
    assert done.returncode == 0, done.tail
    assert done.report["stages"] == dict.fromkeys(names, "ran"), done.report
    flow_run = workers.prefect.get(f"flow_runs/{done.report['flow_run']}")
    assert flow_run["state"]["type"] == "COMPLETED"  # recorded by the module's real server
    # each worker pulled its upstream stages' outs and DVC did not run them again there
    assert done.ran_stages() == names, done.ran_stages()
    # they ran in the clones: nothing of theirs is in the project folder
    assert not (workers.copy.path / "data" / "raw" / "dataset.parquet").exists()
    assert not (workers.copy.path / ".lifecycle" / "ledger.jsonl").exists()

    # the run's lock names every stage's new outs; the remote holds them
    written = yaml.safe_load(lock.read_text())
    assert list(written["stages"]) == names
    assert lock.read_text() != committed
    pulled = subprocess.run(
        [str(BIN / "dvc"), "pull"], cwd=workers.copy.path, capture_output=True, text=True
    )
    assert pulled.returncode == 0, pulled.stdout + pulled.stderr
    for path in (
        "data/validated/dataset.parquet",
        "artifacts/model",
        "reports/deploy/champion.json",
    ):
        assert (workers.copy.path / path).exists(), path
    # the model went to the shared BentoML store and MLflow's registry, not to a clone
    assert any((workers.store / "models").iterdir())
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=workers.mlflow.url, registry_uri=workers.mlflow.url)
    champion = client.get_model_version_by_alias(workers.pipeline.name, "champion")
    assert champion.version == "1"
    workers.git("add", "dvc.lock")
    workers.git("commit", "-qm", "the lifecycle run's dvc.lock")


def test_a_second_run_from_the_committed_lock_skips_every_stage(workers: Workers) -> None:
    if (
        "run's dvc.lock"
        not in subprocess.run(
            ["git", "log", "-1", "--format=%s"],
            cwd=workers.copy.path,
            capture_output=True,
            text=True,
        ).stdout
    ):
        pytest.fail("this test needs the first workers run, which failed")
    done = workers.flow("run")
    assert done.returncode == 0, done.tail
    names = [stage.name for stage in workers.pipeline.stages]
    assert done.report["stages"] == dict.fromkeys(names, "skipped"), done.report
    assert done.ran_stages() == []
