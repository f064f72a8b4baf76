"""What the project's retries, watch interval and stage names become in Dagster.

The values `lifecycle export --to dagster` writes into `definitions.py` (`to_dagster`): a
stage's `Retry` as a `RetryPolicy`, the watch interval as cron expressions, each stage's
asset name. Pure functions of the typed pipeline graph, apart from the text around them.
"""

from __future__ import annotations

import builtins
import keyword
import math
import re
from collections import defaultdict
from dataclasses import dataclass

from lifecycle.orchestrators.graph import Pipeline, Retry

MINUTES_PER_DAY = 24 * 60
IMPORTED = (  # from dagster, those a definitions file may use
    "AssetExecutionContext",
    "AssetSelection",
    "Backoff",
    "DagsterRunStatus",
    "Definitions",
    "Failure",
    "Jitter",
    "MaterializeResult",
    "OpExecutionContext",
    "Output",
    "RetryPolicy",
    "RunsFilter",
    "ScheduleDefinition",
    "ScheduleEvaluationContext",
    "asset",
    "define_asset_job",
    "in_process_executor",
    "job",
    "op",
)


# --- retries ------------------------------------------------------------------------------


@dataclass(frozen=True)
class DagsterRetry:
    """A stage's `Retry` as Dagster's `RetryPolicy` arguments, and why they are what they are."""

    max_retries: int
    delay: float
    exponential: bool  # Backoff.EXPONENTIAL: (2**n - 1) * delay before retry n; else delay
    jitter: bool  # Jitter.PLUS_MINUS: a random -delay..+delay added to each wait
    note: str  # the waits this gives, for the generated comment

    def waits(self) -> list[float]:
        """The wait before each retry, jitter aside (Dagster's `calculate_delay`)."""
        factors = [(2**n - 1) if self.exponential else 1 for n in range(1, self.max_retries + 1)]
        return [factor * self.delay for factor in factors]

    def longest(self) -> float:
        """The longest wait, jitter included."""
        return max(self.waits()) + (self.delay if self.jitter else 0)


def retry_policy(retry: Retry) -> DagsterRetry | None:
    """The `RetryPolicy` for a stage's `Retry`; None when it makes one attempt only.

    Dagster's exponential backoff waits `(2**n - 1) * delay` before retry n and has no cap;
    `Jitter.PLUS_MINUS` adds a random -delay..+delay (Dagster's jitter scales with the delay:
    `jitter_s` says only whether there is one). The attempts are kept exactly (the contract
    every engine honours). When the longest wait would pass `backoff_max_s`, the policy is
    the one of two that keep every wait within it whose total wait (the outage the retries
    ride out) is nearest the project's own: exponential from a lowered delay, or a constant
    wait at the cap.
    """
    retries = retry.retries
    if retries <= 0:
        return None
    jitter = retry.jitter_s > 0
    cap = retry.backoff_max_s
    spread = 1 if jitter else 0  # PLUS_MINUS adds up to one more delay
    exact = DagsterRetry(retries, retry.backoff_initial_s, True, jitter, "")
    if exact.longest() <= cap:
        return _noted(exact, "")
    exponential = DagsterRetry(
        retries, _floor_ms(cap / (2**retries - 1 + spread)), True, jitter, ""
    )
    constant = DagsterRetry(retries, _floor_ms(cap / (1 + spread)), False, jitter, "")
    own = sum(
        min(retry.backoff_initial_s * 2 ** (n - 1), cap) for n in range(1, retries + 1)
    )  # the project's waits (core.config.RetryConfig): doubling, capped
    chosen = min((exponential, constant), key=lambda policy: abs(sum(policy.waits()) - own))
    how = "the delay lowered" if chosen.exponential else "a constant wait"
    why = f"; Dagster's backoff has no cap: {how} keeps every wait within backoff_max_s {cap:g} s"
    return _noted(chosen, why)


