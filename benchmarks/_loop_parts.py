"""The parts of `benchmarks/bench_loop.py`: a project copy, its server, a steady client.

Every subprocess runs a tool of the venv in the copy, with PYTHONPATH the copy (its
packages, not the editable install's) and no MLflow, lifecycle or BentoML variables of the
caller.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
STEADY_EVERY_S = 0.05
STEADY_ROWS, STEADY_SEED = 500, 99  # the steady client's rows, sent in turn
READY_TIMEOUT_S = 180.0
QUIET_LOAD, QUIET_WAIT_S = 1.5, 600.0  # before a run: 1-min load average, longest wait


def wait_quiet() -> float:
    """Wait (at most QUIET_WAIT_S) for the machine's 1-min load average to drop; seconds."""
    start = time.monotonic()
    while os.getloadavg()[0] >= QUIET_LOAD and time.monotonic() - start < QUIET_WAIT_S:
        time.sleep(10)
    return round(time.monotonic() - start, 1)


def child_env(project: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("MLFLOW_", "LIFECYCLE_", "BENTOML_"))
    }
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = str(project)
    return env


def run(cwd: Path, *cmd: str, timeout: int = 1800) -> tuple[int, str, float]:
    """Run `cmd` (a tool of the venv) in `cwd`: exit code, output tail, seconds."""
    start = time.monotonic()
    done = subprocess.run(
        [str(BIN / cmd[0]), *cmd[1:]],
        cwd=cwd,
        env=child_env(cwd),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return done.returncode, (done.stdout + done.stderr)[-3000:], time.monotonic() - start


def copy_project(dest: Path) -> None:
    """The repository's git-listed files (no lifecycle products) in a fresh git repo."""

    def listed(*options: str) -> list[str]:
        return subprocess.run(
            ["git", "ls-files", *options], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.splitlines()

    # untracked lifecycle records (data/, reports/) of a checkout that ran the lifecycle stay out
    untracked = [
        f
        for f in listed("--others", "--exclude-standard")
        if not f.startswith(("data/", "reports/"))
    ]
    for name in (f for f in [*listed("--cached"), *untracked] if (ROOT / f).is_file()):
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, dest / name)
    git = ["git", "-c", "user.name=bench", "-c", "user.email=bench@example.com"]
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "copy"]):
        subprocess.run([*git, *args], cwd=dest, check=True)


class Server:
    """`lifecycle serve` on a free port in its own process group, awaited on /readyz."""

    def __init__(self, project: Path) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        self.log = project / "server.log"
        with open(self.log, "wb") as out:
            self.process = subprocess.Popen(
                [str(BIN / "lifecycle"), "serve", "--port", str(port)],
                cwd=project,
                env=child_env(project),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def wait_ready(self) -> str | None:
        """None when ready, else why not."""
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return f"server exited ({self.process.returncode}): {self.tail()}"
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return None
            time.sleep(0.1)
        return f"server not ready after {READY_TIMEOUT_S:.0f} s: {self.tail()}"

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-2000:]

    def stop(self) -> None:
        for sig, wait in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=wait)


class SteadyClient(threading.Thread):
    """One /predict request about every STEADY_EVERY_S, the rows in turn:
    (monotonic, status, version, seconds) per answer."""

    def __init__(self, url: str, records: list[dict[str, Any]]) -> None:
        super().__init__(daemon=True)
        self.url, self.records = url, records
        self.answers: list[tuple[float, int, str | None, float]] = []
        self.first_v2: float | None = None
        self.first_v2_wall: float | None = None
        self.stopping = threading.Event()

    def run(self) -> None:
        sent = 0
        with httpx.Client(timeout=10) as client:
            while not self.stopping.is_set():
                record = self.records[sent % len(self.records)]
                sent += 1
                start = time.monotonic()
                try:
                    answer = client.post(f"{self.url}/predict", json=record)
                    status = answer.status_code
                    version = answer.json().get("model_version") if status == 200 else None
                except (httpx.HTTPError, ValueError):
                    status, version = 0, None
                end = time.monotonic()
                self.answers.append((end, status, version, end - start))
                if version == "v2" and self.first_v2 is None:
                    self.first_v2, self.first_v2_wall = end, time.time()
                self.stopping.wait(max(0.0, STEADY_EVERY_S - (end - start)))


def steady_records() -> list[dict[str, Any]]:
    """Rows of the published process, features only (no ids: they get no label). They
    vary: one row sent again and again looks like a stuck sensor to the monitor's data
    checks, and gives the rollout's score-drift guard two point masses to compare."""
    from core.config import SyntheticSourceConfig
    from features.contract import load_contract
    from features.synthetic import generate_process_data

    contract = load_contract(ROOT / "features" / "contracts" / "milling.yaml")
    frame = generate_process_data(SyntheticSourceConfig(rows=STEADY_ROWS, seed=STEADY_SEED))
    return frame[contract.features].to_dict(orient="records")


def watch_records(project: Path, params: dict[str, Any]) -> list[dict[str, Any]]:
    lines = (project / params["monitor"]["watch"]["log"]).read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def logged_rows(project: Path, params: dict[str, Any]) -> list[dict[str, Any]]:
    """Every row of the service's prediction log (unreadable lines skipped)."""
    rows = []
    for part in (project / params["serving"]["prediction_log"]["directory"]).rglob("*.jsonl"):
        for line in part.read_text().splitlines():
            with contextlib.suppress(ValueError):
                rows.append(json.loads(line))
    return rows


def row_time(row: dict[str, Any]) -> float:
    return dt.datetime.fromisoformat(row["time"].replace("Z", "+00:00")).timestamp()


def first_drifted_request(project: Path, params: dict[str, Any], after: float) -> float | None:
    """Wall time of the first logged row with an id (a simulated row) after `after`."""
    times = [row_time(r) for r in logged_rows(project, params) if r.get("UDI") is not None]
    return min((t for t in times if t >= after), default=None)


def first_shadow_score(project: Path, params: dict[str, Any], version: str) -> float | None:
    """Wall time of the first logged row `version` scored in shadow (None: not one)."""
    times = [
        row_time(r)
        for r in logged_rows(project, params)
        if r.get("shadow_version") == version and r.get("shadow_probability") is not None
    ]
    return min(times, default=None)
