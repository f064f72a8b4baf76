"""`lifecycle simulate` against a real `lifecycle serve`, and what a user sees on bad input.

The module exports a tiny real model to a temporary project, starts the server once (with
an API key required) and runs `lifecycle simulate` as a subprocess in the project folder.
The last test stops the server and finds every simulated row in the prediction log.
"""

from __future__ import annotations

import http.server
import json
import os
import re
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pandas as pd
import pytest
import yaml
from sklearn.datasets import load_breast_cancer
from typer.testing import CliRunner

from core.config import SyntheticSourceConfig, TrainConfig
from core.model_files import save_model
from features.contract import Column, DataContract, dump_contract, load_contract
from features.synthetic import generate_process_data
from lifecycle.cli import app
from lifecycle.simulate import (
    MIN_FIRST_ID,
    first_free_id,
    label_rows,
    served_records,
    simulate,
)
from models.training import SKOPS_TRUSTED_TYPES, fit_model
from serving.prediction_log import read_prediction_log
from tests.mlflow_server import free_port
from tests.serving.server import (
    BIN,
    CONTRACT_PATH,
    RunningServer,
    TinyModel,
    promote,
    serve,
    train_tiny_model,
)

KEY_ENV = "LIFECYCLE_SIMULATE_TEST_KEY"
API_KEY = "simulate-test-key"
LABEL_COLUMNS = ["UDI", "Machine failure", "TWF", "HDF", "PWF", "OSF", "RNF"]
runner = CliRunner()


def _write_params(root: Path, serving: dict | None = None) -> None:
    params = {"data": {"contract": str(CONTRACT_PATH)}, "serving": serving or {}}
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def _one_line(text: str) -> str:
    """Typer's error box, unwrapped: the message as one line."""
    return " ".join(re.sub(r"[│╭╮╰╯─]", " ", text).split())


# --- units ------------------------------------------------------------------------------


def test_requests_carry_ids_and_features_and_labels_the_rest(contract: DataContract) -> None:
    frame = generate_process_data(SyntheticSourceConfig(rows=4, seed=1), first_udi=50)

    records = served_records(frame, contract)
    labels = label_rows(frame, contract, [1, 3])  # the answered rows' positions

    assert list(records[0]) == [*contract.ids, *contract.features]
    assert [r["UDI"] for r in records] == [50, 51, 52, 53]
    assert list(labels.columns) == LABEL_COLUMNS
    assert labels["UDI"].tolist() == [51, 53]


def test_ids_start_after_every_known_one() -> None:
    assert first_free_id(None) == MIN_FIRST_ID == 10_000_001
    assert first_free_id(20_000) == 10_000_001
    assert first_free_id(10_000_500) == 10_000_501


# --- bad input --------------------------------------------------------------------------


@pytest.fixture
def in_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    _write_params(tmp_path)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_an_unknown_scenario_lists_the_choices(in_project: Path) -> None:
    result = runner.invoke(app, ["simulate", "--scenario", "sensor_drift", "--rows", "10"])

    assert result.exit_code == 2
    assert (
        "Invalid value for '--scenario': Value error, 'sensor_drift' is not one of 'none', "
        "'sensor_offset', 'product_mix', 'tool_change_policy', 'failure_mechanism'."
    ) in _one_line(result.output)


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--rows", "0", "Invalid value for '--rows': Input should be greater than or equal to 1"),
        (
            "--batch-size",
            "0",
            "Invalid value for '--batch-size': Input should be greater than or equal to 1",
        ),
        (
            "--label-delay",
            "-1",
            "Invalid value for '--label-delay': Input should be greater than or equal to 0",
        ),
        (
            "--ramp-rows",
            "-5",
            "Invalid value for '--ramp-rows': Input should be greater than or equal to 0",
        ),
    ],
)
def test_out_of_range_numbers_are_refused(
    in_project: Path, option: str, value: str, message: str
) -> None:
    args = ["simulate", "--scenario", "none", "--rows", "10", option, value]
    result = runner.invoke(app, args)

    assert result.exit_code == 2
    assert message in _one_line(result.output)


def test_a_missing_rows_option_is_named(in_project: Path) -> None:
    result = runner.invoke(app, ["simulate", "--scenario", "none"])

    assert result.exit_code == 2
    assert result.output.strip() == (
        "error: --rows: say how many synthetic rows to send (a replayed file sends its own)"
    )


