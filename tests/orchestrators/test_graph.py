"""The `Pipeline` every engine renders: edges, order and retries come from dvc.yaml and params."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from core.config import ConfigError, load_params
from lifecycle.orchestrators.graph import load_pipeline, pipeline_from
from tests.e2e.conftest import ROOT


@pytest.fixture(scope="module")
def params():
    return load_params(ROOT / "params.yaml")


def test_the_project_graph_is_read_from_dvc_yaml() -> None:
    pipeline = load_pipeline(ROOT)
    assert [stage.name for stage in pipeline.stages] == [
        "ingest",
        "validate",
        "train",
        "evaluate",
        "deploy",
        "monitor",
    ]
    assert set(pipeline.edges) == {
        ("ingest", "validate"),
        ("validate", "train"),
        ("train", "evaluate"),
        ("train", "deploy"),
        ("evaluate", "deploy"),
        ("deploy", "monitor"),
    }
    assert pipeline.name == "milling-failure"
    assert pipeline.watch.interval_s == 300
    assert pipeline.watch.interval_minutes == 5
    assert "TransientSourceError" in pipeline.transient_errors


def test_a_retry_override_reaches_only_its_stage(params) -> None:
    raw = params.model_dump(mode="json")
    raw["retry"]["stages"] = {"train": {"attempts": 7, "backoff_max_s": 60}}
    changed = type(params).model_validate(raw)
    dvc_yaml = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    pipeline = pipeline_from(dvc_yaml, changed)
    assert pipeline.stage("train").retry.attempts == 7
    assert pipeline.stage("train").retry.retries == 6
    assert pipeline.stage("train").retry.backoff_max_s == 60
    assert pipeline.stage("ingest").retry.attempts == params.retry.default.attempts


def test_edges_follow_outs_into_folders_and_templates(params) -> None:
    dvc_yaml = {
        "stages": {
            "report": {"cmd": "r", "deps": ["reports/${tracking.experiment}/x.json"]},
            "make": {"cmd": "m", "outs": ["reports/lifecycle"]},
            "alone": {"cmd": "a", "deps": ["elsewhere"]},
        }
    }
    pipeline = pipeline_from(dvc_yaml, params)
    assert [s.name for s in pipeline.stages] == ["make", "report", "alone"]
    assert pipeline.edges == (("make", "report"),)


@pytest.mark.parametrize(
    ("dvc_yaml", "message"),
    [
        ({"stage": {}}, "dvc.yaml: no `stages:` mapping"),
        ({"stages": {"a": {"deps": ["x"]}}}, "dvc.yaml: stage 'a' has no cmd"),
        ({"stages": {"a": {"cmd": "c", "deps": ["${nope.key}"]}}}, "${nope.key} is not a"),
        (
            {
                "stages": {
                    "a": {"cmd": "c", "deps": ["y"], "outs": ["x"]},
                    "b": {"cmd": "c", "deps": ["x"], "outs": ["y"]},
                }
            },
            "dvc.yaml: a cycle among a, b",
        ),
        ({"stages": {"a": {"foreach": [1], "do": {"cmd": "c"}}}}, "foreach/matrix"),
    ],
)
def test_a_graph_that_cannot_be_exported_fails_in_one_line(params, dvc_yaml, message) -> None:
    with pytest.raises(ConfigError) as raised:
        pipeline_from(dvc_yaml, params)
    assert message in str(raised.value)
    assert "\n" not in str(raised.value)


def test_a_missing_dvc_yaml_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "params.yaml").write_text((ROOT / "params.yaml").read_text())
    with pytest.raises(ConfigError, match=r"dvc.yaml: no such file \(run from the project root\)"):
        load_pipeline(tmp_path)
