"""Planning: a schedule's run becomes outbox rows, one per eligible member, each rendered in their language.

Members are read in keyset-paginated batches (``WHERE id > :last ORDER BY id LIMIT n``) with the kind's
conditions in SQL; the last checks that need the member's own calendar (their local date and time)
are done in Python. Each batch is inserted with ``INSERT ... ON CONFLICT DO NOTHING`` on the
row's idempotency key ``schedule:<schedule>:<member>:<period>``, so planning the same period twice (a retry, two replicas, a catch-up
after a restart) plans nothing new. On SQLite that is SQLAlchemy's sqlite ``insert()
.on_conflict_do_nothing()`` as one executemany; on PostgreSQL the batch travels as one array per
column through ``unnest`` (one statement and round trip per batch, no 32767-parameter limit; columns
the same for the whole run travel once). A run is a pipeline three batches deep: while one batch is
inserted, the next is rendered and the one after is read, so the database and Python work at the same
time; memory holds three batches whatever the number of members. Together that is well over 20,000
rows/s on PostgreSQL at 100k and 1M members (bench/fanout.py).

Members who cannot or should not get the message are *not* silently dropped: they get a row with
status ``skipped`` and a ``skip_reason`` (erased, unreachable, opted_out, no_consent, survey_open,
no_chat), so a run's reach is visible and counted. Members in their quiet hours get the message
planned for the end of their quiet hours (``not_before``).

Periods (the idempotency key's third part): birthday and anniversary: the year; points_expiry: the
expiry date; coupon_expiry: ``coupon:<id>``; winback, nps and recurring broadcasts: the member's local
date (a frequency cap keeps winback and nps apart); one-off broadcast: ``once``; tier_change:
``<tier>:<date>``; csat: ``<trigger>:<ref>``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import Counter
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from functools import lru_cache
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from loyalbot.loyalty.ledger import lots_left
from loyalbot.loyalty.service import Loyalty
from loyalbot.scheduler.kinds import (
    DEFAULT_CAP_DAYS,
    DEFAULT_OFFSET_DAYS,
    DEFAULT_PARAMS,
    RULES,
    SEGMENT_KEYS,
)
from loyalbot.scheduler.surveys import survey_buttons
from loyalbot.scheduler.templates import FALLBACK_NAME, CompiledTemplates, TemplateBook
from loyalbot.scheduler.triggers import parse_daily_time
from loyalbot.storage import as_utc
from loyalbot.storage.clock import zone_or_utc
from loyalbot.storage.models import (
    Coupon,
    LedgerEntry,
    Member,
    Outbox,
    Reward,
    Schedule,
    Survey,
    outbox_key,
)
from loyalbot.storage.rows import stored_id

log = logging.getLogger(__name__)

MEMBER_COLUMNS = (Member.id, Member.chat_id, Member.first_name, Member.member_no, Member.language,
                  Member.timezone, Member.status, Member.notify, Member.marketing_consent, Member.quiet_start,
                  Member.quiet_end, Member.tier, Member.balance, Member.birthday, Member.joined_at)
UNIQUE_KEY = ["schedule_id", "member_id", "period"]
T = TypeVar("T")


class SegmentProblem(ValueError):
    """A segment cannot be used; the message says which key and why."""


@dataclass
class PlanStats:
    """What a run planned (or, in a dry run, would plan): counts by outcome and language, a few samples."""

    schedule: str
    kind: str
    dry_run: bool = False
    planned: int = 0
    already_planned: int = 0
    delayed_for_quiet_hours: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    languages: Counter[str] = field(default_factory=Counter)
    skipped_by_language: Counter[str] = field(default_factory=Counter)
    samples: list[tuple[str, str]] = field(default_factory=list)  # (language, text)

    @property
    def considered(self) -> int:
        return self.planned + self.already_planned + sum(self.skipped.values())

    def as_dict(self) -> dict[str, Any]:
        return {"schedule": self.schedule, "kind": self.kind, "dry_run": self.dry_run, "planned": self.planned,
                "already_planned": self.already_planned, "delayed_for_quiet_hours": self.delayed_for_quiet_hours,
                "skipped": dict(self.skipped), "languages": dict(self.languages)}


@dataclass(slots=True)
class Target:
    """One member a run reaches, with the kind's own variables and the period it is planned for."""

    member: Any  # a row of MEMBER_COLUMNS
    period: str
    not_before: datetime
    extra: dict[str, Any] = field(default_factory=dict)


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


