"""dvc.yaml is complete: every stage lists the code it imports and the params it reads."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from core import OUR_PACKAGES

ROOT = Path(__file__).resolve().parents[1]
DVC = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text())
OURS = OUR_PACKAGES
ORDER = ["ingest", "validate", "train", "evaluate", "deploy", "monitor"]


def _imported_project_files(stage: str) -> set[str]:
    """Project source files loaded by importing the stage module, in a fresh interpreter."""
    code = (
        f"import importlib, json, sys; importlib.import_module('pipelines.{stage}'); "
        "print(json.dumps([getattr(m, '__file__', None) for m in list(sys.modules.values())]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    files = set()
    for name in json.loads(out.stdout.strip().splitlines()[-1]):
        if not name:
            continue
        path = Path(name).resolve()
        if path.is_relative_to(ROOT) and path.relative_to(ROOT).parts[0] in OURS:
            files.add(path.relative_to(ROOT).as_posix())
    return files


def _dep_paths(stage: str) -> list[str]:
    return [d.split(":")[0] if isinstance(d, str) else next(iter(d)) for d in DVC[stage]["deps"]]


def test_stages_in_lifecycle_order() -> None:
    assert list(DVC) == ORDER
    for name in ORDER:
        assert DVC[name]["cmd"] == f"python -m pipelines.{name}"


@pytest.mark.parametrize("stage", ORDER)
def test_deps_cover_every_imported_project_file(stage: str) -> None:
    deps = _dep_paths(stage)
    uncovered = sorted(
        f
        for f in _imported_project_files(stage)
        if not any(f == d or f.startswith(d.rstrip("/") + "/") for d in deps)
    )
    assert uncovered == [], f"stage {stage} imports files its deps do not list: {uncovered}"


@pytest.mark.parametrize("stage", ORDER)
def test_params_cover_every_key_the_stage_reads(stage: str) -> None:
    source = (ROOT / "pipelines" / f"{stage}.py").read_text()
    # the whole dotted path read (`params.serving.prediction_log.directory`): a declared key
    # covers it when it is that path or a prefix of it on a dot
    read = {
        ".".join(p.rstrip("_") for p in m.group(1).split("."))
        for m in re.finditer(r"\bparams\.(?!yaml\b)(\w+(?:\.\w+)*)", source)
    }
    declared = set(DVC[stage].get("params", []))
    unread_blocks = {key for key in read if key.split(".")[0] not in PARAMS}
    assert not unread_blocks, f"{stage} reads unknown blocks {unread_blocks}"
    missing = sorted(k for k in read if not any(k == d or k.startswith(f"{d}.") for d in declared))
    assert missing == [], (
        f"stage {stage} reads params its dvc.yaml entry does not declare: {missing}"
    )
