"""The orchestrators' tests: each engine in its own environment (`make orchestrators`).

`engine_python("prefect")` is the engine's interpreter, `.venv-prefect/bin/python` in the
repository; a missing one fails the test with the command that builds it (CI builds them all:
`make test` depends on `make orchestrators`). `exported` writes `lifecycle export` into a
project copy and returns the folder.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.e2e.conftest import ROOT, ProjectCopy, copy_project

BIN = Path(sys.executable).parent


def engine_python(engine: str) -> Path:
    python = ROOT / f".venv-{engine}" / "bin" / "python"
    if not python.exists():
        pytest.fail(f"{python} is missing: run `make orchestrators` (it builds .venv-{engine})")
    return python


def export(copy: ProjectCopy, engine: str, *args: str) -> Path:
    """`lifecycle export --to ENGINE` run in the copy; the folder it wrote."""
    out = copy.path / "orchestrators" / engine
    done = subprocess.run(
        [str(BIN / "lifecycle"), "export", "--to", engine, "--out", str(out), *args],
        cwd=copy.path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return out


def engine_env(copy: ProjectCopy, **extra: str) -> dict[str, str]:
    """The environment an engine's process runs in: the project's tools on PATH, MLflow in
    the copy's own store (never the developer's), telemetry off."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_TRACKING")}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env.update(DO_NOT_TRACK="true", **extra)
    return env


def assert_dvc_up_to_date(copy: ProjectCopy) -> None:
    """`dvc status` in the copy says every stage is up to date: the lifecycle is complete."""
    status = subprocess.run(
        [str(BIN / "dvc"), "status"], cwd=copy.path, capture_output=True, text=True, check=False
    )
    assert "Data and pipelines are up to date." in status.stdout, status.stdout + status.stderr


@pytest.fixture
def fresh_copy(tmp_path: Path) -> ProjectCopy:
    return copy_project(tmp_path / "project")


@pytest.fixture
def exported(fresh_copy: ProjectCopy) -> Callable[..., Path]:
    return lambda engine, *args: export(fresh_copy, engine, *args)
