"""`lifecycle watch`: its records and feedback batches (units), and the loop as a real process.

The loop is run the way a user runs it, `lifecycle watch` in a project folder, against a
real `dvc repro` of a two-stage stand-in pipeline (`monitor` and `deploy` scripts that
write the same files as the real stages), so the tests do not wait for training. MLflow
points at a closed port: each iteration then shows the warning and keeps its JSON line.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from core.hashing import file_md5
from core.io import append_json_line
from core.records.deploy import Challenger, ChampionRecord, DeployDecision
from core.records.monitor import Action as VerdictAction
from core.records.monitor import MonitorDecision, ServingChampion, Signal, WindowSummary
from core.records.rollout import RolloutSlot, SlotModel
from core.records.watch import (
    DeployOutcome,
    FeedbackSummary,
    PolicyDecision,
    ReproResult,
    WatchRecord,
    append_watch_record,
    read_watch_history,
)
from lifecycle.dvc_repro import ran_stages
from lifecycle.iteration_tracking import mlflow_metrics, mlflow_tags, record_in_mlflow
from lifecycle.watch import IterationOutcome, build_record, summarize_deploy
from tests.factories import make_valid_frame
from tests.mlflow_server import MlflowServer, free_port

ROOT = Path(__file__).resolve().parents[2]
CONTRACT_PATH = ROOT / "features" / "contracts" / "milling.yaml"
BIN = Path(sys.executable).parent
STARTED = dt.datetime(2026, 11, 25, 6, 37, 0, 123000, tzinfo=dt.UTC)


def _window(ids: list[int]) -> pd.DataFrame:
    frame = make_valid_frame(rows=len(ids), seed=1)
    frame["UDI"] = ids
    return frame


# --- records ----------------------------------------------------------------------------


def _verdict(
    retrain: bool,
    reasons: list[str],
    action: VerdictAction | None = None,
    decided_by: Signal | None = None,
    **window: Any,
) -> MonitorDecision:
    """A monitor decision: a window of 5000 rows unless `window` says otherwise; its action
    is `retrain` (decided by the realized quality) or `keep` unless given."""
    summary = {
        "rows": 5000,
        "labelled_rows": 1200,
        "champion_rows": 5000,
        "first_time": "2026-11-25T05:00:00.000Z",
        "last_time": "2026-11-25T06:30:00.000Z",
        "model_versions": {"v1": 5000},
        "missing_columns": [],
        **window,
    }
    return MonitorDecision(
        retrain=retrain,
        reasons=reasons,
        champion=ServingChampion(tag="milling-failure:v1", version=1),
        window=WindowSummary(**summary),
        drift=None,
        quality=None,
        action=action or ("retrain" if retrain else "keep"),
        decided_by=decided_by or ("realized_quality" if retrain else None),
    )


def _outcome() -> IterationOutcome:
    policy = PolicyDecision(
        retrain=True,
        reasons=["Go."],
        new_window=True,
        streak=1,
        retrains_last_24h=0,
        last_retrain=None,
    )
    return IterationOutcome(
        iteration="20261125T063700Z-abc123",
        started=STARTED,
        repros=[
            ReproResult(
                purpose="monitor", returncode=0, seconds=1.5, stages=["monitor"], stderr_tail=[]
            ),
            ReproResult(
                purpose="retrain",
                returncode=0,
                seconds=60.25,
                stages=["ingest", "deploy", "monitor"],
                stderr_tail=[],
            ),
        ],
        verdict=_verdict(True, ["retrain: quality is below its floor on average_precision"]),
        policy=policy,
        action="retrained",
        feedback=FeedbackSummary(
            path=Path("data/feedback/batch-x.parquet"),
            rows=1180,
            md5="f" * 32,
            dropped_known=20,
            dropped_duplicate=0,
            dropped_unlabelled=0,
        ),
        deploy=DeployOutcome(
            ran=True, promoted=True, champion_before=1, champion_after=2, reasons=["better"]
        ),
    )


def test_the_record_of_an_iteration() -> None:
    record = build_record(_outcome(), STARTED + dt.timedelta(seconds=62)).model_dump(mode="json")

    assert record == {
        "time": "2026-11-25T06:37:00.123Z",
        "iteration": "20261125T063700Z-abc123",
        "window": {
            "rows": 5000,
            "labelled_rows": 1200,
            "first_time": "2026-11-25T05:00:00.000Z",
            "last_time": "2026-11-25T06:30:00.000Z",
            "missing_columns": [],
        },
        "verdict": {
            "retrain": True,
            "reasons": ["retrain: quality is below its floor on average_precision"],
            "champion": {"tag": "milling-failure:v1", "version": 1},
            "action": "retrain",
            "decided_by": "realized_quality",
        },
        "policy": {
            "retrain": True,
            "reasons": ["Go."],
            "new_window": True,
            "streak": 1,
            "retrains_last_24h": 0,
            "last_retrain": None,
        },
        "action": "retrained",
        "skipped_reason": None,
        "feedback": {
            "path": "data/feedback/batch-x.parquet",
            "rows": 1180,
            "md5": "f" * 32,
            "dropped_known": 20,
            "dropped_duplicate": 0,
            "dropped_unlabelled": 0,
        },
        "deploy": {
            "ran": True,
            "promoted": True,
            "champion_before": 1,
            "champion_after": 2,
            "reasons": ["better"],
            "rollout": None,
        },
        "rollout": None,
        "repro": [
            {
                "purpose": "monitor",
                "returncode": 0,
                "seconds": 1.5,
                "stages": ["monitor"],
                "stderr_tail": [],
            },
            {
                "purpose": "retrain",
                "returncode": 0,
                "seconds": 60.25,
                "stages": ["ingest", "deploy", "monitor"],
                "stderr_tail": [],
            },
        ],
        "durations_s": {"monitor_repro": 1.5, "retrain_repro": 60.25, "total": 62.0},
        "error": None,
    }
    json.dumps(record, allow_nan=False)  # one strict JSON line


def test_the_record_of_a_failed_repro() -> None:
    outcome = IterationOutcome(
        iteration="i",
        started=STARTED,
        repros=[
            ReproResult(
                purpose="monitor",
                returncode=1,
                seconds=2.0,
                stages=[],
                stderr_tail=["ERROR: failed to reproduce 'monitor'"],
            )
        ],
        error="dvc repro (monitor) failed with exit code 1: ERROR: failed to reproduce 'monitor'",
    )
    record = build_record(outcome, STARTED).model_dump(mode="json")

    assert (record["window"], record["verdict"], record["policy"]) == (None, None, None)
    assert record["action"] == "none"
    assert record["repro"][0]["returncode"] == 1
    assert record["error"].startswith("dvc repro (monitor) failed with exit code 1")


def test_a_window_with_missing_columns_keeps_them_in_the_record() -> None:
    outcome = IterationOutcome(
        iteration="i",
        started=STARTED,
        verdict=_verdict(
            False,
            [],
            rows=3,
            labelled_rows=0,
            first_time=None,
            last_time=None,
            missing_columns=["TWF"],
        ),
    )
    window = build_record(outcome, STARTED).model_dump(mode="json")["window"]

    assert window == {
        "rows": 3,
        "labelled_rows": 0,
        "first_time": None,
        "last_time": None,
        "missing_columns": ["TWF"],
    }


def test_mlflow_tags_and_metrics_of_a_record() -> None:
    record = build_record(_outcome(), STARTED + dt.timedelta(seconds=62))

    assert mlflow_tags(record) == {
        "kind": "watch",
        "watch_iteration": "20261125T063700Z-abc123",
        "action": "retrained",
        "verdict_retrain": "true",
        "verdict_action": "retrain",
        "decided_by": "realized_quality",
        "policy_retrain": "true",
        "promoted": "true",
        "candidate_started": "none",
        "failed": "false",
        "rollout_outcome": "none",
        "feedback_batch": "data/feedback/batch-x.parquet",
        "feedback_md5": "f" * 32,
    }
    assert mlflow_metrics(record) == {
        "window_rows": 5000.0,
        "labelled_rows": 1200.0,
        "verdict_retrain": 1.0,
        "verdict_alert": 0.0,
        "policy_retrain": 1.0,
        "retrain_streak": 1.0,
        "retrains_last_24h": 0.0,
        "retrained": 1.0,
        "feedback_rows": 1180.0,
        "promoted": 1.0,
        "candidate_started": 0.0,
        "champion_version_after": 2.0,
        "failed": 0.0,
        "monitor_repro_seconds": 1.5,
        "retrain_repro_seconds": 60.25,
        "total_seconds": 62.0,
    }


def _deploy_decision(promote: bool, **changes: Any) -> DeployDecision:
    challenger = Challenger(
        family="logistic", content_sha256="b" * 64, mlflow_run_id=None, holdout={}
    )
    fields = {"reasons": [], "registered_model": "milling-failure", **changes}
    return DeployDecision(promote=promote, challenger=challenger, **fields)


def test_the_deploy_outcome() -> None:
    decision = _deploy_decision(
        False,
        reasons=["worse on the newest feedback batch"],
        champion_before=ChampionRecord(version=3, content_sha256="a"),
        champion_after=ChampionRecord(version=3, content_sha256="a"),
    )
    assert summarize_deploy(decision, champion_before=2).model_dump() == {
        "ran": True,
        "promoted": False,
        "champion_before": 3,
        "champion_after": 3,
        "reasons": ["worse on the newest feedback batch"],
        "rollout": None,
    }
    assert summarize_deploy(None, champion_before=2).champion_after == 2
    assert summarize_deploy(_deploy_decision(True, champion_before=None), None).promoted
    assert summarize_deploy(None, 2).describe() == "did not run (champion v2)"
    assert summarize_deploy(decision, 2).describe() == "not promoted (champion v3 unchanged)"


def _slot(kind: str, version: str) -> RolloutSlot:
    model = SlotModel(tag=f"milling-failure:{version}", version=version, content_sha256="c" * 64,
                      threshold=0.4)  # fmt: skip
    return RolloutSlot(id=f"milling-failure-{version}-x", kind=kind, model=model,
                       started_at="2026-12-01T12:00:00.000Z")  # fmt: skip


def test_a_deploy_that_starts_a_rollout_is_no_promotion() -> None:
    """With deploy.rollout shadow or canary, the gate's pass starts a candidate's rollout:
    the champion is unchanged, and the outcome, its log line and MLflow tags say so."""
    v3 = ChampionRecord(version=3, content_sha256="a")
    decision = _deploy_decision(
        True,
        reasons=["better"],
        champion_before=v3,
        champion_after=v3,
        rollout=_slot("shadow", "v4"),
    )
    outcome = summarize_deploy(decision, champion_before=3)
    assert (outcome.promoted, outcome.candidate_started) == (False, True)
    assert (outcome.champion_before, outcome.champion_after) == (3, 3)
    assert outcome.rollout.kind == "shadow"
    assert outcome.reasons[-1] == (
        "v4 passed the gate and started a shadow rollout (milling-failure-v4-x) as candidate; "
        "the champion is unchanged until the rollout's verdict promotes it"
    )
    assert outcome.describe() == (
        "candidate v4 started in shadow beside champion v3 (rollout milling-failure-v4-x); "
        "not champion until a watch iteration promotes it"
    )
    record = build_record(IterationOutcome(iteration="i", started=STARTED, deploy=outcome), STARTED)
    assert mlflow_tags(record)["promoted"] == "false"
    assert mlflow_tags(record)["candidate_started"] == "shadow"
    assert mlflow_metrics(record)["candidate_started"] == 1.0
    assert WatchRecord.model_validate(record.model_dump(mode="json")) == record

    # an immediate promotion with a rollback window: promoted, watched against the old one
    v4 = ChampionRecord(version=4, content_sha256="b")
    watched = _deploy_decision(
        True, champion_before=v3, champion_after=v4, rollout=_slot("watch", "v3")
    )
    outcome = summarize_deploy(watched, champion_before=3)
    assert (outcome.promoted, outcome.candidate_started) == (True, False)
    assert outcome.describe() == "promoted (champion v3 -> v4, watched against v3)"


def test_ran_stages_reads_dvc_output() -> None:
    stdout = (
        "Stage 'ingest' didn't change, skipping\n"
        "Running stage 'monitor':\n> python -m pipelines.monitor\n"
        "Running stage 'deploy':\n"
    )
    assert ran_stages(stdout) == ["monitor", "deploy"]


def test_history_round_trip_skips_unreadable_lines(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    log = tmp_path / "watch" / "iterations.jsonl"
    record = build_record(_outcome(), STARTED)
    append_watch_record(log, record.model_copy(update={"iteration": "a"}))
    with open(log, "a") as handle:
        handle.write('{"iteration": "cut off\n[1, 2]\n\n')
    append_json_line(log, {"iteration": "not a whole record"})
    append_watch_record(log, record.model_copy(update={"iteration": "b"}))

    history = read_watch_history(log)
    assert [r.iteration for r in history] == ["a", "b"]
    assert history[0] == record.model_copy(update={"iteration": "a"})  # a round trip
    assert f"{log}: line 2 is not a JSON object; skipped" in caplog.text
    assert f"{log}: line 3 is not a JSON object; skipped" in caplog.text
    assert f"{log}: line 5 is not a watch record (time: Field required); skipped" in caplog.text
    assert read_watch_history(tmp_path / "absent.jsonl") == []


def test_an_unreachable_tracking_server_is_a_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{free_port()}")
    record = build_record(_outcome(), STARTED)

    assert record_in_mlflow(record, "lifecycle") is None
    assert "iteration 20261125T063700Z-abc123 was not recorded in MLflow" in caplog.text
    assert "the watch log has it" in caplog.text


@pytest.mark.slow
def test_an_iteration_is_an_mlflow_run(
    mlflow_server: MlflowServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlflow

    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server.url)
    record = build_record(_outcome(), STARTED)

    run_id = record_in_mlflow(record, "watch-test")

    assert run_id is not None
    run = mlflow.MlflowClient(mlflow_server.url).get_run(run_id)
    assert run.info.run_name == "watch"
    assert run.data.tags["watch_iteration"] == "20261125T063700Z-abc123"
    assert run.data.tags["action"] == "retrained"
    assert run.data.metrics["feedback_rows"] == 1180.0
    assert run.data.metrics["champion_version_after"] == 2.0


# --- the loop as a real process ----------------------------------------------------------

STAGES_SCRIPT = '''
"""Stand-ins for the real stages: they write the records monitor and deploy write, instantly."""
import json, sys
from pathlib import Path
import pandas as pd

def write_json(data, path):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))

if sys.argv[1] == "monitor":
    window = pd.read_parquet("data/predictions/window.parquet")
    Path("data/monitor").mkdir(parents=True, exist_ok=True)
    window.drop(columns=["time"]).to_parquet("data/monitor/window_labelled.parquet", index=False)
    version = json.loads(Path("reports/deploy/champion.json").read_text())["version"]
    verdict = {"retrain": True, "reasons": ["stand-in quality breach"], "action": "retrain",
               "decided_by": "realized_quality"}
    if Path("verdict.json").exists():  # a test's own verdict
        verdict = json.loads(Path("verdict.json").read_text())
    write_json({
        **verdict,
        "champion": {"tag": f"milling-failure:v{version}", "version": version},
        "window": {"rows": len(window), "labelled_rows": len(window),
                   "champion_rows": len(window), "model_versions": {f"v{version}": len(window)},
                   "first_time": window["time"].min(), "last_time": window["time"].max(),
                   "missing_columns": []},
        "drift": None, "quality": None,
    }, "reports/monitor/decision.json")
else:
    batches = sorted(Path("data/feedback").glob("batch-*.parquet"))
    before, after = len(batches), len(batches) + 1
    write_json({"version": after}, "reports/deploy/champion.json")
    write_json({
        "promote": bool(batches),
        "reasons": [f"{len(batches)} feedback batch(es)"],
        "registered_model": "milling-failure",
        "challenger": {"family": "stand-in", "content_sha256": "0" * 64,
                       "mlflow_run_id": None, "holdout": {}},
        "champion_before": {"version": before} if before else None,
        "champion_after": {"version": after},
    }, "reports/deploy/decision.json")
'''

DVC_YAML = {
    "stages": {
        "deploy": {
            "cmd": "python stages.py deploy",
            "deps": ["stages.py", "data/feedback"],
            "outs": [
                {"reports/deploy/decision.json": {"cache": False}},
                {"reports/deploy/champion.json": {"cache": False}},
            ],
        },
        "monitor": {
            "cmd": "python stages.py monitor",
            "deps": ["stages.py", "data/predictions", "reports/deploy/champion.json"],
            # verdict.json, when a test writes one, is read too; the window changes with it
            "outs": [
                {"reports/monitor/decision.json": {"cache": False}},
                {"data/monitor/window_labelled.parquet": {"cache": False}},
            ],
        },
    }
}


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "LIFECYCLE_"))}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env["MLFLOW_TRACKING_URI"] = f"http://127.0.0.1:{free_port()}"  # nobody listens
    env["COLUMNS"] = "200"
    return {**env, **extra}


def _write_params(project: Path, cooldown_minutes: float = 30, interval_s: float = 300) -> None:
    params = {
        "data": {"contract": str(CONTRACT_PATH)},
        "monitor": {
            "policy": {"cooldown_minutes": cooldown_minutes},
            "watch": {"interval_s": interval_s},
        },
    }
    (project / "params.yaml").write_text(yaml.safe_dump(params))


def _write_window(project: Path, ids: list[int], last_time: str) -> None:
    window = _window(ids)
    window["time"] = last_time
    (project / "data" / "predictions").mkdir(parents=True, exist_ok=True)
    window.to_parquet(project / "data" / "predictions" / "window.parquet", index=False)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A git + DVC project with the stand-in pipeline; no iteration has run."""
    (tmp_path / "stages.py").write_text(textwrap.dedent(STAGES_SCRIPT))
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump(DVC_YAML, sort_keys=False))
    (tmp_path / "data" / "feedback").mkdir(parents=True)
    (tmp_path / "data" / "feedback" / "README.md").write_text("feedback batches\n")
    _write_params(tmp_path)
    _write_window(tmp_path, [101, 102, 103], "2026-11-25T06:00:00.000Z")
    for argv in (["git", "init", "-q"], [str(BIN / "dvc"), "init", "-q"]):
        subprocess.run(argv, cwd=tmp_path, check=True, env=_env())
    subprocess.run(
        [str(BIN / "dvc"), "config", "core.analytics", "false"], cwd=tmp_path, check=True
    )
    return tmp_path


