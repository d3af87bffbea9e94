"""Selection: which members a clock-driven schedule reaches, per kind, with each kind's variables and period.

Members are read in keyset-paginated batches (``WHERE id > :last ORDER BY id LIMIT n``) with the
kind's conditions in SQL; the last checks that need the member's own calendar (their local date and
time) are done in Python. A segment with a spend or purchases window is read once per run, as the ids
of its members, and the batches page through those (the window's aggregate would otherwise run for
every batch). Periods (the idempotency key's third part): birthday and anniversary: the
year; points_expiry: the expiry date; coupon_expiry: ``coupon:<id>``; winback, nps and recurring
broadcasts: the member's local date (a frequency cap keeps winback and nps apart); one-off
broadcast: ``once``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from loyalbot.loyalty.ledger import lots_left
from loyalbot.loyalty.programme import Programme, ProgrammeInForce
from loyalbot.scheduler.experiments import held_out_since
from loyalbot.scheduler.kinds import cap_days, offset_days, param
from loyalbot.scheduler.segments import (
    named_segments,
    read_segment,
    segment_conditions,
    uses_windows,
)
from loyalbot.scheduler.timing import candidate_days, local_day, member_zone, occurrence
from loyalbot.storage import Db, as_utc
from loyalbot.storage.models import Coupon, LedgerEntry, Member, Outbox, Reward, Schedule, Survey
from loyalbot.storage.rows import stored_id

MEMBER_COLUMNS = (Member.id, Member.chat_id, Member.first_name, Member.member_no, Member.language,
                  Member.timezone, Member.status, Member.notify, Member.marketing_consent, Member.quiet_start,
                  Member.quiet_end, Member.tier, Member.balance, Member.birthday, Member.joined_at)


@dataclass(slots=True)
class Target:
    """One member a run reaches, with the kind's own variables and the period it is planned for."""

    member: Any  # a row of MEMBER_COLUMNS
    period: str
    not_before: datetime
    extra: dict[str, Any] = field(default_factory=dict)


def _local_day(schedule: Schedule, member: Any, now: datetime, window_start: datetime | None
               ) -> tuple[date, datetime] | None:
    """The member's local date this run is for and the moment to send, or None (not their time yet)."""
    daily_time = (schedule.daily_time or "09:00") if schedule.member_local_time else None
    return local_day(daily_time, member.timezone, now, window_start)


