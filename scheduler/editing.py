"""Changing schedules, for the CLI and the console alike: check, add, edit, pause, resume, delete, run now,
preview as a member, test-send to a staff member's chat, and each schedule's outbox.

Every check raises `ScheduleProblem` naming the field and what is wrong, before anything is saved.
Every change is written with an audit row (who, what, which schedule); a running bot follows the
`updated_at` stamp and picks a change up within seconds (scheduler/service.py).

A schedule that has planned messages is not removed (its outbox rows are its history): `delete`
archives it instead, pauses it, frees its name and skips what it had not sent yet.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

import sqlalchemy as sa
from jinja2 import meta
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import CursorResult

from loyalbot.chat.languages import LANGUAGES
from loyalbot.loyalty.service import Loyalty
from loyalbot.scheduler.experiments import EXPERIMENT_PARAMS, ExperimentProblem, check_experiment
from loyalbot.scheduler.kinds import (
    BROADCAST_SURVEYS,
    DEFAULT_PARAMS,
    KINDS,
    LIFECYCLE_STAGES,
    RULES,
    survey_of,
    template_kind,
)
from loyalbot.scheduler.offers import OfferProblem, check_campaign_params
from loyalbot.scheduler.planner import Planner, PlanStats
from loyalbot.scheduler.segments import SegmentProblem, check_segment, segment_size
from loyalbot.scheduler.selection import MEMBER_COLUMNS
from loyalbot.scheduler.templates import TemplateBook, TemplateProblem, sample_variables
from loyalbot.scheduler.triggers import TriggerProblem, check_timing
from loyalbot.storage import as_utc, utcnow
from loyalbot.storage.models import AuditLog, CampaignHoldout, Member, Outbox, Schedule, Staff
from loyalbot.storage.rows import stored_id

NAME_LIMIT = 100
TEMPLATE_LIMIT = 4000
EDITABLE = ("cron", "daily_time", "timezone", "member_local_time", "offset_days", "segment", "templates",
            "frequency_cap_days", "params", "one_off_at")


class ScheduleProblem(ValueError):
    """Why a schedule cannot be saved or run: `field` names the part (None: the schedule as a whole)."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


@dataclass
class OutboxView:
    """A schedule's messages: counts by status, skipped by reason, and a page of rows, newest first."""

    by_status: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)
    rows: list[Any] = field(default_factory=list)  # id, member_no, status, skip_reason, not_before, sent_at, error


def _audit(tx: Any, actor: str, action: str, schedule: Schedule | None, **details: Any) -> None:
    tx.add(AuditLog(actor=actor[:64], action=action,
                    details={"schedule": schedule.name if schedule else None,
                             "schedule_id": schedule.id if schedule else None, **details}))


def parse_params(kind: str, given: dict[str, str]) -> dict[str, Any]:
    """A kind's parameters from text (JSON values, or plain strings); unknown keys refused."""
    allowed = set(DEFAULT_PARAMS.get(kind, {})) | (set(EXPERIMENT_PARAMS) if RULES[kind].survey is None else set())
    if kind == "broadcast":
        allowed.add("survey")  # a broadcast may ask a survey with its message (the thank-you play's CSAT)
    params: dict[str, Any] = {}
    for key, value in given.items():
        if key not in allowed:
            raise ScheduleProblem(f"a {kind} schedule takes {', '.join(sorted(allowed)) or 'no parameters'}",
                                  "params")
        try:
            params[key] = json.loads(value)
        except json.JSONDecodeError:
            params[key] = value
    return params


def with_campaign(params: dict[str, Any], *, reward: str | None = None, valid_days: int | None = None,
                  remind_days: int | None = None, when_capped: str | None = None) -> dict[str, Any]:
    """`params` with the offer and when-capped choice laid over them (what the CLI and the console give;
    checked with the rest by `validate`). `reward` "" or "none" removes the offer; valid_days and
    remind_days change the offer there is (remind_days 0: no reminder)."""
    out = dict(params)
    offer = dict(out.get("offer") or {})
    if reward is not None:
        offer = {} if reward.strip().lower() in ("", "none") else {**offer, "reward": reward.strip()}
    if (valid_days is not None or remind_days is not None) and not offer:
        raise ScheduleProblem("the offer's days need an offer reward", "offer")
    if valid_days is not None:
        offer["valid_days"] = valid_days
    if remind_days is not None:
        offer["remind_days_before"] = remind_days or None
    if offer:
        offer.setdefault("valid_days", 7)
        out["offer"] = {k: v for k, v in offer.items() if v is not None}
    else:
        out.pop("offer", None)
    if when_capped is not None:
        out["when_capped"] = when_capped
    return out