def _watch(project: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "lifecycle"), "watch", *args],
        cwd=project,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _records(project: Path) -> list[dict[str, Any]]:
    history = read_watch_history(project / "reports" / "watch" / "iterations.jsonl")
    return [record.model_dump(mode="json") for record in history]


def _one_line(text: str) -> str:
    return " ".join(re.sub(r"[│╭╮╰╯─]", " ", text).split())


@pytest.mark.slow
def test_watch_once_retrains_then_waits_for_a_new_window(project: Path) -> None:
    first = _watch(project, "--once")

    assert first.returncode == 0, first.stderr
    [record] = _records(project)
    assert record["verdict"]["retrain"] is True
    assert record["policy"]["retrain"] is True
    assert record["action"] == "retrained"
    assert [r["purpose"] for r in record["repro"]] == ["monitor", "retrain"]
    assert [r["returncode"] for r in record["repro"]] == [0, 0]
    assert record["repro"][1]["stages"] == ["deploy", "monitor"]
    batch = project / record["feedback"]["path"]
    assert pd.read_parquet(batch)["UDI"].tolist() == [101, 102, 103]
    assert record["feedback"]["md5"] == file_md5(batch)
    assert record["deploy"] == {
        "ran": True,
        "promoted": True,
        "champion_before": 1,
        "champion_after": 2,
        "reasons": ["1 feedback batch(es)"],
        "rollout": None,
    }
    assert "was not recorded in MLflow" in first.stderr  # the server is unreachable
    assert record["error"] is None

    # no new predictions: the same window is not judged again
    second = _watch(project, "--once")

    assert second.returncode == 0, second.stderr
    record = _records(project)[-1]
    assert record["repro"][0]["stages"] == []  # nothing changed, nothing ran
    assert (record["policy"]["retrain"], record["action"]) == (False, "none")
    assert record["policy"]["reasons"][0].startswith("No new window")

    # a new window, with two old rows: within the cooldown, nothing happens
    _write_window(project, [102, 103, 104, 105], "2026-11-25T07:00:00.000Z")
    third = _watch(project, "--once")

    record = _records(project)[-1]
    assert third.returncode == 0, third.stderr
    assert record["policy"]["new_window"] is True
    assert record["action"] == "none"
    assert "monitor.policy.cooldown_minutes (30)" in record["policy"]["reasons"][0]

    # without a cooldown: a second batch with the new rows only
    _write_params(project, cooldown_minutes=0)
    _write_window(project, [102, 103, 104, 105], "2026-11-25T08:00:00.000Z")
    fourth = _watch(project, "--once")

    record = _records(project)[-1]
    assert fourth.returncode == 0, fourth.stderr
    assert record["action"] == "retrained"
    assert pd.read_parquet(project / record["feedback"]["path"])["UDI"].tolist() == [104, 105]
    assert record["feedback"]["dropped_known"] == 2
    assert (record["deploy"]["champion_before"], record["deploy"]["champion_after"]) == (2, 3)
    assert len(_records(project)) == 4


