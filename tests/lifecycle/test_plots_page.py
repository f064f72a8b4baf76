"""The offline page of `dvc plots show`: Vega inlined into DVC's HTML template, no CDN."""

from __future__ import annotations

import configparser
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from core.paths import PLOTS_DIR, PLOTS_TEMPLATE
from lifecycle.plots_page import (
    PlotsPageError,
    build_plots_template,
    choose_vega_lite,
    plots_template,
    vega_lite_major,
    write_plots_template,
)
from models.evaluation import calibration_points, confusion_rows, curve_points

ROOT = Path(__file__).resolve().parents[2]
DVC = Path(sys.executable).parent / "dvc"
VERSIONS = {"vega": "6.2.0", "vega_lite": "5.21", "vega_embed": "7.0.2", "vl_convert": "1.9.0"}
# a <script src=...> or <link href=...> that reaches the network
EXTERNAL = re.compile(r"<(?:script|link)\b[^>]*\b(?:src|href)\s*=\s*[\"']?(?:https?:)?//", re.I)
TITLES = [
    "ROC on the holdout",
    "Precision-recall on the holdout",
    "Confusion matrix at the operating threshold",
    "Calibration on the holdout (quantile bins)",
]


def test_the_template_keeps_dvcs_placeholders_and_drops_its_cdn_scripts() -> None:
    page = plots_template("window.vegaEmbed = function () {};", VERSIONS)

    assert "{plot_divs}" in page and "{refresh_tag}" in page
    assert "{scripts}" not in page  # where DVC would put its CDN <script> tags
    assert "window.vegaEmbed = function () {};" in page
    assert "Vega 6.2.0, Vega-Lite 5.21, vega-embed 7.0.2" in page
    assert not EXTERNAL.search(page)


@pytest.mark.parametrize(
    ("bundle", "message"),
    [
        ("window.vegaEmbed = 1; '</script>'", "contains '</script': it cannot be inlined"),
        ("var x = 1;", "does not define window.vegaEmbed"),
        ("window.vegaEmbed = '{scripts}'", "contains DVC's placeholder {scripts}"),
    ],
)
def test_a_bundle_that_cannot_be_inlined_is_refused(bundle: str, message: str) -> None:
    with pytest.raises(PlotsPageError, match=re.escape(message)):
        plots_template(bundle, VERSIONS)


def test_the_vega_lite_version_follows_dvcs_templates() -> None:
    v5 = "https://vega.github.io/schema/vega-lite/v5.json"
    assert vega_lite_major([v5, v5]) == 5
    assert choose_vega_lite(5, ["5.8", "5.21", "6.4"]) == "5.21"
    with pytest.raises(PlotsPageError, match=r"declare Vega-Lite majors \[5, 6\]; expected one"):
        vega_lite_major([v5, "https://vega.github.io/schema/vega-lite/v6.json"])
    with pytest.raises(PlotsPageError, match="is not a Vega-Lite schema"):
        vega_lite_major(["https://vega.github.io/schema/vega/v5.json"])
    with pytest.raises(PlotsPageError, match="none of them v5 as DVC's plot templates need"):
        choose_vega_lite(5, ["6.1", "6.4"])


def test_the_template_is_written_only_into_an_existing_folder(tmp_path: Path) -> None:
    with pytest.raises(PlotsPageError, match=r"no such folder \(run this in the project root\)"):
        write_plots_template(tmp_path / ".dvc" / "plots_template.html")


def test_dvc_config_names_the_template_make_install_writes() -> None:
    config = configparser.ConfigParser()
    config.read(ROOT / ".dvc" / "config")
    assert Path(".dvc") / config["plots"]["html_template"] == PLOTS_TEMPLATE
    assert f"/{PLOTS_TEMPLATE.name}" in (ROOT / ".dvc" / ".gitignore").read_text().split()
    assert "python -m lifecycle.plots_page" in (ROOT / "Makefile").read_text()


@pytest.fixture(scope="module")
def template() -> str:
    """The real template: vl-convert-python's bundle of the three libraries."""
    return build_plots_template()


def _write_plots(project: Path, seed: int) -> None:
    """The evaluate stage's four plot files, from its own functions, on a toy holdout."""
    rng = np.random.default_rng(seed)
    y_true = rng.integers(0, 2, 300)
    proba = np.clip(0.35 * y_true + rng.uniform(0, 0.65, 300), 0, 1)
    plots = {
        **curve_points(y_true, proba),
        "confusion": confusion_rows(y_true, proba, 0.5),
        "calibration": calibration_points(y_true, proba),
    }
    (project / PLOTS_DIR).mkdir(parents=True, exist_ok=True)
    for name, frame in plots.items():
        frame.to_csv(project / PLOTS_DIR / f"{name}.csv", index=False)


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, template: str) -> Path:
    """A git + DVC project with the repository's dvc.yaml, .dvc/config and the template."""
    project = tmp_path_factory.mktemp("plots")
    for name in ("dvc.yaml", "params.yaml", ".dvc/config", ".dvc/.gitignore", ".dvcignore"):
        (project / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, project / name)
    (project / PLOTS_TEMPLATE).write_text(template, encoding="utf-8")
    git = ["git", "-c", "user.name=test", "-c", "user.email=test@example.com"]
    _write_plots(project, seed=1)
    subprocess.run(["git", "init", "-q"], cwd=project, check=True)
    subprocess.run([*git, "add", "-A"], cwd=project, check=True)
    subprocess.run([*git, "commit", "-qm", "first evaluation"], cwd=project, check=True)
    _write_plots(project, seed=2)  # the workspace differs from HEAD, for `dvc plots diff`
    return project


def _dvc_plots(project: Path, *args: str) -> str:
    done = subprocess.run(
        [str(DVC), "plots", *args, "-o", "page"],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return (project / "page" / "index.html").read_text(encoding="utf-8")


def _assert_offline_page(page: str, revisions: int) -> None:
    assert not EXTERNAL.search(page), EXTERNAL.search(page)
    assert "cdn.jsdelivr.net" not in page
    assert "window.vegaEmbed=" in page  # the inlined bundle: vega-embed, Vega-Lite, Vega
    assert "Vega-Lite 5.21" in page or re.search(r"Vega-Lite 5\.\d+", page)
    specs = re.findall(r"var spec = (\{.*?\});\s*vegaEmbed\('#([^']+)', spec\);", page, re.S)
    assert len(specs) == 4
    rendered = " ".join(spec for spec, _ in specs)
    for title in TITLES:
        assert title in rendered
    for field in ('"fpr"', '"tpr"', '"recall"', '"precision"', '"predicted"', '"actual"'):
        assert field in rendered
    assert rendered.count('"rev": "workspace"') >= 4
    if revisions == 2:
        assert rendered.count('"rev": "HEAD"') >= 4


@pytest.mark.slow
def test_plain_dvc_plots_show_writes_a_page_that_needs_no_network(project: Path) -> None:
    _assert_offline_page(_dvc_plots(project, "show"), revisions=1)


@pytest.mark.slow
def test_plain_dvc_plots_diff_writes_a_page_that_needs_no_network(project: Path) -> None:
    _assert_offline_page(_dvc_plots(project, "diff"), revisions=2)
