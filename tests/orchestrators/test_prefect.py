"""The lifecycle under Prefect 3, for real: `lifecycle export --to prefect` run from .venv-prefect.

One project copy and one real Prefect server (`prefect server start` on a SQLite database
in a temporary PREFECT_HOME, offline: no UI, no telemetry), started once for the module;
every command reaches it through PREFECT_API_URL, as a production deployment reaches its
Prefect server (no command starts Prefect's ephemeral server). In this order: the whole
default lifecycle as one flow run; the same again, where DVC skips every stage; a stage
made to fail permanently, fixed, and the failed flow run re-run with Prefect's own
`prefect flow-run retry`, which runs only that stage and the ones after it; the watch flow
once; last, a transient failure that Prefect retries with its backoff. The engine is
driven by subprocess, never imported into the project's environment; Prefect's view comes
from its task-run log lines, from its server's API (the flow run's state) and, for the
tasks and deployments it builds, from `prefect_driver.py`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from core.records.ledger import AttemptFinished
from lifecycle.orchestrators.graph import Pipeline, load_pipeline
from tests.e2e.conftest import ProjectCopy, copy_project
from tests.mlflow_server import free_port
from tests.orchestrators.conftest import assert_dvc_up_to_date, engine_python, export
from tests.orchestrators.prefect_run import (
    Done,
    PrefectServer,
    driver_command,
    finished_attempts,
    flow_command,
    prefect_env,
    prefect_server,
    run,
)

pytestmark = pytest.mark.slow


@dataclass
class Prefect:
    """The exported flow module in a project copy, and the commands run against it."""

    copy: ProjectCopy
    folder: Path
    env: dict[str, str]
    pipeline: Pipeline
    server: PrefectServer
    runs: dict[str, str] = field(default_factory=dict)  # step -> flow run id

    def flow(self, command: str = "run") -> Done:
        return run(flow_command(command), self.folder, self.env)

    def retry(self, flow_run: str) -> Done:
        prefect = engine_python("prefect").parent / "prefect"
        entrypoint = "lifecycle_flow.py:lifecycle"
        argv = [str(prefect), "flow-run", "retry", flow_run, "--entrypoint", entrypoint]
        return run(argv, self.folder, self.env)

    def driver(self, *argv: str) -> Done:
        return run(driver_command(*argv), self.folder, self.env)

    def finished(self, run_id: str) -> list[AttemptFinished]:
        return finished_attempts(self.copy, run_id)

    def state_on_server(self, flow_run: str) -> str:
        """The flow run's state as the Prefect server recorded it (its own API)."""
        return self.server.get(f"flow_runs/{flow_run}")["state"]["type"]

    def needs(self, step: str) -> str:
        if step not in self.runs:
            pytest.fail(f"this test needs the flow run of {step!r}, which failed earlier")
        return self.runs[step]


@pytest.fixture(scope="module")
def prefect(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prefect]:
    """The module's project copy and export, and its one Prefect server (stopped after)."""
    copy = copy_project(tmp_path_factory.mktemp("project"))
    folder = export(copy, "prefect")
    home = tmp_path_factory.mktemp("prefect-home")
    with prefect_server(home) as server:
        env = prefect_env(copy, home, server)
        yield Prefect(copy, folder, env, load_pipeline(copy.path), server)


_FINISHED = re.compile(r"Task run '(.+)-[0-9a-f]{3}' - Finished in state (\w+)\(")


def task_states(done: Done) -> dict[str, str]:
    """Each task's final state, from Prefect's task-run log lines (`Finished in state X`)."""
    return {
        found.group(1): found.group(2)
        for found in map(_FINISHED.search, done.stderr.splitlines())
        if found
    }


def downstream_of(pipeline: Pipeline, stage: str) -> list[str]:
    """`stage` and every stage that depends on it, directly or not, in the graph's order."""
    reached = {stage}
    for later in pipeline.stages:
        if reached & set(later.upstream):
            reached.add(later.name)
    return [s.name for s in pipeline.stages if s.name in reached]


