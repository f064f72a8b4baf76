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
from typer.testing import CliRunner

from core.config import SyntheticSourceConfig
from features.contract import DataContract
from features.synthetic import generate_process_data
from lifecycle.cli import app
from lifecycle.simulate import (
    MIN_FIRST_ID,
    first_free_id,
    label_rows,
    served_records,
    simulate,
)
from serving.prediction_log import read_prediction_log
from tests.mlflow_server import free_port
from tests.serving.server import BIN, CONTRACT_PATH, RunningServer, promote, serve, train_tiny_model

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

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.seen.append(self.path)
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
        _Flaky.script, _Flaky.seen = [], []


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
