"""`lifecycle export --to stepfunctions`, rendered in the project's environment (no AWS, no
moto): the state machines' order, edges and retries come from dvc.yaml and params.yaml,
the files say they are generated, and the output is the same on every run. The definitions
are validated and executed in `test_stepfunctions.py`."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from core.config import load_params
from lifecycle.orchestrators import to_stepfunctions as sfn
from lifecycle.orchestrators.export import CLIENT_FILE, ExportSettings, header, render
from lifecycle.orchestrators.graph import Pipeline, Retry, load_pipeline, pipeline_from
from tests.e2e.conftest import ROOT

STAGES = ["ingest", "validate", "train", "evaluate", "deploy", "monitor"]


def settings(mode: str = "shared") -> ExportSettings:
    return ExportSettings(
        engine="stepfunctions",
        mode=mode,  # type: ignore[arg-type]
        project="/srv/project",
        python="/srv/project/.venv/bin/python",
        repository="https://git.example/project.git",
    )


def exported(pipeline: Pipeline, mode: str = "shared") -> dict[str, str]:
    return render(pipeline, settings(mode))


def machine(files: dict[str, str], name: str = sfn.STATE_MACHINE_FILE) -> dict[str, Any]:
    return json.loads(files[name])


def project_with(tmp_path: Path, edit: Any) -> Pipeline:
    """The project's dvc.yaml and a params.yaml changed by `edit`, as a Pipeline."""
    shutil.copy(ROOT / "dvc.yaml", tmp_path / "dvc.yaml")
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    edit(raw)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    return load_pipeline(tmp_path)


@pytest.fixture(scope="module")
def pipeline() -> Pipeline:
    return load_pipeline(ROOT)


def test_the_export_writes_the_definitions_the_schedule_and_the_worker(
    pipeline: Pipeline,
) -> None:
    files = exported(pipeline)
    assert set(files) == {
        "state_machine.asl.json",
        "watch_state_machine.asl.json",
        "schedule.json",
        "worker.py",
        CLIENT_FILE,
    }
    generated = header("stepfunctions").replace("# ", "").replace("\n", " ").strip()
    for name in ("state_machine.asl.json", "watch_state_machine.asl.json"):
        assert machine(files, name)["Comment"].startswith(generated)  # JSON has no comments
    assert json.loads(files["schedule.json"])["Description"].startswith(generated)
    for name in ("worker.py", CLIENT_FILE):
        assert files[name].startswith(header("stepfunctions"))
        compile(files[name], name, "exec")  # valid Python


def test_one_task_per_stage_chained_in_dvc_yaml_order(pipeline: Pipeline) -> None:
    definition = machine(exported(pipeline))
    states = definition["States"]
    assert definition["StartAt"] == "ingest"
    tasks = [name for name, state in states.items() if state["Type"] == "Task"]
    assert tasks == STAGES
    chain = [states[name].get("Next") for name in tasks]
    assert chain == [*STAGES[1:], None]
    assert states["monitor"]["End"] is True
    for name in tasks:
        task = states[name]
        assert task["Resource"] == "arn:aws:states:::sqs:sendMessage.waitForTaskToken"
        assert task["Parameters"]["QueueUrl"] == "${StageQueueUrl}"
        body = task["Parameters"]["MessageBody"]
        assert body["stage"] == name and body["kind"] == "stage"
        assert body["run_id.$"] == "$$.Execution.Name"  # the run id is the execution's name
        assert body["task_token.$"] == "$$.Task.Token"
        assert "upstream_locks.$" not in body  # shared mode
        assert task["ResultPath"] == f"$.results.{name}"
        assert task["TimeoutSeconds"] == sfn.TASK_TIMEOUT_S
        assert task["HeartbeatSeconds"] == body["heartbeat_s"] == sfn.HEARTBEAT_S
        assert pipeline.stage(name).cmd in task["Comment"]


def test_every_failure_is_caught_recorded_and_fails_the_execution(pipeline: Pipeline) -> None:
    states = machine(exported(pipeline))["States"]
    for name in STAGES:
        assert states[name]["Catch"] == [
            {"ErrorEquals": ["States.ALL"], "ResultPath": "$.failure", "Next": f"{name} failed"}
        ]
        record = states[f"{name} failed"]
        assert record["Type"] == "Pass" and record["Next"] == "Lifecycle failed"
        assert record["Parameters"] == {
            "stage": name,
            "error.$": "$.failure.Error",
            "cause.$": f"States.Format('stage {name} failed: {{}}', $.failure.Cause)",
        }
    fail = states["Lifecycle failed"]
    assert (fail["Type"], fail["ErrorPath"], fail["CausePath"]) == (
        "Fail",
        "$.failed.error",
        "$.failed.cause",
    )


def test_the_retry_block_becomes_each_states_retry_on_transient_failures_only(
    tmp_path: Path,
) -> None:
    def edit(raw: dict) -> None:
        raw["retry"]["stages"] = {
            "train": {"attempts": 5, "backoff_initial_s": 2.5, "backoff_max_s": 40, "jitter_s": 0},
            "monitor": {"attempts": 1},
        }

    states = machine(exported(project_with(tmp_path, edit)))["States"]
    default = {  # params.yaml's default: 3 attempts, 1 s doubling to at most 30 s, jitter
        "ErrorEquals": ["TransientStageFailure"],
        "IntervalSeconds": 1,
        "BackoffRate": 2.0,
        "MaxAttempts": 2,
        "MaxDelaySeconds": 30,
        "JitterStrategy": "FULL",
    }
    assert states["ingest"]["Retry"] == [default]
    assert states["train"]["Retry"] == [
        {
            "ErrorEquals": ["TransientStageFailure"],
            "IntervalSeconds": 3,  # 2.5 s rounds up: ASL counts whole seconds
            "BackoffRate": 2.0,
            "MaxAttempts": 4,
            "MaxDelaySeconds": 40,
            "JitterStrategy": "NONE",
        }
    ]
    assert "Retry" not in states["monitor"]  # one attempt: never retried
    assert "Catch" in states["monitor"]


