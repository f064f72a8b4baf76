"""The lifecycle end to end: real `dvc repro` in a temporary copy of the repository.

One copy goes through a sequence, each step relying on the one before: the first run,
a no-op run, single-key edits, corrupted input stopped at validate, and the real
AI4I 2020 file through the `file` source.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pandas as pd
import pytest

from tests.e2e.conftest import ProjectCopy

pytestmark = pytest.mark.slow

STAGES = ["ingest", "validate", "train", "evaluate", "deploy", "monitor"]
# Outputs of the stages after validate, and the deployed champion: a failed validation
# must leave every one of them as it was.
LATER_OUTPUTS = [
    "data/split/train.parquet",
    "data/split/holdout.parquet",
    "artifacts/model/model.skops",
    "reports/train/metrics.json",
    "reports/evaluate/metrics.json",
    "reports/deploy/decision.json",
    "reports/deploy/champion.json",
    "reports/monitor/metrics.json",
    "reports/monitor/decision.json",
]


def _digests(copy: ProjectCopy) -> dict[str, str]:
    return {name: hashlib.sha256(copy.read(name)).hexdigest() for name in LATER_OUTPUTS}


def test_first_run_completes_every_stage(project_copy: ProjectCopy) -> None:
    result = project_copy.repro()
    assert result.returncode == 0, result.output
    assert result.ran == STAGES
    evaluation = json.loads(project_copy.read("reports/evaluate/metrics.json"))
    assert evaluation["holdout"]["roc_auc"] > 0.85, evaluation
    champion = json.loads(project_copy.read("reports/deploy/champion.json"))
    assert champion["version"] == 1
    decision = json.loads(project_copy.read("reports/deploy/decision.json"))
    assert decision["promote"] is True, decision["reasons"]
    assert (project_copy.path / "reports/validate/data_docs/index.html").exists()
    assert (project_copy.path / "reports/validate/data_docs/summary.html").exists()  # offline
    assert (project_copy.path / "reports/monitor/drift.html").exists()
    metadata = json.loads(project_copy.read("data/raw/metadata.json"))
    assert metadata["rows"] == 20_000 and metadata["source"]["source"] == "synthetic"


def test_second_run_runs_nothing(project_copy: ProjectCopy) -> None:
    result = project_copy.repro()
    assert result.returncode == 0, result.output
    assert result.ran == []
    assert "Data and pipelines are up to date" in result.output


def _set(copy: ProjectCopy, key: tuple[str, ...], value: object) -> None:
    def edit(raw: dict) -> None:
        block = raw
        for part in key[:-1]:
            block = block[part]
        block[key[-1]] = value

    copy.edit_params(edit)


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        (("monitor", "drift_share"), 0.2, ["monitor"]),
        # already champion: deploy re-runs, the champion (monitor's input) stays
        (("deploy", "tolerance"), 0.02, ["deploy"]),
        (("evaluate", "operating_point", "at_least"), 0.85, ["evaluate", "deploy"]),
    ],
    ids=["monitor-key", "deploy-key", "evaluate-key"],
)
def test_one_key_reruns_only_what_reads_it(
    project_copy: ProjectCopy, key: tuple[str, ...], value: float, expected: list[str]
) -> None:
    _set(project_copy, key, value)
    result = project_copy.repro()
    assert result.returncode == 0, result.output
    assert result.ran == expected


def test_train_key_reruns_train_and_what_its_model_feeds(project_copy: ProjectCopy) -> None:
    champion_before = project_copy.read("reports/deploy/champion.json")
    _set(project_copy, ("train", "hist_gradient_boosting", "max_iter"), 150)
    result = project_copy.repro()
    assert result.returncode == 0, result.output
    assert result.ran[:3] == ["train", "evaluate", "deploy"]
    # monitor compares against the champion: it re-runs only if the champion moved
    moved = project_copy.read("reports/deploy/champion.json") != champion_before
    assert result.ran[3:] == (["monitor"] if moved else [])


def test_validate_key_reruns_validate_but_identical_output_stops_there(
    project_copy: ProjectCopy,
) -> None:
    project_copy.edit_params(lambda raw: raw["validate"].update(min_rows=500))
    result = project_copy.repro()
    assert result.returncode == 0, result.output
    assert result.ran == ["validate"]


@pytest.mark.parametrize(
    ("module", "expected"),
    [
        ("pipelines/edges/registry.py", ["deploy", "monitor"]),  # both talk to the registry
        ("models/promotion.py", ["deploy"]),  # already champion: monitor's input stays
        ("features/drafting.py", []),  # `lifecycle draft-contract` only: no stage imports it
    ],
    ids=["registry", "promotion", "drafting"],
)
def test_editing_a_module_reruns_only_the_stages_that_import_it(
    project_copy: ProjectCopy, module: str, expected: list[str]
) -> None:
    path = project_copy.path / module
    path.write_text(path.read_text(encoding="utf-8") + "\n# an edit\n", encoding="utf-8")
    result = project_copy.repro()
    assert result.returncode == 0, result.output
    assert result.ran == expected


def test_corrupted_input_stops_at_validate_and_keeps_later_outputs(
    project_copy: ProjectCopy, tmp_path: Path
) -> None:
    before = _digests(project_copy)
    good = pd.read_parquet(project_copy.path / "data/raw/dataset.parquet")
    corrupted = good.copy()
    corrupted.loc[:49, "Torque [Nm]"] = -25.0
    corrupted.loc[50:59, "Type"] = "X"
    source = tmp_path / "corrupted.csv"
    corrupted.to_csv(source, index=False)

    def use_file(raw: dict) -> None:
        raw["ingest"]["source"] = "file"
        raw["ingest"]["file"]["path"] = str(source)

    project_copy.edit_params(use_file)
    result = project_copy.repro()
    assert result.returncode != 0
    assert result.ran == ["ingest", "validate"]
    assert "Torque [Nm]" in result.output and "Type" in result.output
    assert "'X'" in result.output  # example values are shown
    assert _digests(project_copy) == before
    assert not (project_copy.path / "data/validated/dataset.parquet").exists()
    assert (project_copy.path / "reports/validate/data_docs/index.html").exists()


def test_real_ai4i_file_passes_validation_and_trains(
    project_copy: ProjectCopy, real_ai4i_path: Path
) -> None:
    def use_the_real_file(raw: dict) -> None:  # also when this test runs on its own
        raw["ingest"]["source"] = "file"
        raw["ingest"]["file"]["path"] = str(real_ai4i_path)

    project_copy.edit_params(use_the_real_file)
    result = project_copy.repro()
    assert result.returncode == 0, result.output
    # monitor re-runs only when the champion (or the traffic) changes; whether the model
    # trained on AI4I is promoted over the synthetic one is the gate's call
    assert result.ran[: len(STAGES) - 1] == STAGES[:-1]
    summary = json.loads(project_copy.read("reports/validate/summary.json"))
    assert summary["success"] is True
    evaluation = json.loads(project_copy.read("reports/evaluate/metrics.json"))
    assert evaluation["holdout"]["rows"] == 2000 and evaluation["holdout"]["roc_auc"] > 0.85