class Selection:
    """Reads the members a schedule reaches, batch by batch."""

    def __init__(self, db: Db, programme: ProgrammeInForce, *, batch_size: int) -> None:
        self.db = db
        self._in_force = programme
        self.batch_size = batch_size

    @property
    def programme(self) -> Programme:
        return self._in_force.programme

    async def member(self, member_id: int, segment: dict[str, Any], now: datetime) -> Any | None:
        """One member's row, if they are in the segment (an event-driven message)."""
        named = await named_segments(self.db, segment)
        conditions = [Member.id == member_id,
                      *segment_conditions(segment, now, named=named, zone=self.programme.zone)]
        async with self.db.read() as s:
            return (await s.execute(sa.select(*MEMBER_COLUMNS).where(*conditions))).first()

    async def targets(self, schedule: Schedule, now: datetime, window_start: datetime | None
                      ) -> AsyncIterator[list[Target]]:
        """Batches of the members this run of a clock-driven schedule reaches."""
        kind = schedule.kind
        segment, audience = await self._audience(schedule.segment or {}, now)
        if kind in ("birthday", "anniversary"):
            column = Member.birthday if kind == "birthday" else Member.joined_at
            pairs = candidate_days(now, offset_days(schedule) if kind == "birthday" else 0)
            on_day = sa.or_(*[sa.and_(sa.extract("month", column) == m, sa.extract("day", column) == d)
                              for m, d in pairs])
            async for rows in self._members([column.is_not(None), on_day, *segment], audience):
                yield self._yearly(schedule, rows, now, window_start)
        elif kind == "points_expiry":
            async for batch in self._expiring_points(schedule, now, window_start, segment, audience):
                yield batch
        elif kind == "coupon_expiry":
            async for batch in self._expiring_coupons(schedule, now, window_start, segment, audience):
                yield batch
        else:  # winback, nps, broadcast: members chosen by state, once per local day at most
            async for batch in self._by_state(schedule, now, window_start, segment, audience):
                yield batch

    async def _audience(self, segment: dict[str, Any], now: datetime) -> tuple[list[Any], set[int] | None]:
        """The segment as conditions for each batch's query; or, when it has a purchase window (an aggregate the
        database would redo for every batch), the ids of its members, read once for the whole run."""
        named = await named_segments(self.db, segment)
        if not uses_windows(segment, named):
            return segment_conditions(segment, now, named=named, zone=self.programme.zone), None

        async def ids(source: Any, conditions: list[Any]) -> set[int]:
            async with self.db.read() as s:
                query = sa.select(Member.id).select_from(source).where(*conditions)
                return {int(i) for i in (await s.execute(query)).scalars() if i}

        return [], await read_segment(self.db, segment, now, self.programme.zone, ids)

    async def _members(self, conditions: Sequence[Any], audience: set[int] | None = None
                       ) -> AsyncIterator[Sequence[sa.Row[*tuple[Any, ...]]]]:
        """Batches of member rows matching `conditions` (and in `audience`, when given), by keyset pagination on
        id (or batch by batch of the audience's ids)."""
        if audience is not None:
            ordered = sorted(audience)
            for start in range(0, len(ordered), self.batch_size):
                chunk = ordered[start:start + self.batch_size]
                async with self.db.read() as s:
                    conn = await s.connection()
                    rows = (await conn.execute(sa.select(*MEMBER_COLUMNS).where(Member.id.in_(chunk), *conditions)
                                               .order_by(Member.id))).all()
                if rows:
                    yield rows
            return
        last = 0
        while True:
            query = (sa.select(*MEMBER_COLUMNS).where(Member.id > last, *conditions)
                     .order_by(Member.id).limit(self.batch_size))
            async with self.db.read() as s:
                conn = await s.connection()  # Core rows: the ORM's result processing costs more than the read
                rows = (await conn.execute(query)).all()
            if not rows:
                return
            last = rows[-1].id
            yield rows

    async def _by_state(self, schedule: Schedule, now: datetime, window_start: datetime | None,
                        segment: list[Any], audience: set[int] | None) -> AsyncIterator[list[Target]]:
        kind = schedule.kind
        conditions = list(segment)
        cap = cap_days(schedule)
        if cap and schedule.id is not None:
            conditions.append(~sa.exists().where(
                Outbox.schedule_id == schedule.id, Outbox.member_id == Member.id,
                Outbox.created_at > now - timedelta(days=cap)))
            conditions.append(~held_out_since(schedule.id, Member.id, now - timedelta(days=cap)))
        if kind == "winback":
            cutoff = now - timedelta(days=int(param(schedule, "inactive_days")))
            conditions += [sa.func.coalesce(Member.last_purchase_at, Member.joined_at) <= cutoff,
                           sa.func.coalesce(Member.last_activity_at, Member.joined_at) <= cutoff]
        if kind == "nps":
            conditions.append(Member.joined_at <= now - timedelta(days=int(param(schedule, "min_member_days"))))
            if cap:
                conditions.append(~sa.exists().where(Survey.member_id == Member.id, Survey.kind == "nps",
                                                     Survey.created_at > now - timedelta(days=cap)))
        once = schedule.one_off_at is not None
        async for rows in self._members(conditions, audience):
            batch = []
            for member in rows:
                day = _local_day(schedule, member, now, window_start)
                if day is None:
                    continue
                batch.append(Target(member, "once" if once else day[0].isoformat(), day[1]))
            yield batch

    def _yearly(self, schedule: Schedule, rows: Sequence[Any], now: datetime, window_start: datetime | None
                ) -> list[Target]:
        targets = []
        shift = offset_days(schedule) if schedule.kind == "birthday" else 0
        for member in rows:
            day = _local_day(schedule, member, now, window_start)
            if day is None:
                continue
            local_date, send_at = day
            celebrated = local_date + timedelta(days=shift)
            if schedule.kind == "birthday":
                if occurrence(member.birthday, celebrated.year) != celebrated:
                    continue
                targets.append(Target(member, str(celebrated.year), send_at))
            else:
                joined = as_utc(member.joined_at).astimezone(member_zone(member.timezone)).date()
                years = celebrated.year - joined.year
                if years < 1 or occurrence(joined, celebrated.year) != celebrated:
                    continue
                targets.append(Target(member, str(celebrated.year), send_at, {"years": years}))
        return targets

    async def _expiring_points(self, schedule: Schedule, now: datetime, window_start: datetime | None,
                               segment: list[Any], audience: set[int] | None) -> AsyncIterator[list[Target]]:
        horizon = now + timedelta(days=offset_days(schedule))
        last = 0
        while True:
            lots = (sa.select(LedgerEntry.member_id, sa.func.min(LedgerEntry.expires_at),
                              sa.func.sum(LedgerEntry.remaining))
                    .where(LedgerEntry.member_id > last, *lots_left(now, until=horizon))
                    .group_by(LedgerEntry.member_id).order_by(LedgerEntry.member_id).limit(self.batch_size))
            async with self.db.read() as s:
                found = (await s.execute(lots)).all()
                if not found:
                    return
                last = found[-1][0]
                members = {m.id: m for m in (await s.execute(
                    sa.select(*MEMBER_COLUMNS).where(Member.id.in_([f[0] for f in found]), *segment))).all()}
            batch = []
            zone = self.programme.zone
            for member_id, first_expiry, amount in found:
                member = members.get(member_id) if audience is None or member_id in audience else None
                day = member and _local_day(schedule, member, now, window_start)
                if not member or not day or not amount or first_expiry is None:
                    continue
                expiry = as_utc(first_expiry).astimezone(zone).date()
                batch.append(Target(member, expiry.isoformat(), day[1],
                                    {"expiring_points": int(amount), "expiry_date": expiry}))
            yield batch

    async def _expiring_coupons(self, schedule: Schedule, now: datetime, window_start: datetime | None,
                                segment: list[Any], audience: set[int] | None) -> AsyncIterator[list[Target]]:
        horizon = now + timedelta(days=offset_days(schedule))
        # `offer_coupons_of`: only the coupons one campaign gave away (its offer's reminder, scheduler/offers.py)
        campaign = param(schedule, "offer_coupons_of")
        only = [Coupon.request_id.startswith(f"offer:{int(campaign)}:", autoescape=True)] if campaign else []
        last = 0
        while True:
            query = (sa.select(Coupon.id, Coupon.member_id, Coupon.code, Coupon.expires_at, Reward.titles)
                     .join(Reward, Reward.id == Coupon.reward_id)
                     .where(Coupon.id > last, Coupon.status == "active", Coupon.expires_at > now,
                            Coupon.expires_at <= horizon, *only)
                     .order_by(Coupon.id).limit(self.batch_size))
            async with self.db.read() as s:
                found = (await s.execute(query)).all()
                if not found:
                    return
                last = stored_id(found[-1][0])
                members = {m.id: m for m in (await s.execute(
                    sa.select(*MEMBER_COLUMNS).where(Member.id.in_({f[1] for f in found}), *segment))).all()}
            batch = []
            for coupon_id, member_id, code, expires_at, titles in found:
                member = members.get(member_id) if audience is None or member_id in audience else None
                day = member and _local_day(schedule, member, now, window_start)
                if not member or not day:
                    continue
                lang = member.language
                title = (titles or {}).get(lang) or (titles or {}).get(self.programme.programme.default_language) or ""
                expiry = as_utc(expires_at).astimezone(member_zone(member.timezone)).date()
                batch.append(Target(member, f"coupon:{coupon_id}", day[1],
                                    {"coupon_title": title, "coupon_code": code, "coupon_expiry": expiry}))
            yield batch