def test_an_unreachable_service_is_named(in_project: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    result = runner.invoke(
        app, ["simulate", "--scenario", "none", "--rows", "5", "--seed", "1", "--url", url]
    )

    assert result.exit_code == 1
    assert result.output.splitlines() == [
        f"sent 5 rows (scenario none, seed 1, UDI 10000001..10000005) to {url} in 1 request(s)",
        "answered: 0 (by model version: none)",
        "failed: 0 rows",
        "labels: not written (no row was answered)",
        f"error: cannot reach the service at {url} (ConnectError: [Errno 111] Connection "
        "refused); is `lifecycle serve` running there?",
    ]
    assert not (in_project / "data" / "labels").exists()


def test_a_url_without_a_scheme_is_refused(in_project: Path) -> None:
    result = runner.invoke(
        app, ["simulate", "--scenario", "none", "--rows", "5", "--url", "localhost:3000"]
    )

    assert result.exit_code == 2
    assert result.output.strip() == (
        "error: --url: not an http:// or https:// URL with a host: 'localhost:3000'"
    )


class _Flaky(http.server.BaseHTTPRequestHandler):
    """Answers POSTs in turn from `script`: a status, or 200 with a batch answer."""

    script: ClassVar[list[int]] = []
    seen: ClassVar[list[str]] = []
    bodies: ClassVar[list[dict]] = []

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.seen.append(self.path)
        self.bodies.append(body)
        status = self.script.pop(0) if self.script else 200
        rows = len(body["records"])
        payload = (
            {"predictions": [{}] * rows, "model_version": "v7", "threshold": 0.5}
            if status == 200
            else {"error": f"status {status}"}
        )
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:  # quiet
        pass


@pytest.fixture
def flaky_service() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Flaky)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        _Flaky.script, _Flaky.seen, _Flaky.bodies = [], [], []


def test_overload_is_retried_and_a_server_error_is_counted(
    flaky_service: str, tmp_path: Path, contract: DataContract
) -> None:
    # batch 1: 503 then 200 (retried: the service did not take it); batch 2: 500 (counted,
    # not retried: it may have been logged); batch 3: 200
    _Flaky.script = [503, 200, 500, 200]

    done = simulate(
        contract, "none", 30, 1, flaky_service, 10, 500, "NO_SUCH_KEY_VARIABLE", tmp_path
    )

    assert _Flaky.seen == ["/predict_batch"] * 4
    assert done.report.by_version == {"v7": 20}
    assert (done.report.failed_rows, done.unanswered) == (10, 10)
    assert done.report.errors == [
        f"POST {flaky_service}/predict_batch: HTTP 500 Internal Server Error: "
        '{"error": "status 500"}'
    ]
    labels = pd.read_parquet(done.labels_path)
    assert labels["UDI"].tolist() == [*range(500, 510), *range(520, 530)]  # answered rows only
    assert done.summary()[2] == f"failed: 10 rows (first: {done.report.errors[0]})"


def test_a_ramped_scenario_sends_the_generators_ramped_rows(
    flaky_service: str, tmp_path: Path, contract: DataContract
) -> None:
    _Flaky.script = [200, 200, 200]
    ramped = SyntheticSourceConfig(ramp_rows=200, daily_cycle_k=1.0)

    done = simulate(
        contract, "product_mix", 300, 5, flaky_service, 100, 501, "NO_SUCH_KEY_VARIABLE",
        tmp_path, process=ramped,
    )  # fmt: skip

    expected = generate_process_data(
        SyntheticSourceConfig(
            rows=300, seed=5, scenario="product_mix", ramp_rows=200, daily_cycle_k=1.0
        ),
        first_udi=501,
    )
    step = generate_process_data(
        SyntheticSourceConfig(rows=300, seed=5, scenario="product_mix"), first_udi=501
    )
    labels = pd.read_parquet(done.labels_path)
    pd.testing.assert_frame_equal(labels, expected[LABEL_COLUMNS])
    assert not labels.equals(step[LABEL_COLUMNS])  # the ramp and the cycle reached the rows


# --- replaying a project's own rows ------------------------------------------------------


