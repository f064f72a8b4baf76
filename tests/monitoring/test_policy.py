"""The retrain policy: persistence over new windows, cooldown and the daily limit."""

from __future__ import annotations

import datetime as dt
from typing import Any

from core.clock import format_time
from core.config import RetrainPolicyConfig
from core.records.monitor import Action as VerdictAction
from core.records.monitor import MonitorDecision, Signal, WindowSummary
from core.records.watch import Action, WatchRecord, WatchVerdict, WatchWindow
from monitoring.policy import apply_retrain_policy

NOW = dt.datetime(2026, 11, 25, 12, 0, tzinfo=dt.UTC)


def at(minutes_ago: float) -> dt.datetime:
    return NOW - dt.timedelta(minutes=minutes_ago)


def _window(last_time: dt.datetime | None) -> dict[str, Any]:
    shown = format_time(last_time) if last_time else None
    return {"rows": 1000, "labelled_rows": 0, "first_time": shown, "last_time": shown}


def verdict(
    retrain: bool,
    last_time: dt.datetime | None = NOW,
    action: VerdictAction | None = None,
    decided_by: Signal | None = None,
) -> MonitorDecision:
    """A monitor decision; its action is `retrain` or `keep` as `retrain` says, unless given."""
    return MonitorDecision(
        retrain=retrain,
        reasons=["quality breached"] if retrain else [],
        champion=None,
        window=WindowSummary(
            **_window(last_time), champion_rows=0, model_versions={}, missing_columns=[]
        ),
        drift=None,
        quality=None,
        action=action or ("retrain" if retrain else "keep"),
        decided_by=decided_by or ("realized_quality" if retrain else None),
    )


def iteration(
    minutes_ago: float,
    retrain: bool,
    window_minutes_ago: float,
    action: Action = "none",
    verdict_action: VerdictAction | None = None,
) -> WatchRecord:
    """A watch-log record: when it ran, its verdict, its window's newest prediction."""
    return WatchRecord(
        time=at(minutes_ago),
        iteration=f"i-{minutes_ago:g}",
        verdict=WatchVerdict(
            retrain=retrain,
            reasons=[],
            champion=None,
            action=verdict_action or ("retrain" if retrain else "keep"),
        ),
        window=WatchWindow(**_window(at(window_minutes_ago))),
        action=action,
    )


def config(**changes: Any) -> RetrainPolicyConfig:
    base = {"windows_in_a_row": 1, "cooldown_minutes": 30, "max_retrains_per_day": 4}
    return RetrainPolicyConfig(**{**base, **changes})


def test_a_first_retrain_verdict_retrains() -> None:
    decision = apply_retrain_policy(verdict(True), [], NOW, config())

    assert decision.retrain is True
    assert (decision.new_window, decision.streak, decision.retrains_last_24h) == (True, 1, 0)
    assert decision.reasons == [
        "1 consecutive new window(s) called for a retrain (monitor.policy.windows_in_a_row is 1).",
        "No retrain has started before.",
        "This is retrain 1 of at most 4 in 24 hours (monitor.policy.max_retrains_per_day).",
    ]


def test_a_verdict_against_retraining_is_followed() -> None:
    decision = apply_retrain_policy(verdict(False), [], NOW, config())

    assert decision.retrain is False
    assert decision.reasons == ["The monitor's verdict on this window is not to retrain (keep)."]
    assert decision.streak == 0


def test_an_alert_is_not_retrained_and_the_reason_names_the_signal() -> None:
    alert = verdict(False, action="alert", decided_by="data_quality")
    decision = apply_retrain_policy(alert, [], NOW, config())

    assert decision.retrain is False
    assert decision.reasons == [
        "The monitor's verdict on this window is not to retrain (alert, decided by data_quality)."
    ]


def test_drift_and_alert_windows_break_a_retrain_streak() -> None:
    # quality breached on the window at 21 minutes; then one window drifted with quality
    # holding, one raised an alert: neither counts, so this breach starts a new streak
    history = [
        iteration(20, True, 21),
        iteration(15, False, 16, verdict_action="drift"),
        iteration(10, True, 11),
        iteration(5, False, 6, verdict_action="alert"),
    ]
    decision = apply_retrain_policy(verdict(True, at(1)), history, NOW, config(windows_in_a_row=2))

    assert decision.retrain is False
    assert decision.streak == 1
    assert decision.reasons == [
        "1 consecutive new window(s) called for a retrain; "
        "monitor.policy.windows_in_a_row asks for 2."
    ]


def test_older_watch_lines_without_an_action_still_count() -> None:
    # watch-log lines written before verdicts had an action and a deciding signal
    older = [
        WatchRecord.model_validate(
            {
                "time": format_time(at(minutes)),
                "iteration": f"old-{minutes}",
                "window": _window(at(minutes + 1)),
                "verdict": {"retrain": wanted, "reasons": [], "champion": None},
            }
        )
        for minutes, wanted in ((20, False), (10, True))
    ]
    assert [(r.verdict.action, r.verdict.decided_by) for r in older if r.verdict] == [
        ("keep", None),
        ("retrain", None),
    ]
    decision = apply_retrain_policy(verdict(True, at(1)), older, NOW, config(windows_in_a_row=2))

    assert decision.retrain is True
    assert decision.streak == 2


def test_windows_in_a_row_counts_consecutive_new_windows() -> None:
    history = [
        iteration(20, False, 21),
        iteration(15, True, 16),
        iteration(10, True, 11),
    ]
    decision = apply_retrain_policy(verdict(True, at(1)), history, NOW, config(windows_in_a_row=3))

    assert decision.retrain is True
    assert decision.streak == 3


