"""A pytest plugin: the production stack (PostgreSQL, moto_server, mlflow server), once per session.

Register it in `tests/conftest.py` (`pytest_plugins`). The `stack` fixture starts the stack
through the same code as `lifecycle stack up` (lifecycle/stack/stack.py), on free ports under
a temporary state folder, and stops it (and removes the folder) at the end of the session.
A stack that does not come up fails the test with the one-line reason; it is not skipped.

Faults, for the tests that need them:
- PostgreSQL down/up: `stop_postgres()` (pg_ctl stop -m fast), then `start()`; the cluster's
  data stays, so the runs are still there.
- S3 unreachable, state kept: `pause_s3()` / `resume_s3()` send SIGSTOP / SIGCONT to
  moto_server. The port stays open, so a client's requests hang until its read timeout
  rather than being refused; the objects survive (moto keeps them in memory only).
- S3 down, state lost: `stop_s3()` (connections refused), then `start()`: a new moto_server
  with the bucket re-created, empty. Use it for "the store is gone"; use pause for "the store
  is slow or unreachable for a while".
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from lifecycle.stack import stack as stack_control
from lifecycle.stack.services import s3_client
from lifecycle.stack.settings import StackError, postgres_dsn
from tests.mlflow_server import free_port


@dataclass(frozen=True)
class Stack:
    """A running stack: the environment its clients need, and handles to break it."""

    root: Path  # the state folder: postgres/, logs/, env, state.json
    options: stack_control.StackOptions  # what started it (so `start()` reuses its ports)
    env: dict[str, str]  # MLFLOW_TRACKING_URI, AWS_*, MLFLOW_S3_ENDPOINT_URL, ...
    postgres_dsn: str  # postgresql://mlflow:<password>@127.0.0.1:<port>/mlflow

    @property
    def tracking_uri(self) -> str:
        return self.env["MLFLOW_TRACKING_URI"]

    @property
    def s3_endpoint(self) -> str:
        return self.env["AWS_ENDPOINT_URL"]

    @property
    def bucket(self) -> str:
        return self.options.bucket

    @property
    def shared_store(self) -> str:
        return self.env["LIFECYCLE_SHARED_STORE"]

    def process_env(self, **extra: str) -> dict[str, str]:
        """os.environ with the stack's variables (and `extra`) on top, for a subprocess."""
        return {**os.environ, **self.env, **extra}

    def s3(self) -> Any:
        """A boto3 S3 client of the stack's store."""
        return s3_client(
            self.s3_endpoint, self.env["AWS_ACCESS_KEY_ID"], self.env["AWS_SECRET_ACCESS_KEY"]
        )

    def start(self) -> None:
        """Start whatever is stopped (`lifecycle stack up` again): the same ports and secrets."""
        stack_control.up(self.options, environ={})

    def stop_postgres(self) -> None:
        stack_control.stop_postgres(self.root)

    def stop_s3(self) -> None:
        """Stop moto_server: refused connections, and its objects are gone for good."""
        stack_control.stop_moto(self.root)

    def pause_s3(self) -> None:
        """SIGSTOP moto_server: requests hang (until the client's timeout), objects are kept."""
        os.kill(self._moto_pid(), signal.SIGSTOP)

    def resume_s3(self) -> None:
        os.kill(self._moto_pid(), signal.SIGCONT)

    def _moto_pid(self) -> int:
        pid = stack_control.running_stack(self.root).state.moto_pid
        if pid is None:
            raise RuntimeError("moto_server is not running (stop_s3 was called): call start()")
        return pid


def _state_folder() -> Path:
    """A temporary folder user `postgres` can reach (pytest's own tmp root is mode 700)."""
    root = Path(tempfile.mkdtemp(prefix="lifecycle-stack-"))
    root.chmod(0o755)
    return root


@pytest.fixture(scope="session")
def stack() -> Iterator[Stack]:
    """The production stack, shared by the session; stopped and removed at its end."""
    root = _state_folder()
    options = stack_control.StackOptions(
        root=root,
        postgres_port=free_port(),
        s3_port=free_port(),
        mlflow_port=free_port(),
        bucket="lifecycle",
    )
    try:
        try:
            running = stack_control.up(options, environ={})  # secrets: generated, not ours
        except StackError as exc:
            pytest.fail(f"the stack did not come up: {exc}", pytrace=False)
        yield Stack(
            root=running.root,
            options=options,
            env=running.env,
            postgres_dsn=postgres_dsn(running.state, running.credentials.postgres_password),
        )
    finally:
        if (root / "state.json").is_file():
            stack_control.down(root, purge=True)
        else:
            shutil.rmtree(root, ignore_errors=True)