def test_the_tasks_and_deployments_prefect_builds_from_the_export(prefect: Prefect) -> None:
    """Prefect's own objects: each stage's retries and waits from params.yaml, the retry
    condition true for a transient failure only, the watch every interval_s, one at a time."""
    done = prefect.driver("inspect", str(prefect.folder))
    assert done.returncode == 0, done.tail
    built = done.report
    for stage in prefect.pipeline.stages:
        task = built["tasks"][stage.name]
        assert task["retries"] == stage.retry.retries
        initial, cap = stage.retry.backoff_initial_s, stage.retry.backoff_max_s
        assert task["retry_delay_seconds"] == [
            min(initial * 2**n, cap) for n in range(stage.retry.retries)
        ]
        assert task["retry_jitter_factor"] == stage.retry.jitter_s / initial
        assert task["has_condition"]
    assert built["only_transient"] == {
        "TransientStageFailure": True,
        "PermanentStageFailure": False,
        "BadConfigFailure": False,
    }
    deployments = {d["name"]: d for d in built["deployments"]}
    assert deployments["watch"]["intervals_s"] == [prefect.pipeline.watch.interval_s]
    assert deployments["watch"]["concurrency_limit"] == 1
    assert deployments["watch"]["collision_strategy"] == "CANCEL_NEW"
    assert deployments["lifecycle"]["intervals_s"] == []  # on demand
    assert deployments["lifecycle"]["concurrency_limit"] == 1


def test_the_default_lifecycle_runs_as_one_prefect_flow_run(prefect: Prefect) -> None:
    done = prefect.flow()
    assert done.returncode == 0, done.tail
    report = done.report
    names = [stage.name for stage in prefect.pipeline.stages]
    assert report["state"] == "Completed", report
    assert report["stages"] == dict.fromkeys(names, "ran")
    run_id = report["flow_run"]
    assert prefect.state_on_server(run_id) == "COMPLETED"  # recorded by the real server
    assert "Starting temporary server" not in done.stderr  # no ephemeral one
    finished = prefect.finished(run_id)  # the stages carry Prefect's flow run id
    assert [(a.stage, a.attempt, a.status) for a in finished] == [
        (name, 1, "succeeded") for name in names
    ]
    assert (prefect.copy.path / "reports" / "deploy" / "champion.json").is_file()
    prefect.runs["lifecycle"] = run_id


def test_a_second_flow_run_skips_every_stage_as_dvc_would(prefect: Prefect) -> None:
    prefect.needs("lifecycle")
    ledger = prefect.copy.path / ".lifecycle" / "ledger.jsonl"
    before = ledger.read_text()
    done = prefect.flow()
    assert done.returncode == 0, done.tail
    report = done.report
    assert report["stages"] == dict.fromkeys((s.name for s in prefect.pipeline.stages), "skipped")
    assert prefect.finished(report["flow_run"]) == []
    assert ledger.read_text() == before  # no stage attempt at all


