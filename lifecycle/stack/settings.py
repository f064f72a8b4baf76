"""The stack's settings, credentials and environment: pure functions, no processes.

Credentials come from environment variables, never params.yaml. Unset ones are generated
once and kept in `<root>/env` (mode 600), which is also what a user sources:
`source .stack/env` or `eval "$(lifecycle stack env)"`.
"""

from __future__ import annotations

import re
import secrets
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

HOST = "127.0.0.1"
DEFAULT_POSTGRES_PORT = 55432
DEFAULT_S3_PORT = 59000
DEFAULT_MLFLOW_PORT = 55000
DEFAULT_BUCKET = "lifecycle"
REGION = "us-east-1"  # moto answers any region; boto3 needs one
DATABASE = "mlflow"  # the role and the database MLflow's store uses

PASSWORD_VARIABLE = "LIFECYCLE_STACK_POSTGRES_PASSWORD"
ACCESS_KEY_VARIABLE = "AWS_ACCESS_KEY_ID"
SECRET_KEY_VARIABLE = "AWS_SECRET_ACCESS_KEY"
CREDENTIAL_VARIABLES = (PASSWORD_VARIABLE, ACCESS_KEY_VARIABLE, SECRET_KEY_VARIABLE)

ENV_FILE = "env"
STATE_FILE = "state.json"

# S3 bucket names: 3-63 lower-case letters, digits, dots and hyphens, starting and ending
# with a letter or digit.
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_EXPORT = re.compile(r"^export ([A-Z_][A-Z0-9_]*)=(.*)$")


class StackError(Exception):
    """A one-line problem with the stack's input or its processes; the message says what to do."""


class StackState(BaseModel):
    """`<root>/state.json`: what `stack up` started, read by `status`, `env` and `down`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    postgres_port: int = Field(ge=1, le=65535)
    s3_port: int = Field(ge=1, le=65535)
    mlflow_port: int = Field(ge=1, le=65535)
    bucket: str
    moto_pid: int | None = None
    mlflow_pid: int | None = None


@dataclass(frozen=True)
class Credentials:
    """The secrets of one stack: PostgreSQL's `mlflow` role and the S3 key pair."""

    postgres_password: str
    access_key_id: str
    secret_access_key: str

    def as_env(self) -> dict[str, str]:
        return {
            PASSWORD_VARIABLE: self.postgres_password,
            ACCESS_KEY_VARIABLE: self.access_key_id,
            SECRET_KEY_VARIABLE: self.secret_access_key,
        }


def check_bucket(bucket: str) -> str:
    """The bucket name if S3 accepts it, else a StackError saying the rule."""
    if not _BUCKET.match(bucket) or ".." in bucket:
        raise StackError(
            f"bucket name {bucket!r} is not valid: use 3-63 lower-case letters, digits, "
            "dots or hyphens, starting and ending with a letter or digit"
        )
    return bucket


def check_port(port: int, what: str) -> int:
    """The port if it is a usable TCP port number."""
    if not 1024 <= port <= 65535:
        raise StackError(f"--{what}-port {port} is out of range: use 1024-65535")
    return port


def resolve_credentials(environ: Mapping[str, str], kept: Mapping[str, str]) -> Credentials:
    """Each secret from the environment if set, else from the env file, else a new random one.

    `kept` is what `<root>/env` holds from an earlier `stack up` (parse_env_file).
    """
    generated = {
        PASSWORD_VARIABLE: secrets.token_urlsafe(24),
        ACCESS_KEY_VARIABLE: "LS" + secrets.token_hex(9).upper(),
        SECRET_KEY_VARIABLE: secrets.token_urlsafe(30),
    }
    chosen = {
        name: environ.get(name) or kept.get(name) or generated[name]
        for name in CREDENTIAL_VARIABLES
    }
    return Credentials(
        postgres_password=chosen[PASSWORD_VARIABLE],
        access_key_id=chosen[ACCESS_KEY_VARIABLE],
        secret_access_key=chosen[SECRET_KEY_VARIABLE],
    )


def s3_endpoint(state: StackState) -> str:
    return f"http://{HOST}:{state.s3_port}"


def tracking_uri(state: StackState) -> str:
    return f"http://{HOST}:{state.mlflow_port}"


def postgres_dsn(state: StackState, password: str) -> str:
    """The libpq DSN of MLflow's database (for psql or psycopg2)."""
    return f"postgresql://{DATABASE}:{password}@{HOST}:{state.postgres_port}/{DATABASE}"


def backend_store_uri(state: StackState) -> str:
    """MLflow's store URI, without the password (the server gets it as PGPASSWORD, so it
    never shows in `ps`). SQLAlchemy 2.1 maps bare postgresql:// to psycopg 3: name psycopg2."""
    return f"postgresql+psycopg2://{DATABASE}@{HOST}:{state.postgres_port}/{DATABASE}"


def client_env(state: StackState, credentials: Credentials) -> dict[str, str]:
    """What a process using the stack needs: tracking URI, S3 endpoint, credentials, store."""
    endpoint = s3_endpoint(state)
    return {
        "MLFLOW_TRACKING_URI": tracking_uri(state),
        **credentials.as_env(),
        "AWS_DEFAULT_REGION": REGION,
        "AWS_ENDPOINT_URL": endpoint,
        "MLFLOW_S3_ENDPOINT_URL": endpoint,
        "LIFECYCLE_SHARED_STORE": f"s3://{state.bucket}/serving",
    }


def render_env_file(env: Mapping[str, str]) -> str:
    """`export NAME=value` lines, quoted for a POSIX shell."""
    header = '# The local stack (lifecycle stack up): source it, or eval "$(lifecycle stack env)"\n'
    return header + "".join(f"export {name}={shlex.quote(value)}\n" for name, value in env.items())


def parse_env_file(text: str) -> dict[str, str]:
    """The variables of an env file render_env_file wrote (other lines are ignored)."""
    found: dict[str, str] = {}
    for line in text.splitlines():
        match = _EXPORT.match(line.strip())
        if match:
            words = shlex.split(match.group(2)) or [""]
            found[match.group(1)] = words[0]
    return found


def read_kept_env(root: Path) -> dict[str, str]:
    """The env file under `root`, parsed; empty when there is none yet."""
    path = root / ENV_FILE
    return parse_env_file(path.read_text()) if path.is_file() else {}