def _breast_cancer(root: Path, with_id: bool = True) -> pd.DataFrame:
    """A project on sklearn's breast-cancer table: its contract, its file, its params.yaml.

    `patient_id` (1..569) is the contract's row id, unless `with_id` is False.
    """
    data = load_breast_cancer(as_frame=True)
    frame = data.frame.assign(patient_id=range(1, len(data.frame) + 1))
    columns = [Column(name=name, dtype="float", min=0) for name in data.feature_names]
    columns.append(Column(name="target", dtype="integer", role="label", min=0, max=1))
    if with_id:
        columns.insert(0, Column(name="patient_id", dtype="integer", role="id", unique=True))
    contract = DataContract(name="breast-cancer", columns=columns)
    (root / "breast-cancer.yaml").write_text(dump_contract(contract))
    frame.to_csv(root / "breast-cancer.csv", index=False)
    params = {
        "data": {"contract": "breast-cancer.yaml"},
        "ingest": {"source": "file", "file": {"path": "breast-cancer.csv"}},
    }
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return frame


@pytest.fixture
def byod_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    _breast_cancer(tmp_path)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _sent(records_key: str = "records") -> pd.DataFrame:
    """Every record the stub service received, in order."""
    return pd.DataFrame([r for body in _Flaky.bodies for r in body[records_key]])


def test_a_byod_project_replays_its_holdout_by_default(
    byod_project: Path, flaky_service: str
) -> None:
    frame = pd.read_csv(byod_project / "breast-cancer.csv")
    holdout = frame.iloc[::5].reset_index(drop=True)  # 114 rows, in file order
    (byod_project / "data" / "split").mkdir(parents=True)
    holdout.to_parquet(byod_project / "data" / "split" / "holdout.parquet")

    result = runner.invoke(app, ["simulate", "--seed", "1", "--url", flaky_service])

    assert result.exit_code == 0, result.output
    [labels_file] = (byod_project / "data" / "labels").glob("batch-*-none.parquet")
    assert result.output.splitlines() == [
        f"sent 114 rows of data/split/holdout.parquet (in file order, scenario none, seed 1, "
        f"patient_id 10000001..10000114) to {flaky_service} in 2 request(s)",
        "answered: 114 (by model version: v7: 114)",
        "failed: 0 rows",
        f"labels: {labels_file.relative_to(byod_project)} (114 rows)",
    ]
    sent = _sent()
    features = [c for c in frame.columns if c not in ("patient_id", "target")]
    assert list(sent.columns) == ["patient_id", *features]
    assert sent["patient_id"].tolist() == list(range(10_000_001, 10_000_115))
    pd.testing.assert_frame_equal(sent[features], holdout[features])
    labels = pd.read_parquet(labels_file)
    assert list(labels.columns) == ["patient_id", "target"]
    assert labels["patient_id"].tolist() == sent["patient_id"].tolist()
    assert labels["target"].tolist() == holdout["target"].tolist()


def test_without_a_holdout_the_validated_data_is_replayed(
    byod_project: Path, flaky_service: str
) -> None:
    frame = pd.read_csv(byod_project / "breast-cancer.csv")
    (byod_project / "data" / "validated").mkdir(parents=True)
    frame.head(30).to_parquet(byod_project / "data" / "validated" / "dataset.parquet")

    result = runner.invoke(app, ["simulate", "--seed", "1", "--url", flaky_service])

    assert result.exit_code == 0, result.output
    assert result.output.startswith("sent 30 rows of data/validated/dataset.parquet (")


def test_with_neither_split_nor_validated_data_it_says_what_it_needs(byod_project: Path) -> None:
    result = runner.invoke(app, ["simulate"])

    assert result.exit_code == 2
    assert result.output.strip() == (
        "error: no rows to replay: neither data/split/holdout.parquet nor "
        "data/validated/dataset.parquet exists; run `dvc repro` first, or pass --rows-from "
        "PATH (a CSV or Parquet file in the contract's shape)"
    )


def test_a_file_cycles_past_its_last_row_with_fresh_ids(
    byod_project: Path, flaky_service: str
) -> None:
    frame = pd.read_csv(byod_project / "breast-cancer.csv")
    args = ["simulate", "--rows-from", "breast-cancer.csv", "--rows", "600", "--seed", "2"]

    result = runner.invoke(app, [*args, "--url", flaky_service, "--batch-size", "200"])

    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0] == (
        "sent 600 rows of breast-cancer.csv (in file order, scenario none, seed 2, "
        f"patient_id 10000001..10000600) to {flaky_service} in 3 request(s)"
    )
    sent = _sent()
    assert sent["patient_id"].is_unique
    cycled = pd.concat([frame, frame.head(31)], ignore_index=True)
    assert sent["mean radius"].tolist() == cycled["mean radius"].tolist()


