"""When a schedule runs: its APScheduler trigger, derived from the schedule row, and whether a run was missed.

* ``cron`` (crontab syntax) or ``daily_time`` ("HH:MM") in the schedule's ``timezone``;
* ``member_local_time``: the schedule ticks every 15 minutes and each tick plans the members whose
  own local ``daily_time`` has come since the previous run (15 minutes covers every UTC offset);
* ``one_off_at``: once, at that moment (a one-off broadcast).

A run missed while the process was down is planned once at start-up: the schedule is due when the
trigger's first fire time after ``last_run_at`` is not in the future, however many ticks were missed.
"""

from __future__ import annotations

import re
from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.date import DateTrigger

from loyalbot.storage.clock import as_utc, find_zone

LOCAL_TICK_MINUTES = 15
_HHMM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")


class TriggerProblem(ValueError):
    """The schedule's timing cannot be used; the message says why."""


def parse_daily_time(value: str) -> time:
    match = _HHMM.match((value or "").strip())
    if not match:
        raise TriggerProblem(f"daily time {value!r} must be HH:MM, e.g. 09:30")
    return time(int(match.group(1)), int(match.group(2)))


def zone(name: str) -> ZoneInfo:
    if (found := find_zone(name)) is None:
        raise TriggerProblem(f"unknown time zone {name!r}")
    return found


def cron_trigger(expression: str, timezone: str) -> CronTrigger:
    try:
        return CronTrigger.from_crontab(expression.strip(), timezone=zone(timezone))
    except TriggerProblem:
        raise
    except (ValueError, TypeError) as exc:
        raise TriggerProblem(f"bad cron expression {expression!r}: {exc} "
                             "(five fields: minute hour day month weekday, e.g. '0 10 * * *')") from None


def build_trigger(schedule: Any) -> BaseTrigger | None:
    """The APScheduler trigger for a schedule row; None for event-driven schedules without timing."""
    tz = zone(schedule.timezone or "UTC")
    if schedule.one_off_at is not None:
        return DateTrigger(run_date=as_utc(schedule.one_off_at))
    if schedule.member_local_time:
        if not schedule.daily_time:
            raise TriggerProblem("member_local_time needs a daily time (HH:MM)")
        parse_daily_time(schedule.daily_time)
        return CronTrigger(minute=f"*/{LOCAL_TICK_MINUTES}", timezone=ZoneInfo("UTC"))
    if schedule.cron:
        return cron_trigger(schedule.cron, schedule.timezone or "UTC")
    if schedule.daily_time:
        at = parse_daily_time(schedule.daily_time)
        return CronTrigger(hour=at.hour, minute=at.minute, timezone=tz)
    return None


def check_timing(kind: str, *, cron: str | None, daily_time: str | None, timezone: str,
                 member_local_time: bool, one_off_at: datetime | None, event_driven: bool) -> None:
    """Raise TriggerProblem when the timing fields do not make a schedule that can run."""
    zone(timezone)
    if cron and daily_time:
        raise TriggerProblem("give either a cron expression or a daily time, not both")
    if cron:
        cron_trigger(cron, timezone)
    if daily_time:
        parse_daily_time(daily_time)
    if member_local_time and not daily_time:
        raise TriggerProblem("--member-local-time needs --daily-time HH:MM")
    if one_off_at is not None and kind != "broadcast":
        raise TriggerProblem("only a broadcast can be one-off")
    if not event_driven and not (cron or daily_time or one_off_at):
        raise TriggerProblem(f"a {kind} schedule needs --cron, --daily-time or (broadcast) --at")


def next_fire_after(trigger: BaseTrigger, after: datetime) -> datetime | None:
    """The trigger's first fire time strictly after `after`."""
    fire = trigger.get_next_fire_time(None, as_utc(after) + timedelta(microseconds=1))
    return as_utc(fire) if fire is not None else None


def missed_run(schedule: Any, now: datetime) -> bool:
    """True when a run should have happened since the schedule last ran (plan it once, now)."""
    trigger = build_trigger(schedule)
    if trigger is None:
        return False
    if schedule.one_off_at is not None:
        return schedule.last_run_at is None and as_utc(schedule.one_off_at) <= as_utc(now)
    reference = schedule.last_run_at or schedule.created_at
    fire = next_fire_after(trigger, reference)
    return fire is not None and fire <= as_utc(now)
