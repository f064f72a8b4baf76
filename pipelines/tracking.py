"""MLflow at the edge: the tracking URI comes from the environment, never from import-time code.

With no `MLFLOW_TRACKING_URI`, runs go to `sqlite:///mlflow.db` in the project root, which
`mlflow ui --backend-store-uri sqlite:///mlflow.db` opens.
"""

from __future__ import annotations

import logging
import os
import subprocess
from typing import Any

logger = logging.getLogger(__name__)

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI


def start_tracking(experiment: str) -> Any:
    """Point MLflow at the configured store and experiment; returns the mlflow module."""
    import mlflow  # heavy: imported only by stages that track

    uri = tracking_uri()
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment(experiment)
    logger.info("tracking to %s, experiment '%s'", uri, experiment)
    return mlflow


def git_commit() -> str:
    """The current git commit, or 'unknown' outside a git checkout."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip()


def flatten(prefix: str, value: Any) -> dict[str, Any]:
    """Nested config as flat `a.b.c` keys, the shape MLflow params want."""
    if isinstance(value, dict):
        flat: dict[str, Any] = {}
        for key, inner in value.items():
            flat.update(flatten(f"{prefix}.{key}" if prefix else str(key), inner))
        return flat
    return {prefix: value}
