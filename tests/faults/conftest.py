"""Shared parts of the fault-injection suite (docs/faults.md lists every fault and its test).

Each test injects one fault into real parts (a temporary copy of the repository driven by
`dvc repro`, a real `mlflow server`, a real `lifecycle serve`) and checks two things: what
the user sees (the message) and that nothing was lost (the champion and the outputs the
failed stage must not touch).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.e2e.conftest import BIN, ProjectCopy, Repro
from tests.e2e.conftest import project_copy as project_copy  # the module-scoped fixture

MODEL = "milling-failure"
STAGES = ["ingest", "validate", "train", "evaluate", "deploy", "monitor"]
ROWS = 5000  # synthetic rows: enough for a model that clears the gate's thresholds

# What the stages after validate produce, and the deployed champion's record.
AFTER_VALIDATE = [
    "data/split/train.parquet",
    "data/split/holdout.parquet",
    "artifacts/model/model.skops",
    "artifacts/model/meta.json",
    "reports/train/metrics.json",
    "reports/evaluate/metrics.json",
    "reports/deploy/decision.json",
    "reports/deploy/champion.json",
    "reports/monitor/metrics.json",
    "reports/monitor/decision.json",
]
# ...and what validate produces: a fault stopped at ingest leaves all of these alone.
AFTER_INGEST = [
    "data/validated/dataset.parquet",
    "data/validated/quarantine.parquet",
    "reports/validate/summary.json",
    *AFTER_VALIDATE,
]


def fast_lifecycle(raw: dict[str, Any]) -> None:
    """Params for a real lifecycle that runs in about half a minute here.

    Less data and a smaller model, so a run takes seconds. The infra check's latency
    budget is raised: on a busy two-core CI machine the first replayed request can take
    half a second, and these tests judge what survives a fault, not latency (the gate's
    own tests do that).
    """
    raw["ingest"]["synthetic"]["rows"] = ROWS
    raw["train"]["cv_folds"] = 3
    raw["train"]["hist_gradient_boosting"]["max_iter"] = 50
    raw["deploy"]["bootstrap"]["resamples"] = 200
    raw["deploy"]["infra_validation"]["replay_rows"] = 50
    raw["deploy"]["infra_validation"]["p99_budget_ms"] = 5000


def digests(copy: ProjectCopy, paths: list[str]) -> dict[str, str | None]:
    """sha256 of each file (None when it is absent)."""
    return {
        name: hashlib.sha256(copy.read(name)).hexdigest() if (copy.path / name).exists() else None
        for name in paths
    }


@dataclass(frozen=True)
class Champion:
    """The champion as every part of the project records it."""

    aliases: dict[str, int]  # the MLflow Model Registry's aliases
    record: dict[str, Any]  # reports/deploy/champion.json (what monitor watches)
    pointer: dict[str, Any]  # .bentoml/champion.json (what `lifecycle serve` serves)

    @property
    def version(self) -> int:
        return self.aliases["champion"]


def champion(copy: ProjectCopy, tracking_uri: str | None = None) -> Champion:
    """Read the champion from the registry (the copy's own store unless a URI is given)."""
    from mlflow import MlflowClient

    uri = tracking_uri or f"sqlite:///{copy.path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    aliases = {k: int(v) for k, v in client.get_registered_model(MODEL).aliases.items()}
    return Champion(
        aliases=aliases,
        record=json.loads(copy.read("reports/deploy/champion.json")),
        pointer=json.loads(copy.read(".bentoml/champion.json")),
    )


def assert_consistent(state: Champion) -> None:
    """Registry, deploy record and serving pointer name the same version."""
    version = state.version
    assert state.record["version"] == version, state
    assert state.pointer["tag"] == f"{MODEL}:v{version}", state


def repro_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """The environment `ProjectCopy.repro` gives `dvc repro`."""
    merged = {
        **{k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_TRACKING")},
        **(env or {}),
    }
    merged["PATH"] = f"{BIN}{os.pathsep}{merged.get('PATH', '')}"
    return merged


@dataclass
class RunningRepro:
    """A `dvc repro` started in the background, its output going to a file."""

    process: subprocess.Popen
    log: Path

    @property
    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for(self, text: str, timeout_s: float = 300.0) -> None:
        """Poll the output until `text` appears; fail if the run ends first."""
        deadline = time.monotonic() + timeout_s
        while text not in self.output:
            if self.process.poll() is not None:
                pytest.fail(f"dvc repro ended before {text!r}:\n{self.output[-3000:]}")
            if time.monotonic() > deadline:
                pytest.fail(f"no {text!r} within {timeout_s:.0f} s:\n{self.output[-3000:]}")
            time.sleep(0.05)

    def stage_process(self, stage: str) -> psutil.Process:
        """The running `python -m pipelines.<stage>` started by this `dvc repro`."""
        wanted = f"pipelines.{stage}"
        for child in psutil.Process(self.process.pid).children(recursive=True):
            with contextlib.suppress(psutil.NoSuchProcess):
                if wanted in child.cmdline() and "python" in Path(child.cmdline()[0]).name:
                    return child
        pytest.fail(f"no process runs {wanted}:\n{self.output[-3000:]}")

    def finish(self, timeout_s: float = 600.0) -> Repro:
        try:
            self.process.wait(timeout=timeout_s)
        finally:
            self.kill()
        return Repro(self.process.returncode, self.output)

    def kill(self) -> None:
        """SIGKILL the run and its stages (for clean-up after a failed test)."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)


def start_repro(
    copy: ProjectCopy, *args: str, env: dict[str, str] | None = None, name: str = "repro"
) -> RunningRepro:
    """`dvc repro` in the copy, in the background, in its own process group."""
    log = copy.path.parent / f"{copy.path.name}-{name}.log"
    with open(log, "wb") as output:
        process = subprocess.Popen(
            [str(BIN / "dvc"), "repro", *args],
            cwd=copy.path,
            env=repro_env(env),
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return RunningRepro(process, log)


def dvc(copy: ProjectCopy, *args: str) -> subprocess.CompletedProcess:
    """Another dvc command (status, ...) in the copy."""
    return subprocess.run(
        [str(BIN / "dvc"), *args],
        cwd=copy.path,
        env=repro_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )


def lifecycle_status(copy: ProjectCopy) -> dict[str, dict[str, Any]]:
    """`lifecycle status --json` in the copy: its latest run's stages by name."""
    done = subprocess.run(
        [str(BIN / "lifecycle"), "status", "--json"],
        cwd=copy.path,
        env=repro_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return {stage["stage"]: stage for stage in json.loads(done.stdout)["stages"]}