def test_shuffled_rows_are_each_sent_once_per_pass(byod_project: Path, flaky_service: str) -> None:
    frame = pd.read_csv(byod_project / "breast-cancer.csv")
    args = ["simulate", "--rows-from", "breast-cancer.csv", "--shuffle", "--seed", "2"]

    result = runner.invoke(app, [*args, "--url", flaky_service, "--no-labels"])

    assert result.exit_code == 0, result.output
    assert "(shuffled, scenario none, seed 2," in result.output.splitlines()[0]
    sent = _sent()
    assert sorted(sent["mean area"]) == sorted(frame["mean area"])
    assert sent["mean area"].tolist() != frame["mean area"].tolist()


def test_without_a_row_id_the_traffic_goes_and_labels_are_not_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, flaky_service: str
) -> None:
    _breast_cancer(tmp_path, with_id=False)
    monkeypatch.chdir(tmp_path)
    args = ["simulate", "--rows-from", "breast-cancer.csv", "--rows", "50", "--seed", "1"]

    result = runner.invoke(app, [*args, "--url", flaky_service])

    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        f"sent 50 rows of breast-cancer.csv (in file order, scenario none, seed 1) to "
        f"{flaky_service} in 1 request(s)",
        "answered: 50 (by model version: v7: 50)",
        "failed: 0 rows",
        "labels: not written (the data contract 'breast-cancer' declares no unique id column "
        "(role id, unique: true), so labels cannot be joined to the predictions)",
    ]
    assert "patient_id" not in _sent().columns
    assert not (tmp_path / "data" / "labels").exists()


def test_rows_without_the_label_are_sent_without_labels(
    byod_project: Path, flaky_service: str
) -> None:
    frame = pd.read_csv(byod_project / "breast-cancer.csv")
    frame.drop(columns=["target"]).head(20).to_parquet(byod_project / "unlabelled.parquet")
    args = ["simulate", "--rows-from", "unlabelled.parquet", "--url", flaky_service]

    result = runner.invoke(app, args)

    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[-1] == (
        "labels: not written (the rows have no 'target' column, the contract's label)"
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--rows-from", "nowhere.csv"],
            "error: nowhere.csv: no such file",
        ),
        (
            ["--rows-from", "breast-cancer.yaml"],
            "error: breast-cancer.yaml: cannot tell the format from suffix '.yaml'; use .csv "
            "or .parquet",
        ),
        (
            ["--rows-from", "not-a-table.parquet"],
            "error: not-a-table.parquet: cannot be read as parquet: Could not open Parquet "
            "input source '<Buffer>': Parquet magic bytes not found in footer. Either the file "
            "is corrupted or this is not a parquet file.",
        ),
        (
            ["--rows-from", "narrow.csv"],
            "error: narrow.csv is not in the shape of the contract 'breast-cancer': it has no "
            "column 'mean radius', 'worst area'",
        ),
        (
            ["--rows-from", "synthetic", "--rows", "5"],
            "error: the synthetic generator makes the milling process's rows, which lack "
            "'patient_id', 'mean radius', 'mean texture', 'mean perimeter', 'mean area' and "
            "26 more of the contract 'breast-cancer'; replay your own rows instead: "
            "--rows-from holdout, or --rows-from PATH (CSV or Parquet)",
        ),
        (
            ["--rows-from", "breast-cancer.csv", "--scenario", "failure_mechanism"],
            "error: scenario 'failure_mechanism' changes 'Process temperature [K]', "
            "'Torque [Nm]', and the contract 'breast-cancer' has none of them (its columns: "
            "'patient_id', 'mean radius', 'mean texture', 'mean perimeter', 'mean area', "
            "'mean smoothness', 'mean compactness', 'mean concavity', 'mean concave points', "
            "'mean symmetry', 'mean fractal dimension', 'radius error' and 20 more)",
        ),
    ],
    ids=["missing", "suffix", "not-parquet", "shape", "synthetic", "scenario"],
)
def test_what_a_replay_needs_is_said_in_one_line(
    byod_project: Path, args: list[str], message: str
) -> None:
    frame = pd.read_csv(byod_project / "breast-cancer.csv")
    frame.drop(columns=["mean radius", "worst area"]).to_csv("narrow.csv", index=False)
    Path("not-a-table.parquet").write_text("patient_id,target\n1,0\n")

    result = runner.invoke(app, ["simulate", *args, "--url", "http://127.0.0.1:9"])

    assert result.exit_code == 2
    assert result.output.strip() == message
    assert "Traceback" not in result.output


