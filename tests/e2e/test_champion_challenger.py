"""Champion and challenger through real `dvc repro` runs, the MLflow registry and rollback.

A temporary copy of the repository goes through: a first champion (random forest), a
deliberately crippled challenger that must not be promoted, a better challenger
(gradient boosting) that is, a rollback to the previous champion, and a re-run of
deploy that must reuse the registered version instead of duplicating it.
"""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from tests.e2e.conftest import BIN, ProjectCopy

pytestmark = pytest.mark.slow

MODEL = "milling-failure"


def _client(copy: ProjectCopy):
    from mlflow import MlflowClient

    uri = f"sqlite:///{copy.path / 'mlflow.db'}"
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def _aliases(copy: ProjectCopy) -> dict[str, int]:
    return {k: int(v) for k, v in _client(copy).get_registered_model(MODEL).aliases.items()}


def _serving_pointer(copy: ProjectCopy) -> str:
    """The tag the serving store's champion pointer names (what `lifecycle serve` serves)."""
    return json.loads(copy.read(".bentoml/champion.json"))["tag"]


def _decision(copy: ProjectCopy) -> dict:
    return json.loads(copy.read("reports/deploy/decision.json"))


def _use_model(copy: ProjectCopy, family: str, **hyperparameters: object) -> None:
    def edit(raw: dict) -> None:
        raw["train"]["model"] = family
        raw["train"][family].update(hyperparameters)

    copy.edit_params(edit)


@pytest.fixture(scope="module")
def copy(project_copy: ProjectCopy) -> ProjectCopy:
    def edit(raw: dict) -> None:
        raw["ingest"]["synthetic"].update(rows=12_000)
        # a busy two-core machine answers single rows in over 100 ms at p99 at times; these
        # tests judge the gate and the registry, the infra check's own tests its budget
        raw["deploy"]["infra_validation"]["p99_budget_ms"] = 5000

    project_copy.edit_params(edit)
    return project_copy


def test_first_model_becomes_champion_on_thresholds_alone(copy: ProjectCopy) -> None:
    _use_model(copy, "random_forest", n_estimators=60)
    result = copy.repro()
    assert result.returncode == 0, result.output
    decision = _decision(copy)
    assert decision["promote"] is True
    assert "no champion yet: the absolute thresholds decide" in decision["reasons"]
    assert decision["infra_check"]["passed"] and decision["infra_check"]["rows"] == 200
    assert _aliases(copy) == {"champion": 1}
    assert _serving_pointer(copy) == f"{MODEL}:v1"
    assert decision["bento"] == f"{MODEL}:v1"  # the Bento follows the registered model
    assert (copy.path / f".bentoml/bentos/{MODEL}/v1/bento.yaml").exists()


def test_mlflow_holds_params_metrics_model_dataset_and_plots(copy: ProjectCopy) -> None:
    client = _client(copy)
    version = client.get_model_version_by_alias(MODEL, "champion")
    run = client.get_run(version.run_id)
    assert run.data.params["train.model"] == "random_forest"
    assert {
        "cv_roc_auc",
        "train_average_precision",
        "holdout_average_precision",
        "operating_threshold",
    } <= set(run.data.metrics)
    assert run.data.tags["stage"] == "train" and run.data.tags["git_commit"]
    assert run.inputs.dataset_inputs and run.inputs.dataset_inputs[0].dataset.name == "train-split"
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "evaluation")}
    assert {"evaluation/plots.png", "evaluation/plots", "evaluation/metrics.json"} <= artifacts
    assert (
        version.tags["model_sha256"]
        == json.loads(copy.read("reports/deploy/champion.json"))["content_sha256"]
    )
    # all stages of one `dvc repro` share a parent run
    lifecycle = run.data.tags["lifecycle_run"]
    stages = client.search_runs(
        [run.info.experiment_id], f"tags.lifecycle_run = '{lifecycle}' and tags.kind = 'stage'"
    )
    assert {r.data.tags["stage"] for r in stages} == {"train", "deploy", "monitor"}
    assert len({r.data.tags["mlflow.parentRunId"] for r in stages}) == 1


