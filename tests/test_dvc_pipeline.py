"""dvc.yaml is exact: every stage lists the code it imports (no more) and the params it reads.

Editing a module re-runs exactly the stages that import it (directly, or through another
module of ours, at the top of a file or inside a function), so the stage's code deps must
be that import closure (grimp computes it statically), with one exception: every stage
stands on the ground, so `core` is one folder dep of each (a change there re-runs all).
Elsewhere a folder may stand for its modules only when the stage imports all of them. A
fresh interpreter importing the stage checks the same from the other side.
"""

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
GROUND = "core"
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


def import_closure(stage: str) -> set[str]:
    """Every project source file the stage can import (type-checking imports aside)."""
    import grimp

    graph = grimp.build_graph(*OURS, exclude_type_checking_imports=True, cache_dir=None)
    start = f"pipelines.{stage}"
    modules = {start} | graph.find_upstream_modules(start)
    with_parents = set(modules)
    for module in modules:  # Python runs each parent package's __init__ on the way
        parts = module.split(".")
        with_parents.update(".".join(parts[:depth]) for depth in range(1, len(parts)))
    return {_source_file(module) for module in with_parents}


def expected_code_deps(stage: str) -> set[str]:
    """The stage's import closure, with the whole ground (`core`) in place of its part."""
    ground = {p.relative_to(ROOT).as_posix() for p in (ROOT / GROUND).rglob("*.py")}
    return {f for f in import_closure(stage) if not f.startswith(f"{GROUND}/")} | ground


def _source_file(module: str) -> str:
    path = ROOT.joinpath(*module.split("."))
    return (
        (path / "__init__.py" if path.is_dir() else path.with_suffix(".py"))
        .relative_to(ROOT)
        .as_posix()
    )


def _code_deps(stage: str) -> set[str]:
    """The stage's deps that are our source, folders expanded to their modules."""
    files: set[str] = set()
    for dep in _dep_paths(stage):
        path = ROOT / dep
        if not dep.startswith(OURS) or "${" in dep:
            continue
        if path.is_dir():
            files.update(p.relative_to(ROOT).as_posix() for p in path.rglob("*.py"))
        elif path.suffix == ".py":
            files.add(dep)
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
def test_code_deps_are_exactly_the_import_closure(stage: str) -> None:
    closure, deps = expected_code_deps(stage), _code_deps(stage)
    expected = "\n".join(f"      - {f}" for f in sorted(closure))
    assert deps == closure, (
        f"stage {stage}: dvc.yaml lists {sorted(deps - closure)} that it never imports and "
        f"misses {sorted(closure - deps)}; its code deps should be:\n{expected}"
    )


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