def test_shuffle_needs_a_replayed_file(in_project: Path) -> None:
    result = runner.invoke(app, ["simulate", "--rows", "5", "--shuffle"])

    assert result.exit_code == 2
    assert result.output.strip() == (
        "error: --shuffle reorders a replayed file's rows; synthetic rows have no file order"
    )


def test_the_milling_holdout_replays_with_a_scenario_applied(
    in_project: Path, flaky_service: str, contract: DataContract
) -> None:
    holdout = generate_process_data(SyntheticSourceConfig(rows=300, seed=9))
    holdout.to_csv(in_project / "holdout.csv", index=False)
    args = ["simulate", "--rows-from", "holdout.csv", "--scenario", "sensor_offset"]

    result = runner.invoke(app, [*args, "--seed", "4", "--url", flaky_service])

    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[:2] == [
        "sent 300 rows of holdout.csv (in file order, scenario sensor_offset, seed 4, UDI "
        f"10000001..10000300) to {flaky_service} in 3 request(s)",
        "scenario sensor_offset: Air temperature [K] +3, Process temperature [K] +3 (the "
        "labels are the rows' own)",
    ]
    sent = _sent()
    for name in ("Air temperature [K]", "Process temperature [K]"):
        assert sent[name].to_numpy() == pytest.approx(holdout[name].to_numpy() + 3.0)
    assert sent["Torque [Nm]"].tolist() == holdout["Torque [Nm]"].tolist()
    [labels_file] = (in_project / "data" / "labels").glob("batch-*-sensor_offset.parquet")
    labels = pd.read_parquet(labels_file)
    assert labels["Machine failure"].tolist() == holdout["Machine failure"].tolist()
    assert labels["TWF"].tolist() == holdout["TWF"].tolist()


def test_tool_change_policy_on_recorded_rows_says_why_not(in_project: Path) -> None:
    generate_process_data(SyntheticSourceConfig(rows=20, seed=9)).to_csv("rows.csv", index=False)
    args = ["simulate", "--rows-from", "rows.csv", "--scenario", "tool_change_policy"]

    result = runner.invoke(app, args)

    assert result.exit_code == 2
    assert result.output.strip() == (
        "error: scenario 'tool_change_policy' changes no recorded column (only the synthetic "
        "process's tool_life_min, twf_share), so it cannot be replayed on rows; use one that "
        "does (sensor_offset, product_mix, failure_mechanism) or synthetic rows"
    )


# --- against a real service ------------------------------------------------------------


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("simulate-project")
    model = train_tiny_model(root / "model-v1", max_iter=20)
    store = root / ".bentoml"
    promote(model, store, 1)
    _write_params(
        root,
        {
            "store": ".bentoml",
            "api_key_env": KEY_ENV,
            "max_batch_rows": 100,
            "batching": {"enabled": True, "max_batch_size": 16, "max_latency_ms": 5},
            "prediction_log": {"directory": "data/predictions", "flush_interval_s": 0.2},
        },
    )
    return root


@pytest.fixture(scope="module")
def server(project: Path) -> Iterator[RunningServer]:
    with serve(project, env={KEY_ENV: API_KEY}) as running:
        yield running


def _simulate(project: Path, *args: str, key: str | None = API_KEY) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LIFECYCLE_", "MLFLOW_"))}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    if key is not None:
        env[KEY_ENV] = key
    return subprocess.run(
        [str(BIN / "lifecycle"), "simulate", *args],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.slow
def test_simulate_sends_rows_and_writes_their_labels(project: Path, server: RunningServer) -> None:
    done = _simulate(
        project, "--scenario", "sensor_offset", "--rows", "250", "--seed", "3",
        "--url", server.url, "--batch-size", "100",
    )  # fmt: skip

    assert done.returncode == 0, done.stderr
    [labels_file] = sorted((project / "data" / "labels").glob("batch-*-sensor_offset.parquet"))
    assert done.stdout.splitlines() == [
        f"sent 250 rows (scenario sensor_offset, seed 3, UDI 10000001..10000250) to "
        f"{server.url} in 3 request(s)",
        "answered: 250 (by model version: v1: 250)",
        "failed: 0 rows",
        f"labels: {labels_file.relative_to(project)} (250 rows)",
    ]
    labels = pd.read_parquet(labels_file)
    expected = generate_process_data(
        SyntheticSourceConfig(rows=250, seed=3, scenario="sensor_offset"), first_udi=10_000_001
    )
    assert list(labels.columns) == LABEL_COLUMNS
    pd.testing.assert_frame_equal(labels, expected[LABEL_COLUMNS])


@pytest.mark.slow
def test_single_rows_go_to_predict_and_ids_continue(project: Path, server: RunningServer) -> None:
    done = _simulate(
        project, "--scenario", "none", "--rows", "5", "--seed", "4",
        "--url", server.url, "--batch-size", "1", "--no-labels",
    )  # fmt: skip

    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        f"sent 5 rows (scenario none, seed 4, UDI 10000251..10000255) to {server.url} "
        "in 5 request(s)",
        "answered: 5 (by model version: v1: 5)",
        "failed: 0 rows",
        "labels: not written (--no-labels)",
    ]