def check_segment(segment: dict[str, Any]) -> None:
    """Raise SegmentProblem for unknown keys or values of the wrong shape."""
    if not isinstance(segment, dict):
        raise SegmentProblem("a segment is a JSON object, e.g. {\"tiers\": [\"gold\"]}")
    unknown = sorted(set(segment) - set(SEGMENT_KEYS))
    if unknown:
        raise SegmentProblem(f"unknown segment key {unknown[0]!r}; use {', '.join(SEGMENT_KEYS)}")
    for key in ("tiers", "languages", "member_ids"):
        if key in segment and not (isinstance(segment[key], list) and segment[key]):
            raise SegmentProblem(f"segment {key!r} must be a non-empty list")
    for key in ("min_balance", "max_balance", "joined_before_days"):
        if key in segment and (not isinstance(segment[key], int) or isinstance(segment[key], bool)):
            raise SegmentProblem(f"segment {key!r} must be a whole number")


def segment_conditions(segment: dict[str, Any], now: datetime) -> list[Any]:
    check_segment(segment)
    conditions: list[Any] = []
    if "tiers" in segment:
        conditions.append(Member.tier.in_(segment["tiers"]))
    if "languages" in segment:
        conditions.append(Member.language.in_(segment["languages"]))
    if "member_ids" in segment:
        conditions.append(Member.id.in_([int(x) for x in segment["member_ids"]]))
    if "min_balance" in segment:
        conditions.append(Member.balance >= segment["min_balance"])
    if "max_balance" in segment:
        conditions.append(Member.balance <= segment["max_balance"])
    if "joined_before_days" in segment:
        conditions.append(Member.joined_at <= now - timedelta(days=segment["joined_before_days"]))
    return conditions


def param(schedule: Schedule, key: str) -> Any:
    return (schedule.params or {}).get(key, DEFAULT_PARAMS.get(schedule.kind, {}).get(key))


def offset_days(schedule: Schedule) -> int:
    return schedule.offset_days or DEFAULT_OFFSET_DAYS.get(schedule.kind, 0)


def cap_days(schedule: Schedule) -> int | None:
    return schedule.frequency_cap_days or DEFAULT_CAP_DAYS.get(schedule.kind)


def template_kind(schedule: Schedule) -> str:
    """Which shipped template a schedule falls back to (CSAT after support has its own wording)."""
    if schedule.kind == "csat" and param(schedule, "trigger") == "support":
        return "csat_support"
    return schedule.kind


