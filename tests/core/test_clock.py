"""One clock and one time format: UTC, milliseconds, a Z; naive times are taken as UTC."""

from __future__ import annotations

import datetime as dt

import pytest

from core.clock import as_utc, format_time, parse_time, utc_now

NOW = dt.datetime(2026, 11, 25, 12, 0, tzinfo=dt.UTC)


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


def test_format_time_is_utc_with_milliseconds_and_a_z() -> None:
    moment = dt.datetime(2026, 11, 25, 13, 0, 0, 123456, tzinfo=dt.timezone(dt.timedelta(hours=1)))

    assert format_time(moment) == "2026-11-25T12:00:00.123Z"
    assert format_time(NOW.replace(tzinfo=None)) == "2026-11-25T12:00:00.000Z"  # naive: UTC
    assert parse_time(format_time(moment)) == as_utc(moment).replace(microsecond=123000)


def test_utc_now_is_aware_utc() -> None:
    assert utc_now().tzinfo == dt.UTC
