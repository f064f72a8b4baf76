"""The lifecycle against a real `mlflow server`: MLFLOW_TRACKING_URI switches the store."""

from __future__ import annotations

import json

import pytest

from tests.e2e.conftest import ProjectCopy

pytestmark = pytest.mark.slow


def test_dvc_repro_tracks_to_the_server(project_copy: ProjectCopy, mlflow_server) -> None:
    from mlflow import MlflowClient

    project_copy.edit_params(lambda raw: raw["ingest"]["synthetic"].update(rows=8000))
    result = project_copy.repro(env={"MLFLOW_TRACKING_URI": mlflow_server.url})
    assert result.returncode == 0, result.output
    assert not (project_copy.path / "mlflow.db").exists()  # nothing went to the local store

    client = MlflowClient(tracking_uri=mlflow_server.url, registry_uri=mlflow_server.url)
    champion = client.get_model_version_by_alias("milling-failure", "champion")
    recorded = json.loads(project_copy.read("reports/deploy/champion.json"))
    assert int(champion.version) == recorded["version"]
    run = client.get_run(champion.run_id)
    assert "holdout_roc_auc" in run.data.metrics and run.data.tags["stage"] == "train"
