"""The pre-promotion infra check (what TFX calls InfraValidator).

Before the `champion` alias moves, the candidate is loaded from the store exactly as the
service loads it and answers a replay of sample rows, one request at a time, through the
service's own request path (validate the record, build the frame, predict). It passes when
every row validates, the answers match the model's in-process predictions, and the p99
latency is within budget.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pandas as pd
from pydantic import ValidationError

from core.records.deploy import InfraCheck
from features.contract import DataContract
from serving.model_store import ServedModel
from serving.schema import build_record_model, records_to_frame, served_columns

PROBABILITY_TOLERANCE = 1e-9


def sample_replay_rows(
    holdout: pd.DataFrame, expected: np.ndarray, rows: int, seed: int
) -> tuple[pd.DataFrame, np.ndarray]:
    """`rows` holdout rows to replay (all of them when there are fewer), drawn with `seed`,
    and the in-process predictions `expected` (one per holdout row) for them."""
    sample = holdout.sample(n=min(rows, len(holdout)), random_state=seed)
    return sample, expected[holdout.index.get_indexer(sample.index)]


def replay_rows(
    served: ServedModel,
    rows: pd.DataFrame,
    contract: DataContract,
    budget_ms: float,
    expected: np.ndarray,
    numeric_threads: int = 1,
) -> InfraCheck:
    """Send each row through the service's request path; compare answers and time them.

    The replay runs with the numeric libraries' thread pools at `numeric_threads`, as
    `lifecycle serve` runs them (`serving.numeric_threads`): with the default (one thread
    per core) a single-row HistGradientBoosting call measured p99 over 1 s on a busy
    two-core machine, against under 10 ms with one thread.
    """
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=numeric_threads):
        return _replay(served, rows, contract, budget_ms, expected)


def _replay(
    served: ServedModel,
    rows: pd.DataFrame,
    contract: DataContract,
    budget_ms: float,
    expected: np.ndarray,
) -> InfraCheck:
    record_model = build_record_model(contract)
    names = [c.name for c in served_columns(contract)]
    latencies, answers, rejected = [], [], 0
    records = rows[names].to_dict(orient="records")
    _warm_up(served, record_model, records[:1], contract)  # first-call costs are not latency
    for row in records:
        start = time.perf_counter()
        try:
            record = record_model.model_validate(row)
        except ValidationError:
            rejected += 1
            continue
        frame = records_to_frame([record], contract)
        answers.append(served.pipeline.predict_proba(frame[contract.features])[0, 1])
        latencies.append((time.perf_counter() - start) * 1000)
    mismatched = (
        int(np.sum(np.abs(np.asarray(answers) - expected) > PROBABILITY_TOLERANCE))
        if not rejected
        else len(rows)
    )
    p50, p99, worst = (
        (float(np.percentile(latencies, 50)), float(np.percentile(latencies, 99)), max(latencies))
        if latencies
        else (float("nan"),) * 3
    )
    problems = []
    if rejected:
        problems.append(f"{rejected} of {len(rows)} sample rows were rejected by the request model")
    if mismatched and not rejected:
        problems.append(f"{mismatched} answers differ from the model's in-process predictions")
    if not p99 <= budget_ms:
        problems.append(f"p99 latency {p99:.1f} ms exceeds the budget {budget_ms:g} ms")
    message = (
        "; ".join(problems)
        if problems
        else f"{len(rows)} single-row requests answered correctly, p50 {p50:.1f} ms, "
        f"p99 {p99:.1f} ms (budget {budget_ms:g} ms)"
    )
    return InfraCheck(
        tag=served.tag,
        rows=len(rows),
        p50_ms=round(p50, 3),
        p99_ms=round(p99, 3),
        max_ms=round(worst, 3),
        budget_ms=budget_ms,
        rejected_rows=rejected,
        mismatched_rows=mismatched,
        passed=not problems,
        message=message,
    )


def _warm_up(
    served: ServedModel, record_model: Any, rows: list[dict[str, Any]], contract: DataContract
) -> None:
    """One untimed pass through the request path, as a running service has had."""
    for row in rows:
        try:
            record = record_model.model_validate(row)
        except ValidationError:
            return  # the timed loop counts and reports it
        served.pipeline.predict_proba(records_to_frame([record], contract)[contract.features])
