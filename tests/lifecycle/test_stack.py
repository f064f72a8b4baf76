"""`lifecycle stack`: its settings and bad input (fast), and the real stack (slow, one per session).

The slow tests use the session's `stack` fixture (tests/stack_servers.py): PostgreSQL 15,
moto_server and an MLflow server on both, started by the same code as `lifecycle stack up`.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lifecycle.cli import app
from lifecycle.stack import postgres, services
from lifecycle.stack.settings import (
    PASSWORD_VARIABLE,
    StackError,
    StackState,
    check_bucket,
    client_env,
    parse_env_file,
    render_env_file,
    resolve_credentials,
)
from lifecycle.stack.stack import StackOptions, read_state, running_stack, up
from tests.mlflow_server import free_port
from tests.stack_servers import Stack

runner = CliRunner()
BIN = Path(sys.executable).parent


# --- settings: pure -------------------------------------------------------------------------


def test_credentials_come_from_the_environment_then_the_env_file_then_are_generated() -> None:
    kept = {PASSWORD_VARIABLE: "kept-pw", "AWS_ACCESS_KEY_ID": "kept-key"}
    chosen = resolve_credentials({"AWS_ACCESS_KEY_ID": "env-key"}, kept)
    assert chosen.access_key_id == "env-key"  # the environment wins
    assert chosen.postgres_password == "kept-pw"  # then what stack up kept
    assert len(chosen.secret_access_key) >= 30  # then a new random one
    assert resolve_credentials({}, {}).secret_access_key != chosen.secret_access_key


def test_the_env_file_round_trips_values_a_shell_would_split() -> None:
    env = {"AWS_SECRET_ACCESS_KEY": "a b'c$d", "MLFLOW_TRACKING_URI": "http://127.0.0.1:1"}
    text = render_env_file(env)
    assert parse_env_file(text) == env
    shown = subprocess.run(
        ["sh", "-c", f'{text}\nprintf %s "$AWS_SECRET_ACCESS_KEY"'],
        capture_output=True,
        text=True,
        check=True,
    )
    assert shown.stdout == "a b'c$d"


def test_client_env_names_everything_a_process_needs() -> None:
    state = StackState(postgres_port=1111, s3_port=2222, mlflow_port=3333, bucket="team")
    env = client_env(state, resolve_credentials({}, {}))
    assert env["MLFLOW_TRACKING_URI"] == "http://127.0.0.1:3333"
    assert env["AWS_ENDPOINT_URL"] == env["MLFLOW_S3_ENDPOINT_URL"] == "http://127.0.0.1:2222"
    assert env["LIFECYCLE_SHARED_STORE"] == "s3://team/serving"
    assert {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", PASSWORD_VARIABLE} <= set(env)


@pytest.mark.parametrize("bucket", ["ab", "Upper", "-lead", "a..b", "x" * 64])
def test_a_bad_bucket_name_says_the_rule(bucket: str) -> None:
    with pytest.raises(StackError, match="3-63 lower-case letters"):
        check_bucket(bucket)


# --- bad input: one-line errors, exit code 2 ----------------------------------------------


def _up(root: Path, *extra: str) -> tuple[int, str]:
    ports = ["--postgres-port", str(free_port()), "--s3-port", str(free_port())]
    ports += ["--mlflow-port", str(free_port())]
    result = runner.invoke(app, ["stack", "up", "--root", str(root), "--no-dvc", *ports, *extra])
    return result.exit_code, result.output


def test_a_port_in_use_is_named_with_its_option(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code, output = _up(tmp_path / "stack", "--s3-port", str(port))
    assert code == 2, output
    assert f"error: port {port} (s3) is in use by another process: pass --s3-port" in output
    assert not (tmp_path / "stack" / "postgres").exists()  # nothing was started


def test_a_port_out_of_range(tmp_path: Path) -> None:
    code, output = _up(tmp_path / "stack", "--mlflow-port", "80")
    assert code == 2
    assert "--mlflow-port 80 is out of range: use 1024-65535" in output


def test_missing_postgresql_says_how_to_install_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(postgres, "DEBIAN_ROOT", tmp_path / "no-postgresql")
    code, output = _up(tmp_path / "stack")
    assert code == 2
    assert "initdb and pg_ctl were not found" in output
    assert "apt-get install postgresql" in output


def test_missing_moto_server_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tools = tmp_path / "bin"  # PostgreSQL's tools present, the environment's scripts absent
    tools.mkdir()
    for name in ("initdb", "pg_ctl"):
        (tools / name).write_text("#!/bin/sh\nexit 1\n")
        (tools / name).chmod(0o755)
    monkeypatch.setenv("PATH", str(tools))
    monkeypatch.setattr(services, "BIN", tmp_path / "empty")
    code, output = _up(tmp_path / "stack")
    assert code == 2
    assert "error: moto_server was not found" in output and "moto[server]" in output


def test_a_root_that_cannot_be_created(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    code, output = _up(tmp_path / "file" / "stack")
    assert code == 2
    assert "cannot create the stack folder" in output and "Not a directory" in output


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write into a mode 500 folder")
def test_a_root_that_is_not_writable(tmp_path: Path) -> None:
    root = tmp_path / "stack"
    root.mkdir(mode=0o500)
    code, output = _up(root)
    assert code == 2
    assert f"the stack folder {root} is not writable: choose another --root" in output


@pytest.mark.skipif(os.geteuid() != 0, reason="only root hands the cluster to user postgres")
def test_a_root_user_postgres_cannot_reach(tmp_path: Path) -> None:
    hidden = tmp_path / "private"
    hidden.mkdir(mode=0o700)  # no o+x: user postgres cannot enter
    code, output = _up(hidden / "stack")
    assert code == 2, output
    assert "user postgres cannot write" in output and "choose a --root" in output


@pytest.mark.parametrize("command", ["env", "status", "down"])
def test_commands_without_a_stack_say_to_start_one(tmp_path: Path, command: str) -> None:
    result = runner.invoke(app, ["stack", command, "--root", str(tmp_path)])
    assert result.exit_code == 2
    assert f"no stack under {tmp_path.resolve()}" in result.output


# --- the real stack (slow) ------------------------------------------------------------------


def _psql(stack: Stack, query: str) -> str:
    import psycopg2

    with psycopg2.connect(stack.postgres_dsn) as connection, connection.cursor() as cursor:
        cursor.execute(query)
        return "\n".join("|".join(str(value) for value in row) for row in cursor.fetchall())


@pytest.mark.slow
def test_mlflow_logs_and_registers_through_the_server(
    stack: Stack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlflow
    from mlflow import MlflowClient

    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "MLFLOW_S3_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)  # the client needs no S3 credentials
    mlflow.set_tracking_uri(stack.tracking_uri)
    mlflow.set_experiment("stack-test")
    artifact = tmp_path / "note.txt"
    artifact.write_text("kept in S3")
    with mlflow.start_run() as run:
        mlflow.log_metric("auc", 0.93)
        mlflow.log_artifact(str(artifact))
    client = MlflowClient(stack.tracking_uri)
    client.create_registered_model("stack-model")
    version = client.create_model_version(
        "stack-model", f"runs:/{run.info.run_id}/note.txt", run.info.run_id
    )
    client.set_registered_model_alias("stack-model", "champion", version.version)

    assert client.get_model_version_by_alias("stack-model", "champion").version == "1"
    rows = _psql(stack, f"SELECT status FROM runs WHERE run_uuid = '{run.info.run_id}'")
    assert rows == "FINISHED"
    assert _psql(stack, "SELECT value FROM metrics WHERE key = 'auc'") == "0.93"
    keys = [o["Key"] for o in stack.s3().list_objects_v2(Bucket=stack.bucket)["Contents"]]
    assert f"mlflow/1/{run.info.run_id}/artifacts/note.txt" in keys


def _run(command: list[str], cwd: Path, env: dict[str, str]) -> None:
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    assert result.returncode == 0, f"{' '.join(command)}: {result.stdout}{result.stderr}"


@pytest.mark.slow
def test_dvc_push_and_pull_between_two_clones(stack: Stack, tmp_path: Path) -> None:
    git_user = {"GIT_AUTHOR_NAME": "t", "GIT_COMMITTER_NAME": "t"}
    git_user |= {"GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_EMAIL": "t@t"}
    env = stack.process_env(DVC_NO_ANALYTICS="1", **git_user)
    dvc = str(BIN / "dvc")
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    _run(["git", "init", "-q"], first, env)
    _run([dvc, "init", "-q"], first, env)
    services.configure_dvc_remote(first, stack.bucket, stack.s3_endpoint)
    assert "stack" not in (first / ".dvc" / "config").read_text()  # only config.local
    (first / "table.csv").write_text("a,b\n1,2\n")
    _run([dvc, "add", "-q", "table.csv"], first, env)
    _run(["git", "add", "."], first, env)
    _run(["git", "commit", "-qm", "data"], first, env)
    _run([dvc, "push", "-q"], first, env)
    _run(["git", "clone", "-q", str(first), str(second)], tmp_path, env)
    services.configure_dvc_remote(second, stack.bucket, stack.s3_endpoint)
    assert not (second / "table.csv").exists()
    _run([dvc, "pull", "-q"], second, env)
    assert (second / "table.csv").read_text() == "a,b\n1,2\n"


@pytest.mark.slow
def test_up_again_reuses_what_runs_and_env_prints_the_exports(stack: Stack) -> None:
    before = read_state(stack.root)
    result = runner.invoke(app, ["stack", "up", "--root", str(stack.root), "--no-dvc"])
    assert result.exit_code == 0, result.output
    assert read_state(stack.root) == before  # the same pids and ports
    printed = runner.invoke(app, ["stack", "env", "--root", str(stack.root)])
    assert parse_env_file(printed.output) == stack.env
    assert oct((stack.root / "env").stat().st_mode & 0o777) == "0o600"
    status = runner.invoke(app, ["stack", "status", "--root", str(stack.root)])
    assert status.exit_code == 0
    assert f"running  pid {before.mlflow_pid}" in status.output and "in memory" in status.output


@pytest.mark.slow
def test_a_second_up_with_other_ports_is_refused(stack: Stack) -> None:
    with pytest.raises(StackError, match="already runs on port"):
        up(StackOptions(root=stack.root, s3_port=free_port()), environ={})


@pytest.mark.slow
def test_a_paused_s3_store_keeps_its_objects(stack: Stack) -> None:
    import boto3
    from botocore.config import Config
    from botocore.exceptions import ReadTimeoutError

    client = stack.s3()
    client.put_object(Bucket=stack.bucket, Key="pause/probe", Body=b"1")
    quick = boto3.client(  # short timeouts and no retries
        "s3",
        endpoint_url=stack.s3_endpoint,
        region_name="us-east-1",
        aws_access_key_id=stack.env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=stack.env["AWS_SECRET_ACCESS_KEY"],
        config=Config(connect_timeout=1, read_timeout=1, retries={"max_attempts": 0}),
    )
    stack.pause_s3()
    try:
        with pytest.raises(ReadTimeoutError):
            quick.head_object(Bucket=stack.bucket, Key="pause/probe")
    finally:
        stack.resume_s3()
    assert client.get_object(Bucket=stack.bucket, Key="pause/probe")["Body"].read() == b"1"


@pytest.mark.slow
def test_the_sql_source_reads_postgresql_through_url_env(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    from core.config import IngestConfig
    from pipelines.edges.sources import SourceError, describe_source, fetch

    _psql(stack, "CREATE TABLE IF NOT EXISTS source_rows (udi int); SELECT 1")
    _psql(stack, "INSERT INTO source_rows VALUES (1), (2); SELECT 1")
    url = stack.postgres_dsn.replace("postgresql://", "postgresql+psycopg2://")
    monkeypatch.setenv("STACK_SOURCE_URL", url)
    block = {"url_env": "STACK_SOURCE_URL", "query": "SELECT udi FROM source_rows ORDER BY udi"}
    config = IngestConfig.model_validate({"source": "sql", "sql": block})
    assert fetch(config)["udi"].tolist() == [1, 2]
    password = stack.env["LIFECYCLE_STACK_POSTGRES_PASSWORD"]
    assert password not in str(describe_source(config))
    monkeypatch.setenv("STACK_SOURCE_URL", url.replace(password, "wrong-password"))
    with pytest.raises(SourceError, match="password authentication failed") as error:
        fetch(config)
    assert "wrong-password" not in str(error.value)


@pytest.mark.slow
def test_a_stopped_s3_store_refuses_and_comes_back_empty(stack: Stack) -> None:
    from botocore.exceptions import EndpointConnectionError

    stack.s3().put_object(Bucket=stack.bucket, Key="gone/soon", Body=b"1")
    stack.stop_s3()
    with pytest.raises(EndpointConnectionError):
        stack.s3().list_buckets()
    stack.start()  # a new moto_server, the bucket re-created
    assert stack.s3().list_objects_v2(Bucket=stack.bucket)["KeyCount"] == 0


@pytest.mark.slow
def test_down_stops_everything_and_up_brings_it_back_with_the_runs(stack: Stack) -> None:
    """Last of the file: `stack down`, then the fixture's start() (so the session's stack runs)."""
    runs_before = _psql(stack, "SELECT count(*) FROM runs")
    pids = read_state(stack.root)
    down = runner.invoke(app, ["stack", "down", "--root", str(stack.root)])
    assert down.exit_code == 0, down.output
    assert "stopped: mlflow, s3 (moto), postgres" in down.output
    assert not services.is_alive(pids.mlflow_pid) and not services.is_alive(pids.moto_pid)
    status = runner.invoke(app, ["stack", "status", "--root", str(stack.root)])
    assert status.exit_code == 1 and status.output.count("stopped") == 3
    assert (stack.root / "postgres" / "data" / "PG_VERSION").is_file()  # nothing removed

    stack.start()
    assert _psql(stack, "SELECT count(*) FROM runs") == runs_before  # PostgreSQL kept them
    objects = stack.s3().list_objects_v2(Bucket=stack.bucket)  # a new moto: empty bucket
    assert objects["KeyCount"] == 0
    assert running_stack(stack.root).env == stack.env  # the same secrets and ports
