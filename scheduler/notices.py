"""Transactional notifications: the member hears when their points, tier or coupons change.

The loyalty services write a `Notice` in the transaction of the event itself (a purchase credited
over the shop API or by staff with /award, a hand adjustment or bonus, a tier change, a coupon used
at the counter, the welcome bonus, a stamp card completed and its coupon issued, a tier's birthday gift
coupon issued), keyed on the event (``points:purchase:<id>``, ``tier:<id>``, ``coupon_used:<id>``,
``welcome:<member>``, ``stamp_card:<coupon id>``, ``birthday_gift:<coupon id>``; the key is unique). The `Notifier`, run by the scheduler
in every bot process, turns each new notice into an outbox row and marks the notice planned *in the
same transaction*, so a crash at any moment loses no notice and plans none twice; the dispatcher
then sends it at Telegram's limits like any other outbox row (exactly once, see scheduler.dispatcher).

Bursts are merged: a points notice is planned `delay` seconds ahead, and while that row is still
pending (not yet claimed by a dispatcher) the member's next points notices fold into it: its text is
rendered again from all the credits it now covers, with the balance as it is now. Five purchases in
a minute are one message. A tier notice waits as long, so it follows the points that caused it.

A birthday gift is not told twice: when that year's birthday message (an operator's birthday schedule,
which gives the gift and names it) went or goes to the member, the notice is skipped ("birthday_message");
it is told when that message was skipped (the member switched care messages off). While the planner that
gave the gift has not yet written that message's row, the notice waits (up to `BIRTHDAY_WAIT`). A stamp
card's coupon a refund took back before the notice was planned is not told ("coupon_void").

Members who switched "points and coupon updates" off (their notify setting ``activity``), erased
or unreachable members and members without a chat get a *skipped* outbox row with the reason, as
scheduled messages do; quiet hours hold a message until they end. Texts are the shipped Jinja2
templates ``locales/<language>/templates/notice_<kind>.j2``, in the member's language, rendered in the
same sandbox as scheduled messages.

Outbox rows of notices have no schedule; their kind is ``notice_<kind>`` and their period
``notice:<first notice id>``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from loyalbot.loyalty.programme import Programme
from loyalbot.loyalty.service import Loyalty
from loyalbot.scheduler.kinds import unreachable_reason
from loyalbot.scheduler.templates import FALLBACK_NAME, CompiledTemplates, TemplateBook
from loyalbot.scheduler.timing import after_quiet_hours, member_zone
from loyalbot.storage import as_utc
from loyalbot.storage.models import (
    Coupon,
    LedgerEntry,
    Member,
    Notice,
    Outbox,
    Purchase,
    Reward,
    Schedule,
    TierChange,
)
from loyalbot.storage.rows import stored_id

log = logging.getLogger(__name__)

NOTIFY_SETTING = "activity"  # the member's own switch for these messages (handlers/settings.py)
NOTICE_KINDS = ("points", "tier", "coupon_used", "welcome", "stamp_card", "birthday_gift")
# Points and tier notices wait this long for more of the same to fold in; others go at once.
DEFAULT_DELAY = 30.0
DELAYED_KINDS = ("points", "tier")
# A birthday gift's notice waits this long for the birthday message that gave it (the same planner run).
BIRTHDAY_WAIT = timedelta(minutes=10)


def outbox_kind(kind: str) -> str:
    return f"notice_{kind}"


@dataclass(frozen=True)
class Credit:
    """Points credited by one event, and why."""

    points: int
    purchase_amount: Decimal | None  # set for a purchase
    reason: str | None  # staff's reason or the bonus's note, for other credits


class Notifier:
    """Plans new notices into the outbox: one transaction per notice, bursts of points folded into one message."""

    def __init__(self, loyalty: Loyalty, *, templates: TemplateBook | None = None, delay: float = DEFAULT_DELAY,
                 batch_size: int = 200) -> None:
        self.loyalty = loyalty
        self.db = loyalty.db
        self.templates = templates or TemplateBook()
        self.delay = timedelta(seconds=max(0.0, delay))
        self.batch_size = batch_size
        self._compiled: dict[str, CompiledTemplates] = {}

    @property
    def programme(self) -> Programme:
        """The programme in force at this moment (a newer stored version swaps in without a restart)."""
        return self.loyalty.programme

    # --- planning -----------------------------------------------------------------------------------

    async def plan_new(self, *, now: datetime) -> int:
        """Plan every new notice (a batch at a time); returns how many were planned."""
        now = as_utc(now)
        done = 0
        while True:
            async with self.db.read() as s:
                ids = list((await s.execute(sa.select(Notice.id).where(Notice.status == "new")
                                            .order_by(Notice.id).limit(self.batch_size))).scalars())
            if not ids:
                return done
            planned = 0
            for notice_id in ids:
                try:
                    planned += await self.plan_one(stored_id(notice_id), now=now)
                except Exception:  # one bad notice must not hold up the others; it is retried next time
                    log.exception("notice %s could not be planned", notice_id)
            done += planned
            if planned == 0 or len(ids) < self.batch_size:
                return done

    async def plan_one(self, notice_id: int, *, now: datetime) -> bool:
        """Plan one notice; False when it is already planned (or another process holds it)."""
        now = as_utc(now)
        async with self.db.transaction() as tx:
            query = sa.select(Notice).where(Notice.id == notice_id, Notice.status == "new")
            if self.db.is_postgres:
                query = query.with_for_update(skip_locked=True)
            notice = (await tx.execute(query)).scalar_one_or_none()
            if notice is None:
                return False
            # One member's notices are planned one at a time (PostgreSQL: the member row's lock), so a
            # burst folds into one message even with several bot processes.
            member_query = sa.select(Member).where(Member.id == notice.member_id)
            if self.db.is_postgres:
                member_query = member_query.with_for_update()
            member = (await tx.execute(member_query)).scalar_one()
            if await self._birthday_message_due(tx, notice, now):
                return False  # planned once the birthday message's row is there (or it is late)
            outbox_id = await self._place(tx, notice, member, now)
            await tx.execute(sa.update(Notice).where(Notice.id == notice.id)
                             .values(status="planned", outbox_id=outbox_id, planned_at=now))
            return True

    def skip_reason(self, member: Member) -> str | None:
        return unreachable_reason(member, NOTIFY_SETTING)

    async def _place(self, tx: Any, notice: Notice, member: Member, now: datetime) -> int:
        """The outbox row that tells this notice: a pending one it folds into, or a new one."""
        kind = outbox_kind(notice.kind)
        reason = self.skip_reason(member)
        if reason is None and notice.kind == "tier" and await self._care_message_covers(tx, notice):
            reason = "tier_change_schedule"  # the operator's own tier_change message says it; not twice
        if reason is None and notice.kind in ("stamp_card", "birthday_gift"):
            reason = await self._coupon_told_otherwise(tx, notice)
        if reason is None and notice.kind == "points":
            pending = (await tx.execute(
                sa.select(Outbox.id).where(Outbox.member_id == member.id, Outbox.kind == kind,
                                           Outbox.schedule_id.is_(None), Outbox.status == "pending",
                                           Outbox.claimed_by.is_(None), Outbox.attempts == 0)
                .order_by(Outbox.id.desc()).limit(1))).scalar_one_or_none()
            if pending is not None:
                keys = list((await tx.execute(sa.select(Notice.key).where(Notice.outbox_id == pending)
                                              .order_by(Notice.id))).scalars())
                text = await self._render(tx, notice.kind, [*keys, notice.key], member, now)
                folded = await tx.execute(
                    sa.update(Outbox).where(Outbox.id == pending, Outbox.status == "pending",
                                            Outbox.claimed_by.is_(None)).values(text=text)
                    .execution_options(synchronize_session=False))
                if folded.rowcount == 1:
                    return int(pending)
                # A dispatcher claimed it meanwhile: this credit gets a message of its own.
        text, status = "", "skipped"
        not_before = now
        if reason is None:
            try:
                text = await self._render(tx, notice.kind, [notice.key], member, now)
                status = "pending"
            except Exception as exc:  # a broken template: recorded, not retried forever
                log.warning("notice %s: template failed: %s", notice.id, type(exc).__name__)
                reason = "render_failed"
        if status == "pending":
            if notice.kind in DELAYED_KINDS:
                not_before = now + self.delay
            if member.quiet_start is not None and member.quiet_end is not None:
                not_before = after_quiet_hours(not_before, member_zone(member.timezone), member.quiet_start,
                                               member.quiet_end)
        inserted = await tx.execute(sa.insert(Outbox).values(
            schedule_id=None, member_id=member.id, chat_id=member.chat_id or 0, kind=kind,
            period=f"notice:{notice.id}", idempotency_key=f"notice:{notice.key}", text=text, buttons=[],
            status=status, skip_reason=reason,
            not_before=not_before, attempts=0, created_at=now).returning(Outbox.id))
        return int(inserted.scalar_one())

    async def _care_message_covers(self, tx: Any, notice: Notice) -> bool:
        """Whether an enabled tier_change schedule (an operator's care message) tells this tier change."""
        schedules = list((await tx.execute(sa.select(Schedule.params).where(
            Schedule.kind == "tier_change", Schedule.enabled))).scalars())
        if not schedules:
            return False
        change = await tx.get(TierChange, int(notice.key.rsplit(":", 1)[1]))
        upgrade = self.programme.tier_rank(change.to_tier) > self.programme.tier_rank(change.from_tier)
        return any(upgrade or not (params or {}).get("upgrades_only", True) for params in schedules)

    async def _birthday_message_due(self, tx: Any, notice: Notice, now: datetime) -> bool:
        """Whether a birthday gift's notice is to wait for the birthday message still being planned."""
        if notice.kind != "birthday_gift" or now - as_utc(notice.created_at) >= BIRTHDAY_WAIT:
            return False
        coupon = await tx.get(Coupon, int(notice.key.rsplit(":", 1)[1]))
        if coupon is None:
            return False
        row = (await tx.execute(sa.select(Outbox.id).where(
            Outbox.member_id == notice.member_id, Outbox.kind == "birthday",
            Outbox.period == coupon.request_id.rsplit(":", 1)[1]).limit(1))).first()
        return row is None

    async def _coupon_told_otherwise(self, tx: Any, notice: Notice) -> str | None:
        """Why a coupon notice is not to be sent: its coupon was taken back, or the birthday message names it."""
        coupon = await tx.get(Coupon, int(notice.key.rsplit(":", 1)[1]))
        if coupon is None or coupon.status == "void":
            return "coupon_void"
        if notice.kind == "birthday_gift":
            year = coupon.request_id.rsplit(":", 1)[1]
            told = (await tx.execute(sa.select(Outbox.id).where(
                Outbox.member_id == notice.member_id, Outbox.kind == "birthday", Outbox.period == year,
                Outbox.status != "skipped").limit(1))).first()
            if told is not None:
                return "birthday_message"
        return None

    # --- rendering ----------------------------------------------------------------------------------

    def _templates(self, kind: str) -> CompiledTemplates:
        if kind not in self._compiled:
            self._compiled[kind] = self.templates.compiled(
                {}, kind=outbox_kind(kind), default_language=self.programme.programme.default_language)
        return self._compiled[kind]

    async def _render(self, tx: Any, kind: str, keys: list[str], member: Member, now: datetime) -> str:
        variables = await self.variables(tx, kind, keys, member, now)
        return self._templates(kind).render(member.language, variables)

    async def variables(self, tx: Any, kind: str, keys: list[str], member: Member, now: datetime) -> dict[str, Any]:
        """What a notice's template is given: the member, and the event(s) it tells."""
        lang = member.language
        tier = self.programme.tier(member.tier)
        values: dict[str, Any] = {
            "name": member.first_name or FALLBACK_NAME.get(lang, FALLBACK_NAME["en"]),
            "points": member.balance, "tier_name": _name(tier.names, lang, tier.code),
            "programme": self.programme.programme.name, "_currency": self.programme.programme.currency,
        }
        if kind == "points":
            credits = [await self._credit(tx, key) for key in keys]
            purchases = [c for c in credits if c.purchase_amount is not None]
            others = [c.reason for c in credits if c.purchase_amount is None]
            values.update(earned=sum(c.points for c in credits), credits=len(credits), purchases=len(purchases),
                          amount=sum((c.purchase_amount or Decimal(0) for c in purchases), Decimal(0)),
                          reason=others[0] if len(others) == 1 and not purchases else None)
        elif kind == "tier":
            change = await tx.get(TierChange, int(keys[0].rsplit(":", 1)[1]))
            to_tier = self.programme.tier(change.to_tier)
            upgrade = self.programme.tier_rank(change.to_tier) > self.programme.tier_rank(change.from_tier)
            rewards = [_name(r.titles, lang, r.code) for r in self.programme.rewards if r.min_tier == change.to_tier]
            above = self.programme.tier(change.from_tier) if not upgrade else None
            values.update(upgrade=upgrade, tier_name=_name(to_tier.names, lang, to_tier.code),
                          multiplier=_plain(to_tier.multiplier), rewards=rewards,
                          previous_tier_name=_name(above.names, lang, above.code) if above else None,
                          previous_threshold=above.threshold if above else None,
                          window_months=self.programme.tiers.window_months)
        elif kind == "coupon_used":
            coupon = await tx.get(Coupon, int(keys[0].rsplit(":", 1)[1]))
            reward = await tx.get(Reward, coupon.reward_id)
            used = as_utc(coupon.used_at or now).astimezone(member_zone(member.timezone))
            values.update(coupon_title=_name(reward.titles if reward else {}, lang, ""), coupon_code=coupon.code,
                          used_on=used.date(), used_at=f"{used:%H:%M}")
        elif kind in ("stamp_card", "birthday_gift"):
            coupon = await tx.get(Coupon, int(keys[0].rsplit(":", 1)[1]))
            reward = await tx.get(Reward, coupon.reward_id)
            values.update(coupon_title=_name(reward.titles if reward else {}, lang, ""), coupon_code=coupon.code,
                          coupon_expiry=as_utc(coupon.expires_at).astimezone(member_zone(member.timezone)).date())
            if kind == "stamp_card":
                card_code = coupon.request_id.split(":")[2]
                card = next((c for c in self.programme.stamp_cards if c.code == card_code), None)
                values.update(card_title=_name(card.titles if card else {}, lang, card_code))
        elif kind == "welcome":
            lot = (await tx.execute(sa.select(LedgerEntry).where(
                LedgerEntry.member_id == member.id, LedgerEntry.kind == "bonus", LedgerEntry.reference == "welcome")
                .order_by(LedgerEntry.id).limit(1))).scalar_one_or_none()
            values.update(bonus=lot.delta if lot else 0,
                          expiry_date=as_utc(lot.expires_at).astimezone(self.programme.zone).date()
                          if lot and lot.expires_at else None)
        return values

    async def _credit(self, tx: Any, key: str) -> Credit:
        _, source, ref = key.split(":", 2)
        if source == "purchase":
            purchase = await tx.get(Purchase, int(ref))
            # The bonus campaigns' points for this purchase (loyalty/bonuses.py) are earned with it.
            bonus = (await tx.execute(sa.select(sa.func.coalesce(sa.func.sum(LedgerEntry.delta), 0)).where(
                LedgerEntry.purchase_id == purchase.id, LedgerEntry.kind == "bonus"))).scalar_one()
            return Credit(purchase.points_awarded + int(bonus), Decimal(purchase.amount), None)
        entry = await tx.get(LedgerEntry, int(ref))
        return Credit(entry.delta, None, entry.note)


def _name(names: dict[str, str], lang: str, fallback: str) -> str:
    return (names or {}).get(lang) or (names or {}).get("en") or fallback


def _plain(value: Decimal) -> int | Decimal:
    return int(value) if value == value.to_integral_value() else value.normalize()
