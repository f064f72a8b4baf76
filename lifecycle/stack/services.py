"""The stack's other processes: moto_server (S3), `mlflow server`, and the DVC remote.

Both servers run detached (their own session, output to `<root>/logs/`), so they outlive
`lifecycle stack up`; their pids are kept in `<root>/state.json`. Start-up is awaited by
polling (moto's HTTP port, MLflow's /health), never by sleeping a fixed time.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path

from lifecycle.stack.settings import HOST, REGION, StackError

logger = logging.getLogger(__name__)

BIN = Path(sys.executable).parent
MOTO_TIMEOUT_S = 30.0
MLFLOW_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 15.0


def find_tool(name: str, hint: str) -> Path:
    """A console script of the project's environment (beside python), else on PATH."""
    found = shutil.which(name, path=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    if found is None:
        raise StackError(f"{name} was not found (in {BIN} or on PATH): {hint}")
    return Path(found)


def port_is_free(port: int) -> bool:
    """Nobody listens on 127.0.0.1:port (a bind succeeds)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # as the servers do: a just-stopped server's TIME_WAIT connections do not count
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def require_free_port(port: int, what: str) -> None:
    """A StackError naming the option when something else listens on the port."""
    if not port_is_free(port):
        raise StackError(
            f"port {port} ({what}) is in use by another process: "
            f"pass --{what}-port with a free port, or stop what listens there"
        )


def is_alive(pid: int | None) -> bool:
    """The process exists and is not a zombie."""
    if pid is None or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError):
        if Path(f"/proc/{pid}/stat").read_text().split(") ")[-1].startswith("Z"):
            return False
    return True


def answers(url: str, timeout_s: float = 2.0) -> bool:
    """Any HTTP answer under 500 from the URL."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return response.status < 500
    except urllib.error.HTTPError as exc:
        return exc.code < 500
    except (urllib.error.URLError, OSError):
        return False


def tail(path: Path, lines: int = 5) -> str:
    try:
        return " | ".join(path.read_text(errors="replace").strip().splitlines()[-lines:])
    except OSError:
        return "(no output)"


def wait_until(is_up: Callable[[], bool], pid: int, what: str, log: Path, timeout_s: float) -> None:
    """Poll until `is_up`; a StackError with the log's tail if the process dies or time runs out."""
    deadline = time.monotonic() + timeout_s
    while not is_up():
        if not is_alive(pid):
            raise StackError(f"{what} exited before it was up; its log {log}: {tail(log)}")
        if time.monotonic() > deadline:
            raise StackError(
                f"{what} was not up within {timeout_s:.0f} s; its log {log}: {tail(log)}"
            )
        time.sleep(0.2)


def spawn(command: list[str], env: Mapping[str, str], log: Path, cwd: Path) -> int:
    """Start a detached server (own session, stdin closed, output to `log`); its pid."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        process = subprocess.Popen(
            command,
            cwd=cwd,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return process.pid


def stop_group(pid: int | None, timeout_s: float = STOP_TIMEOUT_S) -> None:
    """SIGTERM the process group `pid` leads, wait, then SIGKILL what is left."""
    if not is_alive(pid):
        return
    assert pid is not None
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while is_alive(pid) and time.monotonic() < deadline:
        _reap(pid)
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
    _reap(pid)


def _reap(pid: int) -> None:
    """Collect our own child's exit status (when we started it), so it is not a zombie."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def start_moto(port: int, root: Path) -> int:
    """moto_server on 127.0.0.1:port; its objects live in its memory only."""
    moto = find_tool("moto_server", "install the project (make install), which brings moto[server]")
    log = root / "logs" / "moto.log"
    pid = spawn([str(moto), "-H", HOST, "-p", str(port)], os.environ, log, root)
    wait_until(
        lambda: answers(f"http://{HOST}:{port}/moto-api/"), pid, "moto_server", log, MOTO_TIMEOUT_S
    )
    return pid


def s3_client(endpoint: str, access_key_id: str, secret_access_key: str):
    """A boto3 S3 client of the stack's store."""
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id=access_key_id,
        aws_secret_access_key=secret_access_key,
    )


def ensure_bucket(client, bucket: str) -> bool:
    """Create the bucket if it is missing (moto starts empty); True if it was created."""
    names = {entry["Name"] for entry in client.list_buckets().get("Buckets", [])}
    if bucket in names:
        return False
    client.create_bucket(Bucket=bucket)
    return True


def start_mlflow(port: int, root: Path, env: Mapping[str, str], artifacts: str) -> int:
    """`mlflow server` on the PostgreSQL store, proxying artifacts to S3 (--serve-artifacts).

    `env` holds MLFLOW_BACKEND_STORE_URI, PGPASSWORD, the S3 endpoint and keys: the secrets
    stay out of the command line. One worker, no job runner (a small machine).
    """
    mlflow = find_tool("mlflow", "install the project (make install)")
    log = root / "logs" / "mlflow.log"
    command = [
        str(mlflow),
        "server",
        "--artifacts-destination",
        artifacts,
        "--serve-artifacts",
        "--host",
        HOST,
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    pid = spawn(command, env, log, root)
    wait_until(
        lambda: answers(f"http://{HOST}:{port}/health"), pid, "mlflow server", log, MLFLOW_TIMEOUT_S
    )
    return pid


def configure_dvc_remote(repo: Path, bucket: str, endpoint: str, name: str = "stack") -> None:
    """The default DVC remote of `repo`, in .dvc/config.local (never the committed config);
    DVC reads the keys from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY."""
    dvc = find_tool("dvc", "install the project (make install)")
    for args in (
        ["remote", "add", "--local", "-d", "-f", name, f"s3://{bucket}/dvc"],
        ["remote", "modify", "--local", name, "endpointurl", endpoint],
    ):
        result = subprocess.run([str(dvc), *args], cwd=repo, capture_output=True, text=True)
        if result.returncode != 0:
            raise StackError(f"dvc {' '.join(args[:2])} in {repo} failed: {result.stderr.strip()}")
