"""The lifecycle under Apache Airflow 3.3, for real, from .venv-airflow (never imported here).

One project copy and one AIRFLOW_HOME (SQLite) for the module, the copy's `lifecycle export
--to airflow` folder as the DAGs folder. In order:

1. what Airflow makes of the export: each task's retries, backoff and retry policy, the
   waits Airflow computes, the watch DAG's schedule (`airflow_probe.py`);
2. the whole lifecycle with `airflow dags test`: six stages ran, under Airflow's run id;
3. the same again: every stage skipped by DVC, no ledger attempt;
4. evaluate made to fail for good (a bad value under `evaluate:`): failed at once, no retry,
   deploy and monitor not run; the value fixed, then Airflow's own re-run of failed work:
   the scheduler and the API server started, the failed task and its downstream cleared
   (`clearTaskInstances`, what the UI's Clear and `airflow tasks clear --only-failed
   --downstream` do), and the scheduler re-runs only those, in the same run;
5. the watch DAG unpaused: the scheduler starts one iteration on its schedule.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from core.config import load_params
from core.paths import CHAMPION, LEDGER
from core.records.deploy import read_champion
from core.records.ledger import AttemptFinished, read_ledger
from core.records.watch import read_watch_history
from lifecycle.orchestrators.graph import Pipeline, Retry, load_pipeline
from lifecycle.orchestrators.to_airflow import airflow_waits
from tests.e2e.conftest import ProjectCopy, copy_project
from tests.orchestrators.conftest import assert_dvc_up_to_date, engine_env, engine_python, export

pytestmark = pytest.mark.slow

PROBE = Path(__file__).with_name("airflow_probe.py")
STAGE_TIMEOUT_S = 900  # one `airflow dags test` of the lifecycle, on a busy machine
SERVER_TIMEOUT_S = 300


@dataclass
class Airflow:
    """An Airflow installation of its own: AIRFLOW_HOME, its SQLite database, the DAGs."""

    copy: ProjectCopy
    home: Path
    dags: Path
    env: dict[str, str]
    runs_of: dict[str, str] = field(default_factory=dict)  # step -> Airflow run id
    api: str | None = None  # the API server's base URL while it runs

    @property
    def airflow(self) -> str:
        return str(engine_python("airflow").parent / "airflow")

    def cli(self, *args: str, expect_ok: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [self.airflow, *args],
            cwd=self.home,
            env=self.env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=STAGE_TIMEOUT_S,
            check=False,
        )
        if expect_ok:
            assert done.returncode == 0, f"airflow {' '.join(args)}:\n{_tail(done)}"
        return done

    def dags_test(self, dag_id: str, expect_ok: bool = True) -> tuple[str, str]:
        """`airflow dags test DAG_ID`: the new run's id and the command's output."""
        before = set(self.query("select run_id from dag_run where dag_id = ?", dag_id))
        done = self.cli("dags", "test", dag_id, expect_ok=expect_ok)
        after = set(self.query("select run_id from dag_run where dag_id = ?", dag_id))
        assert len(after - before) == 1, f"no new run of {dag_id}:\n{_tail(done)}"
        ((run_id,),) = after - before
        return run_id, done.stdout + done.stderr

    def query(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        """Airflow's metadata database, read-only (only while no Airflow server runs)."""
        uri = f"file:{self.home / 'airflow.db'}?mode=ro"
        with closing(sqlite3.connect(uri, uri=True)) as db:
            return db.execute(sql, args).fetchall()

    def task_instances(self, run_id: str) -> dict[str, tuple[str | None, int]]:
        rows = self.query(
            "select task_id, state, try_number from task_instance where run_id = ?", run_id
        )
        return {task: (state, tries) for task, state, tries in rows}

    def results(self, run_id: str) -> dict[str, dict[str, Any]]:
        """Each task's return value (its `lifecycle task` result), from XCom."""
        rows = self.query(
            "select task_id, value from xcom where run_id = ? and key = 'return_value'", run_id
        )
        return {task: json.loads(value) for task, value in rows}

    def rest(self, method: str, path: str, body: dict | None = None) -> Any:
        assert self.api is not None, "the API server is not running"
        request = urllib.request.Request(
            f"{self.api}/api/v2/{path}",
            method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            raise AssertionError(f"{method} {path}: {exc.code} {exc.read()[:500]!r}") from None


def attempts(copy: ProjectCopy) -> list[AttemptFinished]:
    return [e for e in read_ledger(copy.path / LEDGER) if isinstance(e, AttemptFinished)]


def _tail(done: subprocess.CompletedProcess[str], lines: int = 60) -> str:
    return "\n".join((done.stdout + done.stderr).splitlines()[-lines:])


def _wait_for(what: str, check: Callable[[], Any], timeout: float, log: Path) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(1)
    text = log.read_text(errors="replace") if log.exists() else ""
    raise AssertionError(f"{what} within {timeout:.0f} s; {log.name}:\n{text[-4000:]}")


def _free_port() -> int:
    with closing(socket.socket()) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def airflow(tmp_path_factory: pytest.TempPathFactory) -> Airflow:
    copy = copy_project(tmp_path_factory.mktemp("airflow") / "project")
    dags = export(copy, "airflow")
    home = copy.path.parent / "airflow-home"
    home.mkdir()
    env = engine_env(
        copy,
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__DAGS_FOLDER=str(dags),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION="True",  # the watch starts when told
        AIRFLOW__CORE__EXECUTOR="LocalExecutor",
        AIRFLOW__CORE__PARALLELISM="1",  # the stages share one workspace; 2 cores here
    )
    env.pop("PYTHONPATH", None)  # Airflow's interpreter sees none of the project's packages
    found = Airflow(copy=copy, home=home, dags=dags, env=env)
    found.cli("db", "migrate")
    return found


@pytest.fixture(scope="module")
def servers(airflow: Airflow) -> Iterator[Airflow]:
    """The API server (also the tasks' Execution API) and the scheduler with LocalExecutor:
    what runs the DAGs outside `airflow dags test`. Stopped at the module's end."""
    port = _free_port()
    env = {
        **airflow.env,
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__WORKERS": "1",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",  # a local test, no login
    }
    started: list[subprocess.Popen[bytes]] = []
    logs = {name: airflow.home / f"{name}.log" for name in ("api-server", "scheduler")}
    try:
        for name, argv in (("api-server", []), ("scheduler", ["--skip-serve-logs"])):
            with logs[name].open("wb") as log:
                started.append(
                    subprocess.Popen(
                        [airflow.airflow, name, *argv],
                        cwd=airflow.home,
                        env=env,
                        stdin=subprocess.DEVNULL,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,  # its own group: stopped with its children
                    )
                )
        base = f"http://127.0.0.1:{port}"

        def healthy() -> bool:
            try:
                with urllib.request.urlopen(f"{base}/api/v2/monitor/health", timeout=5) as r:
                    return r.status == 200
            except OSError:
                return False

        _wait_for("the API server answered", healthy, SERVER_TIMEOUT_S, logs["api-server"])
        airflow.api = base
        yield airflow
    finally:
        airflow.api = None
        for process in started:
            os.killpg(process.pid, signal.SIGTERM)
        for process in started:
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def test_airflow_holds_the_retries_and_schedule_of_params(airflow: Airflow) -> None:
    pipeline = load_pipeline(airflow.copy.path)
    done = subprocess.run(
        [str(engine_python("airflow")), str(PROBE), str(airflow.dags)],
        cwd=airflow.home,
        env=airflow.env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, _tail(done)
    probe = json.loads(done.stdout.splitlines()[-1])
    assert probe["dag_id"] == pipeline.name
    assert probe["max_active_runs"] == 1
    assert probe["max_active_tasks"] == 1  # shared mode: one stage at a time
    assert list(probe["tasks"]) == [stage.name for stage in pipeline.stages]
    for stage in pipeline.stages:
        task = probe["tasks"][stage.name]
        assert task["upstream"] == sorted(stage.upstream)
        assert task["retries"] == stage.retry.retries
        assert task["retry_delay_s"] == stage.retry.backoff_initial_s
        assert task["retry_exponential_backoff"] == 2.0
        assert task["max_retry_delay_s"] == stage.retry.backoff_max_s
        assert task["policy"] == {  # exit 75 retried; 1, 2 and anything else never
            "transient": "retry",
            "permanent": "fail",
            "bad_config": "fail",
            "other": "fail",
        }
        expected = to_waits(stage.retry)  # the generated comment's waits are Airflow's
        assert [[min(w), max(w)] for w in task["waits_s"]] == expected
    assert probe["watch"] == {
        "dag_id": f"{pipeline.name}-watch",
        "tasks": ["watch_once"],
        "retries": [0],
        "interval_s": pipeline.watch.interval_s,
        "max_active_runs": 1,
        "catchup": False,
    }


def to_waits(retry: Retry) -> list[list[float]]:
    return [[float(lo), float(hi)] for lo, hi in airflow_waits(retry)]


def test_the_lifecycle_runs_under_airflow(airflow: Airflow) -> None:
    pipeline = load_pipeline(airflow.copy.path)
    run_id, output = airflow.dags_test(pipeline.name)
    airflow.runs_of["lifecycle"] = run_id
    assert airflow.query("select state from dag_run where run_id = ?", run_id) == [("success",)], (
        output[-4000:]
    )
    stages = [stage.name for stage in pipeline.stages]
    assert airflow.task_instances(run_id) == {name: ("success", 1) for name in stages}
    assert {t: r["outcome"] for t, r in airflow.results(run_id).items()} == dict.fromkeys(
        stages, "ran"
    )
    ran = attempts(airflow.copy)
    assert [a.stage for a in ran] == stages  # one attempt each, in the graph's order
    assert {a.lifecycle_run for a in ran} == {run_id}  # grouped by Airflow's run id
    assert all(a.status == "succeeded" for a in ran)
    champion = read_champion(airflow.copy.path / CHAMPION)
    assert champion is not None and champion.version == 1  # the first model was promoted


def test_a_second_run_skips_every_stage(airflow: Airflow) -> None:
    pipeline = load_pipeline(airflow.copy.path)
    before = len(read_ledger(airflow.copy.path / LEDGER))
    run_id, output = airflow.dags_test(pipeline.name)
    assert airflow.query("select state from dag_run where run_id = ?", run_id) == [("success",)], (
        output[-4000:]
    )
    assert {t: r["outcome"] for t, r in airflow.results(run_id).items()} == {
        stage.name: "skipped" for stage in pipeline.stages
    }
    assert len(read_ledger(airflow.copy.path / LEDGER)) == before  # DVC ran nothing


def operating_point(at_least: float) -> Callable[[dict], None]:
    return lambda raw: raw["evaluate"]["operating_point"].update(at_least=at_least)


def test_a_stage_failing_for_good_fails_at_once_and_stops_its_downstream(
    airflow: Airflow,
) -> None:
    pipeline = load_pipeline(airflow.copy.path)
    airflow.copy.edit_params(operating_point(1.5))  # out of (0, 1]: evaluate exits 2
    run_id, output = airflow.dags_test(pipeline.name, expect_ok=False)
    airflow.runs_of["failed"] = run_id
    assert "stage evaluate failed with exit code 2 (ConfigError)" in output, output[-4000:]
    assert "DagRun failed" in output
    assert airflow.task_instances(run_id) == {
        "ingest": ("success", 1),  # DVC skipped them: nothing of theirs changed
        "validate": ("success", 1),
        "train": ("success", 1),
        "evaluate": ("failed", 1),  # one try: its two retries left unused
        "deploy": ("upstream_failed", 0),
        "monitor": ("upstream_failed", 0),
    }
    failed = [a for a in attempts(airflow.copy) if a.lifecycle_run == run_id]
    assert [(a.stage, a.status) for a in failed] == [("evaluate", "failed")]
    assert failed[0].error is not None and failed[0].error.error_class == "ConfigError"


def test_the_failed_stage_is_resumed_with_airflows_clear(servers: Airflow) -> None:
    airflow = servers
    airflow.copy.edit_params(operating_point(0.85))  # fixed, and not the first run's value
    pipeline = load_pipeline(airflow.copy.path)
    run_id = airflow.runs_of["failed"]
    after = ["evaluate", *_downstream(pipeline, "evaluate")]
    assert after == ["evaluate", "deploy", "monitor"]
    dag = urllib.parse.quote(pipeline.name, safe="")
    run = urllib.parse.quote(run_id, safe="")
    airflow.rest("PATCH", f"dags/{dag}", {"is_paused": False})  # no schedule: no new runs
    cleared = airflow.rest(
        "POST",
        f"dags/{dag}/clearTaskInstances",
        {"dry_run": False, "dag_run_id": run_id, "only_failed": True, "include_downstream": True},
    )
    assert sorted(ti["task_id"] for ti in cleared["task_instances"]) == sorted(after)
    log = airflow.home / "scheduler.log"
    state = _wait_for(
        "the cleared run finished",
        lambda: _finished(airflow.rest("GET", f"dags/{dag}/dagRuns/{run}")),
        STAGE_TIMEOUT_S,
        log,
    )
    assert state == "success", log.read_text(errors="replace")[-4000:]
    instances = airflow.rest("GET", f"dags/{dag}/dagRuns/{run}/taskInstances")
    assert {
        ti["task_id"]: (ti["state"], ti["try_number"]) for ti in instances["task_instances"]
    } == {
        "ingest": ("success", 1),  # not re-run: Airflow kept their success
        "validate": ("success", 1),
        "train": ("success", 1),
        "evaluate": ("success", 2),  # the cleared ones, re-run in the same run
        "deploy": ("success", 1),
        "monitor": ("success", 1),
    }
    resumed = [a for a in attempts(airflow.copy) if a.lifecycle_run == run_id][1:]
    assert resumed and resumed[0].stage == "evaluate", [a.stage for a in resumed]
    assert {a.stage for a in resumed} <= set(after)  # DVC may skip an unchanged downstream
    assert all(a.status == "succeeded" for a in resumed)
    assert_dvc_up_to_date(airflow.copy)  # the lifecycle is complete


def test_the_watch_dag_runs_one_iteration_on_its_schedule(servers: Airflow) -> None:
    airflow = servers
    pipeline = load_pipeline(airflow.copy.path)
    params = load_params(airflow.copy.path / "params.yaml")
    watch_log = airflow.copy.path / params.monitor.watch.log
    before = len(read_watch_history(watch_log))
    watch = urllib.parse.quote(f"{pipeline.name}-watch", safe="")

    def finished_run() -> dict[str, Any] | None:
        runs = airflow.rest("GET", f"dags/{watch}/dagRuns")["dag_runs"]
        return next((run for run in runs if _finished(run)), None)

    airflow.rest("PATCH", f"dags/{watch}", {"is_paused": False})
    try:
        run = _wait_for(
            "a scheduled watch run finished",
            finished_run,
            STAGE_TIMEOUT_S,
            airflow.home / "scheduler.log",
        )
    finally:
        airflow.rest("PATCH", f"dags/{watch}", {"is_paused": True})
    assert run["run_type"] == "scheduled", run
    assert run["state"] == "success", run
    history = read_watch_history(watch_log)
    assert len(history) == before + 1
    assert history[-1].error is None


def _downstream(pipeline: Pipeline, stage: str) -> list[str]:
    found: list[str] = []
    for other in pipeline.stages:
        if any(up == stage or up in found for up in other.upstream):
            found.append(other.name)
    return found


def _finished(run: dict[str, Any]) -> str | None:
    return run["state"] if run["state"] in ("success", "failed") else None