def _lifecycle(copy: ProjectCopy, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    env.pop("MLFLOW_TRACKING_URI", None)
    return subprocess.run(
        [str(BIN / "lifecycle"), *args],
        cwd=copy.path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_promoted_version_carries_its_model_card(copy: ProjectCopy) -> None:
    client = _client(copy)
    version = client.get_model_version_by_alias(MODEL, "champion")
    card = copy.read("reports/deploy/model_card.md").decode()
    assert card.startswith(f"# Model card: {MODEL} v1\n")
    decision = _decision(copy)
    assert f"p99 {decision['infra_check']['p99_ms']:.1f} ms" in card
    assert f"`{decision['bento']}`" in card
    # the registry version's description is the card (or its leading sections, within
    # MLflow's 5,000 characters), and the version's run holds it as artifacts
    description = version.description
    assert len(description) <= 5000
    assert card.startswith(description.split("\n\n_Shortened")[0].rstrip())
    listed = {a.path for a in client.list_artifacts(version.run_id, "model_card")}
    assert listed == {"model_card/card.md", "model_card/card.html"}
    page = copy.read("reports/deploy/model_card.html").decode()
    assert f"<title>Model card: {MODEL} v1</title>" in page and "<table>" in page

    done = _lifecycle(copy, "champion", "--card")
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout == card

    missing = _lifecycle(copy, "champion", "--card", "--model", "no-such-model")
    assert missing.returncode == 2 and missing.stdout == ""
    assert missing.stderr.startswith("error: no registered model named 'no-such-model'")
    assert len(missing.stderr.strip().splitlines()) == 1


def test_crippled_challenger_is_not_promoted(copy: ProjectCopy) -> None:
    champion_before = copy.read("reports/deploy/champion.json")
    _use_model(copy, "hist_gradient_boosting", max_iter=1, max_leaf_nodes=2, learning_rate=0.01)
    result = copy.repro()
    assert result.returncode == 0, result.output  # a refused challenger is not an error
    decision = _decision(copy)
    assert decision["promote"] is False
    assert any("is below the threshold" in reason for reason in decision["reasons"]), decision
    assert "not promoted; the champion is unchanged (v1)" in result.output
    assert copy.read("reports/deploy/champion.json") == champion_before
    assert _aliases(copy) == {"champion": 1}
    assert _serving_pointer(copy) == f"{MODEL}:v1"
    # the stage's card stays the champion's, read back from the registry
    assert (
        copy.read("reports/deploy/model_card.md").decode().startswith(f"# Model card: {MODEL} v1\n")
    )


def test_better_challenger_is_promoted_and_previous_kept(copy: ProjectCopy) -> None:
    _use_model(copy, "hist_gradient_boosting", max_iter=200, max_leaf_nodes=31, learning_rate=0.1)
    result = copy.repro()
    assert result.returncode == 0, result.output
    decision = _decision(copy)
    assert decision["promote"] is True, decision["reasons"]
    comparison = decision["comparison"]
    assert comparison["metric"] == "average_precision" and comparison["ci_low"] > -0.01
    assert _aliases(copy) == {"champion": 2, "previous": 1}
    assert _serving_pointer(copy) == f"{MODEL}:v2"
    history = copy.read("reports/deploy/alias_history.jsonl").decode().splitlines()
    assert json.loads(history[-1])["to_version"] == 2


def test_rollback_restores_the_previous_champion(copy: ProjectCopy) -> None:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    env.pop("MLFLOW_TRACKING_URI", None)
    done = subprocess.run(
        [str(BIN / "lifecycle"), "rollback", "--reason", "e2e test"],
        cwd=copy.path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "rollback milling-failure: champion v2" in done.stdout + done.stderr
    assert _aliases(copy) == {"champion": 1, "previous": 2}
    assert _serving_pointer(copy) == f"{MODEL}:v1"  # running services follow the pointer


def test_redeploying_a_registered_model_reuses_its_version(copy: ProjectCopy) -> None:
    result = copy.repro("--force", "--single-item", "deploy")
    assert result.returncode == 0, result.output
    assert _decision(copy)["version_created"] is False
    assert len(_client(copy).search_model_versions(f"name = '{MODEL}'")) == 2
    assert _aliases(copy) == {"champion": 2, "previous": 1}
    assert _serving_pointer(copy) == f"{MODEL}:v2"


def test_feedback_retrain_is_judged_on_the_recent_window(copy: ProjectCopy) -> None:
    # Labelled rows from a changed process land in the feedback folder, as `watch` writes
    # them: ingest appends them, and deploy judges the retrained model on their holdout rows.
    from core.config import SyntheticSourceConfig
    from features.synthetic import generate_process_data

    batch = "batch-20260301T120000Z.parquet"
    feedback = generate_process_data(
        SyntheticSourceConfig(rows=5000, seed=11, scenario="failure_mechanism"),
        first_udi=10_000_001,
    )
    feedback.to_parquet(copy.path / "data/feedback" / batch, index=False)
    result = copy.repro("deploy")
    assert result.returncode == 0, result.output
    assert result.ran == ["ingest", "validate", "train", "evaluate", "deploy"]
    metadata = json.loads(copy.read("data/raw/metadata.json"))
    assert (metadata["source_rows"], metadata["rows"]) == (12_000, 17_000)
    assert [b["name"] for b in metadata["feedback"]["batches"]] == [batch]

    decision = _decision(copy)
    window = decision["recent_window"]
    assert window["batch"] == batch and window["judged"] is True, window
    assert window["rows"] >= 900 and window["challenger"] > window["champion"], window
    assert decision["comparison_rows"]["champion_training_rows_left_out"] > 0, decision
    assert any(r.startswith("recent window, ") for r in decision["reasons"]), decision
    assert decision["promote"] is True, decision["reasons"]
    assert _aliases(copy) == {"champion": 3, "previous": 2}