def parse_segment(text: str) -> dict[str, Any]:
    """A segment from its JSON text ('' or '{}' for everyone), checked."""
    if not text.strip():
        return {}
    try:
        segment = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ScheduleProblem(f"the segment is not JSON: {exc.msg} at character {exc.pos}", "segment") from None
    try:
        check_segment(segment)
    except SegmentProblem as exc:
        raise ScheduleProblem(str(exc), "segment") from None
    return dict(segment)


async def validate(loyalty: Loyalty, schedule: Schedule, now: datetime, *, book: TemplateBook | None = None) -> None:
    """Everything that must hold before a schedule is saved; raises ScheduleProblem naming the field."""
    if not schedule.name or not schedule.name.strip():
        raise ScheduleProblem("a schedule needs a name", "name")
    if len(schedule.name) > NAME_LIMIT or any(ord(c) < 32 for c in schedule.name):
        raise ScheduleProblem(f"a name is at most {NAME_LIMIT} characters, without control characters", "name")
    if schedule.kind not in KINDS:
        raise ScheduleProblem(f"unknown kind {schedule.kind!r}; use {', '.join(KINDS)}", "kind")
    try:
        check_timing(schedule.kind, cron=schedule.cron, daily_time=schedule.daily_time, timezone=schedule.timezone,
                     member_local_time=schedule.member_local_time, one_off_at=schedule.one_off_at,
                     event_driven=RULES[schedule.kind].event_driven)
    except TriggerProblem as exc:
        raise ScheduleProblem(str(exc), "timing") from None
    if not 0 <= schedule.offset_days <= 366:
        raise ScheduleProblem("the offset is between 0 and 366 days", "offset_days")
    if schedule.frequency_cap_days is not None and not 1 <= schedule.frequency_cap_days <= 3660:
        raise ScheduleProblem("the frequency cap is between 1 and 3660 days", "frequency_cap_days")
    for language, source in (schedule.templates or {}).items():
        if len(source) > TEMPLATE_LIMIT:
            raise ScheduleProblem(f"{language}: a template is at most {TEMPLATE_LIMIT} characters", f"template_{language}")
    try:
        (book or TemplateBook()).check_all(schedule.templates, template_kind(schedule),
                                           default_language=loyalty.programme.programme.default_language)
    except TemplateProblem as exc:
        language = str(exc).split(":", 1)[0]
        raise ScheduleProblem(str(exc), f"template_{language}" if language in LANGUAGES else "templates") from None
    if schedule.kind == "lifecycle_change":
        check_stage_change(schedule.params or {})
    if (schedule.params or {}).get("survey") is not None and survey_of(schedule) is None:
        raise ScheduleProblem(f"survey is one of {', '.join(BROADCAST_SURVEYS)} (for a broadcast), or none", "params")
    try:
        schedule.params = check_campaign_params(schedule, loyalty.programme, _shows_offer(schedule, book))
    except OfferProblem as exc:
        raise ScheduleProblem(str(exc), "when_capped" if "when_capped" in str(exc) else "offer") from None
    try:
        check_experiment(schedule, book or TemplateBook(), template_kind=template_kind(schedule),
                         default_language=loyalty.programme.programme.default_language)
    except ExperimentProblem as exc:
        raise ScheduleProblem(str(exc), exc.key) from None
    try:
        check_segment(schedule.segment)
        size = (await segment_size(loyalty.db, schedule.segment, now, zone=loyalty.programme.zone)
                if schedule.segment else None)
    except SegmentProblem as exc:
        raise ScheduleProblem(str(exc), "segment") from None
    if size == 0:
        raise ScheduleProblem(f"the segment {json.dumps(schedule.segment)} matches nobody; nothing was saved",
                              "segment")


def check_stage_change(params: dict[str, Any]) -> None:
    """A lifecycle_change schedule names the stage members move to (and may name the one they leave)."""
    for key in ("to", "from"):
        value = params.get(key)
        if (value is not None or key == "to") and value not in LIFECYCLE_STAGES:
            raise ScheduleProblem(f"{key!r} must be one of {', '.join(LIFECYCLE_STAGES)}", "params")


def _shows_offer(schedule: Schedule, book: TemplateBook | None) -> bool:
    """Whether any of the schedule's templates uses the `offer` variable."""
    env = (book or TemplateBook()).env
    return any("offer" in meta.find_undeclared_variables(env.parse(source))
               for source in (schedule.templates or {}).values() if source)