@pytest.mark.slow
def test_an_alert_is_a_warning_with_its_reason_and_does_not_retrain(project: Path) -> None:
    reasons = [
        "alert: data quality fails on stuck:Torque [Nm]",
        "data quality fails: Torque [Nm] reads 40.1 for 3 rows in a row",
    ]
    verdict = {"retrain": False, "reasons": reasons, "action": "alert"}
    (project / "verdict.json").write_text(json.dumps({**verdict, "decided_by": "data_quality"}))

    done = _watch(project, "--once")

    assert done.returncode == 0, done.stderr
    [record] = _records(project)
    assert record["verdict"] == {
        **verdict,
        "champion": {"tag": "milling-failure:v1", "version": 1},
        "decided_by": "data_quality",
    }
    assert record["policy"]["retrain"] is False
    assert record["policy"]["reasons"] == [
        "The monitor's verdict on this window is not to retrain (alert, decided by data_quality)."
    ]
    assert (record["action"], record["feedback"], record["deploy"]) == ("none", None, None)
    assert list((project / "data" / "feedback").glob("batch-*")) == []
    [warning] = [
        line for line in done.stderr.splitlines() if " WARNING " in line and "ALERT" in line
    ]
    assert warning.endswith(
        f"lifecycle.watch: iteration {record['iteration']}: ALERT (data_quality), no retrain: "
        "alert: data quality fails on stuck:Torque [Nm]"
    )
    summary = next(line for line in done.stderr.splitlines() if "verdict alert" in line)
    assert "verdict alert (decided by data_quality); policy retrain=False; action none" in summary


