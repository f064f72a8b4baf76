"""`lifecycle status` over real ledgers: written by a real stage process, by `run_stage` in
this process, and by a stage process killed with SIGKILL."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from core.hashing import file_md5
from core.paths import LEDGER
from core.records.ledger import LedgerEntry, read_ledger
from features.validation import DataValidationError
from lifecycle.cli import app
from pipelines.edges.runtime import run_stage
from pipelines.edges.sources import TransientSourceError
from serving.model_store import write_champion_pointer

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()
TIME = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC"
PARAMS = {
    "data": {"contract": "features/contracts/milling.yaml"},
    "ingest": {"synthetic": {"rows": 2000}, "feedback": {"directory": "data/feedback"}},
    "retry": {
        "default": {"attempts": 3, "backoff_initial_s": 0.1, "backoff_max_s": 1, "jitter_s": 0}
    },
}


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project folder: our packages the ingest stage runs from, dvc.yaml, params.yaml."""
    for package in ("core", "pipelines", "features"):
        shutil.copytree(
            ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    shutil.copy(ROOT / "dvc.yaml", tmp_path / "dvc.yaml")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(PARAMS), encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def status_lines(*args: str) -> list[str]:
    result = runner.invoke(app, ["status", *args])
    assert result.exit_code == 0, result.output
    return result.stdout.splitlines()


def status_json(*args: str) -> dict[str, Any]:
    result = runner.invoke(app, ["status", "--json", *args])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def stage_in(run: str, stage: str, body: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run a stage body in this process under `run_stage`, as lifecycle run `run`."""
    monkeypatch.setenv("LIFECYCLE_RUN_ID", run)
    with contextlib.suppress(SystemExit):  # a failed stage exits 1; the test reads the ledger
        run_stage(stage, body)


def assert_lines_match(lines: list[str], patterns: list[str]) -> None:
    assert len(lines) >= len(patterns), lines
    for line, pattern in zip(lines, patterns, strict=False):
        assert re.fullmatch(pattern, line), f"{line!r} does not match {pattern!r}"


def test_without_a_ledger_it_says_what_to_do(project: Path) -> None:
    result = runner.invoke(app, ["status"])
    assert result.exit_code == 1
    assert result.stderr == (
        "no lifecycle run recorded yet in .lifecycle/ledger.jsonl; run dvc repro\n"
    )


def test_a_real_ingest_process_is_shown_and_its_inputs_hashed(project: Path) -> None:
    env = {**os.environ, "LIFECYCLE_RUN_ID": "first", "PYTHONPATH": ""}
    subprocess.run(
        [sys.executable, "-m", "pipelines.ingest"],
        cwd=project,
        env=env,
        check=True,
        capture_output=True,
        timeout=120,
    )
    lines = status_lines()
    assert_lines_match(
        lines,
        [
            rf"lifecycle run first: succeeded \(started {TIME}; ledger .lifecycle/ledger.jsonl\)",
            "",
            "stage     state      attempts  duration  mlflow run  note",
            r"ingest    succeeded  1         \d+\.\d s     -",
            "validate  not run    -         -         -           unchanged \\(skipped by DVC\\); "
            "never succeeded",
        ],
    )
    assert lines[-3:] == [
        "serving store .bentoml: no champion deployed yet",
        "registry champion (reports/deploy/champion.json): none recorded yet",
        "watch: no iteration recorded",
    ]
    started, finished = read_ledger(project / LEDGER)
    assert started.event == "started" and finished.status == "succeeded"
    inputs = finished.inputs
    assert inputs["pipelines/ingest.py"] == file_md5(project / "pipelines" / "ingest.py")
    assert inputs["features/contracts/milling.yaml"] == file_md5(
        project / "features" / "contracts" / "milling.yaml"
    )
    assert inputs["core"].endswith(".dir")  # a folder dep, hashed as DVC hashes it
    assert inputs["data/feedback"] is None  # ${ingest.feedback.directory}: not created here


def test_a_killed_stage_shows_as_running_then_interrupted(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stage_in("first", "ingest", lambda: None, monkeypatch)
    stage_in("first", "validate", lambda: None, monkeypatch)
    env = {**os.environ, "LIFECYCLE_RUN_ID": "second", "PYTHONPATH": ""}
    code = (
        "import time; from pipelines.edges.runtime import run_stage; "
        "run_stage('train', lambda: time.sleep(60))"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", code],
        cwd=project,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while not any(r.lifecycle_run == "second" for r in _records(project)):
            assert process.poll() is None, "the stage process exited early"
            assert time.monotonic() < deadline, "no started record within 60 s"
            time.sleep(0.05)
        running = {s["stage"]: s for s in status_json()["stages"]}
        assert running["train"]["state"] == "running"
        assert running["train"]["pid"] == process.pid
        assert running["evaluate"]["note"] == "pending (train is running)"
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)

    lines = status_lines()
    assert_lines_match(
        lines,
        [
            rf"lifecycle run second: interrupted \(started {TIME}; "
            r"ledger .lifecycle/ledger.jsonl\)",
            "",
            "stage     state        attempts  duration  mlflow run  note",
            r"ingest    not run      -         -         -           "
            rf"unchanged \(skipped by DVC\); last succeeded {TIME} in run first",
            r"validate  not run      -         -         -           "
            rf"unchanged \(skipped by DVC\); last succeeded {TIME} in run first",
            r"train     interrupted  1         -         -           "
            rf"killed: no finish recorded \(pid {process.pid} is gone\)",
            r"evaluate  not run      -         -         -           "
            r"not reached \(train interrupted\)",
        ],
    )


def test_stages_a_running_dvc_repro_has_not_reached_yet_are_pending(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stand-in for `dvc repro` (named dvc, run as `dvc repro`) runs one stage through
    `sh -c` as DVC does, then stays busy: the stages after it are pending, not skipped."""
    fake_dvc = project / "bin" / "dvc"
    fake_dvc.parent.mkdir()
    code = 'from pipelines.edges.runtime import run_stage; run_stage("ingest", lambda: None)'
    stage = f"{sys.executable} -c '{code}'"
    fake_dvc.write_text(
        f"#!{sys.executable}\n"
        "import subprocess, time\n"
        f"subprocess.run(['sh', '-c', {stage!r}], check=True)\n"
        "time.sleep(60)\n"
    )
    fake_dvc.chmod(0o755)
    env = {key: value for key, value in os.environ.items() if key != "LIFECYCLE_RUN_ID"}
    repro = subprocess.Popen(
        [str(fake_dvc), "repro"],
        cwd=project,
        env={**env, "PYTHONPATH": ""},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while not any(r.event == "finished" for r in _records(project)):
            assert repro.poll() is None, "the stand-in dvc repro exited early"
            assert time.monotonic() < deadline, "no finished record within 60 s"
            time.sleep(0.05)
        (record, *_) = _records(project)
        assert record.repro_pid == repro.pid
        lines = status_lines()
        assert re.fullmatch(
            rf"lifecycle run {record.lifecycle_run}: running, dvc repro pid {repro.pid} "
            rf"\(started {TIME}; ledger .lifecycle/ledger.jsonl\)",
            lines[0],
        )
        assert lines[4] == (
            "validate  not run    -         -         -           "
            f"pending (dvc repro, pid {repro.pid}, is still running)"
        )
    finally:
        repro.send_signal(signal.SIGKILL)
        repro.wait(timeout=30)
    after = status_json()
    assert after["state"] == "succeeded" and after["repro_pid"] is None
    assert after["stages"][1]["note"] == "unchanged (skipped by DVC); never succeeded"


def test_failures_retries_and_an_older_run(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stage_in("first", "ingest", lambda: None, monkeypatch)
    stage_in("first", "validate", lambda: None, monkeypatch)
    flaky = iter([TransientSourceError("HTTP 503 Service Unavailable")])

    def train() -> None:
        error = next(flaky, None)
        if error is not None:
            raise error

    stage_in("first", "train", train, monkeypatch)

    def invalid() -> None:
        raise DataValidationError("data contract 'milling': 1 of 65 expectations failed")

    stage_in("second", "validate", invalid, monkeypatch)

    lines = status_lines()
    assert lines[0].startswith("lifecycle run second: failed")
    assert lines[4].startswith("validate  failed   1         ")
    assert lines[5] == (
        "train     not run  -         -         -           not reached (validate failed)"
    )
    assert (
        "validate failed: DataValidationError: data contract 'milling': 1 of 65 expectations failed"
    ) in lines

    older = status_json("--run", "first")
    assert older["state"] == "succeeded"
    train_status = next(s for s in older["stages"] if s["stage"] == "train")
    assert train_status["state"] == "succeeded"
    assert train_status["attempts"] == 2
    assert train_status["note"] == "1 failed attempt(s) retried"
    assert train_status["error"] is None
    assert older["recent_runs"] == ["second", "first"]

    result = runner.invoke(app, ["status", "--run", "nope"])
    assert result.exit_code == 1
    assert result.stderr == (
        "no lifecycle run 'nope' in .lifecycle/ledger.jsonl; recent runs: second, first\n"
    )


def test_what_serves_and_the_last_watch_iteration(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stage_in("first", "deploy", lambda: None, monkeypatch)
    sha = "ab" * 32
    write_champion_pointer(
        project / ".bentoml",
        {
            "tag": "milling-failure:v2",
            "version": 2,
            "run_id": "4e545c36",
            "content_sha256": sha,
            "threshold": 0.3,
        },
    )
    champion = project / "reports" / "deploy" / "champion.json"
    champion.parent.mkdir(parents=True)
    champion.write_text(json.dumps({"version": 3, "content_sha256": sha, "mlflow_run_id": "9f"}))
    watch_log = project / "reports" / "watch" / "iterations.jsonl"
    watch_log.parent.mkdir(parents=True)
    watch_log.write_text(
        json.dumps({"time": "2026-11-25T07:00:00.000Z", "iteration": "4", "action": "none"})
        + "\n"
        + json.dumps(
            {
                "time": "2026-11-25T07:05:00.000Z",
                "iteration": "5",
                "action": "retrain_failed",
                "error": "dvc repro (retrain) exited with code 1",
            }
        )
        + "\n"
    )
    lines = status_lines()
    assert_lines_match(
        lines[-3:],
        [
            rf"serving store .bentoml: milling-failure:v2 \(mlflow run 4e545c36, since {TIME}\)",
            r"registry champion \(reports/deploy/champion.json\): v3, sha256 abababababab, "
            r"mlflow run 9f; the serving store serves v2",
            r"last watch iteration \(reports/watch/iterations.jsonl\): #5 at "
            r"2026-11-25 07:05:00 UTC, retrain_failed: dvc repro \(retrain\) exited with code 1",
        ],
    )
    status = status_json()
    assert status["serving"]["pointer"]["tag"] == "milling-failure:v2"
    assert status["registry_champion"]["version"] == 3
    assert status["watch"]["action"] == "retrain_failed"


def _records(project: Path) -> list[LedgerEntry]:
    try:
        return read_ledger(project / LEDGER)
    except FileNotFoundError:
        return []