def _noted(policy: DagsterRetry, why: str) -> DagsterRetry:
    waits = [_seconds(wait) for wait in policy.waits()]
    if len(waits) > 4:
        waits = [*waits[:3], "...", waits[-1]]
    note = f"waits {', '.join(waits)} s" if policy.exponential else f"waits {waits[0]} s each"
    if policy.jitter:
        note += f" ± {_seconds(policy.delay)} s"
    return DagsterRetry(
        policy.max_retries, policy.delay, policy.exponential, policy.jitter, note + why
    )


def _floor_ms(seconds: float) -> float:
    return math.floor(seconds * 1000) / 1000


def _seconds(value: float) -> str:
    return f"{value:.3f}".rstrip("0").rstrip(".") if value != int(value) else f"{value:.0f}"


# --- the watch schedule -------------------------------------------------------------------


def cron_schedule(minutes: int) -> tuple[list[str], str | None]:
    """Cron expressions for a run every `minutes`, and a note when cron cannot say it exactly.

    Dagster takes a list of cron strings (a tick at any of them). An interval that divides a
    day is exact: `*/m` within an hour, `0 */h` within a day, else one expression per minute
    of the hour. One that does not divide a day becomes the nearest that does."""
    if minutes < 1:
        raise ValueError(f"a schedule needs at least one minute, not {minutes}")
    if minutes >= MINUTES_PER_DAY:
        days = round(minutes / MINUTES_PER_DAY)
        if minutes == MINUTES_PER_DAY:
            return ["0 0 * * *"], None
        cron = "0 0 * * *" if days == 1 else f"0 0 */{days} * *"
        return [cron], f"every {minutes} min is no cron interval: {cron} (from each month's 1st)"
    note = None
    if MINUTES_PER_DAY % minutes:
        nearest = min(
            (d for d in range(1, MINUTES_PER_DAY) if MINUTES_PER_DAY % d == 0),
            key=lambda d: (abs(d - minutes), -d),
        )
        note = f"{minutes} min does not divide a day: every {nearest} min instead"
        minutes = nearest
    if 60 % minutes == 0:
        return ["* * * * *" if minutes == 1 else f"*/{minutes} * * * *"], note
    if minutes % 60 == 0:
        hours = minutes // 60
        return ["0 * * * *" if hours == 1 else f"0 */{hours} * * *"], note
    by_minute: dict[int, list[int]] = defaultdict(list)
    for start in range(0, MINUTES_PER_DAY, minutes):
        by_minute[start % 60].append(start // 60)
    return [
        f"{minute} {','.join(str(hour) for hour in hours)} * * *"
        for minute, hours in sorted(by_minute.items())
    ], note


# --- names ----------------------------------------------------------------------------------


def identifier(name: str) -> str:
    """A Python identifier and Dagster name for `name` (Dagster takes [A-Za-z0-9_])."""
    text = re.sub(r"[^0-9A-Za-z_]", "_", name)
    if not text or text[0].isdigit():
        text = f"_{text}"
    return f"{text}_" if keyword.iskeyword(text) else text


def asset_names(pipeline: Pipeline) -> dict[str, str]:
    """Each stage's asset (and function) name: its identifier, numbered when two collide."""
    names: dict[str, str] = {}
    for stage in pipeline.stages:
        base = candidate = identifier(stage.name)
        number = 1
        while candidate in names.values() or candidate in _RESERVED:
            number += 1
            candidate = f"{base}_{number}"
        names[stage.name] = candidate
    return names


# Names the generated module uses besides the assets': a stage's asset must not shadow them.
_RESERVED = frozenset(
    {"defs", "lifecycle_job", "watch_job", "watch_once", "watch_schedule", "lifecycle_tasks"}
    | {"_run_stage", "_metadata", "_materialize", "_nothing_in_progress", "context"}
    | {"GROUP", "EXCLUSIVE", "IN_PROGRESS", "Path", "sys", "annotations"}
    | set(IMPORTED)
    | set(dir(builtins))
)
