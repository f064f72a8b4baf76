"""The retrain policy of `lifecycle watch`: one window's verdict, weighed against the past.

The monitor stage judges one window ("retrain": true or false) and knows no history. The
watch loop calls `apply_retrain_policy` with that verdict, the records of its earlier
iterations (the watch log, `core.records.watch`) and the time, and retrains only when every
rule of `monitor.policy` allows it (persistence, cooldown, rate). Pure: no IO, no clock.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from core.clock import as_utc, format_time, parse_time
from core.config import RetrainPolicyConfig
from core.records.monitor import MonitorDecision
from core.records.watch import PolicyDecision, WatchRecord

# A watch iteration whose `action` is one of these started a retrain (even if it then failed).
RETRAIN_ACTIONS = frozenset({"retrained", "retrain_failed"})
DAY = dt.timedelta(hours=24)


def apply_retrain_policy(
    verdict: MonitorDecision,
    history: Sequence[WatchRecord],
    now: dt.datetime,
    config: RetrainPolicyConfig,
) -> PolicyDecision:
    """Decide whether the watch loop retrains now; `history` is oldest first.

    Every rule of `config` must allow it:

    - **Persistence** (`windows_in_a_row`): the verdicts of that many consecutive *new*
      windows, this one included, called for a retrain. A window is new when its newest
      prediction (`window.last_time`) is later than that of every earlier iteration, so an
      unchanged window, judged again because the loop woke up before new traffic came, never
      counts twice. A retrain starts the count afresh: the windows it was judged on were
      served by the old model, and the new one must be judged on its own.
    - **Cooldown** (`cooldown_minutes`): no retrain within that many minutes of the last one.
    - **Rate** (`max_retrains_per_day`): at most that many retrains in the last 24 hours; 0
      turns automatic retraining off.

    Only a verdict whose action is `retrain` counts: an `alert` (broken data, or a breach
    waiting for labels: a person looks, the model is not retrained on it) or a `drift` that
    leaves quality holding breaks the streak like a calm window.

    Of each history record, only `time`, `window.last_time`, `verdict.retrain` and `action`
    are read.
    """
    now = as_utc(now)
    wants_retrain = verdict.retrain
    last_time = parse_time(verdict.window.last_time)
    seen = [t for t in (_window_time(r) for r in history) if t]
    newest_seen = max(seen, default=None)
    new_window = last_time is not None and (newest_seen is None or last_time > newest_seen)

    retrain_times = [r.time for r in history if r.action in RETRAIN_ACTIONS]
    last_retrain = max(retrain_times, default=None)
    recent = sorted(t for t in retrain_times if now - t < DAY)
    streak = _streak(history, last_retrain) + 1 if new_window else 0

    if not wants_retrain:
        return PolicyDecision(
            retrain=False,
            reasons=[_no_retrain(verdict)],
            new_window=new_window,
            streak=0,
            retrains_last_24h=len(recent),
            last_retrain=format_time(last_retrain) if last_retrain else None,
        )
    blockers: list[str] = []
    if not new_window:
        blockers.append(_not_new(last_time, newest_seen))
    elif streak < config.windows_in_a_row:
        blockers.append(
            f"{streak} consecutive new window(s) called for a retrain; "
            f"monitor.policy.windows_in_a_row asks for {config.windows_in_a_row}"
        )
    if config.max_retrains_per_day == 0:
        blockers.append("automatic retraining is off (monitor.policy.max_retrains_per_day is 0)")
    elif len(recent) >= config.max_retrains_per_day:
        allowed_at = recent[len(recent) - config.max_retrains_per_day] + DAY
        blockers.append(
            f"{len(recent)} retrain(s) started in the last 24 hours, the most "
            f"monitor.policy.max_retrains_per_day allows ({config.max_retrains_per_day}); "
            f"the next is allowed from {format_time(allowed_at)}"
        )
    cooldown = dt.timedelta(minutes=config.cooldown_minutes)
    if last_retrain is not None and now - last_retrain < cooldown:
        blockers.append(
            f"the last retrain started at {format_time(last_retrain)}, "
            f"{_minutes(now - last_retrain)} ago, within monitor.policy.cooldown_minutes "
            f"({config.cooldown_minutes:g}); the next is allowed from "
            f"{format_time(last_retrain + cooldown)}"
        )

    if blockers:
        reasons = blockers
    else:
        since = (
            f"the last retrain was {_minutes(now - last_retrain)} ago, beyond "
            f"monitor.policy.cooldown_minutes ({config.cooldown_minutes:g})"
            if last_retrain is not None
            else "no retrain has started before"
        )
        reasons = [
            f"{streak} consecutive new window(s) called for a retrain "
            f"(monitor.policy.windows_in_a_row is {config.windows_in_a_row})",
            f"{since}",
            f"this is retrain {len(recent) + 1} of at most {config.max_retrains_per_day} in "
            "24 hours (monitor.policy.max_retrains_per_day)",
        ]
    return PolicyDecision(
        retrain=not blockers,
        reasons=[_sentence(reason) for reason in reasons],
        new_window=new_window,
        streak=streak,
        retrains_last_24h=len(recent),
        last_retrain=format_time(last_retrain) if last_retrain else None,
    )


def _streak(history: Sequence[WatchRecord], last_retrain: dt.datetime | None) -> int:
    """Trailing retrain verdicts among the new windows of `history` after the last retrain."""
    verdicts: list[bool] = []
    newest: dt.datetime | None = None
    for record in history:
        last_time = _window_time(record)
        if last_time is None or (newest is not None and last_time <= newest):
            continue
        newest = last_time
        if last_retrain is not None and record.time <= last_retrain:
            continue  # judged before (or by) the last retrain: its evidence is spent
        verdicts.append(record.verdict is not None and record.verdict.retrain)
    count = 0
    for wanted in reversed(verdicts):
        if not wanted:
            break
        count += 1
    return count


def _no_retrain(verdict: MonitorDecision) -> str:
    decided = f", decided by {verdict.decided_by}" if verdict.decided_by else ""
    return f"The monitor's verdict on this window is not to retrain ({verdict.action}{decided})."


def _not_new(last_time: dt.datetime | None, newest_seen: dt.datetime | None) -> str:
    if last_time is None:
        return "the window has no predictions with a time, so it is not a new window"
    assert newest_seen is not None
    return (
        f"no new window: its newest prediction ({format_time(last_time)}) is not later than "
        f"the newest an earlier iteration judged ({format_time(newest_seen)}); the same "
        "window does not count twice toward monitor.policy.windows_in_a_row"
    )


def _window_time(record: WatchRecord) -> dt.datetime | None:
    """The newest prediction of the window the record judged; None without one."""
    return parse_time(record.window.last_time) if record.window is not None else None


def _minutes(delta: dt.timedelta) -> str:
    return f"{delta.total_seconds() / 60:.1f} minutes"


def _sentence(text: str) -> str:
    text = text.strip()
    text = text[0].upper() + text[1:]
    return text if text.endswith(".") else f"{text}."
