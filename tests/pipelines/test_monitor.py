"""The `monitor` stage end to end in a temporary project folder (no DVC, no network).

Real parts: a small HistGradientBoosting model exported to a temporary BentoML store with its
reference data, a prediction log written in the documented layout and read by the real reader,
labels files, and a SQLite MLflow store with the champion registered.
"""

from __future__ import annotations

import json
import logging
import shutil
from html import escape
from pathlib import Path

import pandas as pd
import pytest
import yaml

from core import paths
from core.config import Params, SyntheticSourceConfig
from core.paths import MONITOR_PROFILE_FILE, REFERENCE_FILE
from core.records import record_json
from features.contract import DataContract, load_contract
from features.synthetic import generate_process_data
from monitoring.profile import build_monitor_profile
from pipelines import monitor
from serving.model_store import export_model
from tests.conftest import CONTRACT_PATH
from tests.monitoring.traffic import labels_for, make_log, write_prediction_log
from tests.serving.server import TinyModel, train_tiny_model

NAME = "milling-failure"
THRESHOLD = 0.3
WINDOW_ROWS = 1500
MONITOR_PARAMS = {
    "sample_rows": 1000,
    "window": {"rows": WINDOW_ROWS, "min_rows": 500},
    # the tiny model's average precision is about 0.45
    "quality": {"thresholds": {"roc_auc": 0.85, "average_precision": 0.3}},
    "workspace": {"directory": "reports/monitor/workspace"},
}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory, contract: DataContract) -> TinyModel:
    """A real model whose directory holds its reference data, as the train stage leaves it."""
    model = train_tiny_model(tmp_path_factory.mktemp("model") / "model", max_iter=15)
    rows = generate_process_data(SyntheticSourceConfig(rows=4000, seed=11))
    reference = pd.DataFrame(
        {
            **{name: rows[name] for name in contract.features},
            "label": rows[contract.label],
            "probability": model.pipeline.predict_proba(rows[contract.features])[:, 1],
        }
    ).iloc[:3000]
    reference.to_parquet(model.directory / REFERENCE_FILE, index=False)
    params = Params.model_validate({"monitor": MONITOR_PARAMS, "data": {"seed": 42}})
    profile = build_monitor_profile(model.pipeline, reference, rows.iloc[3000:], contract, params)
    (model.directory / MONITOR_PROFILE_FILE).write_text(record_json(profile), encoding="utf-8")
    return model


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory, tiny: TinyModel) -> Path:
    """A serving store with v1 (good reference and profile), v2 (a reference without its
    features) and v3 (no monitor profile)."""
    store = tmp_path_factory.mktemp("store") / ".bentoml"
    export_model(tiny.directory, NAME, 1, "run-1", tiny.content_sha256, THRESHOLD, store)
    old = tmp_path_factory.mktemp("old") / "model"
    shutil.copytree(tiny.directory, old)
    reference = pd.read_parquet(old / REFERENCE_FILE)
    reference[["label", "probability"]].to_parquet(old / REFERENCE_FILE, index=False)
    export_model(old, NAME, 2, "run-2", tiny.content_sha256, THRESHOLD, store)
    older = tmp_path_factory.mktemp("older") / "model"  # trained before models kept a profile
    shutil.copytree(tiny.directory, older)
    (older / MONITOR_PROFILE_FILE).unlink()
    export_model(older, NAME, 3, "run-3", tiny.content_sha256, THRESHOLD, store)
    return store