async def get(loyalty: Loyalty, name_or_id: str | int) -> Schedule:
    where = Schedule.id == name_or_id if isinstance(name_or_id, int) else Schedule.name == name_or_id
    async with loyalty.db.read() as s:
        found = (await s.execute(sa.select(Schedule).where(where, Schedule.archived_at.is_(None)))).scalar_one_or_none()
    if found is None:
        raise ScheduleProblem(f"no schedule called {name_or_id!r}" if isinstance(name_or_id, str)
                              else "no such schedule")
    return found


async def list_schedules(loyalty: Loyalty) -> list[Schedule]:
    async with loyalty.db.read() as s:
        return list((await s.execute(sa.select(Schedule).where(Schedule.archived_at.is_(None))
                                     .order_by(Schedule.name))).scalars())


async def add(loyalty: Loyalty, row: Schedule, *, actor: str, now: datetime | None = None) -> Schedule:
    now = as_utc(now or utcnow())
    row.name = row.name.strip()
    row.created_at = row.updated_at = now
    await validate(loyalty, row, now)
    async with loyalty.db.transaction() as tx:
        if (await tx.execute(sa.select(Schedule.id).where(Schedule.name == row.name))).first():
            raise ScheduleProblem(f"a schedule called {row.name!r} exists", "name")
        tx.add(row)
        await tx.flush()
        _audit(tx, actor, "schedule_add", row, kind=row.kind)
        tx.expunge(row)
    return row


async def edit(loyalty: Loyalty, schedule_id: int, changes: dict[str, Any], *, actor: str,
               based_on: datetime | None = None, now: datetime | None = None) -> Schedule:
    """Change a schedule's editable fields; `based_on` (the updated_at the form was made from) refuses an
    edit over somebody else's newer change instead of losing it."""
    now = as_utc(now or utcnow())
    unknown = sorted(set(changes) - set(EDITABLE) - {"name"})
    if unknown:
        raise ScheduleProblem(f"{unknown[0]!r} cannot be changed", unknown[0])
    row = await get(loyalty, schedule_id)
    if based_on is not None and abs((as_utc(row.updated_at) - as_utc(based_on)).total_seconds()) > 0.001:
        raise ScheduleProblem("someone changed this schedule after you opened it: reload it and make your change "
                              "again", "updated_at")
    before = {key: getattr(row, key) for key in changes}
    for key, value in changes.items():
        setattr(row, key, value)
    await validate(loyalty, row, now)
    changed = sorted(key for key in changes if before[key] != changes[key])
    async with loyalty.db.transaction() as tx:
        if "name" in changes and (await tx.execute(sa.select(Schedule.id).where(
                Schedule.name == row.name, Schedule.id != schedule_id))).first():
            raise ScheduleProblem(f"a schedule called {row.name!r} exists", "name")
        values = {key: getattr(row, key) for key in changes}
        await tx.execute(sa.update(Schedule).where(Schedule.id == schedule_id).values(**values, updated_at=now))
        _audit(tx, actor, "schedule_edit", row, changed=changed)
    row.updated_at = now
    return row


async def set_enabled(loyalty: Loyalty, schedule_id: int, enabled: bool, *, actor: str) -> Schedule:
    row = await get(loyalty, schedule_id)
    async with loyalty.db.transaction() as tx:
        await tx.execute(sa.update(Schedule).where(Schedule.id == schedule_id)
                         .values(enabled=enabled, updated_at=utcnow()))
        _audit(tx, actor, "schedule_resume" if enabled else "schedule_pause", row)
    row.enabled = enabled
    return row


async def pause_for_stop_loss(loyalty: Loyalty, schedule_id: int, *, actor: str, notice_key: str,
                              staff_chat_id: int | None, text: str, details: dict[str, Any], now: datetime) -> bool:
    """Pause a schedule its stop-loss rule stopped, skip its unsent messages (reason "stop_loss") and tell
    the staff group, in one transaction.

    The staff notice is an outbox row about no member, keyed by `notice_key`: a rule that already fired
    (the key is there) pauses nothing again and tells nobody twice. Without a staff group the row is kept
    as skipped ("no_staff_group"), so the pause is still recorded once. Returns whether it paused now.
    """
    async with loyalty.db.transaction() as tx:
        query = sa.select(Schedule).where(Schedule.id == schedule_id, Schedule.archived_at.is_(None))
        if loyalty.db.is_postgres:
            query = query.with_for_update()
        row = (await tx.execute(query)).scalar_one_or_none()
        if row is None or not row.enabled:
            return False
        insert = pg_insert if loyalty.db.is_postgres else sqlite_insert
        told = await tx.execute(insert(Outbox).values(
            idempotency_key=notice_key, schedule_id=None, member_id=None, chat_id=staff_chat_id or 0,
            kind="staff_stop_loss", period=notice_key[:64], text=text if staff_chat_id else "", buttons=[],
            status="pending" if staff_chat_id else "skipped",
            skip_reason=None if staff_chat_id else "no_staff_group", not_before=now, attempts=0, created_at=now,
        ).on_conflict_do_nothing().returning(Outbox.id))
        if told.first() is None:
            return False
        await tx.execute(sa.update(Schedule).where(Schedule.id == schedule_id).values(enabled=False, updated_at=now))
        # A pause alone lets planned messages go out; stopping the loss means not sending the rest either.
        held = await tx.execute(sa.update(Outbox).where(Outbox.schedule_id == schedule_id, Outbox.status == "pending")
                                .values(status="skipped", skip_reason="stop_loss")
                                .execution_options(synchronize_session=False))
        skipped = int(cast("CursorResult[Any]", held).rowcount or 0)
        _audit(tx, actor, "schedule_pause", row, reason="stop_loss", unsent_skipped=skipped, **details)
    return True