def test_a_calm_window_breaks_the_streak() -> None:
    history = [iteration(15, True, 16), iteration(10, False, 11)]
    decision = apply_retrain_policy(verdict(True, at(1)), history, NOW, config(windows_in_a_row=2))

    assert decision.retrain is False
    assert decision.streak == 1
    assert decision.reasons == [
        "1 consecutive new window(s) called for a retrain; "
        "monitor.policy.windows_in_a_row asks for 2."
    ]


def test_an_unchanged_window_counts_once() -> None:
    # three iterations saw the same window (no new traffic): one window, not three
    history = [iteration(15, True, 16), iteration(10, True, 16)]
    decision = apply_retrain_policy(verdict(True, at(1)), history, NOW, config(windows_in_a_row=3))

    assert decision.retrain is False
    assert decision.streak == 2


def test_the_same_window_again_is_not_new_and_does_not_retrain() -> None:
    history = [iteration(10, True, 16)]
    decision = apply_retrain_policy(verdict(True, at(16)), history, NOW, config())

    assert decision.retrain is False
    assert decision.new_window is False
    assert decision.reasons == [
        "No new window: its newest prediction (2026-11-25T11:44:00.000Z) is not later than "
        "the newest an earlier iteration judged (2026-11-25T11:44:00.000Z); the same window "
        "does not count twice toward monitor.policy.windows_in_a_row."
    ]


def test_a_window_without_predictions_is_not_new() -> None:
    decision = apply_retrain_policy(verdict(True, None), [], NOW, config())

    assert decision.retrain is False
    assert decision.reasons == [
        "The window has no predictions with a time, so it is not a new window."
    ]


def test_a_retrain_starts_the_count_afresh() -> None:
    history = [
        iteration(200, True, 201),
        iteration(190, True, 191, action="retrained"),
        iteration(100, True, 101),
    ]
    decision = apply_retrain_policy(verdict(True, at(1)), history, NOW, config(windows_in_a_row=3))

    assert decision.retrain is False
    assert decision.streak == 2  # the window at 101 minutes and this one; not those before


def test_no_retrain_within_the_cooldown() -> None:
    history = [iteration(12, True, 13, action="retrained")]
    decision = apply_retrain_policy(verdict(True, at(1)), history, NOW, config())

    assert decision.retrain is False
    assert decision.last_retrain == "2026-11-25T11:48:00.000Z"
    assert decision.reasons == [
        "The last retrain started at 2026-11-25T11:48:00.000Z, 12.0 minutes ago, within "
        "monitor.policy.cooldown_minutes (30); the next is allowed from "
        "2026-11-25T12:18:00.000Z."
    ]


def test_a_failed_retrain_also_starts_the_cooldown() -> None:
    history = [iteration(5, True, 6, action="retrain_failed")]
    decision = apply_retrain_policy(verdict(True, at(1)), history, NOW, config())

    assert decision.retrain is False
    assert "monitor.policy.cooldown_minutes (30)" in decision.reasons[0]


def test_after_the_cooldown_a_retrain_is_allowed() -> None:
    history = [iteration(31, True, 32, action="retrained")]
    decision = apply_retrain_policy(verdict(True, at(1)), history, NOW, config())

    assert decision.retrain is True
    assert decision.reasons[1] == (
        "The last retrain was 31.0 minutes ago, beyond monitor.policy.cooldown_minutes (30)."
    )


def test_at_most_max_retrains_per_day() -> None:
    history = [
        iteration(60 * 25, True, 60 * 25 + 1, action="retrained"),  # more than a day ago
        iteration(60 * 20, True, 60 * 20 + 1, action="retrained"),
        iteration(60 * 10, True, 60 * 10 + 1, action="retrained"),
    ]
    decision = apply_retrain_policy(
        verdict(True, at(1)), history, NOW, config(max_retrains_per_day=2)
    )

    assert decision.retrain is False
    assert decision.retrains_last_24h == 2
    assert decision.reasons == [
        "2 retrain(s) started in the last 24 hours, the most "
        "monitor.policy.max_retrains_per_day allows (2); the next is allowed from "
        "2026-11-25T16:00:00.000Z."
    ]


def test_max_retrains_per_day_zero_turns_retraining_off() -> None:
    decision = apply_retrain_policy(verdict(True), [], NOW, config(max_retrains_per_day=0))

    assert decision.retrain is False
    assert decision.reasons == [
        "Automatic retraining is off (monitor.policy.max_retrains_per_day is 0)."
    ]


def test_every_rule_that_blocks_is_named() -> None:
    history = [iteration(10, True, 11, action="retrained")]
    decision = apply_retrain_policy(
        verdict(True, at(11)), history, NOW, config(max_retrains_per_day=1)
    )

    assert decision.retrain is False
    assert [reason.split(" ")[0] for reason in decision.reasons] == ["No", "1", "The"]


def test_iterations_that_judged_no_window_are_ignored() -> None:
    # failed iterations: the monitor's decision was never read (the log's reader skips
    # lines that are not watch records at all, see tests/lifecycle/test_watch.py)
    history = [
        WatchRecord(time=at(5), iteration="failed", error="dvc repro (monitor) failed"),
        WatchRecord(time=at(3), iteration="bad", error="reports/monitor/decision.json: not JSON"),
    ]
    decision = apply_retrain_policy(verdict(True), history, NOW, config())

    assert decision.retrain is True
