"""`stack up`, `down`, `status` and `env` as functions: the CLI and the test fixture share them.

`up` is idempotent: what runs (by the pids and ports in `<root>/state.json`) is reused, what
does not is started; so `up` after a stopped component restarts just that component (and
re-creates the bucket in a new, empty moto).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from lifecycle.stack import postgres, services
from lifecycle.stack.settings import (
    DEFAULT_BUCKET,
    DEFAULT_MLFLOW_PORT,
    DEFAULT_POSTGRES_PORT,
    DEFAULT_S3_PORT,
    ENV_FILE,
    STATE_FILE,
    Credentials,
    StackError,
    StackState,
    backend_store_uri,
    check_bucket,
    check_port,
    client_env,
    read_kept_env,
    render_env_file,
    resolve_credentials,
    s3_endpoint,
    tracking_uri,
)

logger = logging.getLogger(__name__)

MOTO_NOTE = (
    "moto_server keeps the bucket in memory: stopping it (stack down) loses the MLflow "
    "artifacts and the DVC remote's objects; PostgreSQL's runs stay"
)


@dataclass(frozen=True)
class StackOptions:
    """What `stack up` was asked for; None ports: the running stack's, else the defaults."""

    root: Path
    postgres_port: int | None = None
    s3_port: int | None = None
    mlflow_port: int | None = None
    bucket: str = DEFAULT_BUCKET
    dvc_repo: Path | None = None  # where to write the DVC remote (.dvc/config.local)


@dataclass(frozen=True)
class RunningStack:
    root: Path
    state: StackState
    credentials: Credentials
    env: dict[str, str]  # client_env: what a process using the stack needs


@dataclass(frozen=True)
class ComponentStatus:
    name: str
    running: bool
    pid: int | None
    url: str


def read_state(root: Path) -> StackState | None:
    """`<root>/state.json`, or None when no stack was started there."""
    path = root / STATE_FILE
    if not path.is_file():
        return None
    try:
        return StackState.model_validate_json(path.read_text())
    except ValidationError as exc:
        raise StackError(
            f"{path} is not a stack state file ({exc.error_count()} errors): "
            "remove it and run stack up again"
        ) from None


def _prepare_root(root: Path) -> None:
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StackError(f"cannot create the stack folder {root}: {exc.strerror}") from None
    probe = root / ".write-probe"
    try:  # a real write: os.access says yes to root even on a read-only file system
        probe.touch()
        probe.unlink()
    except OSError:
        raise StackError(
            f"the stack folder {root} is not writable: choose another --root"
        ) from None


def _choose(requested: int | None, running: int | None, default: int, what: str) -> int:
    """The port to use: the running component's; a different --port for it is an error."""
    if running is not None:
        if requested is not None and requested != running:
            raise StackError(
                f"the stack's {what} already runs on port {running}: run `lifecycle stack down` "
                f"before choosing --{what}-port {requested}"
            )
        return running
    return check_port(requested if requested is not None else default, what)


