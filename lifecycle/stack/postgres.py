"""PostgreSQL 15 from the system's packages: initdb once, start, stop, status.

The binaries are found on PATH or under /usr/lib/postgresql/*/bin. PostgreSQL refuses to run
as root, so when this process is root, every command runs as user `postgres`
(`runuser -u postgres --`) and the data folder is owned by postgres. Local connections
(a Unix socket in the state folder) use peer authentication, TCP ones scram-sha-256.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from lifecycle.stack.settings import DATABASE, HOST, StackError

logger = logging.getLogger(__name__)

SYSTEM_USER = "postgres"
DEBIAN_ROOT = Path("/usr/lib/postgresql")  # Debian's packages: /usr/lib/postgresql/N/bin
START_TIMEOUT_S = 60


@dataclass(frozen=True)
class Postgres:
    """One PostgreSQL cluster under the state folder."""

    bin_dir: Path
    data: Path  # the cluster (owned by `postgres` when we are root)
    socket_dir: Path
    log: Path
    port: int

    @property
    def as_root(self) -> bool:
        return os.geteuid() == 0

    def command(self, tool: str, *args: str) -> list[str]:
        """A PostgreSQL tool's command line, prefixed by runuser when we are root."""
        line = [str(self.bin_dir / tool), *args]
        return ["runuser", "-u", SYSTEM_USER, "--", *line] if self.as_root else line


def find_bin_dir() -> Path:
    """The folder of initdb and pg_ctl: PATH first, then Debian's /usr/lib/postgresql/N/bin."""
    on_path = shutil.which("pg_ctl")
    if on_path and shutil.which("initdb"):
        return Path(on_path).resolve().parent
    versions = sorted(
        DEBIAN_ROOT.glob("*/bin/pg_ctl"),
        key=lambda path: int(path.parent.parent.name) if path.parent.parent.name.isdigit() else 0,
    )
    if versions:
        return versions[-1].parent
    raise StackError(
        "PostgreSQL's initdb and pg_ctl were not found (PATH, /usr/lib/postgresql/*/bin): "
        "install them with `apt-get install postgresql` (make install does it as root)"
    )


def cluster(root: Path, port: int, bin_dir: Path | None = None) -> Postgres:
    """The cluster description for a state folder."""
    folder = root / "postgres"
    return Postgres(
        bin_dir=bin_dir or find_bin_dir(),
        data=folder / "data",
        socket_dir=folder / "run",
        log=root / "logs" / "postgres.log",
        port=port,
    )


def _run(command: list[str], what: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    result = subprocess.run(command, input=stdin, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        detail = (result.stderr or result.stdout).strip().splitlines()
        raise StackError(f"{what} failed: {detail[-1] if detail else f'exit {result.returncode}'}")
    return result


def _own(pg: Postgres, *paths: Path) -> None:
    """Hand folders and files to user postgres when we are root (it must write them)."""
    if pg.as_root:
        for path in paths:
            shutil.chown(path, user=SYSTEM_USER, group=SYSTEM_USER)


def initialise(pg: Postgres) -> bool:
    """initdb the cluster once (peer on the socket, scram over TCP); True if it was new."""
    pg.socket_dir.mkdir(parents=True, exist_ok=True)
    pg.log.parent.mkdir(parents=True, exist_ok=True)
    pg.log.touch()
    if (pg.data / "PG_VERSION").is_file():
        _own(pg, pg.data.parent, pg.socket_dir, pg.log)
        return False
    pg.data.mkdir(parents=True, exist_ok=True)
    pg.data.chmod(0o700)
    _own(pg, pg.data.parent, pg.data, pg.socket_dir, pg.log)
    if (
        pg.as_root
        and subprocess.run(
            ["runuser", "-u", SYSTEM_USER, "--", "test", "-w", str(pg.data)]
        ).returncode
    ):
        raise StackError(
            f"user postgres cannot write {pg.data}: choose a --root that user postgres can "
            "reach (every parent folder needs o+x)"
        )
    _run(
        pg.command(
            "initdb",
            "-D",
            str(pg.data),
            "--auth-local=peer",
            "--auth-host=scram-sha-256",
            "--encoding=UTF8",
            "--no-instructions",
        ),
        "initdb",
    )
    logger.info("initialised PostgreSQL cluster %s", pg.data)
    return True


def is_running(pg: Postgres) -> bool:
    """pg_ctl status: 0 when the cluster's postmaster runs."""
    if not (pg.data / "PG_VERSION").is_file():
        return False
    result = subprocess.run(
        pg.command("pg_ctl", "status", "-D", str(pg.data)), capture_output=True, check=False
    )
    return result.returncode == 0


def pid(pg: Postgres) -> int | None:
    """The postmaster's pid, from postmaster.pid."""
    try:
        return int((pg.data / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def start(pg: Postgres) -> None:
    """pg_ctl start -w on 127.0.0.1:port, socket in the state folder, log in logs/."""
    options = f"-c listen_addresses={HOST} -p {pg.port} -c unix_socket_directories={pg.socket_dir}"
    _run(
        pg.command(
            "pg_ctl",
            "start",
            "-w",
            "-t",
            str(START_TIMEOUT_S),
            "-D",
            str(pg.data),
            "-l",
            str(pg.log),
            "-o",
            options,
        ),
        f"starting PostgreSQL (its log: {pg.log})",
    )


def stop(pg: Postgres) -> None:
    """pg_ctl stop: fast (rolls back open transactions), then immediate if that times out."""
    if not is_running(pg):
        return
    fast = subprocess.run(
        pg.command("pg_ctl", "stop", "-w", "-t", "30", "-m", "fast", "-D", str(pg.data)),
        capture_output=True,
        check=False,
    )
    if fast.returncode != 0 and is_running(pg):
        _run(
            pg.command("pg_ctl", "stop", "-w", "-m", "immediate", "-D", str(pg.data)),
            "stopping PostgreSQL",
        )


def ensure_database(pg: Postgres, password: str) -> None:
    """Create role and database `mlflow` if absent, and set the role's password (so a new
    LIFECYCLE_STACK_POSTGRES_PASSWORD takes effect). SQL goes on stdin: no secret in argv."""
    quoted = password.replace("'", "''")
    role_sql = (
        f"SELECT 'CREATE ROLE {DATABASE} LOGIN' WHERE NOT EXISTS "
        f"(SELECT FROM pg_roles WHERE rolname = '{DATABASE}')\\gexec\n"
        f"ALTER ROLE {DATABASE} WITH LOGIN PASSWORD '{quoted}';\n"
        f"SELECT 'CREATE DATABASE {DATABASE} OWNER {DATABASE}' WHERE NOT EXISTS "
        f"(SELECT FROM pg_database WHERE datname = '{DATABASE}')\\gexec\n"
    )
    _run(
        pg.command(
            "psql",
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            str(pg.socket_dir),
            "-p",
            str(pg.port),
            "-d",
            "postgres",
            "-f",
            "-",
        ),
        "creating the mlflow role and database",
        stdin=role_sql,
    )