async def delete(loyalty: Loyalty, schedule_id: int, *, actor: str) -> str:
    """Remove a schedule that never planned anything; archive (and pause) one that did. Returns which."""
    row = await get(loyalty, schedule_id)
    now = utcnow()
    async with loyalty.db.transaction() as tx:
        planned = (await tx.execute(sa.select(sa.func.count()).select_from(Outbox)
                                    .where(Outbox.schedule_id == schedule_id))).scalar_one()
        # Members a campaign held out are part of its history too (its results compare with them).
        planned += (await tx.execute(sa.select(sa.func.count()).select_from(CampaignHoldout)
                                     .where(CampaignHoldout.schedule_id == schedule_id))).scalar_one()
        if not planned:
            await tx.execute(sa.delete(Schedule).where(Schedule.id == schedule_id))
            _audit(tx, actor, "schedule_delete", row)
            return "deleted"
        await tx.execute(sa.update(Outbox).where(Outbox.schedule_id == schedule_id, Outbox.status == "pending")
                         .values(status="skipped", skip_reason="schedule_deleted"))
        await tx.execute(sa.update(Schedule).where(Schedule.id == schedule_id).values(
            enabled=False, archived_at=now, updated_at=now, name=f"{row.name[:80]}~{schedule_id}"))
        _audit(tx, actor, "schedule_archive", row, planned=int(planned))
    return "archived"


async def audience(loyalty: Loyalty, segment: dict[str, Any], now: datetime | None = None) -> int:
    """How many members (not erased) the segment reaches before kind rules (consent, settings) apply."""
    try:
        return await segment_size(loyalty.db, segment, as_utc(now or utcnow()), zone=loyalty.programme.zone)
    except SegmentProblem as exc:
        raise ScheduleProblem(str(exc), "segment") from None


async def dry_run(loyalty: Loyalty, schedule: Schedule, now: datetime | None = None) -> PlanStats:
    """Who would get it now, by language, who is skipped and why, a few samples: nothing is saved."""
    if RULES[schedule.kind].event_driven:
        raise ScheduleProblem(f"{schedule.kind} messages are sent when something happens; there is nothing to preview",
                              "kind")
    return await Planner(loyalty).run(schedule, now=as_utc(now or utcnow()), dry_run=True)


async def run_now(loyalty: Loyalty, schedule: Schedule, *, actor: str, now: datetime | None = None) -> PlanStats:
    """Plan a run now (planning twice plans nothing new); the dispatcher sends the messages."""
    if RULES[schedule.kind].event_driven:
        raise ScheduleProblem(f"{schedule.kind} messages are sent when something happens; they cannot be run now",
                              "kind")
    now = as_utc(now or utcnow())
    stats = await Planner(loyalty).run(schedule, now=now)
    # A run now is a run: the list shows it, and the bot's catch-up does not plan it again
    # (last_run_at only; updated_at is the edit stamp a running bot follows).
    async with loyalty.db.transaction() as tx:
        await tx.execute(sa.update(Schedule).where(Schedule.id == schedule.id).values(last_run_at=now))
        _audit(tx, actor, "schedule_run_now", schedule, planned=stats.planned)
    return stats


async def _member_row(loyalty: Loyalty, member_no: str) -> Any:
    async with loyalty.db.read() as s:
        found = (await s.execute(sa.select(*MEMBER_COLUMNS).where(
            Member.member_no == member_no.strip().upper().removeprefix("LBM:"), Member.status != "erased"))).first()
    if found is None:
        raise ScheduleProblem("no member with that number", "member_no")
    return found