def _server_env(state: StackState, credentials: Credentials) -> dict[str, str]:
    """The MLflow server's environment: store URI and secrets by variable, never by argv."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("MLFLOW_")}
    env.update(client_env(state, credentials))
    env.pop("MLFLOW_TRACKING_URI")
    env.update(
        {
            "MLFLOW_BACKEND_STORE_URI": backend_store_uri(state),
            "PGPASSWORD": credentials.postgres_password,
            "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
            "MLFLOW_DISABLE_TELEMETRY": "true",
            "DO_NOT_TRACK": "1",
            "PATH": f"{services.BIN}{os.pathsep}{env.get('PATH', '')}",
        }
    )
    return env


def up(options: StackOptions, environ: Mapping[str, str] | None = None) -> RunningStack:
    """Start (or reuse) PostgreSQL, moto_server and mlflow server under `options.root`."""
    environ = os.environ if environ is None else environ
    root = options.root.resolve()
    bucket = check_bucket(options.bucket)
    _prepare_root(root)
    old = read_state(root)
    pg = postgres.cluster(root, DEFAULT_POSTGRES_PORT)  # finds the binaries first
    services.find_tool("moto_server", "install the project (make install): moto[server]")
    services.find_tool("mlflow", "install the project (make install)")
    pg_running = postgres.is_running(pg)
    moto_running = old is not None and _answers(old.moto_pid, f"{s3_endpoint(old)}/moto-api/")
    mlflow_running = old is not None and _answers(old.mlflow_pid, f"{tracking_uri(old)}/health")
    ports = {
        "postgres": _choose(
            options.postgres_port,
            old.postgres_port if pg_running and old else None,
            DEFAULT_POSTGRES_PORT,
            "postgres",
        ),
        "s3": _choose(
            options.s3_port, old.s3_port if moto_running and old else None, DEFAULT_S3_PORT, "s3"
        ),
        "mlflow": _choose(
            options.mlflow_port,
            old.mlflow_port if mlflow_running and old else None,
            DEFAULT_MLFLOW_PORT,
            "mlflow",
        ),
    }
    for what, running in (
        ("postgres", pg_running),
        ("s3", moto_running),
        ("mlflow", mlflow_running),
    ):
        if not running:
            services.require_free_port(ports[what], what)
    if len(set(ports.values())) < 3:
        raise StackError(f"the stack's ports must differ: {ports}")
    credentials = resolve_credentials(environ, read_kept_env(root))
    state = StackState(
        postgres_port=ports["postgres"],
        s3_port=ports["s3"],
        mlflow_port=ports["mlflow"],
        bucket=bucket,
        moto_pid=old.moto_pid if moto_running and old else None,
        mlflow_pid=old.mlflow_pid if mlflow_running and old else None,
    )
    _write_env(root, client_env(state, credentials))  # before starting: the secrets are kept

    pg = postgres.cluster(root, state.postgres_port, pg.bin_dir)
    if not pg_running:
        postgres.initialise(pg)
        postgres.start(pg)
        logger.info("PostgreSQL started on port %d (pid %s)", pg.port, postgres.pid(pg))
    postgres.ensure_database(pg, credentials.postgres_password)

    if state.moto_pid is None:
        state = state.model_copy(update={"moto_pid": services.start_moto(state.s3_port, root)})
        _write_state(root, state)
        logger.info("moto_server started on port %d (pid %d)", state.s3_port, state.moto_pid)
    client = services.s3_client(
        s3_endpoint(state), credentials.access_key_id, credentials.secret_access_key
    )
    if services.ensure_bucket(client, bucket):
        logger.info("created bucket s3://%s", bucket)

    if state.mlflow_pid is None:
        artifacts = f"s3://{bucket}/mlflow"
        mlflow_pid = services.start_mlflow(
            state.mlflow_port, root, _server_env(state, credentials), artifacts
        )
        state = state.model_copy(update={"mlflow_pid": mlflow_pid})
        logger.info("mlflow server started on %s (pid %d)", tracking_uri(state), mlflow_pid)
    _write_state(root, state)
    if options.dvc_repo is not None:
        services.configure_dvc_remote(options.dvc_repo, bucket, s3_endpoint(state))
        logger.info(
            "DVC remote 'stack' -> s3://%s/dvc in %s/.dvc/config.local", bucket, options.dvc_repo
        )
    return RunningStack(root, state, credentials, client_env(state, credentials))


def _answers(pid: int | None, url: str) -> bool:
    return services.is_alive(pid) and services.answers(url)


def _write_state(root: Path, state: StackState) -> None:
    (root / STATE_FILE).write_text(state.model_dump_json(indent=2) + "\n")


def _write_env(root: Path, env: Mapping[str, str]) -> None:
    """`<root>/env`, readable by its owner only (it holds the secrets)."""
    path = root / ENV_FILE
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(render_env_file(env))
    path.chmod(0o600)


def running_stack(root: Path) -> RunningStack:
    """The stack recorded under `root` (for `env` and the fixtures); a StackError if none."""
    root = root.resolve()
    state = read_state(root)
    if state is None:
        raise StackError(f"no stack under {root}: run `lifecycle stack up` first")
    credentials = resolve_credentials({}, read_kept_env(root))
    return RunningStack(root, state, credentials, client_env(state, credentials))


def status(root: Path) -> list[ComponentStatus]:
    """What runs under `root`: PostgreSQL, moto_server, mlflow server."""
    root = root.resolve()
    state = read_state(root)
    if state is None:
        raise StackError(f"no stack under {root}: run `lifecycle stack up` first")
    pg = postgres.cluster(root, state.postgres_port)
    pg_running = postgres.is_running(pg)
    endpoint, uri = s3_endpoint(state), tracking_uri(state)
    return [
        ComponentStatus(
            "postgres",
            pg_running,
            postgres.pid(pg) if pg_running else None,
            f"postgresql://127.0.0.1:{state.postgres_port}/mlflow",
        ),
        ComponentStatus(
            "s3 (moto)",
            _answers(state.moto_pid, f"{endpoint}/moto-api/"),
            state.moto_pid,
            f"{endpoint} (bucket {state.bucket})",
        ),
        ComponentStatus(
            "mlflow", _answers(state.mlflow_pid, f"{uri}/health"), state.mlflow_pid, uri
        ),
    ]


def stop_postgres(root: Path) -> None:
    """Stop the stack's PostgreSQL (fast shutdown); `up` starts it again."""
    state = running_stack(root).state
    postgres.stop(postgres.cluster(root.resolve(), state.postgres_port))


def stop_moto(root: Path) -> None:
    """Stop moto_server (its objects are lost); `up` starts a new one with an empty bucket."""
    root = root.resolve()
    state = running_stack(root).state
    services.stop_group(state.moto_pid)
    _write_state(root, state.model_copy(update={"moto_pid": None}))


def down(root: Path, purge: bool = False) -> list[str]:
    """Stop mlflow server, moto_server and PostgreSQL (graceful, then kill); with `purge`,
    remove the state folder too. Returns what was stopped."""
    root = root.resolve()
    state = read_state(root)
    if state is None:
        raise StackError(f"no stack under {root}: nothing to stop")
    stopped = []
    for name, pid in (("mlflow", state.mlflow_pid), ("s3 (moto)", state.moto_pid)):
        if services.is_alive(pid):
            services.stop_group(pid)
            stopped.append(name)
    pg = postgres.cluster(root, state.postgres_port)
    if postgres.is_running(pg):
        postgres.stop(pg)
        stopped.append("postgres")
    _write_state(root, state.model_copy(update={"moto_pid": None, "mlflow_pid": None}))
    if purge:
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(root)
    return stopped
