"""MLflow at the edge: the tracking URI comes from the environment, never from import-time code.

Each stage's MLflow run is a child of one parent run per lifecycle run (`dvc repro`), whose
id the stage ledger records too. A tracking server that cannot be reached (connection
refused, timeouts, 5xx, MLflow's own HTTP retries exhausted) raises
`TrackingUnavailableError`, which stages retry; `start_tracking` bounds MLflow's HTTP
retries so that one attempt fails in seconds.
"""

from __future__ import annotations

import contextlib
import logging
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from pipelines.edges.ledger import lifecycle_run_id, note_mlflow_run
from pipelines.edges.mlflow_connection import (
    bounded_http_retries,
    is_remote,
    limit_http_retries,
    redact_uri,
    redacted_tracking_uri,
    tracking_uri,
    unavailable_reason,
)

logger = logging.getLogger(__name__)

LIFECYCLE_TAG = "lifecycle_run"
# The experiment's kind, as MLflow 3 records it (its UI's experiment-type selector writes
# this tag): a model-development experiment, not a GenAI one. MLflow 3.17's UI chooses the
# page an experiment opens on by the browser's "GenAI | Model training" switch in the
# sidebar (GenAI, the overview of traces, by default) rather than by this tag, so the
# README tells users to pick "Model training". The tag still states the kind, for the API
# and for the UI's own code path that reads it where that switch is off.
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"


class TrackingUnavailableError(RuntimeError):
    """The MLflow tracking server could not be reached, timed out or failed: worth a retry.

    Its message starts with "MLflow tracking server unreachable at <uri>"; stages retry it
    (`retry` in params.yaml).
    """


@dataclass(frozen=True)
class Tracking:
    """The MLflow module, pointed at the configured store and experiment."""

    mlflow: Any
    experiment_id: str

    @contextlib.contextmanager
    def stage_run(self, stage: str, **tags: str) -> Iterator[Any]:
        """The stage's run, a child of its lifecycle's parent run (a context manager).

        All stages of one `dvc repro` share a lifecycle id (`lifecycle_run_id`), so their
        runs are children of one parent run tagged `lifecycle_run=<id>` and the UI shows
        them together. The run's id goes to the stage ledger. An unreachable server, when
        the run starts, inside the block or when it ends, raises `TrackingUnavailableError`.
        """
        lifecycle = lifecycle_run_id()
        with unavailable_as_error(f"starting the {stage} run"):
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
                    tags={
                        LIFECYCLE_TAG: lifecycle,
                        "kind": "lifecycle",
                        "git_commit": git_commit(),
                    },
                ) as parent:
                    parent_id = parent.info.run_id
            run = self.mlflow.start_run(
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
        note_mlflow_run(run.info.run_id)
        with unavailable_as_error(f"logging to the {stage} run {run.info.run_id}"), run:
            yield run


def start_tracking(experiment: str) -> Tracking:
    """Point MLflow at the configured store and experiment, with bounded HTTP retries.

    The experiment is marked as a model-development experiment (`EXPERIMENT_KIND_TAG`), when
    it is created and on an existing one that has no kind yet; a kind a user chose in the
    UI is kept. With no
    `MLFLOW_TRACKING_URI`, runs go to `sqlite:///mlflow.db` in the project root. So that one
    attempt fails in seconds rather than minutes, MLflow's HTTP retries and timeout stay
    capped for the rest of the stage's process (`mlflow_connection`).
    """
    import mlflow  # heavy: imported only by stages that track

    uri = tracking_uri()
    if is_remote(uri):
        limit_http_retries()  # for the rest of the stage's process
    mlflow.set_tracking_uri(uri)
    with unavailable_as_error(f"setting the experiment '{experiment}'"):
        found = mlflow.set_experiment(experiment)
        experiment_id = found.experiment_id
        if EXPERIMENT_KIND_TAG not in found.tags:
            mlflow.MlflowClient().set_experiment_tag(
                experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND
            )
    logger.info("tracking to %s, experiment '%s'", redact_uri(uri), experiment)
    return Tracking(mlflow, experiment_id)


def log_record_run(
    experiment: str,
    run_name: str,
    tags: dict[str, str],
    metrics: dict[str, float],
    record: dict[str, Any],
    artifact: str,
    what: str,
    kept_in: str,
) -> str | None:
    """A record as one MLflow run: tags, metrics and the record's JSON as `artifact`.

    For loops that must outlive the tracking server (watch iterations, rollout verdicts):
    with MLflow unreachable (bounded retries), a warning names `what`, says why and that
    `kept_in` (the caller's own file) has it, and None is returned.
    """
    try:
        with bounded_http_retries():
            mlflow = start_tracking(experiment).mlflow
            if mlflow.active_run() is not None:  # left over from a failed call
                mlflow.end_run()
            with mlflow.start_run(run_name=run_name, tags=tags) as run:
                mlflow.log_metrics(metrics)
                mlflow.log_dict(record, artifact)
            return str(run.info.run_id)
    except Exception as exc:  # the loop must outlive the tracking server
        logger.warning(
            "%s was not recorded in MLflow at %s (%s); %s has it",
            what,
            redacted_tracking_uri(),
            failure_reason(exc),
            kept_in,
        )
        return None


def failure_reason(exc: BaseException) -> str:
    """Why MLflow was unavailable (also behind a `TrackingUnavailableError`), or the error."""
    for link in (exc, exc.__cause__):
        if link is not None and (reason := unavailable_reason(link)) is not None:
            return reason
    first_line = (str(exc).strip().splitlines() or [""])[0]
    return f"{type(exc).__name__}: {first_line[:300]}"


@contextlib.contextmanager
def unavailable_as_error(what: str) -> Iterator[None]:
    """Turn MLflow's connection failures inside the block into `TrackingUnavailableError`."""
    try:
        yield
    except Exception as exc:
        converted = unavailable_error(exc, what)
        if converted is None or converted is exc:
            raise
        raise converted from exc


def unavailable_error(exc: BaseException, what: str = "") -> TrackingUnavailableError | None:
    """A `TrackingUnavailableError` when `exc` means the tracking server could not be reached
    (connection refused, timeout, 5xx, MLflow's HTTP retries exhausted), else None."""
    if isinstance(exc, TrackingUnavailableError):
        return exc
    reason = unavailable_reason(exc)
    if reason is None:
        return None
    during = f" while {what}" if what else ""
    return TrackingUnavailableError(
        f"MLflow tracking server unreachable at {redact_uri(tracking_uri())} ({reason}){during}"
    )


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
