"""The HTML pages a lifecycle run leaves, opened from disk in headless Chromium with no
network beyond this machine, asserted on what they render: Evidently's drift report, the
`dvc plots show` page and the Great Expectations data docs."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from features.contract import load_contract
from tests.browser.conftest import Lifecycle
from tests.browser.rendering import element_screenshot, screenshot, wait_for, wait_for_text

pytestmark = pytest.mark.slow

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
