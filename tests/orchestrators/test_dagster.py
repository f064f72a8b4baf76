"""The lifecycle under Dagster 1.13, for real: `lifecycle export --to dagster`, then run.

Dagster runs in its own environment (.venv-dagster: it does not install beside the project's
lock), in process on a persistent instance ($DAGSTER_HOME in a temporary folder), driven by
`dagster_driver.py` and by Dagster's own `dagster job execute`. Its steps call the project's
environment by subprocess, so the stages, MLflow (the copy's own store), the BentoML store
and the ledger are the real ones. One project copy for the module, in this order:

a) Dagster loads both exports (shared and workers mode): its asset graph is dvc.yaml's,
   its retry policies params.yaml's;
b) the whole default lifecycle: six assets, six stages run under the Dagster run's id;
c) again, from Dagster's CLI: DVC skips every stage, no ledger attempt;
d) evaluate made to fail (a bad params value, exit code 2): not retried, nothing after it
   runs; fixed, then re-executed from failure: only evaluate and what follows run;
e) the watch job once, its schedule's tick (skipped while a run holds the project folder)
   and the instance's run limit from the exported dagster.yaml;
f) a transient failure (the tracking server unreachable): Dagster's RetryPolicy retries it,
   exactly retry.attempts in all (params.yaml's override, exported again).

Not run here: workers mode (each stage in a fresh clone with a DVC remote), which a) only
loads; Dagster's daemon, webserver and run queue (a) and e) check their inputs).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from core.paths import CHAMPION, LEDGER
from core.records.ledger import AttemptFinished, read_ledger
from lifecycle.orchestrators.dagster_mapping import cron_schedule, identifier, retry_policy
from lifecycle.orchestrators.graph import Pipeline, load_pipeline
from lifecycle.orchestrators.to_dagster import DEFINITIONS, INSTANCE
from tests.e2e.conftest import BIN, ProjectCopy, copy_project
from tests.mlflow_server import free_port
from tests.orchestrators.conftest import assert_dvc_up_to_date, engine_env, engine_python, export

pytestmark = pytest.mark.slow

DRIVER = Path(__file__).with_name("dagster_driver.py")
TIMEOUT_S = 900
TAIL = 4000  # characters of a failed command's output shown


@dataclass
class Dagster:
    """The project copy, its export and the Dagster instance the runs share."""

    copy: ProjectCopy
    pipeline: Pipeline
    home: Path
    out: Path
    workers_out: Path

    @property
    def definitions(self) -> str:
        return str(self.out / DEFINITIONS)

    @property
    def job(self) -> str:
        return f"{identifier(self.pipeline.name)}_lifecycle"

    @property
    def watch_job(self) -> str:
        return f"{identifier(self.pipeline.name)}_watch"

    def env(self, **extra: str) -> dict[str, str]:
        return engine_env(self.copy, DAGSTER_HOME=str(self.home), **extra)

    def drive(self, *commands: list[str], **env: str) -> list[dict[str, Any]]:
        """dagster_driver.py's commands in one Dagster process; their results."""
        argv = [str(engine_python("dagster")), str(DRIVER)]
        for command in commands:
            argv += [*command, "--"]
        done = self._run(argv[:-1], env)
        assert done.returncode == 0, done.stderr[-TAIL:]
        return json.loads(done.stdout.splitlines()[-1])

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Dagster's own command line, .venv-dagster/bin/dagster."""
        return self._run([str(engine_python("dagster").parent / "dagster"), *args], {})

    def _run(self, argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            argv,
            cwd=self.copy.path,
            env=self.env(**env),
            capture_output=True,
            text=True,
            timeout=TIMEOUT_S,
            check=False,
        )

    def attempts(self, run_id: str) -> list[AttemptFinished]:
        """The ledger's finished stage attempts under this Dagster run's id, in order."""
        return [
            entry
            for entry in read_ledger(self.copy.path / LEDGER)
            if isinstance(entry, AttemptFinished) and entry.lifecycle_run == run_id
        ]


@pytest.fixture(scope="module")
def dagster(tmp_path_factory: pytest.TempPathFactory) -> Dagster:
    copy = copy_project(tmp_path_factory.mktemp("project"))
    workers_out = export(copy, "dagster", "--mode", "workers").rename(
        copy.path / "orchestrators" / "dagster-workers"
    )
    out = export(copy, "dagster")
    home = tmp_path_factory.mktemp("dagster_home")
    # the exported instance settings, telemetry off (nothing leaves this machine)
    shutil.copy(out / INSTANCE, home / INSTANCE)
    with (home / INSTANCE).open("a", encoding="utf-8") as settings:
        settings.write("telemetry:\n  enabled: false\n")
    return Dagster(
        copy=copy, pipeline=load_pipeline(copy.path), home=home, out=out, workers_out=workers_out
    )


def stages(dagster: Dagster) -> list[str]:
    return [stage.name for stage in dagster.pipeline.stages]


