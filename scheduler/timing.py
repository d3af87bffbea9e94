"""When a member gets a message: their local day and daily time, yearly occurrences, quiet hours."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

from loyalbot.scheduler.triggers import parse_daily_time
from loyalbot.storage import as_utc
from loyalbot.storage.clock import zone_or_utc

member_zone = zone_or_utc  # a member's stored zone, UTC when unknown


def after_quiet_hours(moment: datetime, tz: ZoneInfo, quiet_start: int | None, quiet_end: int | None) -> datetime:
    """`moment`, or the end of the member's quiet hours when `moment` falls inside them."""
    if quiet_start is None or quiet_end is None or quiet_start == quiet_end:
        return moment
    local = moment.astimezone(tz)
    minute = local.hour * 60 + local.minute
    quiet = (quiet_start <= minute < quiet_end) if quiet_start < quiet_end else (
        minute >= quiet_start or minute < quiet_end)
    if not quiet:
        return moment
    end_day = local.date() if minute < quiet_end else local.date() + timedelta(days=1)
    end = datetime.combine(end_day, time(quiet_end // 60, quiet_end % 60), tzinfo=tz)
    return as_utc(end)


def occurrence(day: date, year: int) -> date:
    """The yearly occurrence of `day` in `year`; 29 February falls on the 28th in other years."""
    try:
        return day.replace(year=year)
    except ValueError:
        return date(year, 2, 28)


def candidate_days(now: datetime, shift: int) -> list[tuple[int, int]]:
    """(month, day) pairs a member somewhere on Earth may be celebrating today, shifted by `shift` days."""
    days = {now.date() + timedelta(days=delta + shift) for delta in (-1, 0, 1)}
    pairs = {(d.month, d.day) for d in days}
    if any(d.month == 2 and d.day == 28 and not _leap(d.year) for d in days):
        pairs.add((2, 29))
    return sorted(pairs)


# The answer depends on the member only through their timezone: worked out once per zone.
@lru_cache(maxsize=4096)
def local_day(daily_time: str | None, timezone: str | None, now: datetime, window_start: datetime | None
              ) -> tuple[date, datetime] | None:
    """The member's local date a run is for and the moment to send, or None (not their time yet).

    `daily_time` is None unless the schedule runs at the member's local time; then `window_start`
    limits the run to members whose local daily time fell in (window_start, now].
    """
    tz = member_zone(timezone)
    local = now.astimezone(tz)
    if daily_time is None:
        return local.date(), now
    at = parse_daily_time(daily_time)
    target = as_utc(datetime.combine(local.date(), at, tzinfo=tz))
    if window_start is None:
        return local.date(), max(now, target)
    if as_utc(window_start) < target <= now:
        return local.date(), now
    return None


def _leap(year: int) -> bool:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
