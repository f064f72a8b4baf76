"""The service's own Prometheus metrics, served with BentoML's at `/metrics`."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ServiceMetrics:
    """The counters and the histogram one worker updates."""

    predictions: Any
    latency: Any
    log_dropped: Any
    log_write_errors: Any
    reloads: Any
    shadow_rows: Any
    canary_fallbacks: Any


@functools.cache
def service_metrics() -> ServiceMetrics:
    """Created once per worker, after BentoML has set PROMETHEUS_MULTIPROC_DIR.

    prometheus_client decides at import whether it runs in multiprocess mode, which is why
    it is imported here and not at the top of the module.
    """
    import prometheus_client as prom

    metrics = ServiceMetrics(
        predictions=prom.Counter(
            "lifecycle_predictions",
            "Predictions served (rows), by model version and endpoint.",
            ["model_version", "endpoint"],
        ),
        latency=prom.Histogram(
            "lifecycle_prediction_latency_seconds",
            "Time from a validated request to its scores, by endpoint.",
            ["endpoint"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
        ),
        log_dropped=prom.Counter(
            "lifecycle_prediction_log_dropped_rows",
            "Prediction-log rows dropped because the log queue was full.",
        ),
        log_write_errors=prom.Counter(
            "lifecycle_prediction_log_write_errors",
            "Prediction-log writes that failed.",
        ),
        reloads=prom.Counter(
            "lifecycle_model_reloads",
            "Champion reloads, by outcome (swapped, failed, or rollout_failed: the rollout's "
            "model or block could not be used and the champion serves alone).",
            ["outcome"],
        ),
        shadow_rows=prom.Counter(
            "lifecycle_shadow_rows",
            "Rows the rollout's other model scored off the request path, by its version and "
            "outcome: scored, error (it raised on the row), unscored (queue full, shutdown), "
            "over_budget (it waited beyond max_lag_s: the shadow's CPU share was spent).",
            ["model_version", "outcome"],
        ),
        canary_fallbacks=prom.Counter(
            "lifecycle_canary_fallback_rows",
            "Canary rows the champion answered because the candidate raised, by candidate.",
            ["model_version"],
        ),
    )
    for outcome in ("swapped", "failed", "rollout_failed"):
        metrics.reloads.labels(outcome=outcome)  # show zeros before the first reload
    return metrics