def executed(run: dict[str, Any]) -> list[str]:
    return sorted(step for step, seen in run["steps"].items() if seen["starts"])


def test_a_dagster_reads_the_graph_and_retries_of_both_exports(dagster: Dagster) -> None:
    shared, workers = dagster.drive(
        ["load", dagster.definitions], ["load", str(dagster.workers_out / DEFINITIONS)]
    )
    edges = set(dagster.pipeline.edges)
    for loaded in (shared, workers):
        assets = loaded["assets"]
        assert sorted(assets) == sorted(stages(dagster))
        assert {(up, name) for name, a in assets.items() for up in a["upstream"]} == edges
        for stage in dagster.pipeline.stages:
            policy = retry_policy(stage.retry)
            assert assets[stage.name]["retry_policy"] == (
                {
                    "max_retries": policy.max_retries,
                    "delay": policy.delay,
                    "backoff": "Backoff.EXPONENTIAL" if policy.exponential else None,
                    "jitter": "Jitter.PLUS_MINUS" if policy.jitter else None,
                }
                if policy
                else None
            )
        assert loaded["jobs"][dagster.watch_job] == {
            "executor": "in_process",
            "run_tags": {"lifecycle/workspace": dagster.pipeline.name},
        }
    # shared: files stay in the folder (deps), one step at a time, one run at a time
    assert all(a["inputs"] == [] for a in shared["assets"].values())
    assert shared["jobs"][dagster.job]["executor"] == "in_process"
    assert shared["jobs"][dagster.job]["run_tags"] == {"lifecycle/workspace": dagster.pipeline.name}
    # workers: each asset takes its upstream assets' dvc.lock; steps in parallel processes
    assert all(a["inputs"] == a["upstream"] for a in workers["assets"].values())
    assert workers["jobs"][dagster.job] == {
        "executor": "multi_or_in_process_executor",
        "run_tags": {},
    }


