"""The MLflow UI as a user meets it after `make lifecycle`: a real `mlflow server` over the
lifecycle run's own store, opened in headless Chromium, asserted on what it renders.

MLflow's UI is a React app: every check waits explicitly for the element it needs.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.browser.conftest import Lifecycle
from tests.browser.rendering import screenshot, wait_for_text
from tests.mlflow_server import MlflowServer

pytestmark = pytest.mark.slow

EXPERIMENT = "lifecycle"  # params.yaml: tracking.experiment


def _champion(lifecycle: Lifecycle) -> dict:
    return json.loads(lifecycle.copy.read("reports/deploy/champion.json"))


def _client(server: MlflowServer):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=server.url, registry_uri=server.url)


def _row_of(element):
    """The table row (role=row) an element is in."""
    from selenium.webdriver.common.by import By

    return element.find_element(By.XPATH, "./ancestor::*[@role='row'][1]")


def _grid_row_text(browser, element) -> str:
    """All cells of the runs table's row holding `element`: the grid draws a row's pinned
    and scrolling cells in separate containers, joined here by the row's id (the run id)."""
    from selenium.webdriver.common.by import By

    run_id = _row_of(element).get_attribute("row-id")
    parts = browser.find_elements(By.CSS_SELECTOR, f"[role=row][row-id='{run_id}']")
    return "\n".join(part.text for part in parts)


def _champion_run(server: MlflowServer, lifecycle: Lifecycle):
    """The registered model (the store holds one), its champion version and its train run."""
    client = _client(server)
    (model,) = client.search_registered_models()
    version = client.get_model_version_by_alias(model.name, "champion")
    assert int(version.version) == _champion(lifecycle)["version"]
    return model.name, version, client.get_run(version.run_id)


def test_the_experiment_opens_on_its_runs_with_the_train_run_under_its_lifecycle(
    browser, mlflow_ui: MlflowServer, lifecycle: Lifecycle, screenshots: Path
) -> None:
    """As the README says: choose "Model training" in the sidebar, open the experiment from
    the experiments list: its runs table, the lifecycle's parent run, its stage runs."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    experiment = _client(mlflow_ui).get_experiment_by_name(EXPERIMENT)
    assert experiment.tags.get("mlflow.experimentKind") == "custom_model_development"
    _, _, train = _champion_run(mlflow_ui, lifecycle)
    parent_name = f"lifecycle {train.data.tags['lifecycle_run']}"

    browser.get(f"{mlflow_ui.url}/")
    wait_for_text(browser, "Model training", "the sidebar's GenAI / Model training switch").click()
    browser.get(f"{mlflow_ui.url}/#/experiments")
    wait_for_text(browser, EXPERIMENT, "the experiment in the experiments list").click()
    WebDriverWait(browser, 60).until(lambda d: "/runs" in d.current_url)
    assert f"/experiments/{experiment.experiment_id}/runs" in browser.current_url

    parent = wait_for_text(browser, parent_name, "the lifecycle's parent run in the runs table")
    _row_of(parent).find_element(By.CSS_SELECTOR, "button").click()  # expand its stage runs
    for stage in ("train", "deploy", "monitor"):
        wait_for_text(browser, stage, f"the {stage} run under its lifecycle run")
    row = _grid_row_text(browser, wait_for_text(browser, "train", "the train run"))
    dataset = train.inputs.dataset_inputs[0].dataset
    assert f"{dataset.name} ({dataset.digest[:8]})" in row, row  # the Dataset column

    shot = screenshot(browser, screenshots, "mlflow-runs")
    assert shot.colours > 100 and shot.ink > 0.05, shot


def test_the_train_run_shows_its_dataset_metrics_and_registered_model(
    browser, mlflow_ui: MlflowServer, lifecycle: Lifecycle, screenshots: Path
) -> None:
    from selenium.webdriver.common.by import By

    name, champion, run = _champion_run(mlflow_ui, lifecycle)
    dataset = run.inputs.dataset_inputs[0].dataset

    browser.get(f"{mlflow_ui.url}/#/experiments/{run.info.experiment_id}/runs/{run.info.run_id}")
    wait_for_text(browser, "train", "the run's name in its header")
    shown = wait_for_text(browser, f"{dataset.name} ({dataset.digest[:8]})", "the training split")
    assert shown.find_element(By.XPATH, "./ancestor::*[.//h4][1]//h4").text == "Datasets"

    for metric in ("holdout_roc_auc", "cv_roc_auc", "calibration_error"):
        row = _row_of(wait_for_text(browser, metric, f"metric {metric} in the metrics table"))
        value = float(re.split(r"\s+", row.text)[1])
        assert value == pytest.approx(run.data.metrics[metric], abs=1e-6), row.text
    assert len(run.data.metrics) >= 30
    wait_for_text(browser, f"Metrics ({len(run.data.metrics)})", "the metrics table's count")

    link = wait_for_text(browser, f"{name} v{champion.version}", "the run's registered model")
    assert link.get_attribute("href").endswith(f"#/models/{name}/versions/{champion.version}")
    shot = screenshot(browser, screenshots, "mlflow-train-run")
    assert shot.colours > 100 and shot.ink > 0.05, shot


def test_the_registered_model_shows_its_champion_alias(
    browser, mlflow_ui: MlflowServer, lifecycle: Lifecycle, screenshots: Path
) -> None:
    from selenium.webdriver.common.by import By

    name, champion, _ = _champion_run(mlflow_ui, lifecycle)
    version = champion.version

    browser.get(f"{mlflow_ui.url}/#/models/{name}")
    wait_for_text(browser, name, "the model's name in its page header")
    link = wait_for_text(browser, f"Version {version}", "the champion's version in the table")
    row = _row_of(link)
    aliases = [a.text for a in row.find_elements(By.XPATH, ".//*[starts-with(text(), '@')]")]
    assert [a.replace("\xa0", " ") for a in aliases] == ["@ champion"], row.text

    shot = screenshot(browser, screenshots, "mlflow-registered-model")
    assert shot.colours > 100 and shot.ink > 0.05, shot