@pytest.mark.slow
def test_without_the_api_key_the_401_is_shown(project: Path, server: RunningServer) -> None:
    done = _simulate(
        project, "--scenario", "none", "--rows", "3", "--seed", "5", "--url", server.url,
        "--first-udi", "20000001", key=None,
    )  # fmt: skip

    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == (
        f"error: POST {server.url}/predict_batch: HTTP 401 Unauthorized: "
        '{"error": "missing or wrong X-API-Key header"} '
        f"(no API key was sent: {KEY_ENV} is not set; see --api-key-env)"
    )
    assert "labels: not written (no row was answered)" in done.stdout


@pytest.mark.slow
def test_the_prediction_log_holds_every_simulated_row(
    project: Path, server: RunningServer, contract: DataContract
) -> None:
    assert server.stop() is not None, server.tail()
    log = read_prediction_log(project / "data" / "predictions", contract=contract)

    assert sorted(log["UDI"].astype(int)) == list(range(10_000_001, 10_000_256))
    assert set(log["model_version"]) == {"v1"}
    assert log[contract.features].notna().all().all()


@pytest.mark.slow
def test_a_byod_project_replays_its_holdout_to_a_real_service(tmp_path: Path) -> None:
    frame = _breast_cancer(tmp_path)
    contract = load_contract(tmp_path / "breast-cancer.yaml")
    train, holdout = frame.iloc[:450], frame.iloc[450:].reset_index(drop=True)
    (tmp_path / "data" / "split").mkdir(parents=True)
    holdout.to_parquet(tmp_path / "data" / "split" / "holdout.parquet")
    config = TrainConfig(model="hist_gradient_boosting", hist_gradient_boosting={"max_iter": 20})
    pipeline = fit_model(train, contract, config, seed=0)
    meta = {"family": config.model, "features": contract.features, "label": contract.label}
    content = save_model(
        pipeline, tmp_path / "model", meta, SKOPS_TRUSTED_TYPES["hist_gradient_boosting"]
    )
    model = TinyModel(directory=tmp_path / "model", content_sha256=content, pipeline=pipeline)
    promote(model, tmp_path / ".bentoml", 1)
    params = yaml.safe_load((tmp_path / "params.yaml").read_text())
    params["serving"] = {"store": ".bentoml", "prediction_log": {"flush_interval_s": 0.2}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))

    with serve(tmp_path) as server:
        done = _simulate(tmp_path, "--seed", "6", "--url", server.url, key=None)
        assert server.stop() is not None, server.tail()

    assert done.returncode == 0, done.stderr
    [labels_file] = (tmp_path / "data" / "labels").glob("batch-*-none.parquet")
    assert done.stdout.splitlines() == [
        "sent 119 rows of data/split/holdout.parquet (in file order, scenario none, seed 6, "
        f"patient_id 10000001..10000119) to {server.url} in 2 request(s)",
        "answered: 119 (by model version: v1: 119)",
        "failed: 0 rows",
        f"labels: {labels_file.relative_to(tmp_path)} (119 rows)",
    ]
    log = read_prediction_log(tmp_path / "data" / "predictions", contract=contract)
    labels = pd.read_parquet(labels_file)
    joined = log.merge(labels, on="patient_id")
    assert sorted(joined["patient_id"].astype(int)) == list(range(10_000_001, 10_000_120))
    assert joined["mean radius"].tolist() == pytest.approx(holdout["mean radius"].tolist())
    assert joined["target"].tolist() == holdout["target"].tolist()
