"""Each watch iteration as an MLflow run named `watch`: tags to filter on, metrics to chart.

The loop must outlive the tracking server: when MLflow cannot be reached the iteration is
only in the watch log, with a warning that says why (`pipelines.edges.mlflow_connection`).
"""

from __future__ import annotations

import logging

from core.records.watch import WatchRecord

logger = logging.getLogger(__name__)


def mlflow_tags(record: WatchRecord) -> dict[str, str]:
    """String tags for the iteration's MLflow run: what a search in the UI filters on."""
    tags = {
        "kind": "watch",
        "watch_iteration": record.iteration,
        "action": record.action,
        "verdict_retrain": _flag(record.verdict is not None and record.verdict.retrain),
        "verdict_action": record.verdict.action if record.verdict else "none",
        "decided_by": (record.verdict.decided_by or "none") if record.verdict else "none",
        "policy_retrain": _flag(record.policy is not None and record.policy.retrain),
        "promoted": _flag(record.deploy is not None and record.deploy.promoted),
        "candidate_started": (
            record.deploy.rollout.kind
            if record.deploy is not None and record.deploy.candidate_started
            else "none"
        ),
        "failed": _flag(record.error is not None),
        "rollout_outcome": (
            record.rollout.verdict.outcome
            if record.rollout is not None and record.rollout.verdict is not None
            else "none"
        ),
    }
    if record.error:
        tags["error"] = record.error[:5000]
    if record.feedback is not None:
        tags["feedback_batch"] = str(record.feedback.path)
        tags["feedback_md5"] = record.feedback.md5
    return tags


def mlflow_metrics(record: WatchRecord) -> dict[str, float]:
    """Numeric facts of the iteration, for charts across iterations (absent ones left out)."""
    window, policy, deploy = record.window, record.policy, record.deploy
    metrics: dict[str, float | None] = {
        "window_rows": window.rows if window else None,
        "labelled_rows": window.labelled_rows if window else None,
        "verdict_retrain": _number(record.verdict is not None and record.verdict.retrain),
        "verdict_alert": _number(record.verdict is not None and record.verdict.action == "alert"),
        "policy_retrain": _number(policy is not None and policy.retrain),
        "retrain_streak": policy.streak if policy else None,
        "retrains_last_24h": policy.retrains_last_24h if policy else None,
        "retrained": _number(record.action in ("retrained", "retrain_failed")),
        "feedback_rows": record.feedback.rows if record.feedback else 0,
        "promoted": _number(deploy is not None and deploy.promoted),
        "candidate_started": _number(deploy is not None and deploy.candidate_started),
        "champion_version_after": deploy.champion_after if deploy else None,
        "failed": _number(record.error is not None),
    }
    metrics.update({f"{k}_seconds": v for k, v in record.durations_s.items()})
    return {k: float(v) for k, v in metrics.items() if v is not None}


def record_in_mlflow(record: WatchRecord, experiment: str) -> str | None:
    """Log the iteration as an MLflow run named `watch`; a warning (None) if MLflow fails."""
    from pipelines.edges.tracking import log_record_run

    return log_record_run(
        experiment,
        "watch",
        mlflow_tags(record),
        mlflow_metrics(record),
        record.model_dump(mode="json"),
        "record.json",
        what=f"iteration {record.iteration}",
        kept_in="the watch log",
    )


def _flag(value: bool) -> str:
    return "true" if value else "false"


def _number(value: bool) -> int:
    return 1 if value else 0
