"""Frequency caps: at most N marketing messages per member per local day and per local ISO week.

"Marketing" is every kind whose rule obeys the member's "offers" setting (winback, broadcast, and any
campaign kind added that way); care, reminders, surveys and transactional notices are counted apart, which
here means not at all. The caps are the programme's ``[campaigns] max_per_day / max_per_week``.

The count is taken where it cannot be outrun: in the dispatcher's claim transaction, after the due rows
are claimed and before any is handed over. A member's marketing rows that are 'sending' or 'sent' are
counted by the local day and ISO week (Monday first) of the member's own time zone at the moment they
were claimed or sent; claimed rows beyond a cap are held back: skipped with reason ``frequency_cap``, or,
when the schedule says ``params["when_capped"] = "delay"``, put back to pending for the same local time
on the next day the caps allow (after the member's quiet hours). On PostgreSQL the claim takes a
transaction-scoped advisory lock per capped member (in member order, so two dispatchers never wait on
each other in a circle) before counting: a second dispatcher claiming a row for the same member waits
until the first has committed its claim and then counts it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from loyalbot.loyalty.programme import Programme
from loyalbot.scheduler.kinds import RULES
from loyalbot.scheduler.timing import after_quiet_hours, member_zone
from loyalbot.storage import as_utc
from loyalbot.storage.models import Member, Outbox, Schedule

MARKETING_KINDS = frozenset(kind for kind, rule in RULES.items() if rule.notify == "offers")
WHEN_CAPPED = ("skip", "delay")
CAP_REASON = "frequency_cap"
_LOCK_SPACE = 1_117  # the advisory-lock namespace of frequency caps (two-key form: space, member id)


@dataclass(frozen=True)
class Caps:
    """The programme's frequency caps (None: no cap)."""

    max_per_day: int | None = None
    max_per_week: int | None = None

    @property
    def active(self) -> bool:
        return self.max_per_day is not None or self.max_per_week is not None


def caps_of(programme: Programme) -> Caps:
    return Caps(programme.campaigns.max_per_day, programme.campaigns.max_per_week)


def when_capped(params: dict[str, Any] | None) -> str:
    """What a schedule does with a message a cap holds back: "skip" (the default) or "delay"."""
    value = (params or {}).get("when_capped")
    return value if value in WHEN_CAPPED else "skip"


def _week(day: date) -> tuple[int, int]:
    iso = day.isocalendar()
    return iso.year, iso.week


@dataclass
class _Tally:
    """One member's marketing messages already counted, by local day and ISO week."""

    days: defaultdict[date, int]
    weeks: defaultdict[tuple[int, int], int]

    def room(self, caps: Caps, day: date) -> bool:
        return ((caps.max_per_day is None or self.days[day] < caps.max_per_day)
                and (caps.max_per_week is None or self.weeks[_week(day)] < caps.max_per_week))

    def add(self, day: date) -> None:
        self.days[day] += 1
        self.weeks[_week(day)] += 1


def next_allowed(moment: datetime, member: Any, tally: _Tally, caps: Caps) -> datetime:
    """The same local time on the first later day the caps allow, after the member's quiet hours."""
    tz = member_zone(member.timezone)
    local = as_utc(moment).astimezone(tz)
    day = local.date()
    for _ in range(15):  # within two weeks there is always a day under both caps
        day += timedelta(days=1)
        if tally.room(caps, day):
            break
    wall = datetime.combine(day, local.time().replace(tzinfo=None), tzinfo=tz)
    later = as_utc(wall)
    if member.quiet_start is not None and member.quiet_end is not None:
        later = after_quiet_hours(later, tz, member.quiet_start, member.quiet_end)
    return later


async def hold_back(conn: AsyncConnection, rows: Sequence[Any], caps: Caps, now: datetime, *,
                    postgres: bool) -> list[Any]:
    """The claimed `rows` the caps let through; the others are skipped or delayed in `conn`'s transaction.

    `rows` carry id, member_id, kind, schedule_id and not_before, in the order they would be sent."""
    marketing = [row for row in rows if row.kind in MARKETING_KINDS]
    if not caps.active or not marketing:
        return list(rows)
    member_ids = sorted({int(row.member_id) for row in marketing})
    if postgres:
        await conn.execute(sa.text(
            "SELECT pg_advisory_xact_lock(:space, m) FROM (SELECT unnest(CAST(:ids AS integer[])) AS m ORDER BY m) s"),
            {"space": _LOCK_SPACE, "ids": member_ids})
    members = {m.id: m for m in (await conn.execute(
        sa.select(Member.id, Member.timezone, Member.quiet_start, Member.quiet_end)
        .where(Member.id.in_(member_ids)))).all()}
    claimed_ids = [row.id for row in rows]
    at = sa.func.coalesce(Outbox.sent_at, Outbox.claimed_at)
    counted = (await conn.execute(
        sa.select(Outbox.member_id, at).where(
            Outbox.member_id.in_(member_ids), Outbox.kind.in_(sorted(MARKETING_KINDS)),
            Outbox.status.in_(("sending", "sent")), Outbox.id.not_in(claimed_ids),
            at >= now - timedelta(days=8)))).all()
    tallies: dict[int, _Tally] = {m: _Tally(defaultdict(int), defaultdict(int)) for m in member_ids}
    for member_id, when in counted:
        member = members.get(member_id)
        if member_id is not None and member is not None and when is not None:
            tallies[member_id].add(as_utc(when).astimezone(member_zone(member.timezone)).date())
    held: list[tuple[Any, _Tally]] = []
    for row in marketing:
        member = members.get(row.member_id)
        if member is None:
            continue
        today = as_utc(now).astimezone(member_zone(member.timezone)).date()
        tally = tallies[row.member_id]
        if tally.room(caps, today):
            tally.add(today)
        else:
            held.append((row, tally))
    if not held:
        return list(rows)
    schedule_ids = sorted({row.schedule_id for row, _ in held if row.schedule_id is not None})
    params: dict[int, dict[str, Any]] = dict((await conn.execute(sa.select(Schedule.id, Schedule.params)
                                      .where(Schedule.id.in_(schedule_ids)))).all()) if schedule_ids else {}
    for row, tally in held:
        if when_capped(params.get(row.schedule_id)) == "delay":
            values: dict[str, Any] = dict(status="pending", not_before=next_allowed(now, members[row.member_id],
                                                                                    tally, caps))
        else:
            values = dict(status="skipped", skip_reason=CAP_REASON)
        await conn.execute(sa.update(Outbox).where(Outbox.id == row.id, Outbox.status == "sending")
                           .values(claimed_by=None, claimed_at=None, **values)
                           .execution_options(synchronize_session=False))
    gone = {row.id for row, _ in held}
    return [row for row in rows if row.id not in gone]
