"""Helpers for the serving tests: a tiny real model, a project folder, a real `lifecycle serve`.

The server is started the way a user starts it (`lifecycle serve --port N` in the project
folder), in its own process group, and awaited on GET /readyz, never by sleeping. A server
that does not come up fails the test with the tail of its output.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import yaml
from sklearn.pipeline import Pipeline

from core.config import SyntheticSourceConfig, TrainConfig
from core.model_files import save_model
from features.contract import load_contract
from features.synthetic import generate_process_data
from models.training import SKOPS_TRUSTED_TYPES, build_pipeline, fit_model
from serving.model_store import export_model, load_served_model, write_champion_pointer
from tests.mlflow_server import free_port, tail_of, wait_until_up

ROOT = Path(__file__).resolve().parents[2]
CONTRACT_PATH = ROOT / "features" / "contracts" / "milling.yaml"
BIN = Path(sys.executable).parent
START_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 30.0
FAMILY = "hist_gradient_boosting"
MODEL_NAME = "milling-failure"


@dataclass(frozen=True)
class TinyModel:
    """A real fitted pipeline saved the way the train stage saves it."""

    directory: Path
    content_sha256: str
    pipeline: Pipeline


def train_tiny_model(
    directory: Path, max_iter: int = 30, rows: int = 3000, shuffled_labels: bool = False
) -> TinyModel:
    """Fit a small HistGradientBoosting pipeline on synthetic data and save it with skops.
    `shuffled_labels`: fitted on labels shuffled out of their rows, as from a corrupted label
    feed: it scores no better than chance."""
    contract = load_contract(CONTRACT_PATH)
    frame = generate_process_data(SyntheticSourceConfig(rows=rows))
    if shuffled_labels:
        frame[contract.label] = frame[contract.label].sample(frac=1.0, random_state=7).to_numpy()
    config = TrainConfig(model=FAMILY, hist_gradient_boosting={"max_iter": max_iter})
    pipeline = fit_model(frame, contract, config, seed=0)
    meta = {"family": FAMILY, "features": contract.features, "label": contract.label}
    content = save_model(pipeline, directory, meta, SKOPS_TRUSTED_TYPES[FAMILY])
    return TinyModel(directory=directory, content_sha256=content, pipeline=pipeline)


def raising_model(directory: Path) -> TinyModel:
    """A real logistic regression whose encoder knows only types L and M and refuses others."""
    contract = load_contract(CONTRACT_PATH)
    frame = generate_process_data(SyntheticSourceConfig(rows=2000))
    frame = frame[frame["Type"] != "H"].reset_index(drop=True)
    pipeline = build_pipeline(contract, TrainConfig(model="logistic_regression"), seed=0)
    pipeline.set_params(
        preprocess__categorical__categories=[["L", "M"]],
        preprocess__categorical__handle_unknown="error",
    )
    pipeline.fit(frame[contract.features], frame[contract.label].to_numpy())
    meta = {"family": "logistic_regression", "features": contract.features, "label": contract.label}
    content = save_model(pipeline, directory, meta, SKOPS_TRUSTED_TYPES["logistic_regression"])
    return TinyModel(directory=directory, content_sha256=content, pipeline=pipeline)


def slow_model(directory: Path) -> TinyModel:
    """A real random forest big enough to be slow: hundreds of deep trees."""
    contract = load_contract(CONTRACT_PATH)
    frame = generate_process_data(SyntheticSourceConfig(rows=2000))
    config = TrainConfig(model="random_forest")
    pipeline = fit_model(
        frame, contract, config, seed=0, overrides={"n_estimators": 300, "max_depth": None}
    )
    meta = {"family": "random_forest", "features": contract.features, "label": contract.label}
    content = save_model(pipeline, directory, meta, SKOPS_TRUSTED_TYPES["random_forest"])
    return TinyModel(directory=directory, content_sha256=content, pipeline=pipeline)


def promote(model: TinyModel, store: Path, version: int, threshold: float = 0.5) -> str:
    """Export `model` to `store` as version `version` and point the champion at it: its tag.

    What the deploy stage does for a promoted model, so a running service follows it.
    """
    tag = export_model(
        model.directory,
        MODEL_NAME,
        version,
        f"run-{version}",
        model.content_sha256,
        threshold,
        store,
    )
    write_champion_pointer(store, load_served_model(tag, store))
    return tag


def request_rows(rows: int, seed: int = 7) -> pd.DataFrame:
    """Fresh synthetic rows (ids and features by contract names) to send to the server."""
    contract = load_contract(CONTRACT_PATH)
    frame = generate_process_data(SyntheticSourceConfig(rows=rows, seed=seed))
    return frame[[*contract.ids, *contract.features]].reset_index(drop=True)


def write_project(root: Path, serving: dict[str, Any]) -> Path:
    """A project folder holding only params.yaml; the contract is the repository's."""
    params = {"data": {"contract": str(CONTRACT_PATH)}, "serving": serving}
    path = root / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
    return path


@dataclass
class RunningServer:
    url: str
    process: subprocess.Popen
    log: Path

    def tail(self, lines: int = 60) -> str:
        return tail_of(self.log, lines)

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> int | None:
        """SIGTERM the process group (a graceful BentoML shutdown); SIGKILL what is left."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=timeout_s)
        returncode = self.process.returncode
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=timeout_s)
        return returncode


@contextlib.contextmanager
def serve(project: Path, env: dict[str, str] | None = None) -> Iterator[RunningServer]:
    """`lifecycle serve` in `project` on a free port; stopped on exit."""
    port = free_port()
    argv = [str(BIN / "lifecycle"), "serve", "--port", str(port)]
    with serve_command(argv, project, port, env) as server:
        yield server


@contextlib.contextmanager
def serve_command(
    argv: list[str],
    cwd: Path,
    port: int,
    env: dict[str, str] | None = None,
    *,
    ready: bool = True,
) -> Iterator[RunningServer]:
    """Run a server command in `cwd` (its own process group), awaited on /readyz 200 unless
    `ready` is False (then only on /readyz answering at all); stopped on exit."""
    environment = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("BENTOML_", "LIFECYCLE_", "MLFLOW_"))
    }
    environment.update(env or {})
    environment["PATH"] = f"{BIN}{os.pathsep}{environment.get('PATH', '')}"
    # this checkout's code, also where the installed package is another checkout's
    environment["PYTHONPATH"] = os.pathsep.join(
        part for part in (str(ROOT), environment.get("PYTHONPATH")) if part
    )
    log = cwd / f"server-{port}.log"
    with open(log, "wb") as output:
        process = subprocess.Popen(
            argv,
            cwd=cwd,
            env=environment,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stop() reaches every worker
        )
    server = RunningServer(url=f"http://127.0.0.1:{port}", process=process, log=log)
    try:
        _wait_until_ready(server, 200 if ready else None)
        yield server
    finally:
        server.stop()


def _wait_until_ready(server: RunningServer, status: int | None = 200) -> None:
    def ready() -> bool:
        with contextlib.suppress(httpx.HTTPError):
            answer = httpx.get(f"{server.url}/readyz", timeout=2).status_code
            return status is None or answer == status
        return False

    wait_until_up(
        server.process, ready, "lifecycle serve (/readyz)", server.log, START_TIMEOUT_S, poll_s=0.1
    )