@pytest.fixture(scope="module")
def tracking_uri(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One SQLite MLflow store for the module, with registry version 1 of the model."""
    from mlflow import MlflowClient

    folder = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    client.create_registered_model(NAME)
    client.create_model_version(NAME, source=str(folder / "model"))
    return uri


@pytest.fixture
def project(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, store: Path, tracking_uri: str
) -> Path:
    """A working directory with params.yaml and champion v1; no traffic, no labels yet."""
    params = {
        "data": {"contract": str(CONTRACT_PATH), "seed": 42},
        "deploy": {"registered_model": NAME},
        "monitor": MONITOR_PARAMS,
        "serving": {"store": str(store)},
        "tracking": {"experiment": "monitor-test"},
    }
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params), encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_uri)
    monkeypatch.setenv("LIFECYCLE_RUN_ID", tmp_path.name)
    set_champion(1)
    Path("data/labels").mkdir(parents=True)
    return tmp_path


def configure_monitor(**changes: object) -> None:
    """Change keys of the project's `monitor` params (e.g. verdict={...})."""
    params = yaml.safe_load(Path("params.yaml").read_text(encoding="utf-8"))
    params["monitor"] = {**params["monitor"], **changes}
    Path("params.yaml").write_text(yaml.safe_dump(params), encoding="utf-8")


def set_champion(version: int | None) -> None:
    paths.CHAMPION.parent.mkdir(parents=True, exist_ok=True)
    pointer = {"version": version, "content_sha256": "x", "mlflow_run_id": "r"} if version else {}
    paths.CHAMPION.write_text(json.dumps(pointer), encoding="utf-8")


def serve_traffic(
    tiny: TinyModel, contract: DataContract, rows: int, scenario: str = "none", seed: int = 3
) -> pd.DataFrame:
    """Rows the champion answered (real probabilities), logged; returns the processes."""
    frame = generate_process_data(
        SyntheticSourceConfig(rows=rows, seed=seed, scenario=scenario), first_udi=100_001
    )
    probability = tiny.pipeline.predict_proba(frame[contract.features])[:, 1]
    log = make_log(frame, contract, probability=probability, threshold=THRESHOLD)
    write_prediction_log(log, Path("data/predictions"))
    return frame


def read_outputs() -> tuple[dict, dict, str, pd.DataFrame]:
    return (
        json.loads(paths.MONITOR_DECISION.read_text(encoding="utf-8")),
        json.loads(paths.MONITOR_METRICS.read_text(encoding="utf-8")),
        paths.DRIFT_REPORT.read_text(encoding="utf-8"),
        pd.read_parquet(paths.LABELLED_WINDOW),
    )


def monitor_runs(tracking_uri: str) -> list:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    experiment = client.get_experiment_by_name("monitor-test")
    runs = client.search_runs([experiment.experiment_id], "tags.stage = 'monitor'")
    return sorted(runs, key=lambda run: run.info.start_time)


def test_drifted_labelled_window_calls_for_a_retrain_and_is_tracked(
    project: Path, tiny: TinyModel, contract: DataContract, tracking_uri: str, caplog
):
    caplog.set_level(logging.INFO)
    configure_monitor(verdict={"on_material_drift": "retrain"})
    frame = serve_traffic(tiny, contract, WINDOW_ROWS, scenario="failure_mechanism")
    labels_for(frame.iloc[:700], contract).to_parquet("data/labels/batch-001.parquet")

    monitor.main()

    decision, metrics, html, labelled = read_outputs()
    assert decision["retrain"] is True, decision["reasons"]
    assert (decision["action"], decision["decided_by"]) == ("retrain", "feature_drift")
    assert decision["reasons"][0] == (
        "retrain: Rotational speed [rpm], Torque [Nm] drift (87% of the champion's importance)"
    )
    assert decision["reasons"][1] == "data quality: all 20 checks pass on 1,500 rows"
    assert decision["reasons"][2].startswith(
        "dataset drift: 2 of 6 feature columns drifted (33%, at or above monitor.drift_share 15%)"
    )
    assert decision["drift"]["calibrated"] is True and decision["drift"]["material"] is True
    assert decision["estimate"]["rows"] == 1500 and decision["estimate"]["trusted"] is True
    assert decision["data_quality"]["passed"] is True
    assert decision["champion"] == {"tag": "milling-failure:v1", "version": 1}
    window = decision["window"]
    assert (window["rows"], window["labelled_rows"], window["champion_rows"]) == (1500, 700, 1500)
    assert window["first_time"] == "2026-11-05T08:00:00+00:00"
    assert window["last_time"] == "2026-11-05T08:24:59+00:00"
    assert window["model_versions"] == {"v1": 1500}
    assert window["missing_columns"] == []
    assert decision["drift"]["drifted_columns"] == ["Rotational speed [rpm]", "Torque [Nm]"]
    assert decision["drift"]["prediction_drift"] is False  # within its calibrated threshold
    assert decision["quality"]["judged"] is True and decision["quality"]["rows"] == 700
    assert metrics["drift"]["current_rows"] == 1000  # sampled to monitor.sample_rows
    assert metrics["drift"]["prediction"]["current_rows"] == 1000
    assert metrics["window"] == {"rows": 1500, "labelled_rows": 700, "champion_rows": 1500}
    assert html.lstrip().startswith("<!DOCTYPE html>")
    assert "Value Drift for column probability" in html  # the served scores, by the log's name
    assert list(labelled.columns) == contract.column_names
    assert len(labelled) == 700 and labelled["UDI"].tolist() == frame["UDI"][:700].tolist()
    pd.testing.assert_series_equal(
        labelled["Machine failure"], frame["Machine failure"][:700], check_names=False
    )

    (run,) = monitor_runs(tracking_uri)
    assert run.data.tags["registered_model"] == NAME
    assert run.data.tags["champion_version"] == "1"
    assert run.data.metrics["retrain"] == 1.0 and run.data.metrics["window_rows"] == 1500
    assert run.data.metrics["drifted_share"] == pytest.approx(1 / 3, abs=1e-6)
    assert "quality_roc_auc" in run.data.metrics and "prediction_drift_score" in run.data.metrics
    artifacts = Path(run.info.artifact_uri.removeprefix("file://"))
    assert sorted(p.name for p in artifacts.iterdir()) == ["decision.json", "drift.html"]
    from mlflow import MlflowClient

    version = MlflowClient(tracking_uri=tracking_uri).get_model_version(NAME, "1")
    assert version.tags["last_monitor_run"] == run.info.run_id
    assert "decision: retrain" in caplog.text


def test_steady_traffic_keeps_the_champion_and_outputs_are_deterministic(
    project: Path, tiny: TinyModel, contract: DataContract
):
    frame = serve_traffic(tiny, contract, 2000)  # the window is the newest 1500 of them
    labels = labels_for(frame, contract, ["UDI", contract.label])  # no failure modes
    labels.to_csv("data/labels/batch-001.csv", index=False)

    monitor.main()
    first = [p.read_bytes() for p in (paths.MONITOR_DECISION, paths.MONITOR_METRICS)]
    table = pd.read_parquet(paths.LABELLED_WINDOW)
    monitor.main()

    assert [p.read_bytes() for p in (paths.MONITOR_DECISION, paths.MONITOR_METRICS)] == first
    decision = json.loads(first[0])
    assert decision["retrain"] is False
    assert decision["reasons"][0] == (
        "keep the champion: no drift, no quality breach and clean data in this window"
    )
    assert decision["drift"]["calibrated"] is True and decision["drift"]["drifted_columns"] == []
    assert decision["window"]["labelled_rows"] == 1500
    assert decision["window"]["missing_columns"] == ["TWF", "HDF", "PWF", "OSF", "RNF"]
    assert list(table.columns) == [*contract.ids, *contract.features, contract.label]
    assert table["UDI"].tolist() == frame["UDI"][500:].tolist()


def test_no_champion_writes_every_output_and_says_why(
    project: Path, tiny: TinyModel, contract: DataContract, tracking_uri: str
):
    set_champion(None)
    serve_traffic(tiny, contract, 600)

    monitor.main()

    decision, metrics, html, labelled = read_outputs()
    assert decision == {
        "retrain": False,
        "reasons": ["no champion yet: nothing to monitor"],
        "champion": None,
        "window": {
            "rows": 600,
            "labelled_rows": 0,
            "champion_rows": 0,
            "first_time": "2026-11-05T08:00:00+00:00",
            "last_time": "2026-11-05T08:09:59+00:00",
            "model_versions": {"v1": 600},
            "missing_columns": [],
        },
        "drift": None,
        "quality": None,
        "action": "keep",
        "decided_by": None,
        "estimate": None,
        "data_quality": None,
    }
    assert metrics == {
        "retrain": False,
        "action": "keep",
        "decided_by": None,
        "window": {"rows": 600, "labelled_rows": 0, "champion_rows": 0},
        "drift": None,
        "quality": None,
        "estimate": None,
        "data_quality": None,
    }
    assert "No drift report" in html and "no champion yet: nothing to monitor" in html
    assert list(labelled.columns) == contract.column_names and labelled.empty
    assert monitor_runs(tracking_uri)[-1].data.tags["champion_version"] == "none"


def test_too_little_traffic_gives_no_verdict_and_an_unregistered_champion_is_not_tagged(
    project: Path, tiny: TinyModel, contract: DataContract, caplog
):
    set_champion(2)  # exported to the store, never registered; its reference is not read
    serve_traffic(tiny, contract, 120)

    monitor.main()

    decision, metrics, html, _ = read_outputs()
    assert decision["retrain"] is False
    assert decision["reasons"] == [
        "not enough traffic: 120 of 500 rows needed for a verdict (monitor.window.min_rows) "
        "in the newest prediction log window"
    ]
    assert decision["champion"] == {"tag": "milling-failure:v2", "version": 2}
    assert decision["drift"] is None and metrics["quality"] is None
    assert "not enough traffic: 120 of 500 rows" in html
    assert "milling-failure version 2 is not in the model registry" in caplog.text


def test_drift_without_enough_labels_waits_for_them(
    project: Path, tiny: TinyModel, contract: DataContract
):
    configure_monitor(verdict={"on_material_drift": "retrain"})
    frame = serve_traffic(tiny, contract, WINDOW_ROWS, scenario="failure_mechanism")
    labels_for(frame.iloc[:50], contract).to_parquet("data/labels/batch-001.parquet")

    monitor.main()

    decision = json.loads(paths.MONITOR_DECISION.read_text(encoding="utf-8"))
    assert (decision["retrain"], decision["action"]) == (False, "alert")
    assert decision["reasons"][0] == (
        "alert, waiting for labels to retrain: Rotational speed [rpm], Torque [Nm] drift (87% "
        "of the champion's importance); 50 of 200 labelled rows (monitor.labels.min_rows; "
        "monitor.labels.required is true)"
    )
    assert decision["drift"]["dataset_drift"] is True
    assert decision["quality"]["judged"] is False


def use_contract_without_ids(contract: DataContract) -> DataContract:
    """The project's contract less its id columns (a user's table without a row counter)."""
    raw = yaml.safe_load(CONTRACT_PATH.read_text(encoding="utf-8"))
    raw["name"] = "no-ids"
    raw["columns"] = [c for c in raw["columns"] if c["name"] not in contract.ids]
    Path("no-ids.yaml").write_text(yaml.safe_dump(raw), encoding="utf-8")
    params = yaml.safe_load(Path("params.yaml").read_text(encoding="utf-8"))
    params["data"]["contract"] = "no-ids.yaml"
    Path("params.yaml").write_text(yaml.safe_dump(params), encoding="utf-8")
    return load_contract("no-ids.yaml")


NO_JOIN = (
    "labels cannot be joined: the data contract 'no-ids' declares no unique id column (role "
    "id, unique: true) to join labels on; drift and estimated quality are judged without them"
)


def test_without_an_id_the_window_is_judged_on_drift_and_estimated_quality(
    project: Path, tiny: TinyModel, contract: DataContract, caplog
):
    caplog.set_level(logging.INFO)
    configure_monitor(verdict={"on_material_drift": "retrain"})
    frame = serve_traffic(
        tiny, use_contract_without_ids(contract), WINDOW_ROWS, "failure_mechanism"
    )
    labels_for(frame.iloc[:700], contract).to_parquet("data/labels/batch-001.parquet")  # unusable

    monitor.main()

    decision, metrics, html, labelled = read_outputs()
    assert (decision["retrain"], decision["action"]) == (False, "alert")
    assert decision["reasons"][0] == (
        "alert, no retrain without labels: Rotational speed [rpm], Torque [Nm] drift (87% of "
        "the champion's importance); labels cannot be joined and monitor.labels.required is true"
    )
    assert decision["reasons"][-1] == NO_JOIN
    assert decision["drift"]["drifted_columns"] == ["Rotational speed [rpm]", "Torque [Nm]"]
    assert decision["estimate"]["rows"] == WINDOW_ROWS and decision["estimate"]["trusted"]
    assert decision["data_quality"]["passed"] is True
    assert decision["quality"]["judged"] is False and decision["window"]["labelled_rows"] == 0
    assert metrics["window"]["labelled_rows"] == 0
    assert html.count(escape(NO_JOIN)) == 1  # the drift report's verdict says it too
    assert labelled.empty and "UDI" not in labelled.columns
    warned = [r.getMessage().strip() for r in caplog.records if r.levelno == logging.WARNING]
    assert warned.count(NO_JOIN) == 1 and caplog.text.count(NO_JOIN) == 1


def test_without_an_id_and_without_traffic_the_decision_still_says_it_once(
    project: Path, tiny: TinyModel, contract: DataContract
):
    serve_traffic(tiny, use_contract_without_ids(contract), 120)

    monitor.main()

    decision, _, html, _ = read_outputs()
    assert decision["reasons"] == [
        "not enough traffic: 120 of 500 rows needed for a verdict (monitor.window.min_rows) "
        "in the newest prediction log window",
        NO_JOIN,
    ]
    assert "No drift report" in html and html.count(escape(NO_JOIN)) == 1


def test_bad_labels_file_fails_naming_the_file_and_columns(
    project: Path, tiny: TinyModel, contract: DataContract, caplog
):
    frame = serve_traffic(tiny, contract, 600)
    frame[["UDI", "TWF"]].to_csv("data/labels/batch-002.csv", index=False)

    with pytest.raises(SystemExit) as exit_info:
        monitor.main()

    assert exit_info.value.code == 1
    assert (
        "stage monitor failed: data/labels/batch-002.csv: labels file lacks column(s) "
        "['Machine failure']; a batch needs the contract's id column 'UDI' and its label "
        "'Machine failure'"
    ) in caplog.text
    assert "Traceback" not in caplog.text
    assert not paths.MONITOR_DECISION.exists()


def test_unreadable_labels_file_is_named(project: Path, caplog):
    Path("data/labels/batch-003.parquet").write_bytes(b"not parquet")
    with pytest.raises(SystemExit):
        monitor.main()
    assert "data/labels/batch-003.parquet: unreadable labels file (" in caplog.text
    assert "Traceback" not in caplog.text


def test_reference_without_features_fails_with_what_to_do(
    project: Path, tiny: TinyModel, contract: DataContract, caplog
):
    set_champion(2)
    serve_traffic(tiny, contract, 600)
    with pytest.raises(SystemExit):
        monitor.main()
    assert "the reference data of milling-failure:v2 lacks column(s) ['Type'," in caplog.text
    assert "run dvc repro --force train to train and deploy again" in caplog.text


def test_absent_champion_pointer_names_the_file(project: Path, caplog):
    paths.CHAMPION.unlink()
    with pytest.raises(SystemExit):
        monitor.main()
    assert (
        "reports/deploy/champion.json: not found; the deploy stage writes it (dvc repro deploy)"
        in caplog.text
    )


def test_the_default_verdict_reports_drift_that_leaves_quality_holding(
    project: Path, tiny: TinyModel, contract: DataContract
):
    frame = serve_traffic(tiny, contract, WINDOW_ROWS, scenario="failure_mechanism")
    labels_for(frame.iloc[:700], contract).to_parquet("data/labels/batch-001.parquet")

    monitor.main()

    decision = json.loads(paths.MONITOR_DECISION.read_text(encoding="utf-8"))
    assert (decision["retrain"], decision["action"], decision["decided_by"]) == (
        False,
        "drift",
        "feature_drift",
    )
    assert decision["reasons"][0] == (
        "drift, no retrain: Rotational speed [rpm], Torque [Nm] drift (87% of the champion's "
        "importance); the estimated and realized quality hold"
    )
    assert decision["quality"]["judged"] is True and decision["quality"]["breached"] == []
    workspace = Path("reports/monitor/workspace")
    assert len(list(workspace.glob("*/snapshots/*.json"))) == 1  # the window, for evidently ui


def test_a_champion_without_a_monitor_profile_is_judged_on_evidently_defaults(
    project: Path, tiny: TinyModel, contract: DataContract, caplog
):
    set_champion(3)
    serve_traffic(tiny, contract, WINDOW_ROWS)

    monitor.main()

    decision = json.loads(paths.MONITOR_DECISION.read_text(encoding="utf-8"))
    assert decision["drift"]["calibrated"] is False
    assert decision["estimate"] is None and decision["data_quality"] is None
    assert (
        "milling-failure:v3 in " in caplog.text
        and "has no monitor_profile.json (exported before models kept a monitor profile); run "
        "dvc repro --force train to train and deploy again; until then drift uses Evidently's "
        "default thresholds, and neither the estimated quality nor the data quality is judged"
        in caplog.text
    )


def test_the_drift_report_opens_with_the_verdict_and_the_calibration(
    project: Path, tiny: TinyModel, contract: DataContract
):
    serve_traffic(tiny, contract, WINDOW_ROWS)

    monitor.main()

    page = paths.DRIFT_REPORT.read_text(encoding="utf-8")
    body = page[page.index("<body>") :]  # Evidently's report is data in a script before it
    assert "<h1>Monitor verdict: keep</h1><ul><li>keep the champion" in body[:300]
    assert "served probability (prediction drift)" in page
    assert "Drift thresholds calibrated on the training period" in page
    assert "<td>Torque [Nm]</td><td>Wasserstein distance (normed)</td>" in page
