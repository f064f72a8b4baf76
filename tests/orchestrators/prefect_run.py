"""Running Prefect from the tests: its environment, a command's outcome, the ledger.

Prefect runs from `.venv-prefect` by subprocess with its own PREFECT_HOME; every command
starts Prefect's ephemeral server on that home's database (no PREFECT_API_URL), offline:
no UI, no telemetry.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

from core.records.ledger import AttemptFinished, read_ledger
from tests.e2e.conftest import ProjectCopy
from tests.orchestrators.conftest import engine_env, engine_python

DRIVER = Path(__file__).with_name("prefect_driver.py")
TIMEOUT_S = 900


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


def prefect_env(copy: ProjectCopy, home: Path, **extra: str) -> dict[str, str]:
    """The engine's environment: its own PREFECT_HOME, the ephemeral server given time to
    start on a busy machine, no UI, no telemetry."""
    env = engine_env(
        copy,
        PREFECT_HOME=str(home),
        PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="600",
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_SERVER_UI_ENABLED="false",
        PREFECT_SERVER_LOGGING_LEVEL="WARNING",
        **extra,
    )
    for name in ("PREFECT_API_URL", "PREFECT_API_KEY", "PREFECT_PROFILE"):
        env.pop(name, None)
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