def render_as(loyalty: Loyalty, schedule: Schedule, member: Any | None, *, book: TemplateBook | None = None
              ) -> dict[str, str]:
    """The message in each language as `member` would read it (the kind's own values are samples);
    with no member, as the template check's sample member."""
    planner = Planner(loyalty, templates=book)
    kind = template_kind(schedule)
    compiled = planner.templates.compiled(schedule.templates or {}, kind=kind,
                                          default_language=loyalty.programme.programme.default_language)
    texts: dict[str, str] = {}
    for language in LANGUAGES:
        samples = sample_variables(language, kind)
        extra = {k: v for k, v in samples.items() if k not in ("name", "member_no", "points", "tier", "tier_name")}
        if member is not None:
            variables = planner.variables(_with_language(member, language), extra)
        else:
            variables = {**samples, **planner._common_variables()}  # noqa: SLF001 - same module family
        texts[language] = compiled.render(language, variables)
    return texts


def _with_language(member: Any, language: str) -> Any:
    values = dict(member._mapping)  # noqa: SLF001 - a Row's documented mapping view
    values["language"] = language

    class _Row:
        def __getattr__(self, name: str) -> Any:
            return values[name]

    return _Row()


async def preview_as(loyalty: Loyalty, schedule: Schedule, member_no: str) -> dict[str, str]:
    return render_as(loyalty, schedule, await _member_row(loyalty, member_no))


def try_template(loyalty: Loyalty, kind: str, language: str, source: str, *, book: TemplateBook | None = None) -> str:
    """A template being edited, rendered with sample values; ScheduleProblem says what is wrong with it."""
    if kind not in KINDS:
        raise ScheduleProblem(f"unknown kind {kind!r}", "kind")
    if language not in LANGUAGES:
        raise ScheduleProblem(f"unknown language {language!r}", "language")
    if len(source) > TEMPLATE_LIMIT:
        raise ScheduleProblem(f"{language}: a template is at most {TEMPLATE_LIMIT} characters", f"template_{language}")
    probe = Schedule(name="preview", kind=kind, templates={language: source})
    book = book or TemplateBook()
    try:
        book.check(language, source, template_kind(probe))
    except TemplateProblem as exc:
        raise ScheduleProblem(str(exc), f"template_{language}") from None
    return render_as(loyalty, probe, None, book=book)[language]


async def test_send(loyalty: Loyalty, schedule: Schedule, *, member_no: str, staff_telegram_id: int, actor: str,
                    language: str | None = None) -> int:
    """Put the message, as `member_no` would get it, in the outbox for a staff member's private chat; the
    dispatcher sends it at Telegram's limits. Each test send is its own row (a new key each time)."""
    member = await _member_row(loyalty, member_no)
    async with loyalty.db.read() as s:
        staff = (await s.execute(sa.select(Staff).where(Staff.telegram_id == staff_telegram_id))).scalar_one_or_none()
    if staff is None:
        raise ScheduleProblem("that person is not on the staff list", "staff")
    texts = render_as(loyalty, schedule, member)
    text = texts[language if language in texts else member.language]
    async with loyalty.db.transaction() as tx:
        row = Outbox(idempotency_key=f"test:{schedule.id}:{staff_telegram_id}:{secrets.token_hex(8)}",
                     schedule_id=None, member_id=member.id, chat_id=staff_telegram_id, kind="test",
                     period="test", text=text)
        tx.add(row)
        await tx.flush()
        _audit(tx, actor, "schedule_test_send", schedule, staff=staff_telegram_id, member_no=member.member_no)
        return stored_id(row.id)


async def outbox_of(loyalty: Loyalty, schedule_id: int, *, status: str | None = None, limit: int = 50,
                    offset: int = 0) -> OutboxView:
    view = OutboxView()
    where = [Outbox.schedule_id == schedule_id]
    async with loyalty.db.read() as s:
        view.by_status = {k: int(v) for k, v in (await s.execute(
            sa.select(Outbox.status, sa.func.count()).where(*where).group_by(Outbox.status))).all()}
        view.skipped = {str(k): int(v) for k, v in (await s.execute(
            sa.select(Outbox.skip_reason, sa.func.count()).where(*where, Outbox.status == "skipped")
            .group_by(Outbox.skip_reason))).all()}
        query = (sa.select(Outbox.id, Member.member_no, Outbox.status, Outbox.skip_reason, Outbox.not_before,
                           Outbox.sent_at, Outbox.last_error, Outbox.period)
                 .join(Member, Member.id == Outbox.member_id).where(*where))
        if status:
            query = query.where(Outbox.status == status)
        view.rows = list((await s.execute(query.order_by(Outbox.id.desc()).limit(limit).offset(offset))).all())
    return view
