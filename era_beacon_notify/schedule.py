"""Business hours: pure decisions about a zone-aware `datetime`, and the one clock read.

All wall-clock time in the program comes from `time.time()` (epoch seconds): the token expiry and
the run record are compared in epoch seconds, never in naive local time, so a server on UTC, a TZ
variable far from UTC or a changed clock cannot shift them.
"""

from __future__ import annotations

import time
from datetime import date, datetime, timedelta, timezone, tzinfo

WEEKDAYS = range(0, 5)  # Monday..Friday


def local_now(tz: tzinfo | None) -> datetime:
    """Now in `tz`, or in the server's local zone when `tz` is None. Always zone-aware."""
    now = datetime.fromtimestamp(time.time(), tz)
    return now if tz is not None else now.astimezone()


def skip_reason(now: datetime, start_hour: int, end_hour: int, skip_dates: frozenset[date]) -> str | None:
    """Why a scheduled run at `now` must not send, or None when it is business time."""
    if now.date() in skip_dates:
        return f"{now:%Y-%m-%d} is listed in skip_dates"
    if now.weekday() not in WEEKDAYS:
        return f"{now:%A} is not a business day"
    if not start_hour <= now.hour < end_hour:
        return f"{now:%H:%M} is outside business hours {start_hour:02d}:00-{end_hour:02d}:00"
    return None


def at_hour(day: date, hour: int, tz: tzinfo | None) -> datetime:
    """`hour`:00 on `day` in `tz`. A fixed offset (the server's local time, from astimezone()) is
    re-read for that day, so a DST change between now and then is not missed."""
    if tz is None or type(tz) is timezone:
        return datetime(day.year, day.month, day.day, hour).astimezone()
    return datetime(day.year, day.month, day.day, hour, tzinfo=tz)


def next_window(now: datetime, start_hour: int, end_hour: int, skip_dates: frozenset[date]) -> datetime:
    """The next moment at or after `now` that is business time (searches at most a year)."""
    if skip_reason(now, start_hour, end_hour, skip_dates) is None:
        return now
    day = now.date()
    for _ in range(366):
        opening = at_hour(day, start_hour, now.tzinfo)
        if opening > now and skip_reason(opening, start_hour, end_hour, skip_dates) is None:
            return opening
        day += timedelta(days=1)
    raise ValueError("no business time within a year: check skip_dates")
