"""MLflow at the edge: the tracking URI comes from the environment, never from import-time code.

With no `MLFLOW_TRACKING_URI`, runs go to `sqlite:///mlflow.db` in the project root, which
`make mlflow-ui` opens.

All stages of one `dvc repro` share a lifecycle id: each stage's MLflow run is a child of
one parent run tagged `lifecycle_run=<id>`, so the UI shows them together. The id is
`LIFECYCLE_RUN_ID` when set (the `watch` loop sets it), else it is derived from the
`dvc repro` process that started the stage (its pid and start time), else a fresh one.
"""

from __future__ import annotations

import hashlib
import logging
import os
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
LIFECYCLE_TAG = "lifecycle_run"


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI


@dataclass(frozen=True)
class Tracking:
    """The MLflow module, pointed at the configured store and experiment."""

    mlflow: Any
    experiment_id: str

    def stage_run(self, stage: str, **tags: str) -> Any:
        """Start the stage's run as a child of its lifecycle's parent run (a context manager)."""
        lifecycle = lifecycle_run_id()
        found = self.mlflow.search_runs(
            experiment_ids=[self.experiment_id],
            filter_string=f"tags.{LIFECYCLE_TAG} = '{lifecycle}' and tags.kind = 'lifecycle'",
            output_format="list",
            max_results=1,
        )
        if found:
            parent_id = found[0].info.run_id
        else:
            with self.mlflow.start_run(
                run_name=f"lifecycle {lifecycle}",
                tags={LIFECYCLE_TAG: lifecycle, "kind": "lifecycle", "git_commit": git_commit()},
            ) as parent:
                parent_id = parent.info.run_id
        return self.mlflow.start_run(
            run_name=stage,
            parent_run_id=parent_id,
            tags={
                LIFECYCLE_TAG: lifecycle,
                "kind": "stage",
                "stage": stage,
                "git_commit": git_commit(),
                **tags,
            },
        )


def start_tracking(experiment: str) -> Tracking:
    """Point MLflow at the configured store and experiment."""
    import mlflow  # heavy: imported only by stages that track

    uri = tracking_uri()
    mlflow.set_tracking_uri(uri)
    experiment_id = mlflow.set_experiment(experiment).experiment_id
    logger.info("tracking to %s, experiment '%s'", uri, experiment)
    return Tracking(mlflow, experiment_id)


def lifecycle_run_id() -> str:
    """The id shared by the stages of one lifecycle run (see the module docstring)."""
    explicit = os.environ.get("LIFECYCLE_RUN_ID")
    if explicit:
        return explicit
    pid = os.getppid()
    for _ in range(4):  # stage <- sh -c <- dvc repro, give or take a wrapper
        if pid <= 1:
            break
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            break
        if b"repro" in cmdline and any(part.endswith(b"dvc") for part in cmdline):
            start_time = stat[19]  # field 22 of /proc/<pid>/stat, counted after the name
            return hashlib.sha256(f"{pid}:{start_time}".encode()).hexdigest()[:12]
        pid = int(stat[1])  # the parent's pid
    return uuid.uuid4().hex[:12]


def git_commit() -> str:
    """The current git commit, or 'unknown' outside a git checkout."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip()


def file_md5(path: Path | str) -> str:
    """The MD5 DVC records for a file in dvc.lock: the data version a run used."""
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def flatten(prefix: str, value: Any) -> dict[str, Any]:
    """Nested config as flat `a.b.c` keys, the shape MLflow params want."""
    if isinstance(value, dict):
        flat: dict[str, Any] = {}
        for key, inner in value.items():
            flat.update(flatten(f"{prefix}.{key}" if prefix else str(key), inner))
        return flat
    return {prefix: value}
