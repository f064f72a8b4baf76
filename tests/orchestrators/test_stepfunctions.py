"""The lifecycle under AWS Step Functions, executed on moto's ASL interpreter.

The exported definitions are checked by asl-validator (npm), then deployed into moto
(`tests/orchestrators/stepfunctions_moto.py`, in `.venv-stepfunctions`): the queue, both
state machines, the schedule, and the export's own `worker.py` running the stages in one
module-scoped project copy. To keep CI time the copy runs reduced params: 5,000 synthetic
rows (served from a SQLite database, the `sql` source), 3-fold CV and a 50-iteration model
(`tests.faults.conftest.fast_lifecycle`), one OpenMP thread per stage (on a busy two-core
machine the model's threads oversubscribe it: cross-validation took 15 s, not 1 s), and
ingest's retry overridden to 2 attempts, 3 s apart, no jitter (so the release of the lock
below can never race the retry). In order:

1. the whole lifecycle, the source database locked by another connection at first: ingest
   fails for real (`database is locked`, TransientSourceError, exit 75), the worker reports
   TransientStageFailure, the state's Retry waits IntervalSeconds and the second attempt,
   the lock gone, succeeds; all six stages ran in that one execution (our ledger) and the
   champion exists;
2. nothing changed: a second execution, every stage skipped by DVC, no new ledger attempt;
3. a bad evaluate param: evaluate exits 2 (BadConfigFailure), is not retried, the Catch
   records the stage and the cause, the execution FAILS, and nothing after evaluate runs;
4. fixed: a new execution resumes at evaluate (DVC skips the stages before it). Step
   Functions' own RedriveExecution is not implemented by moto 5.2.5 (and whether AWS's
   redrive of a caught failure re-runs the failed Task or only the Fail state it was
   routed to cannot be checked here);
5. the watch state machine once, and the schedule as EventBridge Scheduler stores it.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from core.config import SyntheticSourceConfig
from core.paths import CHAMPION, LEDGER
from core.records.ledger import AttemptFinished, read_ledger
from features.synthetic import generate_process_data
from lifecycle.orchestrators import to_stepfunctions
from tests.e2e.conftest import BIN, ROOT, ProjectCopy, copy_project
from tests.faults.conftest import ROWS, STAGES, assert_consistent, champion, fast_lifecycle
from tests.orchestrators.conftest import engine_env, engine_python, export

pytestmark = pytest.mark.slow

NPM = ROOT / "lifecycle/orchestrators/requirements/stepfunctions-npm"
VALIDATOR = NPM / "node_modules/.bin/asl-validator"
DRIVER = Path(__file__).with_name("stepfunctions_moto.py")
INGEST_RETRY = {"attempts": 2, "backoff_initial_s": 3, "backoff_max_s": 3, "jitter_s": 0}
LOCKED = "database is locked"


@dataclass
class Deployment:
    """The running moto deployment: send `machine run_id`, read the execution's summary."""

    process: subprocess.Popen
    log: Path
    ready: dict[str, Any]

    def run(self, machine: str, run_id: str) -> dict[str, Any]:
        assert self.process.stdin is not None
        self.process.stdin.write(f"{machine} {run_id}\n")
        self.process.stdin.flush()
        return self.read("SUMMARY")

    def read(self, kind: str) -> dict[str, Any]:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            if line.startswith(f"{kind} "):
                return json.loads(line[len(kind) + 1 :])
        pytest.fail(f"the moto deployment ended (exit {self.process.wait()}):\n{self.tail()}")

    def tail(self, chars: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-chars:]


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite database holding the rows the synthetic source would make."""
    database = tmp_path_factory.mktemp("source") / "machines.db"
    rows = generate_process_data(SyntheticSourceConfig(rows=ROWS))
    with sqlite3.connect(database) as connection:
        rows.to_sql("machines", connection, index=False)
    return database


@pytest.fixture(scope="module")
def copy(tmp_path_factory: pytest.TempPathFactory, source: Path) -> ProjectCopy:
    project = copy_project(tmp_path_factory.mktemp("stepfunctions") / "project")

    def edit(raw: dict) -> None:
        fast_lifecycle(raw)
        raw["ingest"]["source"] = "sql"
        # SQLite waits 0.1 s for a lock, not 5 s
        raw["ingest"]["sql"].update(
            url=f"sqlite:///{source}?timeout=0.1", query="SELECT * FROM machines"
        )
        raw["retry"]["stages"] = {"ingest": INGEST_RETRY}

    project.edit_params(edit)
    return project


@pytest.fixture(scope="module")
def exported(copy: ProjectCopy) -> Path:
    return export(copy, "stepfunctions")


@pytest.fixture(scope="module")
def deployment(copy: ProjectCopy, exported: Path) -> Iterator[Deployment]:
    log = copy.path.parent / "stepfunctions-moto.log"
    with open(log, "w") as stderr:
        process = subprocess.Popen(
            [str(engine_python("stepfunctions")), str(DRIVER), str(exported)],
            cwd=copy.path,
            env=engine_env(copy, OMP_NUM_THREADS="1"),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
    deployed = Deployment(process, log, {})
    try:
        deployed.ready = deployed.read("READY")
        yield deployed
    finally:
        if process.stdin is not None:
            process.stdin.close()
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def attempts(copy: ProjectCopy, run_id: str) -> list[AttemptFinished]:
    """The finished stage attempts the ledger holds for one engine run."""
    path = copy.path / LEDGER
    entries = read_ledger(path) if path.exists() else []
    return [e for e in entries if isinstance(e, AttemptFinished) and e.lifecycle_run == run_id]


def scheduled(summary: dict[str, Any]) -> list[str]:
    """The states whose task was scheduled, once per attempt, in order (the history)."""
    names, state = [], None
    for event in summary["events"]:
        if event["type"].endswith("StateEntered"):
            state = event["details"]["name"]
        elif event["type"] == "TaskScheduled":
            names.append(state)
    return names


def explain(summary: dict[str, Any], deployment: Deployment) -> str:
    shown = {key: summary.get(key) for key in ("run_id", "status", "error", "cause")}
    return f"{shown}\n{deployment.tail()}"


class LockedSource:
    """The source database locked by another connection until ingest's first attempt has
    failed on it (the ledger says so), then released: a real, transient outage."""

    def __init__(self, database: Path, copy: ProjectCopy, run_id: str) -> None:
        self.holder = sqlite3.connect(database, isolation_level=None, check_same_thread=False)
        self.holder.execute("BEGIN EXCLUSIVE")
        self.copy, self.run_id = copy, run_id
        self.done = threading.Event()
        self.released_after: list[AttemptFinished] = []
        self.thread = threading.Thread(target=self._release_after_first_failure, daemon=True)

    def __enter__(self) -> LockedSource:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.done.set()
        self.thread.join(timeout=10)
        self._release()

    def _release_after_first_failure(self) -> None:
        while not self.done.wait(0.05):
            failed = [a for a in attempts(self.copy, self.run_id) if a.stage == "ingest"]
            if failed:
                self.released_after = failed
                self._release()
                return

    def _release(self) -> None:
        if self.holder is not None:
            self.holder.execute("ROLLBACK")
            self.holder.close()
            self.holder = None  # type: ignore[assignment]


@pytest.fixture(scope="module")
def first_run(
    copy: ProjectCopy, source: Path, deployment: Deployment
) -> tuple[dict[str, Any], LockedSource]:
    with LockedSource(source, copy, "lifecycle-1") as locked:
        summary = deployment.run("lifecycle", "lifecycle-1")
    return summary, locked


# --- the definitions ----------------------------------------------------------------------


def test_the_exported_definitions_are_valid_asl(copy: ProjectCopy, exported: Path) -> None:
    if not VALIDATOR.exists():
        pytest.fail(f"{VALIDATOR} is missing: run `npm ci --prefix {NPM.relative_to(ROOT)}`")
    workers = copy.path.parent / "workers-export"
    argv = [str(BIN / "lifecycle"), "export", "--to", "stepfunctions", "--mode", "workers"]
    done = subprocess.run(
        [*argv, "--out", str(workers)],
        cwd=copy.path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    files = [
        folder / name
        for folder in (exported, workers)
        for name in (to_stepfunctions.STATE_MACHINE_FILE, to_stepfunctions.WATCH_MACHINE_FILE)
    ]
    argv = [str(VALIDATOR)]
    for path in files:
        argv += ["--json-path", str(path)]
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("is valid") == len(files), done.stdout

    # the validator is no rubber stamp: a Catch to a state that does not exist is refused
    # (asl-validator 4.0.0 checks no Retry field's value: IntervalSeconds 0.5 passes it)
    broken = json.loads(files[0].read_text())
    broken["States"]["ingest"]["Catch"][0]["Next"] = "nowhere"
    bad = copy.path.parent / "broken.asl.json"
    bad.write_text(json.dumps(broken))
    refused = subprocess.run(
        [str(VALIDATOR), "--json-path", str(bad)], capture_output=True, text=True, check=False
    )
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "Missing 'StartAt'|'Next'|'Default' target: nowhere" in refused.stderr


def test_the_retry_block_reaches_the_definition(exported: Path) -> None:
    machine = json.loads((exported / to_stepfunctions.STATE_MACHINE_FILE).read_text())
    assert machine["States"]["ingest"]["Retry"] == [
        {
            "ErrorEquals": ["TransientStageFailure"],
            "IntervalSeconds": 3,
            "BackoffRate": 2.0,
            "MaxAttempts": 1,
            "MaxDelaySeconds": 3,
            "JitterStrategy": "NONE",
        }
    ]


def test_the_worker_refuses_to_start_without_a_queue(copy: ProjectCopy, exported: Path) -> None:
    env = {k: v for k, v in engine_env(copy).items() if k != "LIFECYCLE_STAGE_QUEUE_URL"}
    python = str(engine_python("stepfunctions"))
    for args, message in [
        ([], "worker.py: error: no queue: pass --queue-url or set LIFECYCLE_STAGE_QUEUE_URL"),
        (
            ["--queue-url", "https://sqs.example/q", "--wait-s", "30"],
            "worker.py: error: --wait-s must be 0..20 (SQS's long poll), not 30",
        ),
    ]:
        done = subprocess.run(
            [python, str(exported / "worker.py"), *args],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 2
        assert done.stderr.strip().splitlines()[-1] == message, done.stderr


def test_the_worker_heartbeats_while_a_stage_runs(deployment: Deployment) -> None:
    """moto enforces HeartbeatSeconds (2 s here, a scaffold machine): a 5 s task succeeds
    only because the worker beats (every second); told to beat every 20 s, it times out."""
    beating = deployment.run("heartbeat", "2")
    silent = deployment.run("heartbeat", "100")

    assert beating["status"] == "SUCCEEDED", explain(beating, deployment)
    assert silent["status"] == "FAILED", explain(silent, deployment)
    # AWS names it States.HeartbeatTimeout; moto 5.2.5 reports every task timeout as
    # States.Timeout, so the timing tells: the 2 s heartbeat, not the 5 s task's end
    assert silent["error"] in ("States.HeartbeatTimeout", "States.Timeout"), silent["error"]
    at = {event["type"]: event["timestamp"] for event in silent["events"]}
    assert 2.0 <= at["TaskTimedOut"] - at["TaskStarted"] < 4.0, at
    assert "the answer was refused (the state gave up on this task)" in deployment.tail()


# --- 1. the whole lifecycle, a transient failure retried by Step Functions --------------


def test_the_whole_lifecycle_runs_in_one_execution(
    copy: ProjectCopy, first_run: tuple[dict[str, Any], LockedSource], deployment: Deployment
) -> None:
    summary, _ = first_run
    assert summary["status"] == "SUCCEEDED", explain(summary, deployment)
    ran = [a.stage for a in attempts(copy, "lifecycle-1") if a.status == "succeeded"]
    assert ran == STAGES
    results = summary["output"]["results"]
    assert list(results) == STAGES
    assert {r["outcome"] for r in results.values()} == {"ran"}
    assert {r["run_id"] for r in results.values()} == {"lifecycle-1"}
    assert (copy.path / CHAMPION).exists()
    state = champion(copy)
    assert state.aliases == {"champion": 1}
    assert_consistent(state)


def test_a_locked_source_is_retried_by_step_functions(
    copy: ProjectCopy, first_run: tuple[dict[str, Any], LockedSource], deployment: Deployment
) -> None:
    summary, locked = first_run
    assert summary["status"] == "SUCCEEDED", explain(summary, deployment)
    ingest = [a for a in attempts(copy, "lifecycle-1") if a.stage == "ingest"]
    assert [a.status for a in ingest] == ["failed", "succeeded"]
    assert [a.max_attempts for a in ingest] == [1, 1]  # the stage itself never retried
    error = ingest[0].error
    assert error is not None and error.error_class == "TransientSourceError"
    assert LOCKED in error.message
    assert [a.status for a in locked.released_after] == ["failed"]  # released after one

    # Step Functions saw the failure by its class name and scheduled ingest again
    assert scheduled(summary) == ["ingest", *STAGES]
    events = summary["events"]
    failed = [e for e in events if e["type"] == "TaskFailed"]
    assert [e["details"]["error"] for e in failed] == ["TransientStageFailure"]
    failed_at = failed[0]["timestamp"]
    retried = next(e for e in events if e["type"] == "TaskScheduled" and e["timestamp"] > failed_at)
    waited = retried["timestamp"] - failed_at
    assert 3.0 <= waited < 6.0, waited  # IntervalSeconds: 3, no jitter


# --- 2. nothing changed -------------------------------------------------------------------


def test_a_second_execution_with_nothing_changed_runs_nothing(
    copy: ProjectCopy, first_run: tuple[dict[str, Any], LockedSource], deployment: Deployment
) -> None:
    summary = deployment.run("lifecycle", "lifecycle-2")

    assert summary["status"] == "SUCCEEDED", explain(summary, deployment)
    results = summary["output"]["results"]
    assert {stage: r["outcome"] for stage, r in results.items()} == dict.fromkeys(STAGES, "skipped")
    assert attempts(copy, "lifecycle-2") == []


# --- 3. a permanent failure, caught ---------------------------------------------------------


def test_a_bad_config_is_caught_and_fails_the_execution(
    copy: ProjectCopy, first_run: tuple[dict[str, Any], LockedSource], deployment: Deployment
) -> None:
    copy.edit_params(lambda raw: raw["evaluate"]["operating_point"].update(at_least=1.5))

    summary = deployment.run("lifecycle", "lifecycle-3")

    assert summary["status"] == "FAILED", explain(summary, deployment)
    assert summary["error"] == "BadConfigFailure"
    # the cause names the stage; moto 5.2.5 drops SendTaskFailure's cause (its
    # responses.py passes only the error on), where AWS keeps the worker's message
    cause = summary["cause"]
    assert cause.startswith("stage evaluate failed: "), cause
    evaluate = [a for a in attempts(copy, "lifecycle-3") if a.stage == "evaluate"]
    assert len(evaluate) == 1 and evaluate[0].status == "failed"  # not retried
    assert evaluate[0].error is not None and evaluate[0].error.error_class == "ConfigError"
    detail = cause.removeprefix("stage evaluate failed: ")
    assert detail == "null" or "at_least" in detail, cause
    assert "at_least" in deployment.tail(20000)  # the worker's cause, in its log

    # nothing after evaluate ran; DVC skipped what came before
    assert [a.stage for a in attempts(copy, "lifecycle-3")] == ["evaluate"]
    assert scheduled(summary) == ["ingest", "validate", "train", "evaluate"]
    recorded = next(e for e in summary["events"] if e["type"] == "FailStateEntered")
    failed = json.loads(recorded["details"]["input"])["failed"]
    assert failed["stage"] == "evaluate" and failed["error"] == "BadConfigFailure"


# --- 4. fixed, resumed --------------------------------------------------------------------


def test_after_the_fix_a_new_execution_resumes_at_the_failed_stage(
    copy: ProjectCopy, first_run: tuple[dict[str, Any], LockedSource], deployment: Deployment
) -> None:
    # a valid value other than the first run's: evaluate has new work to do (had the fix
    # restored the first run's value, DVC would rightly find nothing to re-run)
    copy.edit_params(lambda raw: raw["evaluate"]["operating_point"].update(at_least=0.85))

    summary = deployment.run("lifecycle", "lifecycle-4")

    assert summary["status"] == "SUCCEEDED", explain(summary, deployment)
    outcomes = {stage: r["outcome"] for stage, r in summary["output"]["results"].items()}
    assert outcomes["evaluate"] == "ran", outcomes
    assert [outcomes[stage] for stage in ("ingest", "validate", "train")] == ["skipped"] * 3
    ran = [a.stage for a in attempts(copy, "lifecycle-4")]
    assert ran[0] == "evaluate" and set(ran) <= {"evaluate", "deploy", "monitor"}, ran
    assert all(a.status == "succeeded" for a in attempts(copy, "lifecycle-4"))
    assert_consistent(champion(copy))


# --- 5. the watch job ---------------------------------------------------------------------


def test_the_watch_job_runs_once_and_is_scheduled(
    copy: ProjectCopy, first_run: tuple[dict[str, Any], LockedSource], deployment: Deployment
) -> None:
    log = copy.path / "reports/watch/iterations.jsonl"
    before = log.read_text().splitlines() if log.exists() else []

    summary = deployment.run("watch", "watch-1")

    assert summary["status"] == "SUCCEEDED", explain(summary, deployment)
    assert summary["output"]["result"] == {"stage": "watch", "run_id": "watch-1", "exit_code": 0}
    iterations = log.read_text().splitlines()[len(before) :]
    assert len(iterations) == 1
    assert json.loads(iterations[0])["error"] is None
    schedule = deployment.ready["schedule"]
    assert schedule["ScheduleExpression"] == "rate(5 minutes)"  # monitor.watch.interval_s: 300
    assert schedule["FlexibleTimeWindow"] == {"Mode": "OFF"}
    assert schedule["TargetArn"] == deployment.ready["state_machines"]["watch"]