def test_b_default_lifecycle_runs_under_dagster(dagster: Dagster) -> None:
    (run,) = dagster.drive(["execute", dagster.definitions, dagster.job])
    assert run["status"] == "SUCCESS", json.dumps(run, indent=1)
    assert sorted(run["steps"]) == sorted(stages(dagster))
    for step, seen in run["steps"].items():
        assert seen["status"] == "success" and seen["starts"] == 1, (step, seen)
        assert seen["metadata"]["outcome"] == "ran", (step, seen)
        assert seen["metadata"]["run_id"] == run["run_id"]  # Dagster's run id, to the stage
    attempts = dagster.attempts(run["run_id"])
    assert [a.stage for a in attempts] == stages(dagster)  # in the graph's order, once each
    assert all(a.status == "succeeded" and a.max_attempts == 1 for a in attempts), attempts
    assert json.loads((dagster.copy.path / CHAMPION).read_text())["version"] == 1
    assert run["tags"]["lifecycle/workspace"] == dagster.pipeline.name  # dagster.yaml's limit
    status = subprocess.run(  # `lifecycle status` groups the stages by Dagster's run id
        [str(BIN / "lifecycle"), "status", "--run", run["run_id"], "--json"],
        cwd=dagster.copy.path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert status.returncode == 0, status.stderr
    shown = json.loads(status.stdout)
    assert shown["lifecycle_run"] == run["run_id"]
    assert {s["stage"]: s["state"] for s in shown["stages"]} == dict.fromkeys(
        stages(dagster), "succeeded"
    )


def test_c_nothing_changed_so_dvc_skips_every_stage(dagster: Dagster) -> None:
    ledger_before = (dagster.copy.path / LEDGER).read_text()
    done = dagster.cli("job", "execute", "-f", dagster.definitions, "-j", dagster.job)
    assert done.returncode == 0, (done.stdout + done.stderr)[-TAIL:]
    # each step's `lifecycle task` result, as lifecycle_tasks.py logs it
    results = [
        json.loads(line)
        for line in done.stderr.splitlines()
        if line.startswith("{") and '"outcome"' in line
    ]
    assert [r["stage"] for r in results] == stages(dagster)
    assert {r["outcome"] for r in results} == {"skipped"}, results
    (run_id,) = {r["run_id"] for r in results}
    assert dagster.attempts(run_id) == []
    assert (dagster.copy.path / LEDGER).read_text() == ledger_before


def test_d_a_failed_stage_is_re_executed_from_failure(dagster: Dagster) -> None:
    dagster.copy.edit_params(lambda raw: raw["evaluate"]["operating_point"].update(at_least=1.5))
    (failed,) = dagster.drive(["execute", dagster.definitions, dagster.job])
    assert failed["status"] == "FAILURE", json.dumps(failed, indent=1)
    evaluate = failed["steps"]["evaluate"]
    assert evaluate["status"] == "failure", evaluate
    assert evaluate["starts"] == 1 and evaluate["retries"] == 0  # exit code 2: never retried
    assert "exit code 2 (ConfigError)" in evaluate["error"], evaluate
    assert "evaluate.operating_point.at_least" in evaluate["error"], evaluate
    after = {"deploy", "monitor"}  # downstream of evaluate in dvc.yaml
    assert not {step for step in after if failed["steps"].get(step, {}).get("starts")}
    for step in ("ingest", "validate", "train"):  # unchanged: DVC skipped them
        assert failed["steps"][step]["metadata"]["outcome"] == "skipped", failed["steps"][step]
    (attempt,) = dagster.attempts(failed["run_id"])
    assert attempt.stage == "evaluate" and attempt.status == "failed"
    assert attempt.error is not None and attempt.error.error_class == "ConfigError"

    dagster.copy.edit_params(lambda raw: raw["evaluate"]["operating_point"].update(at_least=0.85))
    (resumed,) = dagster.drive(["reexecute", dagster.definitions, dagster.job, failed["run_id"]])
    assert resumed["status"] == "SUCCESS", json.dumps(resumed, indent=1)
    assert resumed["parent_run_id"] == failed["run_id"]
    assert executed(resumed) == ["deploy", "evaluate", "monitor"]  # the failed step and after
    ran = [a.stage for a in dagster.attempts(resumed["run_id"])]
    assert ran[0] == "evaluate" and set(ran) <= {"evaluate", "deploy", "monitor"}, ran
    assert all(a.status == "succeeded" for a in dagster.attempts(resumed["run_id"]))
    assert_dvc_up_to_date(dagster.copy)  # the lifecycle is complete


def test_e_the_watch_job_runs_once_and_its_schedule_never_overlaps(dagster: Dagster) -> None:
    log = dagster.copy.path / "reports/watch/iterations.jsonl"
    before = log.read_text().splitlines() if log.exists() else []
    schedule = f"{identifier(dagster.pipeline.name)}_watch_schedule"
    watch, tick, instance = dagster.drive(
        ["execute", dagster.definitions, dagster.watch_job],
        ["schedule", dagster.definitions, schedule, dagster.job],
        ["instance"],
    )
    assert watch["status"] == "SUCCESS", json.dumps(watch, indent=1)
    assert watch["steps"]["watch_once"]["starts"] == 1
    iterations = log.read_text().splitlines()[len(before) :]
    assert len(iterations) == 1
    assert json.loads(iterations[0])["error"] is None, iterations[0]
    assert watch["tags"]["lifecycle/workspace"] == dagster.pipeline.name

    crons, _ = cron_schedule(dagster.pipeline.watch.interval_minutes)
    assert tick["cron"] == (crons[0] if len(crons) == 1 else crons)
    assert tick["job"] == dagster.watch_job
    assert tick["free"]["runs"] == 1  # nothing in progress: the tick starts an iteration
    assert tick["busy"]["runs"] == 0, tick  # a lifecycle run holds the folder: skipped
    assert "returned false" in tick["busy"]["skipped"]
    assert instance["tag_concurrency_limits"] == [
        {"key": "lifecycle/workspace", "value": {"applyLimitPerUniqueValue": True}, "limit": 1}
    ]


def test_f_a_transient_failure_is_retried_exactly_retry_attempts_times(dagster: Dagster) -> None:
    def edit(raw: dict[str, Any]) -> None:
        raw["retry"]["stages"] = {"monitor": {"attempts": 2, "backoff_initial_s": 0.2}}
        raw["monitor"]["drift_share"] = 0.2  # so DVC runs monitor again

    dagster.copy.edit_params(edit)
    export(dagster.copy, "dagster")  # the retries are compiled in: export again
    assert "max_retries=1," in (dagster.out / DEFINITIONS).read_text()
    unreachable = f"http://127.0.0.1:{free_port()}"
    (run,) = dagster.drive(  # monitor alone, as the UI's "Materialize selected" does
        ["execute", dagster.definitions, dagster.job, "monitor"],
        MLFLOW_TRACKING_URI=unreachable,
        # MLflow's own HTTP retries off: each attempt is refused at once, not after ~3 s of
        # MLflow's backoff (still TrackingUnavailableError); Dagster's retries are under test.
        MLFLOW_HTTP_REQUEST_MAX_RETRIES="0",
    )
    assert run["status"] == "FAILURE", json.dumps(run, indent=1)
    assert executed(run) == ["monitor"]
    monitor = run["steps"]["monitor"]
    assert monitor["starts"] == 2 and monitor["retries"] == 1, monitor  # 2 attempts in all
    assert "exit code 75" in monitor["error"], monitor
    attempts = dagster.attempts(run["run_id"])
    assert [a.stage for a in attempts] == ["monitor", "monitor"]  # one attempt per Dagster try
    assert all(a.max_attempts == 1 and a.status == "failed" for a in attempts), attempts
    assert {a.error.error_class for a in attempts if a.error} <= set(
        dagster.pipeline.transient_errors
    )
