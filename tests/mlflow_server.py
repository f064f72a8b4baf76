"""A pytest plugin: a real `mlflow server` process, started once per session.

Register it in `tests/conftest.py` with `pytest_plugins = ["tests.mlflow_server"]`.

The server gets its own SQLite store and artifact root under a temporary folder, one
uvicorn worker and no job runner (this machine has two cores; the job runner also takes
~10 s to stop). Start-up is awaited on GET /health, never by sleeping. A server that does
not come up fails the test with the tail of its output; it is not skipped.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent
START_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 15.0


@dataclass(frozen=True)
class MlflowServer:
    url: str  # the tracking URI, e.g. http://127.0.0.1:41234
    root: Path  # holds srv.db, art/ and server.log
    start_seconds: float  # from launch to the first 200 on /health

    @property
    def log(self) -> Path:
        return self.root / "server.log"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on (at the time of asking)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def tail_of(path: Path, lines: int = 40) -> str:
    """The last lines of a server's output file, for a failure message."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no output)"


def is_healthy(url: str) -> bool:
    """True when GET `url`/health answers 200 (MLflow's and Prefect's health routes alike)."""
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def wait_until_up(
    process: subprocess.Popen,
    is_up: Callable[[], bool],
    what: str,
    log: Path,
    timeout_s: float,
    poll_s: float = 0.25,
) -> None:
    """Poll `is_up` until it answers True; fail the test with the output tail if the process
    exits first or `timeout_s` passes. Never sleeps a fixed start-up time."""
    start = time.monotonic()
    while not is_up():
        if process.poll() is not None:
            pytest.fail(
                f"{what} exited with code {process.returncode} before it was up; "
                f"its output:\n{tail_of(log)}",
                pytrace=False,
            )
        if time.monotonic() - start > timeout_s:
            pytest.fail(
                f"{what} was not up within {timeout_s:.0f} s; its output:\n{tail_of(log)}",
                pytrace=False,
            )
        time.sleep(poll_s)


def stop_process_group(process: subprocess.Popen, timeout_s: float = STOP_TIMEOUT_S) -> None:
    """SIGTERM a server's process group (e.g. mlflow -> uvicorn), then SIGKILL what is left."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=timeout_s)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)  # children of an exited parent, if any
    process.wait(timeout=timeout_s)


def start_mlflow_server(
    root: Path, port: int, log_path: Path, backend_store_uri: str | None = None
) -> subprocess.Popen:
    """Start `mlflow server` (SQLite store and artifacts under `root`) and wait for /health.

    With `backend_store_uri`, it serves that store instead (e.g. a lifecycle run's own
    `mlflow.db`, as `make mlflow-ui` does). It runs in its own process group, so stopping
    the group reaches its workers.
    """
    url = f"http://127.0.0.1:{port}"
    env = {key: value for key, value in os.environ.items() if not key.startswith("MLFLOW_")}
    env.update(
        {
            "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
            "MLFLOW_DISABLE_TELEMETRY": "true",
            "DO_NOT_TRACK": "1",
            "PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}",
        }
    )
    command = [
        str(BIN / "mlflow"), "server",
        "--backend-store-uri", backend_store_uri or f"sqlite:///{root / 'srv.db'}",
        "--default-artifact-root", str(root / "art"),
        "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
    ]  # fmt: skip
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            command,
            cwd=root,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_until_up(
            process, lambda: is_healthy(url), f"mlflow server ({url}/health)", log_path,
            START_TIMEOUT_S,
        )  # fmt: skip
    except BaseException:
        stop_process_group(process)
        raise
    return process


@contextlib.contextmanager
def run_mlflow_server(root: Path, backend_store_uri: str | None = None) -> Iterator[MlflowServer]:
    """Start `mlflow server` on a free port under `root` (over `backend_store_uri` if given);
    stop it on exit."""
    root.mkdir(parents=True, exist_ok=True)
    port = free_port()
    start = time.monotonic()
    process = start_mlflow_server(root, port, root / "server.log", backend_store_uri)
    try:
        yield MlflowServer(
            url=f"http://127.0.0.1:{port}", root=root, start_seconds=time.monotonic() - start
        )
    finally:
        stop_process_group(process)


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    """A running `mlflow server`, shared by the session; its URL is `mlflow_server.url`."""
    with run_mlflow_server(tmp_path_factory.mktemp("mlflow-server")) as server:
        yield server
