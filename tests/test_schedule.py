"""Business hours: pure decisions over zone-aware datetimes (era_beacon_notify.schedule)."""

from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

import pytest

from era_beacon_notify.schedule import local_now, next_window, skip_reason

JKT = ZoneInfo("Asia/Jakarta")
UTC = ZoneInfo("UTC")


def at(text: str, tz=JKT) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=tz)


@pytest.mark.parametrize("moment, inside", [
    ("2026-12-02 08:59", False),  # Wednesday, a minute before opening
    ("2026-12-02 09:00", True),   # start hour is inclusive
    ("2026-12-02 12:30", True),
    ("2026-12-02 17:59", True),
    ("2026-12-02 18:00", False),  # end hour is exclusive
    ("2026-12-02 23:30", False),
    ("2026-11-30 09:00", True),   # Monday
    ("2026-12-04 17:30", True),   # Friday, the last cron slot
    ("2026-12-05 10:00", False),  # Saturday
    ("2026-12-06 10:00", False),  # Sunday
])
def test_business_hours_table(moment: str, inside: bool) -> None:
    assert (skip_reason(at(moment), 9, 18, frozenset()) is None) is inside


@pytest.mark.parametrize("utc_moment, inside", [
    ("2026-12-02 02:00", True),   # 09:00 Jakarta (UTC+7)
    ("2026-12-02 01:59", False),  # 08:59 Jakarta
    ("2026-12-02 10:59", True),   # 17:59 Jakarta
    ("2026-12-02 11:00", False),  # 18:00 Jakarta
    ("2026-12-04 19:00", False),  # Friday 19:00 UTC is Saturday 02:00 in Jakarta
    ("2026-12-06 20:00", False),  # Sunday 20:00 UTC is Monday 03:00 in Jakarta: too early
    ("2026-12-07 02:30", True),   # Monday 09:30 Jakarta
])
def test_the_check_happens_in_the_configured_zone_not_the_servers(utc_moment: str, inside: bool) -> None:
    now = at(utc_moment, UTC).astimezone(JKT)
    assert (skip_reason(now, 9, 18, frozenset()) is None) is inside


def test_a_weekday_in_utc_can_be_the_weekend_in_another_zone() -> None:
    friday_utc = at("2026-12-04 23:00", UTC)  # Friday night in UTC
    assert skip_reason(friday_utc, 0, 24, frozenset()) is None
    assert "Saturday" in skip_reason(friday_utc.astimezone(ZoneInfo("Pacific/Kiritimati")), 0, 24, frozenset())


def test_skip_dates_win_over_business_hours() -> None:
    reason = skip_reason(at("2026-12-25 10:00"), 9, 18, frozenset({date(2026, 12, 25)}))
    assert reason is not None and "skip_dates" in reason


@pytest.mark.parametrize("moment, expected", [
    ("2026-12-02 10:00", "2026-12-02 10:00"),  # inside: now
    ("2026-12-02 07:00", "2026-12-02 09:00"),  # before opening: today
    ("2026-12-02 19:00", "2026-12-03 09:00"),  # after closing: tomorrow
    ("2026-12-04 19:00", "2026-12-07 09:00"),  # Friday evening: Monday
    ("2026-12-05 10:00", "2026-12-07 09:00"),  # Saturday: Monday
    ("2026-12-24 19:00", "2026-12-28 09:00"),  # Thursday evening, Friday 25th skipped
])
def test_next_window(moment: str, expected: str) -> None:
    skip = frozenset({date(2026, 12, 25)})
    assert next_window(at(moment), 9, 18, skip) == at(expected)


def test_local_now_is_zone_aware_both_ways(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("time.time", lambda: at("2026-12-02 02:00", UTC).timestamp())
    assert local_now(JKT) == at("2026-12-02 09:00")
    assert local_now(None).tzinfo is not None


def test_next_window_in_server_local_time_crosses_a_dst_change(monkeypatch: pytest.MonkeyPatch) -> None:
    """timezone empty: local time. Friday evening before the US spring-forward weekend, the next
    window is Monday 09:00 EDT (-04:00), not 09:00 at Friday's EST offset (which is 10:00 EDT)."""
    import time
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    try:
        friday = datetime(2027, 3, 12, 19).astimezone()
        assert friday.utcoffset().total_seconds() == -5 * 3600
        window = next_window(friday, 9, 18, frozenset())
        assert (window.day, window.hour, window.utcoffset().total_seconds()) == (15, 9, -4 * 3600)
    finally:
        monkeypatch.undo()
        time.tzset()