@pytest.mark.slow
def test_a_window_without_contract_columns_is_refused(project: Path) -> None:
    _write_window(project, [1, 2], "2026-11-25T06:00:00.000Z")
    window = pd.read_parquet(project / "data" / "predictions" / "window.parquet")
    window.drop(columns=["TWF"]).to_parquet(
        project / "data" / "predictions" / "window.parquet", index=False
    )

    done = _watch(project, "--once")

    [record] = _records(project)
    assert done.returncode == 1
    assert _one_line(done.stderr).endswith(
        f"error: iteration {record['iteration']} failed: data/monitor/window_labelled.parquet "
        "lacks contract column(s) ['TWF']; a feedback batch needs every column of the "
        "contract (are the label batches complete? see monitor.labels.directory)"
    )
    assert record["action"] == "refused"
    assert list((project / "data" / "feedback").glob("batch-*")) == []


@pytest.mark.slow
def test_without_a_row_id_the_watch_judges_windows_but_writes_no_feedback(project: Path) -> None:
    contract = yaml.safe_load(CONTRACT_PATH.read_text())
    contract["name"] = "no-ids"
    contract["columns"] = [c for c in contract["columns"] if c.get("role") != "id"]
    (project / "no-ids.yaml").write_text(yaml.safe_dump(contract))
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["data"]["contract"] = "no-ids.yaml"
    (project / "params.yaml").write_text(yaml.safe_dump(params))

    done = _watch(project, "--once")

    assert done.returncode == 0, done.stderr
    [record] = _records(project)
    assert (record["policy"]["retrain"], record["action"]) == (True, "skipped")
    assert record["skipped_reason"] == (
        "Nothing new to train on: the data contract 'no-ids' has no unique id column, so no "
        "labels are joined to the window."
    )
    assert [r["purpose"] for r in record["repro"]] == ["monitor"]
    assert list((project / "data" / "feedback").glob("batch-*")) == []
    assert _one_line(done.stderr).count("no feedback batches are written") == 1


