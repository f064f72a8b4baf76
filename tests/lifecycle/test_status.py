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

import numpy as np
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
    assert lines[-4:] == [
        "serving store .bentoml: no champion deployed yet",
        "registry champion (reports/deploy/champion.json): none recorded yet",
        "monitor: no verdict yet (dvc repro monitor writes reports/monitor/decision.json)",
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
        lines[-4:],
        [
            rf"serving store .bentoml: milling-failure:v2 \(mlflow run 4e545c36, since {TIME}\)",
            r"registry champion \(reports/deploy/champion.json\): v3, sha256 abababababab, "
            r"mlflow run 9f; the serving store serves v2",
            r"monitor: no verdict yet \(dvc repro monitor writes reports/monitor/decision.json\)",
            r"last watch iteration \(reports/watch/iterations.jsonl\): #5 at "
            r"2026-11-25 07:05:00 UTC, retrain_failed: dvc repro \(retrain\) exited with code 1",
        ],
    )
    status = status_json()
    assert status["serving"]["pointer"]["tag"] == "milling-failure:v2"
    assert status["registry_champion"]["version"] == 3
    assert status["watch"]["action"] == "retrain_failed"


def test_the_last_watch_iteration_says_its_deploy_started_a_candidate(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A retrain whose deploy only started a shadow rollout is not shown as a promotion."""
    stage_in("first", "deploy", lambda: None, monkeypatch)
    slot = {
        "id": "milling-failure-v3-20261125T070500Z",
        "kind": "shadow",
        "model": {"tag": "milling-failure:v3", "version": "v3", "content_sha256": "cd" * 32,
                  "threshold": 0.3},
        "started_at": "2026-11-25T07:05:00.000Z",
    }  # fmt: skip
    watch_log = project / "reports" / "watch" / "iterations.jsonl"
    watch_log.parent.mkdir(parents=True)
    deploy = {"ran": True, "promoted": False, "champion_before": 2, "champion_after": 2,
              "reasons": ["better"], "rollout": slot}  # fmt: skip
    watch_log.write_text(
        json.dumps(
            {
                "time": "2026-11-25T07:05:00.000Z",
                "iteration": "6",
                "action": "retrained",
                "deploy": deploy,
            }
        )
        + "\n"
    )
    assert status_lines()[-1] == (
        "last watch iteration (reports/watch/iterations.jsonl): #6 at 2026-11-25 07:05:00 UTC, "
        "retrained; deploy: candidate v3 started in shadow beside champion v2 (rollout "
        "milling-failure-v3-20261125T070500Z); not champion until a watch iteration promotes it"
    )
    assert status_json()["watch"]["deploy"].startswith("candidate v3 started in shadow")


def _records(project: Path) -> list[LedgerEntry]:
    try:
        return read_ledger(project / LEDGER)
    except FileNotFoundError:
        return []


# --- the monitor's last verdict -----------------------------------------------------------
# A real model with its monitor profile in a real serving store, real traffic in the
# prediction log and real labels; the real monitor stage writes decision.json under
# `run_stage` (so the ledger has the run), and `lifecycle status` reads what it wrote.

MODEL_NAME = "milling-failure"
THRESHOLD = 0.3
MONITOR_ROWS = 1500
MONITOR_PARAMS = {
    "sample_rows": 1000,
    "window": {"rows": MONITOR_ROWS, "min_rows": 500},
    # the tiny model's average precision is about 0.45
    "quality": {"thresholds": {"roc_auc": 0.85, "average_precision": 0.3}},
    "workspace": {"enabled": False},
}


@pytest.fixture(scope="module")
def champion_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    """A serving store holding v1 of a tiny real model, its reference and monitor profile."""
    from core.config import Params, SyntheticSourceConfig
    from core.paths import MONITOR_PROFILE_FILE, REFERENCE_FILE
    from core.records import record_json
    from features.contract import load_contract
    from features.synthetic import generate_process_data
    from monitoring.profile import build_monitor_profile
    from serving.model_store import export_model
    from tests.serving.server import train_tiny_model

    contract = load_contract(ROOT / "features" / "contracts" / "milling.yaml")
    model = train_tiny_model(tmp_path_factory.mktemp("model") / "model", max_iter=15)
    rows = generate_process_data(SyntheticSourceConfig(rows=4000, seed=11))
    reference = rows[contract.features].assign(
        label=rows[contract.label],
        probability=model.pipeline.predict_proba(rows[contract.features])[:, 1],
    )
    reference.iloc[:3000].to_parquet(model.directory / REFERENCE_FILE, index=False)
    params = Params.model_validate({"monitor": MONITOR_PARAMS, "data": {"seed": 42}})
    profile = build_monitor_profile(
        model.pipeline, reference.iloc[:3000], rows.iloc[3000:], contract, params
    )
    (model.directory / MONITOR_PROFILE_FILE).write_text(record_json(profile), encoding="utf-8")
    store = tmp_path_factory.mktemp("store") / ".bentoml"
    export_model(model.directory, MODEL_NAME, 1, "run-1", model.content_sha256, THRESHOLD, store)
    return store, model


@pytest.fixture
def monitored(
    project: Path, monkeypatch: pytest.MonkeyPatch, champion_store: tuple[Path, Any]
) -> Path:
    """The project with champion v1 serving, monitor params and a local MLflow store."""
    store, _ = champion_store
    params = {
        **PARAMS,
        "data": {**PARAMS["data"], "seed": 42},
        "deploy": {"registered_model": MODEL_NAME},
        "monitor": MONITOR_PARAMS,
        "serving": {"store": str(store)},
        "tracking": {"experiment": "status-test"},
    }
    (project / "params.yaml").write_text(yaml.safe_dump(params), encoding="utf-8")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{project / 'mlflow.db'}")
    champion = project / "reports" / "deploy" / "champion.json"
    champion.parent.mkdir(parents=True)
    champion.write_text(json.dumps({"version": 1, "content_sha256": "x", "mlflow_run_id": "r"}))
    (project / "data" / "labels").mkdir(parents=True)
    return project


def run_monitor(
    monitored: Path,
    champion_store: tuple[Path, Any],
    monkeypatch: pytest.MonkeyPatch,
    scenario: str = "none",
    stuck: str | None = None,
    mechanism_changed: bool = False,
) -> dict[str, Any]:
    """Log a window of traffic served by v1 (with `stuck` held at one reading over its last
    300 rows), deliver its labels, run the monitor stage; its decision.json.

    `mechanism_changed`: the labels delivered are the window's own, shuffled over its rows:
    failures no longer follow the inputs the model learned them from, which only the labels
    can show."""
    from core.config import SyntheticSourceConfig
    from features.contract import load_contract
    from features.synthetic import generate_process_data
    from pipelines import monitor
    from tests.monitoring.traffic import labels_for, make_log, write_prediction_log

    _, model = champion_store
    contract = load_contract(ROOT / "features" / "contracts" / "milling.yaml")
    frame = generate_process_data(
        SyntheticSourceConfig(rows=MONITOR_ROWS, seed=3, scenario=scenario), first_udi=100_001
    )
    if stuck is not None:
        frame.loc[frame.index[-300:], stuck] = frame[stuck].iloc[-300]
    probability = model.pipeline.predict_proba(frame[contract.features])[:, 1]
    log = make_log(frame, contract, probability=probability, threshold=THRESHOLD)
    write_prediction_log(log, monitored / "data" / "predictions")
    labels = labels_for(frame, contract)
    if mechanism_changed:
        outcome = [name for name in labels.columns if name != "UDI"]
        order = np.random.default_rng(0).permutation(len(labels))
        labels[outcome] = labels[outcome].iloc[order].to_numpy()
    labels.to_parquet(monitored / "data" / "labels" / "batch-001.parquet")
    stage_in("monitored", "monitor", monitor.monitor, monkeypatch)
    return json.loads((monitored / "reports" / "monitor" / "decision.json").read_text())


def monitor_lines(lines: list[str]) -> list[str]:
    """The status lines of the monitor's verdict: from `monitor (` to the watch line."""
    first = next(i for i, line in enumerate(lines) if line.startswith("monitor ("))
    last = next(i for i, line in enumerate(lines) if line.startswith("watch: "))
    return lines[first:last]


def test_status_shows_a_retrain_decided_by_the_realized_quality(
    monitored: Path, champion_store: tuple[Path, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    decision = run_monitor(
        monitored, champion_store, monkeypatch, scenario="failure_mechanism", mechanism_changed=True
    )
    assert (decision["action"], decision["decided_by"]) == ("retrain", "realized_quality")

    lines = monitor_lines(status_lines())
    window = decision["window"]
    estimate, quality = decision["estimate"], decision["quality"]
    assert lines[0] == (
        "monitor (reports/monitor/decision.json): retrain, decided by realized_quality; "
        f"champion milling-failure:v1; window {MONITOR_ROWS} rows ({MONITOR_ROWS} labelled, "
        f"newest {window['last_time']})"
    )
    assert lines[1] == f"  {decision['reasons'][0]}"
    assert lines[1].startswith("  retrain: quality is below its floor on ")
    head = re.split(r"\s{2,}", lines[2].strip())
    assert head == [
        "quality",
        "floor",
        f"estimated (CBPE, {estimate['rows']} rows, before labels)",
        f"realized ({quality['rows']} labelled, {quality['positives']} failures)",
    ]
    for line, name in zip(lines[3:5], ("roc_auc", "average_precision"), strict=True):
        cells = re.split(r"\s{2,}", line.strip())
        est, (low, high) = estimate[name], quality["intervals"][name]
        realized = f"{quality[name]:.3f} ({low:.3f}-{high:.3f})"
        assert cells == [
            name,
            f"{quality['floors'][name]:.3f}",  # the floors that judged (own bounds lower them)
            f"{est['value']:.3f} ({est['low']:.3f}-{est['high']:.3f})",
            f"{realized} BELOW" if name in quality["breached"] else realized,
        ]
    assert "BELOW" in lines[3] + lines[4]  # the breach that decided is marked
    assert lines[5] == f"  {decision['data_quality']['reason']}"
    assert lines[5].startswith("  data quality: all ")
    drifted = decision["drift"]["drifted_columns"]
    assert drifted, decision["drift"]  # the failure mechanism also shifts the inputs
    assert lines[6].startswith(f"  drift (calibrated thresholds): {drifted[0]} (")
    assert f"together {decision['drift']['importance_share']:.0%}" in lines[6]

    status = status_json()["monitor"]
    assert (status["action"], status["decided_by"], status["retrain"]) == (
        "retrain",
        "realized_quality",
        True,
    )
    assert status["quality"]["roc_auc"]["floor"] == quality["floors"]["roc_auc"]
    assert quality["floors"]["roc_auc"] < 0.85  # lowered to the champion's own bound
    assert status["quality"]["roc_auc"]["estimated"]["value"] == estimate["roc_auc"]["value"]
    assert status["quality"]["roc_auc"]["realized"]["value"] == quality["roc_auc"]
    shares = [column["importance"] for column in status["drift"]["columns"]]
    assert all(share is not None and 0 <= share <= 1 for share in shares), shares
    assert sum(shares) == pytest.approx(decision["drift"]["importance_share"], abs=1e-6)


def test_status_shows_an_alert_decided_by_the_data_quality(
    monitored: Path, champion_store: tuple[Path, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    decision = run_monitor(monitored, champion_store, monkeypatch, stuck="Torque [Nm]")
    assert (decision["action"], decision["decided_by"]) == ("alert", "data_quality")

    lines = monitor_lines(status_lines())
    assert lines[0].startswith(
        "monitor (reports/monitor/decision.json): alert, decided by data_quality; "
        "champion milling-failure:v1;"
    )
    assert lines[1] == "  alert: data quality fails on stuck:Torque [Nm]"
    assert lines[5] == f"  {decision['data_quality']['reason']}"
    assert lines[5].startswith("  data quality fails on 1,500 rows: Torque [Nm] is stuck at ")
    status = status_json()["monitor"]
    assert status["data_quality"]["passed"] is False
    assert status["data_quality"]["failed"] == ["stuck:Torque [Nm]"]


def test_status_without_a_monitor_verdict_and_with_a_damaged_one(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stage_in("first", "ingest", lambda: None, monkeypatch)
    assert "monitor: no verdict yet (dvc repro monitor writes reports/monitor/decision.json)" in (
        status_lines()
    )
    decision = project / "reports" / "monitor" / "decision.json"
    decision.parent.mkdir(parents=True)
    decision.write_text('{"retrain": true}')
    [line] = [line for line in status_lines() if line.startswith("monitor (")]
    assert line.startswith("monitor (reports/monitor/decision.json): reports/monitor/decision.json")
    assert status_json()["monitor"]["error"] == line.split(": ", 1)[1]
