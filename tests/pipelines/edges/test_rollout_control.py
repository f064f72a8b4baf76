# ruff: noqa: F811  (the registry fixtures are imported from test_registry, then requested)
"""A rollout from start to end without a lifecycle: a real SQLite registry with two versions,
a real serving store with two tiny models, prediction-log rows written as the service writes
them (with the shadow columns), then the judge-and-apply path, `lifecycle watch`'s step and
the `lifecycle rollout` command. Asserts the alias moves, the pointers, the history lines
and the MLflow record."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from core.clock import format_time, parse_time, utc_now
from core.config import load_params
from core.config.rollout import RolloutConfig
from core.records.rollout import read_verdicts
from features.contract import load_contract
from lifecycle.cli import app
from lifecycle.rollout_status import format_rollout_status, rollout_status
from lifecycle.watch import Watch, build_record
from pipelines.edges import registry
from pipelines.edges.rollout_control import RolloutContext, control_rollout
from pipelines.edges.rollout_release import release
from serving.model_store import (
    export_model,
    load_served_model,
    pointer_rollout,
    read_champion_pointer,
    write_champion_pointer,
)
from tests.pipelines.edges.test_registry import (
    Backend,
    _in_tmp_path,  # noqa: F401
    _register_both,
    name,  # noqa: F401
    sqlite,  # noqa: F401
    sqlite_backend,  # noqa: F401
)
from tests.serving.server import CONTRACT_PATH, TinyModel, train_tiny_model

runner = CliRunner()
ROLLOUT = {"strategy": "shadow", "min_rows": 60, "min_duration_s": 0, "max_duration_s": 3600}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[TinyModel, TinyModel]:
    root = tmp_path_factory.mktemp("tiny")
    return (
        train_tiny_model(root / "a", max_iter=5, rows=600),
        train_tiny_model(root / "b", max_iter=8, rows=600),
    )


class Project:
    """A project folder: params.yaml, a serving store with v1 (champion) and v2, a registry
    where v1 is champion, and a prediction log to write rows into."""

    def __init__(self, root: Path, backend: Backend, name: str, tiny, rollout: dict) -> None:
        self.root, self.name = root, name
        params = {
            "data": {"contract": str(CONTRACT_PATH)},
            "deploy": {"registered_model": name, "rollout": rollout},
            "serving": {"store": str(root / "store")},
            "monitor": {"labels": {"directory": str(root / "labels")}},
        }
        (root / "params.yaml").write_text(yaml.safe_dump(params), encoding="utf-8")
        self.params = load_params(root / "params.yaml")
        self.contract = load_contract(CONTRACT_PATH)
        self.store = root / "store"
        self.log = root / self.params.serving.prediction_log.directory
        v1, v2 = _register_both(backend, name)
        assert (v1, v2) == (1, 2)
        self.history = root / "reports/deploy/alias_history.jsonl"
        self.rollout_history = root / "reports/deploy/rollout_history.jsonl"
        registry.promote(name, 1, {"gate": "first"}, history=self.history)
        for version, model in ((1, tiny[0]), (2, tiny[1])):
            export_model(
                model.directory,
                name,
                version,
                f"run-{version}",
                model.content_sha256,
                0.5,
                self.store,
            )
        write_champion_pointer(self.store, load_served_model(f"{name}:v1", self.store))

    def ctx(self) -> RolloutContext:
        return RolloutContext.from_params(self.params, self.contract, self.root)

    def start(self) -> None:
        served = load_served_model(f"{self.name}:v2", self.store)
        started = format_time(utc_now() - dt.timedelta(minutes=5))
        config = self.params.deploy.rollout
        release(
            self.name,
            self.store,
            None,
            config,
            2,
            served,
            {"gate": "ok"},
            started,
            self.history,
            self.rollout_history,
        )

    def write_rows(
        self, answer: str, shadow: str, rows: int = 100, answer_ms: float = 1.0, errors: int = 0
    ) -> None:
        """Rows as the service logs them during the rollout: ids, features, both scores."""
        slot = pointer_rollout(read_champion_pointer(self.store))
        rng = np.random.default_rng(rows)
        now = parse_time(slot.started_at) + dt.timedelta(milliseconds=1)  # after its start
        part = self.log / f"date={now:%Y-%m-%d}" / f"hour={now:%H}" / "part-test.jsonl"
        part.parent.mkdir(parents=True, exist_ok=True)
        with part.open("a", encoding="utf-8") as out:
            for i in range(rows):
                p = float(rng.uniform())
                q = min(1.0, max(0.0, p + float(rng.normal(0, 0.02))))
                failed = i < errors
                row = {
                    "time": format_time(now + dt.timedelta(milliseconds=10 * i)),
                    "request_id": f"q{i}",
                    "model_version": answer,
                    "probability": p,
                    "predicted": p >= 0.5,
                    "threshold": 0.5,
                    "score_ms": answer_ms,
                    "UDI": 10_000 + i,
                    "rollout_id": slot.id,
                    "shadow_version": shadow,
                    "shadow_probability": None if failed else q,
                    "shadow_predicted": None if failed else q >= 0.5,
                    "shadow_threshold": 0.5,
                    "shadow_error": "ValueError: boom" if failed else None,
                    "shadow_score_ms": None if failed else 1.0,
                    # the answering model timed on the shadow's batch (serving.shadow)
                    "paired_score_ms": None if failed else answer_ms,
                }
                out.write(json.dumps(row) + "\n")

    def control(self):
        labels = self.root / "labels"
        return control_rollout(self.ctx(), self.contract, self.log, labels, utc_now())

    def pointer(self) -> dict:
        return read_champion_pointer(self.store)


def _mlflow_verdicts(backend: Backend, rollout_id: str) -> list:
    import mlflow

    client = mlflow.MlflowClient(backend.uri)
    experiment = client.get_experiment_by_name("lifecycle")
    return client.search_runs(
        [experiment.experiment_id], filter_string=f"tags.rollout_id = '{rollout_id}'"
    )


@pytest.fixture
def project(tmp_path: Path, sqlite: Backend, name: str, tiny) -> Project:
    return Project(tmp_path, sqlite, name, tiny, {**ROLLOUT, "rollback_window_s": 60})


def test_a_good_candidate_is_promoted_then_watched_and_rolled_back(
    project: Project, sqlite: Backend
) -> None:
    project.start()
    slot = pointer_rollout(project.pointer())
    assert slot.kind == "shadow" and slot.model.tag == f"{project.name}:v2"
    assert project.pointer()["tag"] == f"{project.name}:v1"  # the champion is unchanged
    assert registry.candidate(project.name).version == 2
    assert registry.champion(project.name).version == 1

    project.write_rows("v1", "v2")
    labels = pd.DataFrame({"UDI": 10_000 + np.arange(100), "Machine failure": 0})
    labels.loc[::5, "Machine failure"] = 1
    (project.root / "labels").mkdir()
    labels.to_parquet(project.root / "labels" / "batch-1.parquet")
    step = project.control()
    assert step.verdict.outcome == "promote", step.verdict.reasons
    assert step.verdict.labelled_rows == 100
    assert registry.champion(project.name).version == 2
    assert registry.previous(project.name).version == 1
    assert registry.candidate(project.name) is None
    watch = pointer_rollout(project.pointer())
    assert project.pointer()["tag"] == f"{project.name}:v2"
    assert watch.kind == "watch" and watch.model.tag == f"{project.name}:v1"
    [verdict] = read_verdicts(project.root / "reports/deploy/rollout_history.jsonl")
    assert verdict.outcome == "promote" and verdict.rollout_id == slot.id
    [run] = _mlflow_verdicts(sqlite, slot.id)
    assert run.data.tags["outcome"] == "promote"
    assert run.data.metrics["rows"] == 100.0 and "guard_error_rate" in run.data.metrics
    moves = [json.loads(line)["action"] for line in project.history.read_text().splitlines()]
    assert moves == ["promote", "candidate", "promote"]

    # the new champion v2 answers, v1 scores in shadow, and v2 is slow: rolled back
    project.write_rows("v2", "v1", rows=80, answer_ms=90.0)
    step = project.control()
    assert step.verdict.kind == "watch" and step.verdict.outcome == "rollback"
    assert registry.champion(project.name).version == 1
    assert project.pointer()["tag"] == f"{project.name}:v1"
    assert pointer_rollout(project.pointer()) is None
    status = rollout_status(
        project.pointer(), project.root / "reports/deploy/rollout_history.jsonl"
    )
    lines = format_rollout_status(status)
    assert lines[0] == "rollout: none in progress"
    assert f"{watch.id} rollback" in lines[1]


def test_a_failing_candidate_is_aborted_by_the_watch_step(
    project: Project, sqlite: Backend
) -> None:
    project.start()
    slot = pointer_rollout(project.pointer())
    project.write_rows("v1", "v2", rows=20, errors=2)
    loop = Watch(params=project.params, contract=project.contract, root=project.root, history=[])
    step = loop._control_rollout()
    assert step.error is None and step.verdict.outcome == "abort"
    assert any("breached error_rate" in reason for reason in step.verdict.reasons)
    assert registry.candidate(project.name) is None
    assert registry.champion(project.name).version == 1
    assert project.pointer()["tag"] == f"{project.name}:v1"
    assert pointer_rollout(project.pointer()) is None
    assert [r.data.tags["outcome"] for r in _mlflow_verdicts(sqlite, slot.id)] == ["abort"]
    assert registry.previous(project.name) is None  # nothing moved to previous
    # the iteration's record says what happened
    from lifecycle.watch import IterationOutcome

    outcome = IterationOutcome(iteration="t", started=utc_now(), rollout=step)
    record = build_record(outcome, utc_now())
    assert record.rollout.verdict.outcome == "abort"
    assert any("abort" in line for line in record.rollout.actions)
    assert loop._control_rollout() is None  # nothing in progress any more


def test_an_interrupted_promotion_is_finished_by_the_next_step(project: Project) -> None:
    from pipelines.edges.rollout_control import judge, rollout_rows

    project.start()
    project.write_rows("v1", "v2")
    ctx = project.ctx()
    pointer = project.pointer()
    slot = pointer_rollout(pointer)
    rows, labels = rollout_rows(slot, project.log, project.root / "labels", project.contract)
    verdict = judge(ctx, pointer, slot, rows, labels, utc_now())
    assert verdict.outcome == "promote"
    # the run recorded the verdict and moved the aliases, then stopped before the pointers
    from core.records.rollout import append_verdict

    append_verdict(ctx.rollout_history, verdict)
    registry.promote_candidate(project.name, 2, {}, history=project.history)
    assert project.pointer()["tag"] == f"{project.name}:v1"  # still a good model

    step = project.control()
    assert step.resumed is not None and step.resumed.rollout_id == slot.id
    assert project.pointer()["tag"] == f"{project.name}:v2"
    assert pointer_rollout(project.pointer()).kind == "watch"  # then judged: continue
    assert step.verdict.kind == "watch" and step.verdict.outcome == "continue"


def test_the_rollout_command(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(project.root)
    result = runner.invoke(app, ["rollout", "status"])
    assert result.exit_code == 2
    assert result.stderr.startswith("error: no rollout in progress")
    assert len(result.stderr.strip().splitlines()) == 1

    project.start()
    project.write_rows("v1", "v2", rows=30)
    result = runner.invoke(app, ["rollout", "status"])
    assert result.exit_code == 0, result.output
    assert "rows both scored" in result.stdout and "pending" in result.stdout
    assert "outcome: continue: waiting: 30 of 60 rows" in result.stdout
    assert registry.candidate(project.name).version == 2  # status moves nothing

    result = runner.invoke(app, ["rollout", "promote", "--reason", "  "])
    assert result.exit_code == 2 and "--reason must say why" in result.stderr
    result = runner.invoke(app, ["rollout", "promote", "--reason", "looks fine", "--now"])
    assert result.exit_code == 2 and "No such option" in result.output
    result = runner.invoke(app, ["rollout", "resume"])
    assert result.exit_code == 2 and "No such command" in result.output

    result = runner.invoke(app, ["rollout", "abort", "--reason", "wrong data"])
    assert result.exit_code == 0, result.output
    assert "abort (wrong data)" in result.stdout
    assert registry.candidate(project.name) is None
    assert pointer_rollout(project.pointer()) is None
    [verdict] = read_verdicts(project.root / "reports/deploy/rollout_history.jsonl")
    assert verdict.outcome == "abort" and "by hand" in verdict.reasons[-1]
    assert "wrong data" in verdict.reasons[-1]
    result = runner.invoke(app, ["rollout", "abort", "--reason", "again"])
    assert result.exit_code == 2 and "ended abort" in result.stderr


def test_immediate_with_no_champion_or_strategy_promotes_at_once(
    tmp_path: Path, sqlite: Backend, name: str, tiny
) -> None:
    project = Project(tmp_path, sqlite, name, tiny, {"strategy": "immediate"})
    served = load_served_model(f"{name}:v2", project.store)
    config = RolloutConfig(strategy="immediate")
    assert (
        release(
            name,
            project.store,
            None,
            config,
            2,
            served,
            {},
            "2026-12-01T12:00:00.000Z",
            project.history,
            project.rollout_history,
        )
        is None
    )
    assert registry.champion(name).version == 2 and registry.candidate(name) is None
    assert project.pointer()["tag"] == f"{name}:v2" and pointer_rollout(project.pointer()) is None


def test_the_deploy_decision_names_the_rollout_and_old_decisions_still_read(
    tmp_path: Path,
) -> None:
    from core.records.deploy import DeployDecision, read_deploy_decision
    from core.records.rollout import RolloutSlot, SlotModel

    old = {
        "promote": True,
        "reasons": ["ok"],
        "registered_model": "m",
        "challenger": {"family": "f", "content_sha256": "a", "mlflow_run_id": None, "holdout": {}},
    }
    (tmp_path / "old.json").write_text(json.dumps(old))
    assert read_deploy_decision(tmp_path / "old.json").rollout is None
    slot = RolloutSlot(
        id="m-v2-x",
        kind="shadow",
        model=SlotModel(tag="m:v2", version="v2", content_sha256="b" * 64, threshold=0.4),
        started_at="2026-12-01T12:00:00.000Z",
    )
    decision = DeployDecision.model_validate({**old, "rollout": slot.model_dump()})
    (tmp_path / "new.json").write_text(decision.model_dump_json())
    assert read_deploy_decision(tmp_path / "new.json").rollout == slot