@pytest.mark.slow
def test_a_failed_dvc_repro_fails_watch_once(tmp_path: Path) -> None:
    _write_params(tmp_path)  # a folder with params.yaml, but no DVC project

    done = _watch(tmp_path, "--once")

    [record] = _records(tmp_path)
    assert done.returncode == 1
    assert done.stderr.rstrip().endswith(
        f"error: iteration {record['iteration']} failed: dvc repro (monitor) failed with "
        "exit code 253: ERROR: you are not inside of a DVC repository (checked up to mount "
        "point '/')"
    )
    assert record["repro"][0]["returncode"] == 253
    assert record["repro"][0]["stderr_tail"] == [
        "ERROR: you are not inside of a DVC repository (checked up to mount point '/')"
    ]


@pytest.mark.slow
def test_one_watch_at_a_time_and_sigterm_stops_it(tmp_path: Path) -> None:
    _write_params(tmp_path, interval_s=600)
    log = tmp_path / "reports" / "watch" / "iterations.jsonl"
    first = subprocess.Popen(
        [str(BIN / "lifecycle"), "watch"],
        cwd=tmp_path,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not log.exists() and first.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert log.exists(), "the first watch wrote no iteration"

        second = _watch(tmp_path, "--once")

        lock = tmp_path / ".lifecycle" / "watch.lock"
        assert second.returncode == 1
        assert second.stderr.strip().splitlines()[-1] == (
            f"error: another lifecycle watch is running (lock {lock})"
        )
        assert len(_records(tmp_path)) == 1  # the second one did nothing
        assert first.poll() is None  # a failed repro does not stop the loop

        first.send_signal(signal.SIGTERM)
        _, stderr = first.communicate(timeout=30)
    finally:
        if first.poll() is None:
            first.kill()
            first.communicate()
    assert first.returncode == 0, stderr
    assert "SIGTERM: finishing the current iteration, then exiting" in stderr
    assert "watch stopped" in stderr
    assert _watch(tmp_path, "--once").stderr.count("another lifecycle watch") == 0


def test_watch_refuses_a_nonpositive_interval(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from lifecycle.cli import app

    result = CliRunner().invoke(app, ["watch", "--interval", "0"])

    assert result.exit_code == 2
    assert "Invalid value for '--interval': must be more than 0 seconds, got 0" in _one_line(
        result.output
    )
