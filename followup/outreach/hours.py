"""Clock rules for texts: timezones, quiet hours (``QUIET_HOURS``) and the local send times."""
from __future__ import annotations

import logging
from datetime import date, datetime, time, timedelta, timezone
from functools import lru_cache
from typing import Optional
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from flask import current_app

log = logging.getLogger(__name__)


@lru_cache(maxsize=256)
def zone(name: Optional[str]) -> ZoneInfo:
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        log.warning("unknown timezone %r; using UTC", name)
        return ZoneInfo("UTC")


def parse_clock(value: str) -> time:
    hours, _, minutes = value.strip().partition(":")
    return time(int(hours), int(minutes or 0))


def quiet_hours() -> tuple[time, time]:
    """``QUIET_HOURS`` as (start, end), e.g. ``20:00-09:00``; start == end means no quiet hours."""
    start, _, end = current_app.config["QUIET_HOURS"].partition("-")
    return parse_clock(start), parse_clock(end)


def is_quiet(moment: datetime, tz: ZoneInfo) -> bool:
    start, end = quiet_hours()
    now = moment.astimezone(tz).time()
    if start == end:
        return False
    return (now >= start or now < end) if start > end else (start <= now < end)


def quiet_ends(moment: datetime, tz: ZoneInfo) -> datetime:
    """The first moment (UTC) at or after ``moment`` outside quiet hours."""
    _, end = quiet_hours()
    local = moment.astimezone(tz)
    candidate = datetime.combine(local.date(), end, tzinfo=tz)
    if candidate <= local:
        candidate = datetime.combine(local.date() + timedelta(days=1), end, tzinfo=tz)
    return candidate.astimezone(timezone.utc)


def at_local(day: date, tz: ZoneInfo, clock: Optional[time] = None) -> datetime:
    """``day`` at ``clock`` (default ``REMINDER_LOCAL_TIME``) in ``tz``, as UTC."""
    clock = clock or parse_clock(current_app.config["REMINDER_LOCAL_TIME"])
    return datetime.combine(day, clock, tzinfo=tz).astimezone(timezone.utc)


def sms_date(value: date) -> str:
    """``Tuesday 3 March``: unambiguous in every English-speaking country."""
    return f"{value:%A} {value.day} {value:%B}"