def test_retry_values_in_whole_seconds() -> None:
    assert [sfn.seconds(value) for value in (0.05, 1.0, 1.01, 2.5, 30)] == [1, 1, 2, 3, 30]
    short = sfn.retrier(Retry(attempts=4, backoff_initial_s=0.2, backoff_max_s=0.5, jitter_s=0.1))
    assert short is not None
    assert (short["IntervalSeconds"], short["MaxDelaySeconds"], short["MaxAttempts"]) == (1, 1, 3)
    assert sfn.retrier(Retry(attempts=1, backoff_initial_s=1, backoff_max_s=1, jitter_s=0)) is None


def test_workers_mode_hands_each_stage_its_upstream_locks(pipeline: Pipeline) -> None:
    states = machine(exported(pipeline, "workers"))["States"]
    locks = {
        name: states[name]["Parameters"]["MessageBody"].get("upstream_locks.$") for name in STAGES
    }
    assert locks == {
        "ingest": None,
        "validate": "States.Array($.results.ingest.dvc_lock)",
        "train": "States.Array($.results.validate.dvc_lock)",
        "evaluate": "States.Array($.results.train.dvc_lock)",
        "deploy": "States.Array($.results.train.dvc_lock, $.results.evaluate.dvc_lock)",
        "monitor": "States.Array($.results.deploy.dvc_lock)",
    }
    assert "(workers mode)" in machine(exported(pipeline, "workers"))["Comment"]


def test_a_graph_with_branches_runs_them_in_a_topological_order() -> None:
    params = load_params(ROOT / "params.yaml")
    dvc_yaml = {
        "stages": {
            "join": {"cmd": "j", "deps": ["left.csv", "right.csv"], "outs": ["joined.csv"]},
            "left": {"cmd": "l", "deps": ["raw.csv"], "outs": ["left.csv"]},
            "right": {"cmd": "r", "deps": ["raw.csv"], "outs": ["right.csv"]},
            "get": {"cmd": "g", "outs": ["raw.csv"]},
        }
    }
    branched = pipeline_from(dvc_yaml, params)
    definition = machine(exported(branched, "workers"))
    states = definition["States"]
    order = [definition["StartAt"]]
    while "Next" in states[order[-1]]:
        order.append(states[order[-1]]["Next"])
    assert order == ["get", "left", "right", "join"]
    assert states["join"]["Parameters"]["MessageBody"]["upstream_locks.$"] == (
        "States.Array($.results.left.dvc_lock, $.results.right.dvc_lock)"
    )
    assert "left -> join, right -> join" in definition["Comment"]


def test_the_watch_machine_carries_the_guardrails_and_is_never_retried(tmp_path: Path) -> None:
    def edit(raw: dict) -> None:
        raw["monitor"]["policy"].update(cooldown_minutes=45, max_retrains_per_day=2)
        raw["monitor"]["watch"]["interval_s"] = 900

    files = exported(project_with(tmp_path, edit))
    watch = machine(files, sfn.WATCH_MACHINE_FILE)
    task = watch["States"][watch["StartAt"]]
    assert task["Parameters"]["MessageBody"]["kind"] == "watch"
    assert task["Parameters"]["MessageBody"]["run_id.$"] == "$$.Execution.Name"
    assert "Retry" not in task
    assert task["Catch"][0]["Next"] == "watch failed"
    assert "45 minutes of cooldown" in task["Comment"]
    assert "at most 2 retrains a day" in task["Comment"]
    assert "(.lifecycle/watch.lock)" in task["Comment"]
    schedule = json.loads(files[sfn.SCHEDULE_FILE])
    assert schedule["ScheduleExpression"] == "rate(15 minutes)"
    assert schedule["Target"]["Arn"] == "${WatchStateMachineArn}"
    assert len(schedule["Description"]) <= sfn.DESCRIPTION_LIMIT


def test_schedule_expressions() -> None:
    assert sfn.schedule_expression(1) == "rate(1 minute)"
    assert sfn.schedule_expression(60) == "rate(60 minutes)"
    with pytest.raises(ValueError, match="a schedule needs at least one minute, not 0"):
        sfn.schedule_expression(0)


def test_the_worker_knows_its_mode_and_stages(pipeline: Pipeline) -> None:
    worker = exported(pipeline, "workers")["worker.py"]
    assert "Stages: ingest, validate, train, evaluate, deploy, monitor (workers mode)." in worker
    assert "pip install boto3==" in worker
    client = exported(pipeline, "workers")[CLIENT_FILE]
    assert "MODE = 'workers'" in client


def test_the_export_is_deterministic(pipeline: Pipeline) -> None:
    assert exported(pipeline) == exported(pipeline)
    assert exported(pipeline, "workers") == exported(pipeline, "workers")
    assert exported(pipeline) != exported(pipeline, "workers")
