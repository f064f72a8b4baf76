"""The retrain policy: persistence over new windows, cooldown and the daily limit."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from core.config import RetrainPolicyConfig
from monitoring.policy import apply_retrain_policy, format_time, parse_time

NOW = dt.datetime(2026, 11, 25, 12, 0, tzinfo=dt.UTC)


def at(minutes_ago: float) -> dt.datetime:
    return NOW - dt.timedelta(minutes=minutes_ago)


def verdict(retrain: bool, last_time: dt.datetime | None = NOW) -> dict[str, Any]:
    return {
        "retrain": retrain,
        "reasons": ["drift"] if retrain else [],
        "window": {"rows": 1000, "last_time": format_time(last_time) if last_time else None},
    }


def iteration(
    minutes_ago: float, retrain: bool, window_minutes_ago: float, action: str = "none"
) -> dict[str, Any]:
    """A watch-log record: when it ran, its verdict, its window's newest prediction."""
    return {
        "time": format_time(at(minutes_ago)),
        "verdict": {"retrain": retrain},
        "window": {"last_time": format_time(at(window_minutes_ago))},
        "action": action,
    }


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
    assert decision.reasons == ["The monitor's verdict on this window is not to retrain."]


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


def test_unreadable_history_records_are_ignored() -> None:
    history: list[dict[str, Any]] = [{}, {"window": "?", "time": "yesterday"}, {"verdict": None}]
    decision = apply_retrain_policy(verdict(True), history, NOW, config())

    assert decision.retrain is True


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-25T12:00:00Z", NOW),
        ("2026-11-25T12:00:00.000+00:00", NOW),
        ("2026-11-25T13:00:00+01:00", NOW),
        ("2026-11-25T12:00:00", NOW),  # naive: UTC
        ("not a time", None),
        (None, None),
    ],
)
def test_parse_time(text: str | None, expected: dt.datetime | None) -> None:
    assert parse_time(text) == expected
