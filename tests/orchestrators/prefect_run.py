"""Running Prefect from the tests: its server, its environment, a command's outcome, the ledger.

Prefect runs from `.venv-prefect` by subprocess with its own PREFECT_HOME. Each test module
starts one real `prefect server start` (SQLite in that home, a free port, offline: no UI,
no telemetry) and every command talks to it through PREFECT_API_URL, as a deployment does
against its Prefect server. Without PREFECT_API_URL each command would start Prefect's
ephemeral server for itself instead (~17-30 s of start-up, CPU-heavy, on every command).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from core.records.ledger import AttemptFinished, read_ledger
from tests.e2e.conftest import ProjectCopy
from tests.mlflow_server import free_port, is_healthy, stop_process_group, wait_until_up
from tests.orchestrators.conftest import engine_env, engine_python

DRIVER = Path(__file__).with_name("prefect_driver.py")
TIMEOUT_S = 900
SERVER_START_TIMEOUT_S = 300.0  # a busy two-core machine; it is polled, never slept on
SERVER_STOP_TIMEOUT_S = 30.0
OFFLINE = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_SERVER_UI_ENABLED": "false",
    "PREFECT_SERVER_LOGGING_LEVEL": "WARNING",
}


@dataclass(frozen=True)
class PrefectServer:
    """A running `prefect server start`: its API URL and its home (database, log)."""

    api_url: str  # e.g. http://127.0.0.1:41234/api, what PREFECT_API_URL points at
    home: Path

    @property
    def log(self) -> Path:
        return self.home / "server.log"

    def get(self, path: str) -> object:
        """GET `api_url/path` as JSON (a flow run, its task runs: Prefect's own record)."""
        with urllib.request.urlopen(f"{self.api_url}/{path}", timeout=30) as response:
            return json.loads(response.read())

    def post(self, path: str, body: dict) -> object:
        request = urllib.request.Request(
            f"{self.api_url}/{path}",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())


@contextlib.contextmanager
def prefect_server(home: Path) -> Iterator[PrefectServer]:
    """Start one real `prefect server start` (its SQLite database in `home`, a free port,
    no UI, no telemetry), wait for GET /api/health, stop it on exit. A server that does not
    come up fails the test with the tail of its output."""
    home.mkdir(parents=True, exist_ok=True)
    port = free_port()
    api_url = f"http://127.0.0.1:{port}/api"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(OFFLINE, PREFECT_HOME=str(home), DO_NOT_TRACK="true")
    prefect = engine_python("prefect").parent / "prefect"
    command = [str(prefect), "server", "start", "--host", "127.0.0.1", "--port", str(port)]
    with open(home / "server.log", "wb") as log:
        process = subprocess.Popen(
            command,
            cwd=home,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_until_up(
            process, lambda: is_healthy(api_url), f"prefect server ({api_url}/health)",
            home / "server.log", SERVER_START_TIMEOUT_S,
        )  # fmt: skip
        yield PrefectServer(api_url, home)
    finally:
        stop_process_group(process, SERVER_STOP_TIMEOUT_S)


@dataclass
class Done:
    returncode: int
    stdout: str
    stderr: str

    @property
    def report(self) -> dict:
        """The last JSON line on stdout (the flow module's or the driver's report)."""
        lines = [line for line in self.stdout.splitlines() if line.startswith(("{", "["))]
        assert lines, f"no JSON report on stdout:\n{self.tail}"
        return json.loads(lines[-1])

    @property
    def tail(self) -> str:
        return "\n".join((self.stdout + self.stderr).splitlines()[-40:])

    def ran_stages(self) -> list[str]:
        """Every stage DVC ran, in any task's output (`Running stage 'x':`), in order."""
        return [
            line.split("'")[1]
            for line in self.stderr.splitlines()
            if line.startswith("Running stage '")
        ]


def prefect_env(
    copy: ProjectCopy, home: Path, server: PrefectServer | None, **extra: str
) -> dict[str, str]:
    """The engine's environment: its own PREFECT_HOME (the result storage a retry reads),
    PREFECT_API_URL at `server`; with no server, none (each command then starts the
    ephemeral server, given time to start on a busy machine); no UI, no telemetry."""
    env = engine_env(
        copy,
        **OFFLINE,
        PREFECT_HOME=str(home),
        PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="600",
        **extra,
    )
    for name in ("PREFECT_API_URL", "PREFECT_API_KEY", "PREFECT_PROFILE"):
        env.pop(name, None)
    if server is not None:
        env["PREFECT_API_URL"] = server.api_url
    return env


def run(argv: list[str], cwd: Path, env: dict[str, str]) -> Done:
    done = subprocess.run(
        argv,
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
    )
    return Done(done.returncode, done.stdout, done.stderr)


def flow_command(*argv: str) -> list[str]:
    """`python lifecycle_flow.py ARGV` with Prefect's interpreter."""
    return [str(engine_python("prefect")), "lifecycle_flow.py", *argv]


def driver_command(*argv: str) -> list[str]:
    return [str(engine_python("prefect")), str(DRIVER), *argv]


def finished_attempts(copy: ProjectCopy, run_id: str) -> list[AttemptFinished]:
    """The ledger's finished attempts of one lifecycle run, in order."""
    return [
        entry
        for entry in read_ledger(copy.path / ".lifecycle" / "ledger.jsonl")
        if isinstance(entry, AttemptFinished) and entry.lifecycle_run == run_id
    ]
