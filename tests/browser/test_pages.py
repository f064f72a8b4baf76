"""The pages a user opens after `make lifecycle`, in headless Chromium with no network beyond
this machine, asserted on what they render. One module, so the one lifecycle run they look at
is built once per test worker (pytest-xdist sends a whole file to one worker).

The MLflow UI: a real `mlflow server` over the lifecycle run's own store. MLflow's UI is a
React app: every check waits explicitly for the element it needs.

The HTML reports the run leaves, opened from disk: Evidently's drift report, the
`dvc plots show` page and the Great Expectations data docs.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from features.contract import load_contract
from tests.browser.conftest import Lifecycle
from tests.browser.rendering import element_screenshot, screenshot, wait_for, wait_for_text
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


# --- the reports a run leaves, opened from disk ---------------------------------------

DRIFT_REPORT = "reports/monitor/drift.html"
DATA_DOCS_INDEX = "reports/validate/data_docs/summary.html"  # the offline one, beside GE's


def _contract(lifecycle: Lifecycle):
    params = yaml.safe_load((lifecycle.path / "params.yaml").read_text())
    return load_contract(lifecycle.path / params["data"]["contract"])


def test_the_drift_report_renders_evidentlys_widgets(
    browser, lifecycle: Lifecycle, screenshots: Path
) -> None:
    from selenium.webdriver.common.by import By

    features = _contract(lifecycle).features
    browser.get((lifecycle.path / DRIFT_REPORT).as_uri())
    assert wait_for(browser, "h1", "the verdict's heading").text.startswith("Monitor verdict: ")

    heading = wait_for_text(browser, "Dataset Drift", "Evidently's dataset drift widget")
    widget = heading.find_element(By.XPATH, "./ancestor::*[contains(@class, 'MuiPaper')][1]")
    browser.execute_script("arguments[0].scrollIntoView()", widget)
    counts = widget.find_element(By.XPATH, "./following::*[contains(@class, 'MuiPaper')][1]")
    assert f"{len(features)}\nColumns" in counts.text, counts.text  # every feature compared

    table = wait_for_text(browser, "Data Drift Summary", "the per-column drift table")
    rows = table.find_elements(By.XPATH, "./following::*[normalize-space(text())='Stat Test']")
    assert rows, "the drift table has no header row"
    for feature in features:
        wait_for_text(browser, feature, f"feature {feature!r} in the drift table")
    shot = screenshot(browser, screenshots, "drift-widgets")
    assert shot.coloured > 0.003, shot  # the histograms of each column, in colour

    chart = wait_for(browser, ".js-plotly-plot svg.main-svg", "a Plotly chart of the report")
    browser.execute_script("arguments[0].scrollIntoView()", chart)
    drawn = element_screenshot(chart, screenshots, "drift-chart")
    assert drawn.colours > 200 and drawn.coloured > 0.005, drawn


def _plot_ids(lifecycle: Lifecycle) -> list[str]:
    """The element ids DVC gives the plots of dvc.yaml (`a/b.csv` -> `a_b_csv`)."""
    stages = yaml.safe_load((lifecycle.path / "dvc.yaml").read_text())["stages"]
    paths = [
        next(iter(entry)) if isinstance(entry, dict) else entry
        for stage in stages.values()
        for entry in stage.get("plots", [])
    ]
    assert paths, "dvc.yaml declares no plots"
    return [path.replace("/", "_").replace(".", "_") for path in paths]


def test_the_dvc_plots_page_draws_every_plot_offline(
    browser, lifecycle: Lifecycle, screenshots: Path
) -> None:
    from selenium.webdriver.common.by import By

    browser.get(lifecycle.plots_html.as_uri())
    for plot in _plot_ids(lifecycle):
        container = browser.find_elements(By.ID, plot)
        assert container, f"no element #{plot} on the dvc plots page"
        drawing = wait_for(
            browser,
            f"#{plot} canvas, #{plot} svg",
            f"plot {plot} drawn (Vega renders a canvas or svg; a page that loads Vega from a "
            "CDN draws nothing offline: `make install` writes the inlined template)",
            timeout=30,
        )
        browser.execute_script("arguments[0].scrollIntoView()", drawing)
        drawn = element_screenshot(container[0], screenshots, f"dvc-plot-{plot}")
        assert drawn.colours > 20 and drawn.coloured > 0.002, drawn
    shot = screenshot(browser, screenshots, "dvc-plots")
    assert shot.ink > 0.02, shot


def test_the_data_docs_list_the_validations_and_open_a_validation_page(
    browser, lifecycle: Lifecycle, screenshots: Path
) -> None:
    from selenium.webdriver.common.by import By

    index = lifecycle.path / DATA_DOCS_INDEX
    assert index.is_file(), f"validate wrote no {DATA_DOCS_INDEX} (the data docs' offline index)"
    browser.get(index.as_uri())
    first = wait_for(browser, "table tbody tr", "a validation in the data docs' results table")
    rows = browser.find_elements(By.CSS_SELECTOR, "table tbody tr")
    assert all(row.find_elements(By.CSS_SELECTOR, "a") for row in rows), [r.text for r in rows]
    assert "passed" in first.text, first.text
    shot = screenshot(browser, screenshots, "data-docs-index")
    assert shot.ink > 0.01 and shot.coloured > 0.0005, shot  # the status shows in colour

    first.find_element(By.CSS_SELECTOR, "a").click()
    wait_for_text(browser, "Expectation Validation Result", "GE's validation page")
    wait_for_text(browser, "Table-Level Expectations", "the table-level results")
    contract = _contract(lifecycle)
    for column in (*contract.ids, *contract.features, contract.label):
        wait_for_text(browser, f"'{column}' exists", f"the results of column {column!r}")
    results = [
        row for row in browser.find_elements(By.CSS_SELECTOR, "table tr") if row.is_displayed()
    ]
    assert len(results) > 3 * len(contract.features), len(results)
    shot = screenshot(browser, screenshots, "data-docs-validation")
    assert shot.colours > 50 and shot.ink > 0.02, shot
