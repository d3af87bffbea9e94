"""Planning: a schedule's run becomes outbox rows, one per eligible member, each rendered in their language.

Who a run reaches, per kind, is `scheduler.selection`; this is the run itself. Each batch's rows are
inserted with ``INSERT ... ON CONFLICT DO NOTHING`` on the row's idempotency key
``schedule:<schedule>:<member>:<period>`` (`scheduler.outbox_insert`), so planning the same period
twice (a retry, two replicas, a catch-up after a restart) plans nothing new. A run is a pipeline
three batches deep: while one batch is inserted, the next is rendered and the one after is read, so
the database and Python work at the same time; memory holds three batches whatever the number of
members. A plain broadcast measured over 20,000 rows/s on PostgreSQL at 100k and 1M members on a quiet
machine (bench/fanout.py); a campaign with a control group and two variants measured 9,756 rows/s at 1M
(bench/campaign_results.py), short of the 20,000 aimed at.

Members who cannot or should not get the message are *not* silently dropped: they get a row with
status ``skipped`` and a ``skip_reason`` (erased, unreachable, opted_out, no_consent, survey_open,
no_chat), so a run's reach is visible and counted. Members in their quiet hours get the message
planned for the end of their quiet hours (``not_before``).

Periods (the idempotency key's third part) of clock-driven kinds are in `scheduler.selection`;
tier_change: ``<tier>:<date>``; csat: ``<trigger>:<ref>``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, TypeVar

import sqlalchemy as sa

from loyalbot.loyalty.programme import Programme
from loyalbot.loyalty.service import Loyalty
from loyalbot.scheduler.experiments import Experiment, record_holdouts
from loyalbot.scheduler.kinds import RULES, survey_of, template_kind, unreachable_reason
from loyalbot.scheduler.offers import OfferBatch, offer_of, prepare_batch
from loyalbot.scheduler.outbox_insert import insert_rows
from loyalbot.scheduler.selection import Selection, Target
from loyalbot.scheduler.surveys import survey_buttons
from loyalbot.scheduler.templates import FALLBACK_NAME, CompiledTemplates, TemplateBook
from loyalbot.scheduler.timing import after_quiet_hours, member_zone
from loyalbot.storage import as_utc
from loyalbot.storage.models import Outbox, Schedule, Survey, outbox_key
from loyalbot.storage.rows import stored_id

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass
class PlanStats:
    """What a run planned (or, in a dry run, would plan): counts by outcome and language, a few samples."""

    schedule: str
    kind: str
    dry_run: bool = False
    planned: int = 0
    already_planned: int = 0
    delayed_for_quiet_hours: int = 0
    held_out: int = 0  # kept back as the campaign's control group (scheduler/experiments.py)
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
                "held_out": self.held_out,
                "skipped": dict(self.skipped), "languages": dict(self.languages)}


class Planner:
    """Turns schedule runs and events into outbox rows."""

    def __init__(self, loyalty: Loyalty, *, templates: TemplateBook | None = None, batch_size: int = 2000) -> None:
        self.loyalty = loyalty
        self.db = loyalty.db
        self.templates = templates or TemplateBook()
        self.selection = Selection(self.db, loyalty.in_force, batch_size=batch_size)

    @property
    def programme(self) -> Programme:
        """The programme in force at this moment (a newer stored version swaps in without a restart)."""
        return self.loyalty.programme

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
        if dry_run or survey_of(schedule) is not None or offer_of(schedule) is not None:
            async for targets in self.selection.targets(schedule, now, window_start):
                await self._plan_batch(schedule, targets, compiled, now, stats, dry_run=dry_run, samples=samples)
            return stats
        # A pipeline three batches deep: while batch n is inserted (the database's work), batch n+1 is
        # rendered (ours) and batch n+2 is read, so neither side waits for the other. Memory stays
        # bounded at three batches whatever the number of members.
        inserting: asyncio.Task[None] | None = None
        batches = _read_ahead(self.selection.targets(schedule, now, window_start))
        try:
            async for targets in batches:
                if schedule.kind == "birthday":
                    await self._birthday_gifts(targets, now)
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
        member = await self.selection.member(member_id, schedule.segment or {}, now)
        if member is None:
            return stats
        target = Target(member, period, as_utc(not_before or now), dict(extra or {}))
        await self._plan_batch(schedule, [target], self._compiled(schedule), now, stats,
                               survey=dict(trigger=survey_trigger or "schedule", trigger_ref=trigger_ref,
                                           conversation_id=conversation_id, staff_id=staff_id))
        return stats

    async def _birthday_gifts(self, targets: list[Target], now: datetime) -> None:
        """Give each member their tier's birthday gift coupon (once a year: the period is the year) and let
        the message name it (gift_title, gift_code). Given whether or not the message may be sent: the
        gift is a benefit of the tier, the message only tells of it."""
        titles = {reward.code: reward.titles for reward in self.programme.rewards}
        default = self.programme.programme.default_language
        for target in targets:
            member = target.member
            if member.status != "active" or not target.period.isdigit():
                continue
            gift = await self.loyalty.give_birthday_gift(member.id, int(target.period), now=now)
            if gift is not None:
                texts = titles.get(gift.reward_code, {})
                target.extra.update(gift_code=gift.coupon_code, gift_title=texts.get(member.language)
                                    or texts.get(default) or gift.reward_code)

    async def plan_targets(self, schedule: Schedule, targets: list[Target], *, now: datetime,
                           stats: PlanStats | None = None) -> PlanStats:
        """Plan an event-driven schedule for a batch of members found elsewhere (lifecycle changes); idempotent on
        each target's period."""
        stats = stats or PlanStats(schedule=schedule.name, kind=schedule.kind)
        await self._plan_batch(schedule, targets, self._compiled(schedule), as_utc(now), stats)
        return stats

    def _compiled(self, schedule: Schedule) -> CompiledTemplates:
        return self.templates.compiled(schedule.templates or {}, kind=template_kind(schedule),
                                       default_language=self.programme.programme.default_language)

    def _experiment(self, schedule: Schedule) -> Experiment | None:
        return Experiment.of(schedule, stored_id(schedule.id), self.templates, template_kind=template_kind(schedule),
                             default_language=self.programme.programme.default_language)

    # --- deciding, rendering, inserting -------------------------------------------------------------

    def skip_reason(self, schedule: Schedule, member: Any, kind: str | None = None) -> str | None:
        """Why this member must not get this message, or None."""
        rule = RULES[kind or schedule.kind]
        if (reason := unreachable_reason(member, rule.notify)) is not None:
            return reason
        if rule.needs_consent and not member.marketing_consent:
            return "no_consent"
        return None

    def _common_variables(self) -> dict[str, Any]:
        """The variables that are the same for every member of a run (worked out once per batch)."""
        multiplier = self.programme.earning.birthday_month_multiplier
        return {"birthday_multiplier": _plain(multiplier) if multiplier > 1 else None,
                "programme": self.programme.programme.name, "_currency": self.programme.programme.currency,
                "gift_title": None, "gift_code": None}  # a birthday without a tier gift (_birthday_gifts)

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
                stats: PlanStats, *, samples: int = 3, offers: OfferBatch | None = None) -> list[dict[str, Any]]:
        """Outbox rows for a batch of targets: rendered in each member's language, or skipped with a reason.
        A campaign's rows (`offers`) each promise a coupon of their own (scheduler/offers.py)."""
        rows: list[dict[str, Any]] = []
        common = self._common_variables()
        schedule_id, kind = stored_id(schedule.id), schedule.kind  # ORM attribute reads, hoisted out of the loop
        experiment = self._experiment(schedule)
        for target in targets:
            member = target.member
            reason = self.skip_reason(schedule, member, kind)
            period = target.period[:64]
            row = {"schedule_id": schedule_id, "member_id": member.id, "chat_id": member.chat_id or 0,
                   "idempotency_key": outbox_key(schedule_id, member.id, period),
                   "kind": kind, "period": period, "text": "", "buttons": [], "variant": None,
                   "survey_id": None, "status": "skipped" if reason else "pending", "skip_reason": reason,
                   "not_before": target.not_before, "created_at": now, "attempts": 0, "offer": None}
            templates = compiled
            if reason is None and experiment is not None:
                if experiment.held_out(member.id):
                    row["status"] = "control"  # recorded as the control group, not put in the outbox
                    rows.append(row)
                    continue
                if (variant := experiment.variant(member.id)) is not None:
                    row["variant"], templates = variant.name, variant.templates
            if reason is None and offers is not None and (reason := offers.skip_reason(member.id)) is not None:
                row.update(status="skipped", skip_reason=reason)
            if reason is None:
                extra = target.extra
                if offers is not None:
                    offer, row["offer"], row["buttons"] = offers.draft(member, target.not_before)
                    extra = {**extra, "offer": offer}
                try:
                    row["text"] = templates.render(member.language, self.variables(member, extra, common))
                    if offers is not None and extra["offer"]["code"] not in row["text"]:
                        row["text"] = f"{row['text']}\n\n{offers.line(member, extra['offer'])}"
                except Exception as exc:  # a template that renders for samples but not for this member
                    log.warning("schedule %s: template failed for member %s: %s", schedule.name, member.id, exc)
                    row.update(status="skipped", skip_reason="render_failed", offer=None, buttons=[])
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
        held = [row for row in rows if row["status"] == "control"]
        if held:
            rows = [row for row in rows if row["status"] != "control"]
            stats.held_out += await record_holdouts(self.db, held)
            if not rows:
                return
        inserted = await insert_rows(self.db, rows)
        stats.already_planned += len(rows) - len(inserted)
        languages = {t.member.id: t.member.language for t in targets}
        for member_id, status, reason in inserted:
            self._count(stats, status, reason, languages.get(member_id, "en"))

    async def _plan_batch(self, schedule: Schedule, targets: list[Target], compiled: CompiledTemplates,
                          now: datetime, stats: PlanStats, *, dry_run: bool = False, samples: int = 3,
                          survey: dict[str, Any] | None = None) -> None:
        if not targets:
            return
        asks = survey_of(schedule)
        offers = await prepare_batch(self.db, schedule, [t.member.id for t in targets], self.programme)
        rows = self._render(schedule, targets, compiled, now, stats, samples=samples, offers=offers)
        if dry_run:
            for row, target in zip(rows, targets, strict=True):
                self._count(stats, row["status"], row["skip_reason"], target.member.language)
            return
        if asks is not None:
            languages = {t.member.id: t.member.language for t in targets}
            await self._plan_surveys(schedule, rows, asks, now, stats, languages, survey or {})
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
            inserted = await insert_rows(self.db, [row])
            if not inserted:
                stats.already_planned += 1
                if opened is not None:  # another process planned it meanwhile: do not leave a second survey open
                    async with self.db.transaction() as tx:
                        await tx.execute(sa.update(Survey).where(Survey.id == opened.id).values(status="expired"))
                continue
            self._count(stats, row["status"], row["skip_reason"], languages.get(row["member_id"], "en"))

    @staticmethod
    def _count(stats: PlanStats, status: str, reason: str | None, language: str) -> None:
        if status == "control":
            stats.held_out += 1
        elif status == "pending":
            stats.planned += 1
            stats.languages[language] += 1
        else:
            stats.skipped[reason or "skipped"] += 1
            stats.skipped_by_language[language] += 1


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


def _plain(value: Decimal) -> int | Decimal:
    return int(value) if value == value.to_integral_value() else value.normalize()