class Planner:
    """Turns schedule runs and events into outbox rows."""

    def __init__(self, loyalty: Loyalty, *, templates: TemplateBook | None = None, batch_size: int = 2000) -> None:
        self.loyalty = loyalty
        self.db = loyalty.db
        self.programme = loyalty.programme
        self.templates = templates or TemplateBook()
        self.batch_size = batch_size

    # --- public -------------------------------------------------------------------------------------

    async def run(self, schedule: Schedule, *, now: datetime, window_start: datetime | None = None,
                  dry_run: bool = False, samples: int = 3) -> PlanStats:
        """Plan one run of a clock-driven schedule at `now`.

        For a member-local-time schedule, `window_start` limits the run to members whose own local
        time reached the daily time in (window_start, now]; without it (run-now, preview) every
        member is planned for their local daily time today (not before now).
        """
        now = as_utc(now)
        stats = PlanStats(schedule=schedule.name, kind=schedule.kind, dry_run=dry_run)
        rule = RULES[schedule.kind]
        if rule.event_driven:
            return stats
        compiled = self._compiled(schedule)
        if dry_run or rule.survey is not None:
            async for targets in self._targets(schedule, now, window_start):
                await self._plan_batch(schedule, targets, compiled, now, stats, dry_run=dry_run, samples=samples)
            return stats
        # A pipeline three batches deep: while batch n is inserted (the database's work), batch n+1 is
        # rendered (ours) and batch n+2 is read, so neither side waits for the other. Memory stays
        # bounded at three batches whatever the number of members.
        inserting: asyncio.Task[None] | None = None
        batches = _read_ahead(self._targets(schedule, now, window_start))
        try:
            async for targets in batches:
                rows = self._render(schedule, targets, compiled, now, stats, samples=samples)
                if inserting is not None:
                    await inserting
                inserting = asyncio.create_task(self._store(rows, stats, targets)) if rows else None
            if inserting is not None:
                await inserting
                inserting = None
        finally:
            await batches.aclose()
            if inserting is not None:  # an error while reading or rendering: let the last insert finish
                with contextlib.suppress(Exception):
                    await inserting
        return stats

    async def plan_for_member(self, schedule: Schedule, member_id: int, *, period: str, now: datetime,
                              not_before: datetime | None = None, extra: dict[str, Any] | None = None,
                              survey_trigger: str | None = None, trigger_ref: str | None = None,
                              conversation_id: int | None = None, staff_id: int | None = None) -> PlanStats:
        """Plan one event-driven message (tier change, CSAT) for one member; idempotent on `period`."""
        now = as_utc(now)
        stats = PlanStats(schedule=schedule.name, kind=schedule.kind)
        conditions = [Member.id == member_id, *segment_conditions(schedule.segment or {}, now)]
        async with self.db.read() as s:
            member = (await s.execute(sa.select(*MEMBER_COLUMNS).where(*conditions))).first()
        if member is None:
            return stats
        target = Target(member, period, as_utc(not_before or now), dict(extra or {}))
        await self._plan_batch(schedule, [target], self._compiled(schedule), now, stats,
                               survey=dict(trigger=survey_trigger or "schedule", trigger_ref=trigger_ref,
                                           conversation_id=conversation_id, staff_id=staff_id))
        return stats

    async def segment_size(self, segment: dict[str, Any], now: datetime) -> int:
        """How many members (not erased) a segment matches."""
        conditions = segment_conditions(segment, as_utc(now))
        async with self.db.read() as s:
            query = sa.select(sa.func.count()).select_from(Member).where(Member.status != "erased", *conditions)
            return int((await s.execute(query)).scalar_one())

    # --- selecting targets --------------------------------------------------------------------------

    def _compiled(self, schedule: Schedule) -> CompiledTemplates:
        return self.templates.compiled(schedule.templates or {}, kind=template_kind(schedule),
                                       default_language=self.programme.programme.default_language)

    async def _members(self, conditions: Sequence[Any]) -> AsyncIterator[Sequence[sa.Row[*tuple[Any, ...]]]]:
        """Batches of member rows matching `conditions`, by keyset pagination on id."""
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

    def _local_day(self, schedule: Schedule, member: Any, now: datetime, window_start: datetime | None
                   ) -> tuple[date, datetime] | None:
        """The member's local date this run is for and the moment to send, or None (not their time yet)."""
        # The answer depends on the member only through their timezone: worked out once per zone.
        daily_time = (schedule.daily_time or "09:00") if schedule.member_local_time else None
        return _local_day(daily_time, member.timezone, now, window_start)

    def _candidate_days(self, now: datetime, shift: int) -> list[tuple[int, int]]:
        """(month, day) pairs a member somewhere on Earth may be celebrating today, shifted by `shift` days."""
        days = {now.date() + timedelta(days=delta + shift) for delta in (-1, 0, 1)}
        pairs = {(d.month, d.day) for d in days}
        if any(d.month == 2 and d.day == 28 and not _leap(d.year) for d in days):
            pairs.add((2, 29))
        return sorted(pairs)

    async def _targets(self, schedule: Schedule, now: datetime, window_start: datetime | None
                       ) -> AsyncIterator[list[Target]]:
        kind = schedule.kind
        segment = segment_conditions(schedule.segment or {}, now)
        if kind in ("birthday", "anniversary"):
            column = Member.birthday if kind == "birthday" else Member.joined_at
            pairs = self._candidate_days(now, offset_days(schedule) if kind == "birthday" else 0)
            on_day = sa.or_(*[sa.and_(sa.extract("month", column) == m, sa.extract("day", column) == d)
                              for m, d in pairs])
            async for rows in self._members([column.is_not(None), on_day, *segment]):
                yield self._yearly(schedule, rows, now, window_start)
        elif kind == "points_expiry":
            async for batch in self._expiring_points(schedule, now, window_start, segment):
                yield batch
        elif kind == "coupon_expiry":
            async for batch in self._expiring_coupons(schedule, now, window_start, segment):
                yield batch
        else:  # winback, nps, broadcast: members chosen by state, once per local day at most
            conditions = list(segment)
            cap = cap_days(schedule)
            if cap and schedule.id is not None:
                conditions.append(~sa.exists().where(
                    Outbox.schedule_id == schedule.id, Outbox.member_id == Member.id,
                    Outbox.created_at > now - timedelta(days=cap)))
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
            async for rows in self._members(conditions):
                batch = []
                for member in rows:
                    day = self._local_day(schedule, member, now, window_start)
                    if day is None:
                        continue
                    batch.append(Target(member, "once" if once else day[0].isoformat(), day[1]))
                yield batch

    def _yearly(self, schedule: Schedule, rows: Sequence[Any], now: datetime, window_start: datetime | None
                ) -> list[Target]:
        targets = []
        shift = offset_days(schedule) if schedule.kind == "birthday" else 0
        for member in rows:
            day = self._local_day(schedule, member, now, window_start)
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
                               segment: list[Any]) -> AsyncIterator[list[Target]]:
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
                member = members.get(member_id)
                day = member and self._local_day(schedule, member, now, window_start)
                if not member or not day or not amount or first_expiry is None:
                    continue
                expiry = as_utc(first_expiry).astimezone(zone).date()
                batch.append(Target(member, expiry.isoformat(), day[1],
                                    {"expiring_points": int(amount), "expiry_date": expiry}))
            yield batch

    async def _expiring_coupons(self, schedule: Schedule, now: datetime, window_start: datetime | None,
                                segment: list[Any]) -> AsyncIterator[list[Target]]:
        horizon = now + timedelta(days=offset_days(schedule))
        last = 0
        while True:
            query = (sa.select(Coupon.id, Coupon.member_id, Coupon.code, Coupon.expires_at, Reward.titles)
                     .join(Reward, Reward.id == Coupon.reward_id)
                     .where(Coupon.id > last, Coupon.status == "active", Coupon.expires_at > now,
                            Coupon.expires_at <= horizon)
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
                member = members.get(member_id)
                day = member and self._local_day(schedule, member, now, window_start)
                if not member or not day:
                    continue
                lang = member.language
                title = (titles or {}).get(lang) or (titles or {}).get(self.programme.programme.default_language) or ""
                expiry = as_utc(expires_at).astimezone(member_zone(member.timezone)).date()
                batch.append(Target(member, f"coupon:{coupon_id}", day[1],
                                    {"coupon_title": title, "coupon_code": code, "coupon_expiry": expiry}))
            yield batch

    # --- deciding, rendering, inserting -------------------------------------------------------------

    def skip_reason(self, schedule: Schedule, member: Any, kind: str | None = None) -> str | None:
        """Why this member must not get this message, or None."""
        rule = RULES[kind or schedule.kind]
        if member.status == "erased":
            return "erased"
        if member.status == "unreachable":
            return "unreachable"
        if member.chat_id is None:
            return "no_chat"
        if not (member.notify or {}).get(rule.notify, True):
            return "opted_out"
        if rule.needs_consent and not member.marketing_consent:
            return "no_consent"
        return None

    def _common_variables(self) -> dict[str, Any]:
        """The variables that are the same for every member of a run (worked out once per batch)."""
        multiplier = self.programme.earning.birthday_month_multiplier
        return {"birthday_multiplier": _plain(multiplier) if multiplier > 1 else None,
                "programme": self.programme.programme.name, "_currency": self.programme.programme.currency}

    def variables(self, member: Any, extra: dict[str, Any], common: dict[str, Any] | None = None) -> dict[str, Any]:
        """The documented template variables for one member (see scheduler.templates.VARIABLES)."""
        lang = member.language
        tier = self.programme.tier(member.tier)
        return {
            "name": member.first_name or FALLBACK_NAME.get(lang, FALLBACK_NAME["en"]),
            "member_no": member.member_no,
            "points": member.balance,
            "tier": member.tier,
            "tier_name": tier.names.get(lang) or tier.names.get("en") or tier.code,
            **(common if common is not None else self._common_variables()),
            **extra,
        }

    def _render(self, schedule: Schedule, targets: list[Target], compiled: CompiledTemplates, now: datetime,
                stats: PlanStats, *, samples: int = 3) -> list[dict[str, Any]]:
        """Outbox rows for a batch of targets: rendered in each member's language, or skipped with a reason."""
        rows: list[dict[str, Any]] = []
        common = self._common_variables()
        schedule_id, kind = stored_id(schedule.id), schedule.kind  # ORM attribute reads, hoisted out of the loop
        for target in targets:
            member = target.member
            reason = self.skip_reason(schedule, member, kind)
            period = target.period[:64]
            row = {"schedule_id": schedule_id, "member_id": member.id, "chat_id": member.chat_id or 0,
                   "idempotency_key": outbox_key(schedule_id, member.id, period),
                   "kind": kind, "period": period, "text": "", "buttons": [],
                   "survey_id": None, "status": "skipped" if reason else "pending", "skip_reason": reason,
                   "not_before": target.not_before, "created_at": now, "attempts": 0}
            if reason is None:
                try:
                    row["text"] = compiled.render(member.language, self.variables(member, target.extra, common))
                except Exception as exc:  # a template that renders for samples but not for this member
                    log.warning("schedule %s: template failed for member %s: %s", schedule.name, member.id, exc)
                    row.update(status="skipped", skip_reason="render_failed")
                else:
                    if member.quiet_start is not None and member.quiet_end is not None:
                        tz = member_zone(member.timezone)
                        row["not_before"] = after_quiet_hours(target.not_before, tz, member.quiet_start,
                                                              member.quiet_end)
                        if row["not_before"] != target.not_before:
                            stats.delayed_for_quiet_hours += 1
                    if len(stats.samples) < samples and all(lang != member.language for lang, _ in stats.samples):
                        stats.samples.append((member.language, row["text"]))
            rows.append(row)
        return rows

    async def _store(self, rows: list[dict[str, Any]], stats: PlanStats, targets: list[Target]) -> None:
        """Insert a batch's rows (those already planned are left alone) and count what was inserted."""
        inserted = await self._insert(rows)
        stats.already_planned += len(rows) - len(inserted)
        languages = {t.member.id: t.member.language for t in targets}
        for member_id, status, reason in inserted:
            self._count(stats, status, reason, languages.get(member_id, "en"))

    async def _plan_batch(self, schedule: Schedule, targets: list[Target], compiled: CompiledTemplates,
                          now: datetime, stats: PlanStats, *, dry_run: bool = False, samples: int = 3,
                          survey: dict[str, Any] | None = None) -> None:
        if not targets:
            return
        rule = RULES[schedule.kind]
        rows = self._render(schedule, targets, compiled, now, stats, samples=samples)
        if dry_run:
            for row, target in zip(rows, targets, strict=True):
                self._count(stats, row["status"], row["skip_reason"], target.member.language)
            return
        if rule.survey is not None:
            languages = {t.member.id: t.member.language for t in targets}
            await self._plan_surveys(schedule, rows, rule.survey, now, stats, languages, survey or {})
            return
        await self._store(rows, stats, targets)

    async def _plan_surveys(self, schedule: Schedule, rows: list[dict[str, Any]], kind: str, now: datetime,
                            stats: PlanStats, languages: dict[int, str], survey: dict[str, Any]) -> None:
        """Survey messages open their survey as they are planned; one member at a time (one open survey)."""
        for row in rows:
            key = (Outbox.schedule_id == row["schedule_id"], Outbox.member_id == row["member_id"],
                   Outbox.period == row["period"])
            async with self.db.read() as s:
                if (await s.execute(sa.select(Outbox.id).where(*key))).first() is not None:
                    stats.already_planned += 1
                    continue
            opened = None
            if row["status"] == "pending":
                opened = await self.loyalty.open_survey(
                    row["member_id"], kind, trigger=survey.get("trigger") or "schedule",
                    trigger_ref=survey.get("trigger_ref"), schedule_id=schedule.id,
                    conversation_id=survey.get("conversation_id"), staff_id=survey.get("staff_id"), now=now)
                if opened is None:
                    row.update(status="skipped", skip_reason="survey_open", text="")
                else:
                    row.update(survey_id=opened.id, buttons=survey_buttons(kind, opened.id or 0))
            inserted = await self._insert([row])
            if not inserted:
                stats.already_planned += 1
                if opened is not None:  # another process planned it meanwhile: do not leave a second survey open
                    async with self.db.transaction() as tx:
                        await tx.execute(sa.update(Survey).where(Survey.id == opened.id).values(status="expired"))
                continue
            self._count(stats, row["status"], row["skip_reason"], languages.get(row["member_id"], "en"))

    @staticmethod
    def _count(stats: PlanStats, status: str, reason: str | None, language: str) -> None:
        if status == "pending":
            stats.planned += 1
            stats.languages[language] += 1
        else:
            stats.skipped[reason or "skipped"] += 1
            stats.skipped_by_language[language] += 1

    async def _insert(self, rows: list[dict[str, Any]]) -> list[tuple[int, str, str | None]]:
        """Insert rows, skipping those whose (schedule, member, period) exists; returns what was inserted."""
        if self.db.is_postgres:
            return await self._insert_postgres(rows)
        stmt = (sqlite_insert(Outbox).on_conflict_do_nothing()
                .returning(Outbox.member_id, Outbox.status, Outbox.skip_reason))
        async with self.db.connection() as conn:  # Core executemany: the ORM's bulk path is slow with RETURNING
            result = await conn.execute(stmt, rows)
            return [(r[0], r[1], r[2]) for r in result.all()]

    async def _insert_postgres(self, rows: list[dict[str, Any]]) -> list[tuple[int, str, str | None]]:
        # One statement per batch whatever its size: columns travel as arrays and are unnested, so
        # PostgreSQL's 32767-parameter limit never applies and there is one round trip per batch.
        first = rows[0]
        shared = all(row[key] == first[key] for row in rows for key in _PG_SHARED)
        columns: dict[str, Any] = {key: first[key] if shared and key in _PG_SHARED else [row[key] for row in rows]
                                   for key in _PG_COLUMNS}
        columns["buttons"] = [json.dumps(b) if b else "[]" for b in columns["buttons"]]
        async with self.db.connection() as conn:
            result = await conn.execute(_PG_INSERT_SHARED if shared else _PG_INSERT, columns)
            return [(r[0], r[1], r[2]) for r in result.all()]


_PG_COLUMNS = {"schedule_id": "integer", "member_id": "integer", "chat_id": "bigint", "idempotency_key": "text",
               "kind": "text",
               "period": "text", "text": "text", "buttons": "text", "survey_id": "integer", "status": "text",
               "skip_reason": "text", "not_before": "timestamptz", "created_at": "timestamptz"}
# Columns that are the same for every row of a run travel once, as plain parameters, when they are.
_PG_SHARED = ("schedule_id", "kind", "created_at")


def _pg_insert(shared: Sequence[str]) -> sa.TextClause:
    arrays = {c: t for c, t in _PG_COLUMNS.items() if c not in shared}
    values = [f"CAST(:{c} AS {t})" if c in shared else "u.buttons::json" if c == "buttons" else f"u.{c}"
              for c, t in _PG_COLUMNS.items()]
    return sa.text(
        f"INSERT INTO outbox ({', '.join(_PG_COLUMNS)}, attempts) SELECT {', '.join(values)}, 0 "
        f"FROM unnest({', '.join(f'CAST(:{c} AS {t}[])' for c, t in arrays.items())}) AS u({', '.join(arrays)}) "
        "ON CONFLICT DO NOTHING RETURNING member_id, status, skip_reason")


_PG_INSERT = _pg_insert(())
_PG_INSERT_SHARED = _pg_insert(_PG_SHARED)


async def _read_ahead(batches: AsyncIterator[T]) -> AsyncGenerator[T, None]:
    """`batches`, with the next one already being read while the caller works on the current one."""
    source = aiter(batches)
    upcoming: asyncio.Task[T] = asyncio.ensure_future(anext(source))
    try:
        while True:
            try:
                current = await upcoming
            except StopAsyncIteration:
                return
            upcoming = asyncio.ensure_future(anext(source))
            yield current
    finally:
        if not upcoming.done():
            upcoming.cancel()
            with contextlib.suppress(BaseException):
                await upcoming
        aclose = getattr(source, "aclose", None)
        if aclose is not None:
            await aclose()


@lru_cache(maxsize=4096)
def _local_day(daily_time: str | None, timezone: str | None, now: datetime, window_start: datetime | None
               ) -> tuple[date, datetime] | None:
    """See Planner._local_day; `daily_time` is None unless the schedule runs at the member's local time."""
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


def _plain(value: Decimal) -> int | Decimal:
    return int(value) if value == value.to_integral_value() else value.normalize()
