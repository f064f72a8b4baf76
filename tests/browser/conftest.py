"""Real-browser checks: headless Chromium (Debian's `chromium` and `chromium-driver`, which
`make install` installs) driven by Selenium, over the pages a lifecycle run leaves.

One lifecycle run (`dvc repro` in a temporary copy, with the reduced params of
`tests.faults.conftest.fast_lifecycle`: the pages are what is checked, not the default
data's values) and one browser serve the session. The browser never reaches past this
machine: every host name but 127.0.0.1/localhost fails to resolve, so a page that needs a
CDN shows as blank here, as it would offline.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e.conftest import ProjectCopy, copy_project
from tests.faults.conftest import fast_lifecycle
from tests.mlflow_server import MlflowServer, run_mlflow_server
from tests.serving.server import serve

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
BIN = Path(sys.executable).parent
WINDOW = (1400, 1000)
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    f"--window-size={WINDOW[0]},{WINDOW[1]}",
    # Offline, as a user's machine may be: only this machine's own servers resolve.
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1, EXCLUDE localhost",
]


@dataclass(frozen=True)
class Lifecycle:
    """A finished `dvc repro` in a temporary copy, plus `dvc plots show` there."""

    copy: ProjectCopy
    plots_html: Path

    @property
    def path(self) -> Path:
        return self.copy.path


def missing_browser(*paths: Path) -> str | None:
    """The one-line failure when Chromium or its driver is not installed, else None."""
    missing = [str(path) for path in paths if not path.is_file()]
    if not missing:
        return None
    return (
        f"{' and '.join(missing)} not found: `make install` installs "
        f"{'it' if len(missing) == 1 else 'them'} (apt-get install -y chromium chromium-driver)"
    )


@pytest.fixture(scope="session")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the browser tests save their screenshots (named after the page)."""
    return tmp_path_factory.mktemp("screenshots")


@pytest.fixture(scope="session")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """One headless Chromium for the session, driven through /usr/bin/chromedriver.

    The Service is given the driver's path, so Selenium Manager never runs (it would
    download a driver); the profile is a fresh folder.
    """
    message = missing_browser(CHROMIUM, CHROMEDRIVER)
    if message:
        pytest.fail(message, pytrace=False)  # CI must run these tests: never a skip
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    log = tmp_path_factory.mktemp("chromedriver") / "chromedriver.log"
    driver = webdriver.Chrome(
        service=Service(executable_path=str(CHROMEDRIVER), log_output=str(log)),
        options=options,
    )
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="session")
def lifecycle(tmp_path_factory: pytest.TempPathFactory) -> Lifecycle:
    """One real lifecycle for the session, in a temporary copy of the project with reduced
    params (`fast_lifecycle`: fewer rows, a smaller model, fewer resamples; every stage and
    every page as in the default run): `dvc repro` (MLflow to the copy's own `mlflow.db`),
    `lifecycle serve` answering `lifecycle simulate`'s 1000 rows, `dvc repro` again (the
    monitor judges that traffic: drift.html is Evidently's report), then `dvc plots show`."""
    copy = copy_project(tmp_path_factory.mktemp("browser-project"))
    copy.edit_params(fast_lifecycle)
    first = copy.repro()
    assert first.returncode == 0, first.output
    with serve(copy.path, env={"PYTHONPATH": str(copy.path)}) as server:
        _run(copy, "lifecycle", "simulate", "--scenario", "none", "--rows", "1000",
             "--seed", "11", "--url", server.url)  # fmt: skip
    second = copy.repro()
    assert second.returncode == 0, second.output
    assert second.ran == ["monitor"], second.output
    _run(copy, "dvc", "plots", "show")
    return Lifecycle(copy, copy.path / "dvc_plots" / "index.html")


def _run(copy: ProjectCopy, program: str, *args: str) -> None:
    """A command of the venv in the copy (its own packages, its own MLflow store)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "LIFECYCLE_"))}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = str(copy.path)
    done = subprocess.run(
        [str(BIN / program), *args],
        cwd=copy.path,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, f"{program} {' '.join(args)}:\n{done.stdout}{done.stderr}"


@pytest.fixture(scope="session")
def mlflow_ui(
    lifecycle: Lifecycle, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[MlflowServer]:
    """A real `mlflow server` over the lifecycle run's own store, as `make mlflow-ui` serves it."""
    store = f"sqlite:///{lifecycle.path / 'mlflow.db'}"
    with run_mlflow_server(tmp_path_factory.mktemp("mlflow-ui"), store) as server:
        yield server
