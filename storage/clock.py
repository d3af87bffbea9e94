"""Time as the store keeps it: aware datetimes in UTC (SQLModel's UTCDateTime refuses naive ones)."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


def utcnow() -> datetime:
    """The current time, aware, in UTC."""
    return datetime.now(UTC)


def as_utc(value: datetime) -> datetime:
    """Turn any datetime into aware UTC; a naive one is taken to be UTC already."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


@lru_cache(maxsize=1024)
def find_zone(name: str) -> ZoneInfo | None:
    """The IANA time zone called `name`, or None when there is none by that name (or it is no name at all).

    The one check of a time zone's name: settings, the programme file, a member's choice, schedules and
    support hours all refuse what this returns None for, each with its own named error."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


def zone_or_utc(name: str | None) -> ZoneInfo:
    """The time zone called `name`, UTC when it is unset or unknown (a stored value is never trusted blindly)."""
    return (find_zone(name) if name else None) or find_zone("UTC") or ZoneInfo("UTC")
