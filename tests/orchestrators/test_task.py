"""`lifecycle task` and exit codes: what an orchestrator sees of a stage."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from core import exit_codes
from core.config import ConfigError
from features.contract import ContractError
from lifecycle.cli import app
from lifecycle.orchestrators.task import _stage_exit_code, merge_locks
from pipelines.edges.registry_client import RegistryUnavailableError
from pipelines.edges.source_messages import TransientSourceError

TRANSIENT = frozenset({"TransientSourceError", "RegistryUnavailableError"})


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (ConfigError("x"), exit_codes.BAD_CONFIG),
        (ContractError("x"), exit_codes.BAD_CONFIG),
        (TransientSourceError("x"), exit_codes.TRANSIENT),
        (RegistryUnavailableError("x"), exit_codes.TRANSIENT),
        (ValueError("x"), exit_codes.FAILED),
        (ConnectionError("x"), exit_codes.FAILED),  # not in this retry.transient
    ],
)
def test_each_failure_has_its_exit_code(error: Exception, code: int) -> None:
    assert exit_codes.exit_code_for(error, TRANSIENT) == code


def test_dvc_s_message_gives_the_stage_s_exit_code() -> None:
    tail = ["ERROR: failed to reproduce 'a': failed to run: python -m x, exited with 75"]
    assert _stage_exit_code(tail) == 75
    assert _stage_exit_code(["... exited with 2"]) == 2
    assert _stage_exit_code(["... exited with -9"]) == 1  # killed: not worth a blind retry
    assert _stage_exit_code(["ERROR: Unable to acquire lock. Most likely ..."]) == 75
    assert _stage_exit_code(["ERROR: bad dvc.yaml"]) == 1


def test_locks_merge_stage_by_stage_the_later_winning() -> None:
    own = yaml.safe_dump({"schema": "2.0", "stages": {"a": {"cmd": "old"}, "b": {"cmd": "b"}}})
    upstream = yaml.safe_dump({"schema": "2.0", "stages": {"a": {"cmd": "new"}}})
    merged = yaml.safe_load(merge_locks([own, upstream]))
    assert merged == {"schema": "2.0", "stages": {"a": {"cmd": "new"}, "b": {"cmd": "b"}}}
    with pytest.raises(ValueError, match="not a DVC lock file"):
        merge_locks(["- a list"])


def test_a_stage_under_an_orchestrator_makes_one_attempt_and_exits_75(tmp_path: Path) -> None:
    """The real runtime: a transient error exits 75 after one attempt (the engine retries)."""
    script = tmp_path / "stage.py"
    script.write_text(
        "from pipelines.edges.runtime import run_stage\n"
        "from pipelines.edges.source_messages import TransientSourceError\n"
        "def body():\n"
        "    raise TransientSourceError('source down')\n"
        "run_stage('ingest', body)\n"
    )
    done = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env={"LIFECYCLE_RETRY_OWNER": "orchestrator", "LIFECYCLE_RUN_ID": "r1", "PATH": ""},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 75, done.stderr
    assert "attempt 1 of" not in done.stderr  # no retry inside the stage
    assert "exit code 75: transient" in done.stderr
    ledger = [json.loads(line) for line in (tmp_path / ".lifecycle/ledger.jsonl").open()]
    finished = [entry for entry in ledger if entry["event"] == "finished"]
    assert [(e["attempt"], e["max_attempts"], e["status"]) for e in finished] == [(1, 1, "failed")]


def test_task_with_an_unknown_stage_names_the_known_ones(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "dvc.yaml").write_text("stages:\n  ingest:\n    cmd: c\n")
    result = CliRunner().invoke(app, ["task", "nope", "--run-id", "r"])
    assert result.exit_code == 2
    assert "no stage 'nope' in dvc.yaml; known: ingest" in result.output


def test_task_outside_a_project_says_where_to_run(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["task", "ingest", "--run-id", "r"])
    assert result.exit_code == 2
    assert "dvc.yaml: cannot read its stages" in result.output
    assert "run from the project root" in result.output


def test_task_with_a_missing_upstream_lock_names_it(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "dvc.yaml").write_text("stages:\n  ingest:\n    cmd: c\n")
    result = CliRunner().invoke(
        app, ["task", "ingest", "--run-id", "r", "--upstream-lock", "gone.lock"]
    )
    assert result.exit_code == 2
    assert "--upstream-lock gone.lock: no such file" in result.output


def test_export_to_an_unknown_engine_lists_the_known(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["export", "--to", "luigi"])
    assert result.exit_code == 2
    assert "'luigi' is not one of" in result.output


def test_export_outside_a_project_names_the_file(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["export", "--to", "airflow"])
    assert result.exit_code == 2
    assert "params.yaml: no such file (run from the project root)" in result.output
