"""What an operator tunes about support, and when staff are there to answer."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from loyalbot.chat.limits import TEXT_LIMIT
from loyalbot.storage.clock import find_zone

DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass(frozen=True)
class SupportConfig:
    """What an operator may tune about support; `from_chat_config` takes the group and hours from ChatConfig."""

    staff_group_id: int | None = None
    hours: str = "09:00-18:00"  # when staff answer, in `timezone`
    days: str = "mon-sun"  # e.g. "mon-fri" or "mon-fri,sat"
    timezone: str = "Europe/Amsterdam"
    staff_language: str = "en"  # the language of what the bot posts in the staff group
    expected_wait_minutes: int = 10  # said while no conversation has a measured first response yet
    waiting_notice_after: timedelta = timedelta(minutes=15)
    out_of_hours_every: timedelta = timedelta(minutes=30)
    reopen_within: timedelta = timedelta(hours=2)
    csat_cooldown: timedelta = timedelta(days=7)
    relay_per_minute: float = 20.0
    relay_burst: int = 5
    tick_seconds: float = 60.0

    @classmethod
    def from_chat_config(cls, config: Any, **overrides: Any) -> SupportConfig:
        values: dict[str, Any] = {
            "staff_group_id": getattr(config, "staff_group_id", None),
            "hours": getattr(config, "support_hours", cls.hours),
            "timezone": getattr(config, "support_timezone", cls.timezone),
        }
        for name in ("support_days", "support_staff_language"):
            if getattr(config, name, None):
                values[name.removeprefix("support_")] = getattr(config, name)
        values.update(overrides)
        return cls(**values)


@dataclass(frozen=True)
class BusinessHours:
    """Opening hours on some weekdays in one time zone."""

    opens: time
    closes: time
    days: frozenset[int]
    zone: ZoneInfo

    @classmethod
    def parse(cls, hours: str, days: str, timezone: str) -> BusinessHours:
        """From "09:00-18:00" ("00:00-24:00": all day), "mon-fri" and an IANA zone; ValueError says what is wrong."""
        try:
            start, end = (time.max if part.strip() == "24:00" else time.fromisoformat(part.strip())
                          for part in hours.split("-"))
        except ValueError:
            raise ValueError(f"support hours must look like 09:00-18:00, not {hours!r}") from None
        if start >= end:
            raise ValueError("support hours must open before they close")
        chosen: set[int] = set()
        for part in days.lower().replace(" ", "").split(","):
            first, _, last = part.partition("-")
            if first not in DAY_NAMES or (last and last not in DAY_NAMES):
                raise ValueError(f"support days must look like mon-fri, not {days!r}")
            a, b = DAY_NAMES.index(first), DAY_NAMES.index(last or first)
            chosen.update(range(a, b + 1) if a <= b else [*range(a, 7), *range(0, b + 1)])
        zone = find_zone(timezone)
        if zone is None:
            raise ValueError(f"unknown time zone {timezone!r}")
        return cls(opens=start, closes=end, days=frozenset(chosen), zone=zone)

    def next_opening(self, now: datetime) -> datetime | None:
        """None while open; otherwise when staff are next there (aware UTC)."""
        local = now.astimezone(self.zone)
        for offset in range(8):
            day = local.date() + timedelta(days=offset)
            if day.weekday() not in self.days:
                continue
            start = datetime.combine(day, self.opens, self.zone)
            end = datetime.combine(day, self.closes, self.zone)
            if offset == 0 and start <= local < end:
                return None
            if local < start:
                return start.astimezone(UTC)
        return None  # unreachable with at least one day chosen


def split_text(text: str, first: int, rest: int = TEXT_LIMIT) -> list[str]:
    """`text` in pieces: the first at most `first` characters, the others at most `rest`; nothing lost."""
    pieces = [text[:first]]
    remaining = text[first:]
    while remaining:
        pieces.append(remaining[:rest])
        remaining = remaining[rest:]
    return pieces


__all__ = ["DAY_NAMES", "BusinessHours", "SupportConfig", "split_text"]