def test_a_failed_stage_is_resumed_by_prefect_s_retry_of_the_flow_run(prefect: Prefect) -> None:
    """evaluate fails on a bad value (exit 2: never retried), its downstream tasks do not
    run; fixed, `prefect flow-run retry` runs evaluate and what follows it, in the same
    flow run, and takes the stages before it from cache."""
    prefect.needs("lifecycle")
    pipeline = prefect.pipeline
    after = downstream_of(pipeline, "evaluate")
    before = [s.name for s in pipeline.stages if s.name not in after]

    prefect.copy.edit_params(lambda p: p["evaluate"]["operating_point"].update(at_least=1.5))
    failed = prefect.flow()
    assert failed.returncode == 1, failed.tail
    report = failed.report
    assert report["state"] == "Failed"
    assert "stage evaluate failed with exit code 2 (ConfigError)" in report["message"]
    assert "evaluate.operating_point.at_least" in report["message"]
    run_id = report["flow_run"]
    assert prefect.state_on_server(run_id) == "FAILED"
    failures = prefect.finished(run_id)
    assert [(a.stage, a.status) for a in failures] == [("evaluate", "failed")]  # one attempt

    # A new value, so DVC re-runs evaluate (the old one would be skipped as unchanged).
    prefect.copy.edit_params(lambda p: p["evaluate"]["operating_point"].update(at_least=0.85))
    resumed = prefect.retry(run_id)
    assert resumed.returncode == 0, resumed.tail
    assert prefect.state_on_server(run_id) == "COMPLETED"  # the same flow run, now complete
    ran = [a.stage for a in prefect.finished(run_id)[len(failures) :]]
    assert ran[0] == "evaluate", ran
    assert set(ran) <= set(after), f"the resume ran {ran}, beyond {after}"
    assert all(a.status == "succeeded" for a in prefect.finished(run_id)[len(failures) :])

    # Prefect's own account, its task-run log lines: what ran, what came from the cache
    assert (
        task_states(failed)
        == {
            **dict.fromkeys(before, "Completed"),  # DVC skipped them; the tasks completed
            "evaluate": "Failed",
            **dict.fromkeys(after[1:], "NotReady"),
        }
    )
    assert "Retry 1/" not in failed.stderr  # exit 2 is never retried
    assert task_states(resumed) == {
        **dict.fromkeys(before, "Cached"),  # not run again: their results came from cache
        **dict.fromkeys(after, "Completed"),
    }
    assert f"Executing flow run '{run_id}' locally" in resumed.stdout + resumed.stderr
    assert_dvc_up_to_date(prefect.copy)  # the lifecycle is complete


def test_the_watch_flow_runs_one_iteration(prefect: Prefect) -> None:
    prefect.needs("lifecycle")
    log = prefect.copy.path / "reports" / "watch" / "iterations.jsonl"
    done = prefect.flow("watch")
    assert done.returncode == 0, done.tail
    report = done.report
    assert report["state"] == "Completed"
    assert report["watch"]["exit_code"] == 0
    assert report["watch"]["run_id"] == report["flow_run"]
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(records) == 1
    assert records[0]["error"] is None
    assert records[0]["iteration"].startswith(f"{report['flow_run']}-")  # the engine's run


def test_an_unknown_command_of_the_flow_module_fails_in_one_line(prefect: Prefect) -> None:
    done = prefect.flow("bogus")
    assert done.returncode == 2
    message = done.stderr.strip().splitlines()[-1]
    assert "invalid choice: 'bogus' (choose from 'run', 'watch', 'serve')" in message, done.stderr


def test_a_transient_failure_is_retried_by_prefect_and_attempts_do_not_multiply(
    prefect: Prefect,
) -> None:
    """train cannot reach its tracking server (exit 75): Prefect runs it `attempts` times
    in all, waiting its backoff between, each run one attempt of the stage; then it fails
    and nothing downstream runs."""
    prefect.needs("lifecycle")
    train = prefect.pipeline.stage("train")
    prefect.copy.edit_params(
        lambda p: p["train"]["hist_gradient_boosting"].update(learning_rate=0.2)
    )
    nobody = f"http://127.0.0.1:{free_port()}"
    # MLflow's own HTTP retries off: each attempt is refused at once, not after ~3 s of
    # MLflow's backoff (still TrackingUnavailableError); Prefect's retries are under test.
    env = {**prefect.env, "MLFLOW_TRACKING_URI": nobody, "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0"}
    done = run(flow_command("run"), prefect.folder, env)
    assert done.returncode == 1, done.tail
    message = done.report["message"]
    assert "stage train failed with exit code 75 (TrackingUnavailableError)" in message
    attempts = prefect.finished(done.report["flow_run"])
    assert [(a.stage, a.attempt, a.status) for a in attempts] == [
        ("train", 1, "failed")
    ] * train.retry.attempts  # Prefect's attempts, each the stage's one
    assert {a.error.error_class for a in attempts if a.error} == {"TrackingUnavailableError"}
    for retry in range(1, train.retry.attempts):
        assert f"Retry {retry}/{train.retry.retries} will start" in done.stderr
