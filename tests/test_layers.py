"""The layers in `pyproject.toml` hold, and an upward import breaks them with its module named."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from core import OUR_PACKAGES

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def lint_imports(project: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"],
        cwd=project,
        env={"PATH": str(LINT_IMPORTS.parent), "PYTHONPATH": str(project)},
        capture_output=True,
        text=True,
        timeout=300,
    )


def copy_sources(target: Path) -> Path:
    for package in OUR_PACKAGES:
        shutil.copytree(ROOT / package, target / package, ignore=shutil.ignore_patterns("*.pyc"))
    shutil.copy(ROOT / "pyproject.toml", target / "pyproject.toml")
    return target


def test_the_layers_hold() -> None:
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_an_upward_import_fails_and_names_the_module(tmp_path: Path) -> None:
    project = copy_sources(tmp_path)
    io = project / "core" / "io.py"
    io.write_text(io.read_text() + "\nfrom models.training import build_pipeline  # upward\n")
    result = lint_imports(project)
    assert result.returncode == 1, result.stdout
    assert "BROKEN" in result.stdout
    assert "core.io -> models.training" in result.stdout


def test_a_circle_fails_and_names_the_import_to_remove(tmp_path: Path) -> None:
    project = copy_sources(tmp_path)
    drift = project / "monitoring" / "drift.py"
    drift.write_text(drift.read_text() + "\nfrom monitoring import policy  # makes a circle\n")
    policy = project / "monitoring" / "policy.py"
    policy.write_text(policy.read_text() + "\nfrom monitoring import drift  # makes a circle\n")
    result = lint_imports(project)
    assert result.returncode == 1, result.stdout
    assert "No cycles are allowed in monitoring" in result.stdout
