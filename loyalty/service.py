"""The programme as services: each public method is one transaction that either does all or nothing.

Points are an append-only ledger. A positive entry (earn, bonus, positive adjust) is also a *lot*
with `remaining` and `expires_at`; a debit (redeem, refund, negative adjust, expire) consumes the
lots that expire first. After every call: balance on the member row == sum of the ledger ==
sum of the lots' remaining, and nothing is below zero. Calls that can arrive twice carry an
idempotency key; a repeat returns the first result and changes nothing.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from dataclasses import replace as dc_replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlmodel import col, select

from loyalty import errors
from loyalty.codes import new_coupon_code, new_member_no, normalise_coupon_code, valid_member_no
from loyalty.phones import normalise_phone, stored_forms
from loyalty.programme import LANGUAGES, Programme
from storage import Db, as_utc, utcnow
from storage.inbox import effect_of, remember_effect
from storage.models import (
    AuditLog,
    ConversationState,
    Coupon,
    EarningRule,
    Feedback,
    HandoffConversation,
    HandoffMessage,
    InboxUpdate,
    LedgerEntry,
    Member,
    Notice,
    Outbox,
    Purchase,
    Refund,
    Reward,
    Staff,
    Survey,
    SurveyAnswer,
    Tier,
    TierChange,
)

if TYPE_CHECKING:
    import asyncpg

log = logging.getLogger(__name__)

MAX_AMOUNT = Decimal("1000000")
MAX_FEEDBACK_CHARS = 4000
MAX_COMMENT_CHARS = 2000
NOTIFY_KINDS = ("care", "reminders", "surveys", "offers", "activity")
STAFF_ROLES = ("agent", "operator", "admin")
SURVEY_SCALES = {"csat": (1, 5), "nps": (0, 10)}


# --- events the rest of the system may react to (after commit) ---------------------------------------


@dataclass(frozen=True)
class TierChanged:
    member_id: int
    from_tier: str
    to_tier: str
    reason: str
    upgrade: bool


@dataclass(frozen=True)
class CouponUsed:
    member_id: int
    coupon_id: int
    staff_id: int


@dataclass(frozen=True)
class MemberErased:
    """A member's personal data was erased (support then clears its staff topic)."""

    member_id: int


@dataclass(frozen=True)
class MemberJoined:
    """A member finished joining (the demo then gives them something to see)."""

    member_id: int


LoyaltyEvent = TierChanged | CouponUsed | MemberErased | MemberJoined
Listener = Callable[[LoyaltyEvent], Awaitable[None]]


# --- results ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AwardResult:
    purchase: Purchase
    points: int
    repeated: bool
    tier_change: TierChanged | None = None


@dataclass(frozen=True)
class RefundResult:
    refund: Refund
    points_taken: int
    shortfall: int
    repeated: bool


@dataclass(frozen=True)
class CounterUndo:
    """An /award undone at the counter: the purchase, its refund, and the member after it."""

    purchase: Purchase
    refund: RefundResult
    member: Member


@dataclass(frozen=True)
class RedeemResult:
    coupon: Coupon
    reward: Reward
    repeated: bool


@dataclass(frozen=True)
class ExpiringPoints:
    expires_at: datetime
    points: int


@dataclass(frozen=True)
class PointsSummary:
    balance: int
    expiring: list[ExpiringPoints]
    recent: list[LedgerEntry]

    @property
    def next_expiry(self) -> ExpiringPoints | None:
        return self.expiring[0] if self.expiring else None


@dataclass(frozen=True)
class TierProgress:
    tier: str
    spend: Decimal
    next_tier: str | None
    needed: Decimal | None
    window_months: int


@dataclass(frozen=True)
class CatalogueItem:
    reward: Reward
    available: bool
    reason: str | None  # the Refusal code that stops this member taking it now
    taken: int = 0


@dataclass(frozen=True)
class CouponView:
    coupon: Coupon
    reward: Reward
    member: Member


@dataclass
class Scores:
    kind: str
    answers: int
    value: float | None
    distribution: dict[int, int] = field(default_factory=dict)


# --- helpers ---------------------------------------------------------------------------------------


def parse_amount(value: Any) -> Decimal:
    """A positive money amount with at most two decimals, or InvalidAmount."""
    if isinstance(value, bool) or value is None:
        raise errors.InvalidAmount("the amount is missing")
    try:
        amount = Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        raise errors.InvalidAmount(f"{str(value)[:20]!r} is not a number") from None
    if not amount.is_finite() or amount <= 0:
        raise errors.InvalidAmount("the amount must be above zero")
    if amount > MAX_AMOUNT:
        raise errors.InvalidAmount(f"the amount is above the limit of {MAX_AMOUNT}")
    if amount != amount.quantize(Decimal("0.01")):
        raise errors.InvalidAmount("the amount has more than two decimals")
    return amount.quantize(Decimal("0.01"))


def _check_key(key: Any, what: str) -> str:
    if not isinstance(key, str) or not key.strip() or len(key) > 128:
        raise errors.InvalidSetting(f"{what} must be 1-128 characters", setting=what)
    return key.strip()


def check_birthday(value: date, today: date) -> date:
    """A birthday a person can have: not in the future, not before 1900, not younger than 5."""
    if value > today:
        raise errors.InvalidBirthday("the birthday is in the future")
    if value.year < 1900:
        raise errors.InvalidBirthday("the birthday is before 1900")
    if (today - value).days < 5 * 365:
        raise errors.InvalidBirthday("members must be at least five years old")
    return value


def check_timezone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise errors.InvalidSetting(f"unknown time zone {value[:64]!r}", setting="timezone") from None
    return value


def _in_birthday_month(member: Member, moment: datetime) -> bool:
    if member.birthday is None:
        return False
    local = moment.astimezone(_zone(member.timezone))
    return local.month == member.birthday.month


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


# --- award_purchase on PostgreSQL: the shop API's hot path as prepared statements -----------------------
# Hand-written so that asyncpg can prepare each text once per connection; the column names are those of
# storage.models (the schema drift test keeps the migrations equal to them).

# Lock the member and look the external id up in one round trip.
_PG_LOCK_MEMBER = """
SELECT status, tier, birthday, timezone, EXISTS (SELECT 1 FROM purchases WHERE external_id = $2) AS seen
FROM members WHERE id = $1 FOR UPDATE
"""

# $1 external id, $2 member, $3 amount, $4 currency, $5 occurred, $6 points, $7 source, $8 recorded by,
# $9 now, $10 lot expiry [, $11 window start]. No row back: the external id was taken meanwhile.
_PG_AWARD = """
WITH purchase AS (
    INSERT INTO purchases (external_id, member_id, amount, currency, occurred_at, points_awarded,
                           refunded_amount, points_refunded, refund_shortfall, source, recorded_by, created_at)
    VALUES ($1, $2, $3, $4, $5, $6, 0, 0, 0, $7, $8, $9)
    ON CONFLICT (external_id) DO NOTHING
    RETURNING id
), lot AS (
    INSERT INTO ledger_entries (member_id, kind, delta, remaining, expires_at, reference, purchase_id, created_at)
    SELECT $2, 'earn', $6, $6, $10, $1, purchase.id, $9 FROM purchase WHERE $6 > 0
), balance AS (
    UPDATE members SET balance = balance + $6, last_purchase_at = GREATEST(last_purchase_at, $5),
                       last_activity_at = GREATEST(last_activity_at, $9)
    WHERE id = $2 AND EXISTS (SELECT 1 FROM purchase)
), notice AS (
    INSERT INTO notices (member_id, kind, key, status, created_at)
    SELECT $2, 'points', 'points:purchase:' || purchase.id, 'new', $9 FROM purchase WHERE $6 > 0
)
SELECT id FROM purchase
"""

# The same, plus the member's qualifying spend before this purchase (for a tier upgrade).
_PG_AWARD_AND_SPEND = _PG_AWARD.replace("SELECT id FROM purchase", """SELECT id, (
    SELECT COALESCE(SUM(amount - refunded_amount), 0) FROM purchases
    WHERE member_id = $2 AND occurred_at > $11 AND occurred_at <= $9
) FROM purchase""")

# $1 member, $2 from tier, $3 to tier, $4 reason, $5 now.
_PG_RAISE_TIER = """
WITH raised AS (UPDATE members SET tier = $3, tier_since = $5 WHERE id = $1), change AS (
    INSERT INTO tier_changes (member_id, from_tier, to_tier, reason, created_at) VALUES ($1, $2, $3, $4, $5)
    RETURNING id
)
INSERT INTO notices (member_id, kind, key, status, created_at) SELECT $1, 'tier', 'tier:' || change.id, 'new', $5
FROM change
"""

_PG_PURCHASE_BY_EXTERNAL_ID = """
SELECT id, external_id, member_id, amount, currency, occurred_at, points_awarded, refunded_amount,
       points_refunded, refund_shortfall, source, recorded_by, created_at
FROM purchases WHERE external_id = $1
"""


class Loyalty:
    """The loyalty programme's services over one store."""

    def __init__(self, db: Db, programme: Programme) -> None:
        self.db = db
        self.programme = programme
        self._listeners: list[Listener] = []

    # --- events -------------------------------------------------------------------------------------

    def subscribe(self, listener: Listener) -> None:
        """Call `listener` after commit for every tier change and used coupon."""
        self._listeners.append(listener)

    async def _emit(self, event: LoyaltyEvent | None) -> None:
        if event is None:
            return
        for listener in self._listeners:
            try:
                await listener(event)
            except Exception:  # a listener's failure must not undo a committed service call
                log.exception("loyalty event listener failed for %s", type(event).__name__)

    @staticmethod
    async def _notice(tx: AsyncSession | AsyncConnection, member_id: int, kind: str, key: str, now: datetime) -> None:
        """Record, in the event's own transaction, that the member is to be told (scheduler/notices.py tells)."""
        await tx.execute(sa.insert(Notice.__table__).values(member_id=member_id, kind=kind, key=key[:128],
                                                            status="new", created_at=now))

    # --- programme -> store -------------------------------------------------------------------------

    async def sync_programme(self) -> None:
        """Mirror the programme file's tiers, earning rules and rewards into the store (by code)."""
        prog = self.programme
        async with self.db.transaction() as tx:
            existing_tiers = {t.code: t for t in (await tx.execute(select(Tier))).scalars()}
            for rank, level in enumerate(prog.tiers.levels):
                tier = existing_tiers.pop(level.code, None) or Tier(code=level.code, rank=rank, threshold=0)
                tier.rank, tier.names = rank, dict(level.names)
                tier.threshold, tier.multiplier = level.threshold, level.multiplier
                tx.add(tier)
            for stale in existing_tiers.values():
                await tx.delete(stale)
            rules = {
                "base": ("base", prog.earning.points_per_unit),
                "birthday_month": ("birthday_month", prog.earning.birthday_month_multiplier),
            }
            existing_rules = {r.code: r for r in (await tx.execute(select(EarningRule))).scalars()}
            for code, (kind, value) in rules.items():
                rule = existing_rules.get(code) or EarningRule(code=code, kind=kind, value=value)
                rule.kind, rule.value, rule.active = kind, value, True
                tx.add(rule)
            existing_rewards = {r.code: r for r in (await tx.execute(select(Reward))).scalars()}
            for order, spec in enumerate(prog.rewards):
                reward = existing_rewards.pop(spec.code, None)
                if reward is None:
                    reward = Reward(code=spec.code, cost=spec.cost, stock=spec.stock)
                else:
                    # Stock is consumed in the store; only a stock *raise* in the file refills it.
                    pass
                reward.titles, reward.descriptions = dict(spec.titles), dict(spec.descriptions)
                reward.cost, reward.per_member_limit = spec.cost, spec.per_member_limit
                reward.validity_days, reward.min_tier = spec.validity_days, spec.min_tier
                reward.active_from = as_utc(spec.active_from) if spec.active_from else None
                reward.active_until = as_utc(spec.active_until) if spec.active_until else None
                reward.active, reward.sort_order = True, order
                tx.add(reward)
            for retired in existing_rewards.values():
                retired.active = False
                tx.add(retired)

    async def set_reward_stock(self, reward_id: int, stock: int | None) -> None:
        if stock is not None and stock < 0:
            raise errors.InvalidSetting("stock cannot be negative", setting="stock")
        async with self.db.transaction() as tx:
            reward = await tx.get(Reward, reward_id)
            if reward is None:
                raise errors.UnknownReward()
            reward.stock = stock
            tx.add(reward)

    # --- members ------------------------------------------------------------------------------------

    async def register_member(
        self,
        *,
        telegram_id: int,
        chat_id: int | None = None,
        first_name: str | None = None,
        last_name: str | None = None,
        language: str | None = None,
        terms_accepted: bool,
        marketing_consent: bool = False,
        birthday: date | None = None,
        phone: str | None = None,
        timezone: str | None = None,
        now: datetime | None = None,
    ) -> Member:
        """Join the programme. Terms consent is required; the same Telegram user twice is the same member."""
        now = as_utc(now or utcnow())
        if not terms_accepted:
            raise errors.TermsRequired()
        language = language if language in LANGUAGES else self.programme.programme.default_language
        if birthday is not None:
            check_birthday(birthday, now.date())
        tz = check_timezone(timezone) if timezone else self.programme.programme.timezone
        async with self.db.transaction() as tx:
            existing = (await tx.execute(select(Member).where(Member.telegram_id == telegram_id))).scalar_one_or_none()
            if existing is not None:
                return existing
            for _ in range(20):
                member_no = new_member_no()
                clash = await tx.execute(select(Member.id).where(Member.member_no == member_no))
                if clash.first() is None:
                    break
            member = Member(
                telegram_id=telegram_id,
                chat_id=chat_id if chat_id is not None else telegram_id,
                member_no=member_no,
                first_name=(first_name or "")[:128] or None,
                last_name=(last_name or "")[:128] or None,
                language=language,
                timezone=tz,
                birthday=birthday,
                phone=(phone or "")[:32] or None,
                terms_accepted_at=now,
                marketing_consent=marketing_consent,
                marketing_consent_at=now if marketing_consent else None,
                tier=self.programme.tiers.levels[0].code,
                tier_since=now,
                joined_at=now,
                last_activity_at=now,
            )
            tx.add(member)
            await tx.flush()
            if self.programme.earning.welcome_bonus:
                await self._add_lot(tx, member, kind="bonus", points=self.programme.earning.welcome_bonus, now=now,
                                    expires_at=self.programme.lot_expiry(now), reference="welcome",
                                    note="welcome bonus")
                tx.add(member)
                await self._notice(tx, member.id or 0, "welcome", f"welcome:{member.id}", now)
            tx.add(AuditLog(actor=f"member:{member.id}", action="register", member_id=member.id,
                            details={"marketing_consent": marketing_consent}, created_at=now))
        await self._emit(MemberJoined(member_id=member.id or 0))
        return member

    async def member_by_telegram(self, telegram_id: int) -> Member | None:
        async with self.db.read() as s:
            return (await s.execute(select(Member).where(Member.telegram_id == telegram_id))).scalar_one_or_none()

    async def member_by_number(self, member_no: str) -> Member:
        text = (member_no or "").strip().upper().removeprefix("LBM:")
        if not valid_member_no(text):
            raise errors.UnknownMember(f"{text[:20]!r} is not a member number")
        async with self.db.read() as s:
            member = (await s.execute(select(Member).where(Member.member_no == text))).scalar_one_or_none()
        if member is None or member.status == "erased":
            raise errors.UnknownMember()
        return member

    async def member(self, member_id: int) -> Member:
        async with self.db.read() as s:
            member = await s.get(Member, member_id)
        if member is None:
            raise errors.UnknownMember()
        if member.status == "erased":
            raise errors.MemberErased()
        return member

    async def _lock_member(self, tx: AsyncSession, member_id: int) -> Member:
        result = await tx.execute(
            select(Member).where(Member.id == member_id).with_for_update().execution_options(populate_existing=True)
        )
        member = result.scalar_one_or_none()
        if member is None:
            raise errors.UnknownMember()
        if member.status == "erased":
            raise errors.MemberErased()
        return member

    async def update_member(self, member_id: int, *, now: datetime | None = None, **changes: Any) -> Member:
        """Change a member's own settings: language, timezone, birthday, phone, notify, quiet hours, consent."""
        now = as_utc(now or utcnow())
        allowed = {"language", "timezone", "birthday", "phone", "notify", "quiet_start", "quiet_end",
                   "marketing_consent", "first_name", "last_name"}
        unknown = set(changes) - allowed
        if unknown:
            raise errors.InvalidSetting(f"unknown setting {sorted(unknown)[0]!r}", setting=sorted(unknown)[0])
        if "language" in changes and changes["language"] not in LANGUAGES:
            raise errors.InvalidSetting("unknown language", setting="language")
        if "timezone" in changes:
            check_timezone(changes["timezone"])
        if changes.get("birthday") is not None:
            check_birthday(changes["birthday"], now.date())
        for key in ("quiet_start", "quiet_end"):
            if key in changes and changes[key] is not None and not 0 <= int(changes[key]) < 24 * 60:
                raise errors.InvalidSetting("quiet hours must be times of day", setting=key)
        if "notify" in changes:
            notify = changes["notify"]
            if not isinstance(notify, dict) or set(notify) - set(NOTIFY_KINDS):
                raise errors.InvalidSetting("unknown message kind", setting="notify")
        async with self.db.transaction() as tx:
            member = await self._lock_member(tx, member_id)
            for key, value in changes.items():
                if key == "notify":
                    value = {**member.notify, **{k: bool(v) for k, v in value.items()}}
                if key == "marketing_consent":
                    member.marketing_consent_at = now if value else None
                setattr(member, key, value)
            tx.add(member)
            tx.add(AuditLog(actor=f"member:{member_id}", action="settings", member_id=member_id,
                            details={"changed": sorted(changes)}, created_at=now))
            return member

    async def touch(self, member_id: int, *, now: datetime | None = None) -> None:
        """The member wrote to the bot: note the activity; a member marked unreachable is reachable again."""
        now = as_utc(now or utcnow())
        async with self.db.transaction() as tx:
            await tx.execute(
                sa.update(Member)
                .where(Member.id == member_id, Member.status != "erased")
                .values(last_activity_at=now,
                        status=sa.case((Member.status == "unreachable", "active"), else_=Member.status))
            )

    # --- points: the ledger -------------------------------------------------------------------------

    async def _add_lot(self, tx: AsyncSession, member: Member, *, kind: str, points: int, expires_at: datetime,
                       now: datetime, reference: str | None = None, purchase_id: int | None = None,
                       note: str | None = None) -> LedgerEntry:
        entry = LedgerEntry(member_id=member.id, kind=kind, delta=points, remaining=points, expires_at=expires_at,
                            reference=reference, purchase_id=purchase_id, note=note, created_at=now)
        tx.add(entry)
        member.balance += points
        return entry

    async def _consume(self, tx: AsyncSession, member: Member, points: int, *, prefer_purchase: int | None = None
                       ) -> int:
        """Take up to `points` from the member's lots, those that expire first first; returns what was taken."""
        if points <= 0:
            return 0
        order = [col(LedgerEntry.expires_at).asc(), col(LedgerEntry.id).asc()]
        if prefer_purchase is not None:
            order.insert(0, sa.case((LedgerEntry.purchase_id == prefer_purchase, 0), else_=1))
        lots = (await tx.execute(
            select(LedgerEntry)
            .where(LedgerEntry.member_id == member.id, col(LedgerEntry.remaining) > 0)
            .order_by(*order)
            .with_for_update()
        )).scalars().all()
        left = points
        for lot in lots:
            if left == 0:
                break
            take = min(lot.remaining or 0, left)
            lot.remaining = (lot.remaining or 0) - take
            left -= take
            tx.add(lot)
        return points - left

    async def _expire_member_lots(self, tx: AsyncSession, member: Member, now: datetime) -> int:
        lots = (await tx.execute(
            select(LedgerEntry)
            .where(LedgerEntry.member_id == member.id, col(LedgerEntry.remaining) > 0,
                   col(LedgerEntry.expires_at) <= now)
            .order_by(col(LedgerEntry.expires_at), col(LedgerEntry.id))
            .with_for_update()
        )).scalars().all()
        total = 0
        for lot in lots:
            amount = lot.remaining or 0
            lot.remaining = 0
            tx.add(lot)
            tx.add(LedgerEntry(member_id=member.id, kind="expire", delta=-amount, reference=f"lot:{lot.id}",
                               note=f"expired {lot.expires_at:%Y-%m-%d}", created_at=now))
            total += amount
        member.balance -= total
        return total

    async def award_purchase(
        self,
        member_id: int,
        *,
        external_id: str,
        amount: Any,
        currency: str | None = None,
        occurred_at: datetime | None = None,
        source: str = "api",
        recorded_by: int | None = None,
        now: datetime | None = None,
        update_key: str | None = None,
    ) -> AwardResult:
        """Award points for a purchase. A repeat of `external_id` returns the first result and awards nothing.
        With `update_key` (the Telegram update of a counter /award) the same update handled again gets the
        first result as it was (not `repeated`); another update with the same `external_id` is a repeat.

        The shop API's hot path: on PostgreSQL, prepared statements straight on asyncpg (four round trips:
        BEGIN, lock + look up, write, COMMIT); on SQLite, SQLAlchemy Core. tests/award holds the two to
        writing the same rows and telling the shop the same thing.
        """
        now = as_utc(now or utcnow())
        external_id = _check_key(external_id, "external_id")
        amount = parse_amount(amount)
        currency = (currency or self.programme.programme.currency).upper()
        if currency != self.programme.programme.currency:
            raise errors.InvalidAmount(f"the programme counts in {self.programme.programme.currency}, not {currency[:3]}")
        occurred = as_utc(occurred_at) if occurred_at else now
        if occurred > now + timedelta(minutes=5):
            raise errors.InvalidAmount("the purchase is dated in the future")
        source = source[:32]
        if self.db.is_postgres and update_key is None:
            result = await self._award_on_postgres(member_id, external_id, amount, currency, occurred, source,
                                                   recorded_by, now)
        else:  # a counter award (with its update) is no hot path: the Core path also remembers the update
            result = await self._award_with_core(member_id, external_id, amount, currency, occurred, source,
                                                 recorded_by, now, update_key)
        await self._emit(result.tier_change)
        return result

    async def _award_with_core(self, member_id: int, external_id: str, amount: Decimal, currency: str,
                               occurred: datetime, source: str, recorded_by: int | None, now: datetime,
                               update_key: str | None = None) -> AwardResult:
        """award_purchase in SQLAlchemy Core: the SQLite path (writers queue; FOR UPDATE is a no-op there)."""
        tier_event: TierChanged | None = None
        members, purchases, ledger = Member.__table__, Purchase.__table__, LedgerEntry.__table__
        try:
            # The hot path of the shop API, written in Core: five statements, no ORM bookkeeping.
            async with self.db.connection() as tx:
                row = (await tx.execute(
                    sa.select(members.c.status, members.c.tier, members.c.birthday, members.c.timezone,
                              members.c.last_purchase_at, members.c.last_activity_at)
                    .where(members.c.id == member_id).with_for_update()
                )).first()
                if row is None:
                    raise errors.UnknownMember()
                if row.status == "erased":
                    raise errors.MemberErased()
                first = (await tx.execute(sa.select(purchases).where(purchases.c.external_id == external_id))).first()
                if first is not None:
                    repeat = self._repeat_of(Purchase(**first._mapping), member_id, amount, currency)
                    if update_key and await effect_of(tx, f"award:{update_key}") is not None:
                        return dc_replace(repeat, repeated=False)  # this very update recorded it: its first answer
                    return repeat
                birthday_month = row.birthday is not None and (
                    occurred.astimezone(_zone(row.timezone)).month == row.birthday.month)
                points = self.programme.points_for(amount, tier=row.tier, birthday_month=birthday_month)
                purchase = Purchase(external_id=external_id, member_id=member_id, amount=amount, currency=currency,
                                    occurred_at=occurred, points_awarded=points, source=source,
                                    recorded_by=recorded_by, created_at=now, refunded_amount=Decimal(0),
                                    points_refunded=0, refund_shortfall=0)
                purchase.id = (await tx.execute(
                    sa.insert(purchases).values(purchase.model_dump(exclude={"id"})).returning(purchases.c.id)
                )).scalar_one()
                if update_key:
                    await remember_effect(tx, f"award:{update_key}", {"purchase": purchase.id}, now=now)
                if points > 0:
                    await tx.execute(sa.insert(ledger).values(
                        member_id=member_id, kind="earn", delta=points, remaining=points,
                        expires_at=self.programme.lot_expiry(occurred), reference=external_id,
                        purchase_id=purchase.id, created_at=now))
                    await self._notice(tx, member_id, "points", f"points:purchase:{purchase.id}", now)
                await tx.execute(sa.update(members).where(members.c.id == member_id).values(
                    balance=members.c.balance + points,
                    last_purchase_at=max(as_utc(row.last_purchase_at or occurred), occurred),
                    last_activity_at=max(as_utc(row.last_activity_at or now), now)))
                if self.programme.next_tier(row.tier) is not None:
                    spend = await self._qualifying_spend(tx, member_id, now)
                    target = self.programme.tier_for_spend(spend)
                    if self.programme.tier_rank(target.code) > self.programme.tier_rank(row.tier):
                        reason = f"qualifying spend {spend} reached {target.code} ({target.threshold})"
                        await tx.execute(sa.update(members).where(members.c.id == member_id)
                                         .values(tier=target.code, tier_since=now))
                        change_id = (await tx.execute(sa.insert(TierChange.__table__).values(
                            member_id=member_id, from_tier=row.tier, to_tier=target.code, reason=reason[:200],
                            created_at=now).returning(TierChange.__table__.c.id))).scalar_one()
                        await self._notice(tx, member_id, "tier", f"tier:{change_id}", now)
                        tier_event = TierChanged(member_id=member_id, from_tier=row.tier, to_tier=target.code,
                                                 reason=reason, upgrade=True)
                return AwardResult(purchase=purchase, points=points, repeated=False, tier_change=tier_event)
        except IntegrityError:
            # Another transaction recorded the same external id for a different member at the same moment.
            async with self.db.read() as s:
                first = (await s.execute(select(Purchase).where(Purchase.external_id == external_id))).scalar_one()
            return self._repeat_of(first, member_id, amount, currency)

    async def _award_on_postgres(self, member_id: int, external_id: str, amount: Decimal, currency: str,
                                 occurred: datetime, source: str, recorded_by: int | None, now: datetime
                                 ) -> AwardResult:
        """award_purchase on PostgreSQL: the same rules in two prepared statements on the asyncpg connection.

        Statement one locks the member row and looks the external id up; statement two writes the
        purchase, its earn lot and the member's balance together and, when a higher tier exists,
        sums the qualifying spend. ON CONFLICT covers a repeat committed while we waited for the
        lock (the lookup's snapshot predates the wait): nothing is written and the first result is
        returned, as when the lookup finds it.
        """
        prog = self.programme
        async with self.db.driver_transaction() as conn:
            row = await conn.fetchrow(_PG_LOCK_MEMBER, member_id, external_id)
            if row is None:
                raise errors.UnknownMember()
            status, tier, birthday, zone_name, seen = row
            if status == "erased":
                raise errors.MemberErased()
            if seen:
                return await self._pg_repeat_of(conn, external_id, member_id, amount, currency)
            birthday_month = birthday is not None and (
                occurred.astimezone(_zone(zone_name)).month == birthday.month)
            points = prog.points_for(amount, tier=tier, birthday_month=birthday_month)
            start = prog.window_start(now) if prog.next_tier(tier) is not None else None
            args = (external_id, member_id, amount, currency, occurred, points, source, recorded_by, now,
                    prog.lot_expiry(occurred))
            written = await (conn.fetchrow(_PG_AWARD, *args) if start is None
                             else conn.fetchrow(_PG_AWARD_AND_SPEND, *args, start))
            if written is None:
                return await self._pg_repeat_of(conn, external_id, member_id, amount, currency)
            tier_event: TierChanged | None = None
            if start is not None:
                # The sum ran in the statement that inserted this purchase, so it could not see it.
                spend = Decimal(written[1]) + (amount if start < occurred <= now else 0)
                target = prog.tier_for_spend(spend)
                if prog.tier_rank(target.code) > prog.tier_rank(tier):
                    reason = f"qualifying spend {spend} reached {target.code} ({target.threshold})"
                    await conn.execute(_PG_RAISE_TIER, member_id, tier, target.code, reason[:200], now)
                    tier_event = TierChanged(member_id=member_id, from_tier=tier, to_tier=target.code,
                                             reason=reason, upgrade=True)
        purchase = Purchase(id=written[0], external_id=external_id, member_id=member_id, amount=amount,
                            currency=currency, occurred_at=occurred, points_awarded=points, source=source,
                            recorded_by=recorded_by, created_at=now, refunded_amount=Decimal(0),
                            points_refunded=0, refund_shortfall=0)
        return AwardResult(purchase=purchase, points=points, repeated=False, tier_change=tier_event)

    async def _pg_repeat_of(self, conn: asyncpg.Connection, external_id: str, member_id: int, amount: Decimal,
                            currency: str) -> AwardResult:
        first = await conn.fetchrow(_PG_PURCHASE_BY_EXTERNAL_ID, external_id)
        return self._repeat_of(Purchase(**dict(first)), member_id, amount, currency)

    @staticmethod
    def _repeat_of(first: Purchase, member_id: int, amount: Decimal, currency: str) -> AwardResult:
        if first.member_id != member_id or Decimal(first.amount) != amount or first.currency != currency:
            raise errors.PurchaseConflict(
                "this purchase id was already used with a different member, amount or currency",
                external_id=first.external_id,
            )
        return AwardResult(purchase=first, points=first.points_awarded, repeated=True)

    async def refund_purchase(
        self, purchase_external_id: str, *, refund_id: str, amount: Any, now: datetime | None = None,
        actor: str | None = None, update_key: str | None = None,
    ) -> RefundResult:
        """Take back the points of a refunded part of a purchase, never below zero; any shortfall is recorded.
        With `actor` (e.g. "staff:42" undoing an /award) the refund is audited in the same transaction."""
        now = as_utc(now or utcnow())
        purchase_external_id = _check_key(purchase_external_id, "external_id")
        refund_id = _check_key(refund_id, "refund_id")
        amount = parse_amount(amount)
        async with self.db.read() as s:
            purchase = (await s.execute(
                select(Purchase).where(Purchase.external_id == purchase_external_id))).scalar_one_or_none()
        if purchase is None:
            raise errors.UnknownPurchase()
        async with self.db.transaction() as tx:
            member = await self._lock_member(tx, purchase.member_id)
            done = (await tx.execute(select(Refund).where(Refund.external_id == refund_id))).scalar_one_or_none()
            if done is not None:
                if done.purchase_id != purchase.id or Decimal(done.amount) != amount:
                    raise errors.PurchaseConflict("this refund id was already used for a different refund")
                ours = bool(update_key) and await effect_of(tx, f"refund:{update_key}") is not None
                return RefundResult(refund=done, points_taken=done.points_taken, shortfall=done.shortfall,
                                    repeated=not ours)
            purchase = await tx.get(Purchase, purchase.id, populate_existing=True)
            assert purchase is not None
            left = Decimal(purchase.amount) - Decimal(purchase.refunded_amount)
            if amount > left:
                raise errors.RefundTooLarge(f"only {left} of this purchase is left to refund", left=str(left))
            if amount == left:
                owed = purchase.points_awarded - purchase.points_refunded
            else:
                owed = math.floor(purchase.points_awarded * amount / Decimal(purchase.amount))
            await self._expire_member_lots(tx, member, now)
            taken = await self._consume(tx, member, min(owed, member.balance), prefer_purchase=purchase.id)
            shortfall = owed - taken
            if taken:
                tx.add(LedgerEntry(member_id=member.id, kind="refund", delta=-taken, reference=refund_id,
                                   purchase_id=purchase.id, created_at=now,
                                   note=f"shortfall {shortfall}" if shortfall else None))
                member.balance -= taken
            purchase.refunded_amount = Decimal(purchase.refunded_amount) + amount
            purchase.points_refunded += owed
            purchase.refund_shortfall += shortfall
            refund = Refund(external_id=refund_id, purchase_id=purchase.id, amount=amount, points_taken=taken,
                            shortfall=shortfall, created_at=now)
            tx.add_all([purchase, member, refund])
            if update_key:
                await remember_effect(tx, f"refund:{update_key}", {"refund": refund_id}, now=now)
            if actor is not None:
                tx.add(AuditLog(actor=actor[:64], action="refund_purchase", member_id=member.id, created_at=now,
                                details={"purchase_id": purchase.id, "refund_id": refund_id, "amount": str(amount),
                                         "points_taken": taken, "shortfall": shortfall}))
            return RefundResult(refund=refund, points_taken=taken, shortfall=shortfall, repeated=False)

    async def adjust_points(self, member_id: int, points: Any, *, reason: str, actor: str,
                            now: datetime | None = None) -> LedgerEntry:
        """Add or take points by hand (staff or operator). A reason is required and the change is audited."""
        now = as_utc(now or utcnow())
        if not isinstance(points, int) or isinstance(points, bool) or points == 0 or abs(points) > 10_000_000:
            raise errors.InvalidAdjustment()
        reason = (reason or "").strip()
        if not reason:
            raise errors.ReasonRequired()
        async with self.db.transaction() as tx:
            member = await self._lock_member(tx, member_id)
            if points > 0:
                entry = await self._add_lot(tx, member, kind="adjust", points=points, now=now,
                                            expires_at=self.programme.lot_expiry(now), note=reason[:500],
                                            reference=actor[:128])
                await tx.flush()
                await self._notice(tx, member_id, "points", f"points:ledger:{entry.id}", now)
            else:
                await self._expire_member_lots(tx, member, now)
                if member.balance < -points:
                    raise errors.NotEnoughPoints(balance=member.balance, cost=-points)
                await self._consume(tx, member, -points)
                entry = LedgerEntry(member_id=member.id, kind="adjust", delta=points, note=reason[:500],
                                    reference=actor[:128], created_at=now)
                tx.add(entry)
                member.balance += points
            tx.add(member)
            tx.add(AuditLog(actor=actor[:64], action="adjust_points", member_id=member_id,
                            details={"points": points, "reason": reason[:500]}, created_at=now))
            return entry

    async def grant_bonus(self, member_id: int, points: int, *, reference: str, note: str,
                          now: datetime | None = None, expires_at: datetime | None = None, tell: bool = True
                          ) -> LedgerEntry | None:
        """Give bonus points once per reference (e.g. a birthday gift). A repeat gives nothing.

        They expire as the programme says unless `expires_at` is given (the demo's points that are about to);
        the member is told (a notice) unless `tell` is False."""
        now = as_utc(now or utcnow())
        if points <= 0:
            raise errors.InvalidAdjustment()
        async with self.db.transaction() as tx:
            member = await self._lock_member(tx, member_id)
            done = await tx.execute(select(LedgerEntry.id).where(
                LedgerEntry.member_id == member_id, LedgerEntry.kind == "bonus", LedgerEntry.reference == reference))
            if done.first() is not None:
                return None
            entry = await self._add_lot(tx, member, kind="bonus", points=points, now=now, reference=reference,
                                        expires_at=as_utc(expires_at) if expires_at else self.programme.lot_expiry(now),
                                        note=note[:500])
            tx.add(member)
            if tell:
                await tx.flush()
                await self._notice(tx, member_id, "points", f"points:ledger:{entry.id}", now)
            return entry

    async def expire_points(self, *, now: datetime | None = None, batch: int = 500) -> int:
        """Expire what is left of every lot whose expiry has passed; returns the points expired."""
        now = as_utc(now or utcnow())
        total = 0
        while True:
            async with self.db.read() as s:
                ids = (await s.execute(
                    select(LedgerEntry.member_id)
                    .where(col(LedgerEntry.remaining) > 0, col(LedgerEntry.expires_at) <= now)
                    .distinct().limit(batch)
                )).scalars().all()
            if not ids:
                return total
            for member_id in ids:
                async with self.db.transaction() as tx:
                    member = await self._lock_member(tx, member_id)
                    total += await self._expire_member_lots(tx, member, now)
                    tx.add(member)

    @staticmethod
    def _expiring_query(member_id: int, now: datetime, within_days: int | None = None) -> Any:
        query = (select(LedgerEntry.expires_at, sa.func.sum(LedgerEntry.remaining))
                 .where(LedgerEntry.member_id == member_id, col(LedgerEntry.remaining) > 0,
                        col(LedgerEntry.expires_at) > now)
                 .group_by(LedgerEntry.expires_at).order_by(LedgerEntry.expires_at))
        if within_days is not None:
            query = query.where(col(LedgerEntry.expires_at) <= now + timedelta(days=within_days))
        return query

    async def points_expiring(self, member_id: int, *, within_days: int | None = None,
                              now: datetime | None = None) -> list[ExpiringPoints]:
        """What will expire (within `within_days`, or ever), grouped by expiry time, soonest first."""
        now = as_utc(now or utcnow())
        async with self.db.read() as s:
            rows = (await s.execute(self._expiring_query(member_id, now, within_days))).all()
        return [ExpiringPoints(expires_at=as_utc(at), points=int(points)) for at, points in rows]

    async def points_summary(self, member_id: int, *, now: datetime | None = None, recent: int = 10
                             ) -> PointsSummary:
        """Balance, what expires when, and the latest ledger entries (one read, consistent)."""
        now = as_utc(now or utcnow())
        async with self.db.read() as s:
            member = (await s.execute(sa.select(Member.balance, Member.status).where(Member.id == member_id))).first()
            if member is None:
                raise errors.UnknownMember()
            if member.status == "erased":
                raise errors.MemberErased()
            rows = (await s.execute(self._expiring_query(member_id, now))).all()
            entries = (await s.execute(
                select(LedgerEntry).where(LedgerEntry.member_id == member_id)
                .order_by(col(LedgerEntry.created_at).desc(), col(LedgerEntry.id).desc()).limit(recent)
            )).scalars().all()
        expiring = [ExpiringPoints(expires_at=as_utc(at), points=int(points)) for at, points in rows]
        return PointsSummary(balance=member.balance, expiring=expiring, recent=list(entries))

    async def ledger_check(self, member_id: int) -> tuple[int, int, int]:
        """(cached balance, ledger sum, lots remaining) for a member: all three must be equal."""
        async with self.db.read() as s:
            member = await s.get(Member, member_id)
            total = (await s.execute(select(sa.func.coalesce(sa.func.sum(LedgerEntry.delta), 0))
                                     .where(LedgerEntry.member_id == member_id))).scalar_one()
            remaining = (await s.execute(select(sa.func.coalesce(sa.func.sum(LedgerEntry.remaining), 0))
                                         .where(LedgerEntry.member_id == member_id))).scalar_one()
        return (member.balance if member else 0), int(total), int(remaining)

    # --- tiers --------------------------------------------------------------------------------------

    async def _qualifying_spend(self, tx: AsyncSession | AsyncConnection, member_id: int, now: datetime) -> Decimal:
        start = self.programme.window_start(now)
        spend = (await tx.execute(
            select(sa.func.coalesce(sa.func.sum(Purchase.amount - Purchase.refunded_amount), 0))
            .where(Purchase.member_id == member_id, col(Purchase.occurred_at) > start,
                   col(Purchase.occurred_at) <= now)
        )).scalar_one()
        return Decimal(spend)

    def _change_tier(self, tx: AsyncSession, member: Member, to_tier: str, now: datetime, reason: str
                     ) -> TierChanged:
        before = member.tier
        member.tier, member.tier_since = to_tier, now
        tx.add(TierChange(member_id=member.id, from_tier=before, to_tier=to_tier, reason=reason[:200],
                          created_at=now))
        return TierChanged(member_id=member.id, from_tier=before, to_tier=to_tier, reason=reason,
                           upgrade=self.programme.tier_rank(to_tier) > self.programme.tier_rank(before))

    async def evaluate_tiers(self, *, now: datetime | None = None, batch: int = 1000) -> list[TierChanged]:
        """The scheduled evaluation: every member's tier follows their qualifying spend, down as well as up."""
        now = as_utc(now or utcnow())
        changes: list[TierChanged] = []
        last_id = 0
        while True:
            async with self.db.read() as s:
                ids = (await s.execute(select(Member.id).where(Member.id > last_id, Member.status != "erased")
                                       .order_by(Member.id).limit(batch))).scalars().all()
            if not ids:
                break
            last_id = ids[-1]
            for member_id in ids:
                async with self.db.transaction() as tx:
                    member = await self._lock_member(tx, member_id)
                    spend = await self._qualifying_spend(tx, member_id, now)
                    target = self.programme.tier_for_spend(spend)
                    if target.code != member.tier:
                        verb = "reached" if self.programme.tier_rank(target.code) > self.programme.tier_rank(
                            member.tier) else "fell to"
                        changes.append(self._change_tier(
                            tx, member, target.code, now,
                            f"scheduled evaluation: qualifying spend {spend} {verb} {target.code}"))
                        tx.add(member)
                        await tx.flush()
                        change_id = (await tx.execute(select(sa.func.max(TierChange.id)).where(
                            TierChange.member_id == member_id))).scalar_one()
                        await self._notice(tx, member_id, "tier", f"tier:{change_id}", now)
        for change in changes:
            await self._emit(change)
        return changes

    async def tier_progress(self, member_id: int, *, now: datetime | None = None) -> TierProgress:
        now = as_utc(now or utcnow())
        member = await self.member(member_id)
        async with self.db.read() as s:
            spend = await self._qualifying_spend(s, member_id, now)
        upcoming = self.programme.next_tier(member.tier)
        return TierProgress(tier=member.tier, spend=spend, next_tier=upcoming.code if upcoming else None,
                            needed=max(upcoming.threshold - spend, Decimal(0)) if upcoming else None,
                            window_months=self.programme.tiers.window_months)

    async def tier_history(self, member_id: int) -> list[TierChange]:
        async with self.db.read() as s:
            return list((await s.execute(select(TierChange).where(TierChange.member_id == member_id)
                                         .order_by(TierChange.id))).scalars())

    # --- rewards and coupons ------------------------------------------------------------------------

    def _reward_refusal(self, reward: Reward, member: Member, taken: int, now: datetime) -> errors.Refusal | None:
        if not reward.active or (reward.active_from and as_utc(reward.active_from) > now) or (
                reward.active_until and as_utc(reward.active_until) <= now):
            return errors.RewardUnavailable()
        if reward.min_tier and self.programme.tier_rank(member.tier) < self.programme.tier_rank(reward.min_tier):
            return errors.TierTooLow(tier=reward.min_tier)
        if reward.per_member_limit is not None and taken >= reward.per_member_limit:
            return errors.LimitReached(limit=reward.per_member_limit)
        if reward.stock is not None and reward.stock <= 0:
            return errors.OutOfStock()
        if member.balance < reward.cost:
            return errors.NotEnoughPoints(balance=member.balance, cost=reward.cost, short=reward.cost - member.balance)
        return None

    async def _taken(self, s: AsyncSession, member_id: int) -> dict[int, int]:
        rows = (await s.execute(select(Coupon.reward_id, sa.func.count())
                                .where(Coupon.member_id == member_id, Coupon.status != "void")
                                .group_by(Coupon.reward_id))).all()
        return {reward_id: int(n) for reward_id, n in rows}

    async def catalogue(self, member_id: int, *, now: datetime | None = None) -> list[CatalogueItem]:
        """The rewards on offer now, each marked with whether this member can take it and why not."""
        now = as_utc(now or utcnow())
        member = await self.member(member_id)
        async with self.db.read() as s:
            rewards = (await s.execute(select(Reward).where(col(Reward.active).is_(True))
                                       .order_by(Reward.sort_order, Reward.id))).scalars().all()
            taken = await self._taken(s, member_id)
        items = []
        for reward in rewards:
            if (reward.active_from and as_utc(reward.active_from) > now) or (
                    reward.active_until and as_utc(reward.active_until) <= now):
                continue
            refusal = self._reward_refusal(reward, member, taken.get(reward.id or 0, 0), now)
            items.append(CatalogueItem(reward=reward, available=refusal is None,
                                       reason=refusal.code if refusal else None, taken=taken.get(reward.id or 0, 0)))
        return items

    async def reward(self, reward_id: int) -> Reward:
        async with self.db.read() as s:
            reward = await s.get(Reward, reward_id)
        if reward is None:
            raise errors.UnknownReward()
        return reward

    async def redeem_reward(self, member_id: int, reward_id: int, *, request_id: str,
                            now: datetime | None = None, update_key: str | None = None) -> RedeemResult:
        """Spend points on a reward and issue its coupon. Repeating `request_id` returns the same coupon
        (`repeated`), except to the update that issued it (`update_key`), handled again after a crash."""
        now = as_utc(now or utcnow())
        request_id = _check_key(request_id, "request_id")
        async with self.db.transaction() as tx:
            member = await self._lock_member(tx, member_id)
            done = (await tx.execute(select(Coupon).where(Coupon.request_id == request_id))).scalar_one_or_none()
            if done is not None:
                if done.member_id != member_id or done.reward_id != reward_id:
                    raise errors.PurchaseConflict("this request id was already used for another redemption")
                reward = await tx.get(Reward, done.reward_id)
                assert reward is not None
                ours = bool(update_key) and await effect_of(tx, f"redeem:{update_key}") is not None
                return RedeemResult(coupon=done, reward=reward, repeated=not ours)
            reward = (await tx.execute(select(Reward).where(Reward.id == reward_id).with_for_update()
                                       .execution_options(populate_existing=True))).scalar_one_or_none()
            if reward is None:
                raise errors.UnknownReward()
            await self._expire_member_lots(tx, member, now)
            taken = (await self._taken(tx, member_id)).get(reward_id, 0)
            refusal = self._reward_refusal(reward, member, taken, now)
            if refusal is not None:
                raise refusal
            await self._consume(tx, member, reward.cost)
            member.balance -= reward.cost
            if reward.stock is not None:
                reward.stock -= 1
            coupon = Coupon(code=new_coupon_code(), request_id=request_id, reward_id=reward_id, member_id=member_id,
                            points_spent=reward.cost, issued_at=now,
                            expires_at=now + timedelta(days=reward.validity_days))
            tx.add_all([member, reward, coupon])
            tx.add(LedgerEntry(member_id=member_id, kind="redeem", delta=-reward.cost, reference=coupon.code,
                               note=reward.code, created_at=now))
            member.last_activity_at = now
            if update_key:
                await remember_effect(tx, f"redeem:{update_key}", {"request": request_id}, now=now)
            return RedeemResult(coupon=coupon, reward=reward, repeated=False)

    async def coupons_of(self, member_id: int, *, status: str | None = "active", now: datetime | None = None
                         ) -> list[tuple[Coupon, Reward]]:
        """The member's coupons (active by default; None for all), newest first, with their rewards."""
        now = as_utc(now or utcnow())
        query = (select(Coupon, Reward).join(Reward, Reward.id == Coupon.reward_id)
                 .where(Coupon.member_id == member_id).order_by(col(Coupon.issued_at).desc(), col(Coupon.id).desc()))
        if status == "active":
            query = query.where(Coupon.status == "active", col(Coupon.expires_at) > now)
        elif status == "inactive":
            query = query.where(sa.or_(Coupon.status != "active", col(Coupon.expires_at) <= now))
        async with self.db.read() as s:
            return [(c, r) for c, r in (await s.execute(query)).all()]

    async def _coupon_refusal(self, coupon: Coupon, now: datetime) -> errors.Refusal | None:
        if coupon.status == "used":
            return errors.CouponAlreadyUsed(used_at=coupon.used_at)
        if coupon.status == "void":
            return errors.CouponVoid()
        if coupon.status == "expired" or as_utc(coupon.expires_at) <= now:
            return errors.CouponExpired(expired_at=coupon.expires_at)
        return None

    async def coupon_for_counter(self, code: str, *, staff_id: int, now: datetime | None = None) -> CouponView:
        """What staff see before marking a coupon used; refuses exactly as `use_coupon` would."""
        now = as_utc(now or utcnow())
        await self.require_staff(staff_id)
        canonical = normalise_coupon_code(code or "")
        if canonical is None:
            raise errors.UnknownCoupon()
        async with self.db.read() as s:
            row = (await s.execute(select(Coupon, Reward, Member).join(Reward, Reward.id == Coupon.reward_id)
                                   .join(Member, Member.id == Coupon.member_id)
                                   .where(Coupon.code == canonical))).first()
        if row is None:
            raise errors.UnknownCoupon()
        coupon, reward, member = row
        refusal = await self._coupon_refusal(coupon, now)
        if refusal is not None:
            raise refusal
        return CouponView(coupon=coupon, reward=reward, member=member)

    async def use_coupon(self, code: str, *, staff_id: int, now: datetime | None = None,
                         update_key: str | None = None) -> CouponView:
        """Mark a coupon used at the counter, exactly once. Unknown, expired, used and void are refused;
        but the update that used it (`update_key`), handled again after a crash, gets its first answer."""
        now = as_utc(now or utcnow())
        await self.require_staff(staff_id)
        canonical = normalise_coupon_code(code or "")
        if canonical is None:
            raise errors.UnknownCoupon()
        async with self.db.transaction() as tx:
            coupon = (await tx.execute(select(Coupon).where(Coupon.code == canonical).with_for_update()
                                       .execution_options(populate_existing=True))).scalar_one_or_none()
            if coupon is None:
                raise errors.UnknownCoupon()
            if update_key and await effect_of(tx, f"coupon_use:{update_key}") is not None:
                reward = await tx.get(Reward, coupon.reward_id)
                member = await tx.get(Member, coupon.member_id)
                assert reward is not None and member is not None
                return CouponView(coupon=coupon, reward=reward, member=member)
            refusal = await self._coupon_refusal(coupon, now)
            if refusal is not None:
                raise refusal
            coupon.status, coupon.used_at, coupon.used_by = "used", now, staff_id
            if update_key:
                await remember_effect(tx, f"coupon_use:{update_key}", {"coupon": coupon.id}, now=now)
            tx.add(coupon)
            tx.add(AuditLog(actor=f"staff:{staff_id}", action="use_coupon", member_id=coupon.member_id,
                            details={"coupon": coupon.code}, created_at=now))
            await self._notice(tx, coupon.member_id, "coupon_used", f"coupon_used:{coupon.id}", now)
            reward = await tx.get(Reward, coupon.reward_id)
            member = await tx.get(Member, coupon.member_id)
            assert reward is not None and member is not None
            view = CouponView(coupon=coupon, reward=reward, member=member)
        await self._emit(CouponUsed(member_id=coupon.member_id, coupon_id=coupon.id or 0, staff_id=staff_id))
        return view

    async def expire_coupons(self, *, now: datetime | None = None) -> int:
        """Mark every active coupon past its expiry as expired; returns how many."""
        now = as_utc(now or utcnow())
        async with self.db.transaction() as tx:
            result = await tx.execute(sa.update(Coupon).where(Coupon.status == "active",
                                                              col(Coupon.expires_at) <= now).values(status="expired"))
            return int(result.rowcount or 0)

    # --- staff --------------------------------------------------------------------------------------

    async def staff_role(self, telegram_id: int) -> str | None:
        async with self.db.read() as s:
            staff = await s.get(Staff, telegram_id)
        return staff.role if staff else None

    async def require_staff(self, telegram_id: int, roles: tuple[str, ...] = STAFF_ROLES) -> str:
        role = await self.staff_role(telegram_id)
        if role is None or role not in roles:
            raise errors.NotPermitted()
        return role

    async def add_staff(self, telegram_id: int, role: str, *, name: str | None = None, actor: str = "cli") -> Staff:
        if role not in STAFF_ROLES:
            raise errors.InvalidSetting(f"role must be one of {', '.join(STAFF_ROLES)}", setting="role")
        async with self.db.transaction() as tx:
            staff = await tx.get(Staff, telegram_id) or Staff(telegram_id=telegram_id, role=role)
            staff.role, staff.name = role, name or staff.name
            tx.add(staff)
            tx.add(AuditLog(actor=actor, action="staff_add", details={"telegram_id": telegram_id, "role": role}))
            return staff

    async def remove_staff(self, telegram_id: int, *, actor: str = "cli") -> bool:
        async with self.db.transaction() as tx:
            staff = await tx.get(Staff, telegram_id)
            if staff is None:
                return False
            await tx.delete(staff)
            tx.add(AuditLog(actor=actor, action="staff_remove", details={"telegram_id": telegram_id}))
            return True

    async def list_staff(self) -> list[Staff]:
        async with self.db.read() as s:
            return list((await s.execute(select(Staff).order_by(Staff.telegram_id))).scalars())

    # --- the counter: finding members, previewing and undoing an /award ------------------------------

    async def members_by_phone(self, phone: str, *, limit: int = 10) -> list[Member]:
        """Members whose phone is `phone` (as typed: national, with spaces, or international).

        A number without a country code is read in the programme's country. Telegram stores numbers in
        international form, with or without "+", which an index finds; numbers stored another way are
        found by their last digits and compared after normalising."""
        e164 = normalise_phone(phone, self.programme.country)
        if e164 is None:
            return []
        live = Member.status != "erased"
        async with self.db.read() as s:
            found = list((await s.execute(
                select(Member).where(col(Member.phone).in_(stored_forms(e164)), live)
                .order_by(Member.id).limit(limit))).scalars())
            if not found:
                tail = e164[-6:]
                candidates = (await s.execute(
                    select(Member).where(col(Member.phone).like(f"%{tail[:2]}%{tail[2:4]}%{tail[4:]}"), live)
                    .order_by(Member.id).limit(500))).scalars()
                found = [m for m in candidates if normalise_phone(m.phone, self.programme.country) == e164][:limit]
        return found

    async def members_by_name(self, name: str, *, limit: int = 8) -> list[Member]:
        """Members whose first name, last name or full name starts with `name` (case-insensitive), by name.

        At most `limit` (ask for one more to learn whether the list was cut). Erased members are never found.
        (On SQLite, lower() folds ASCII letters only; PostgreSQL folds every script.)"""
        text = " ".join((name or "").split())[:64].lower()
        if len(text) < 2:
            return []
        pattern = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        first = sa.func.lower(sa.func.coalesce(Member.first_name, ""), type_=sa.String)
        last = sa.func.lower(sa.func.coalesce(Member.last_name, ""), type_=sa.String)
        full = sa.func.lower(sa.func.coalesce(Member.first_name, "") + " " + sa.func.coalesce(Member.last_name, ""),
                             type_=sa.String)
        async with self.db.read() as s:
            return list((await s.execute(
                select(Member).where(
                    Member.status != "erased",
                    sa.or_(first.like(pattern, escape="\\"), last.like(pattern, escape="\\"),
                           full.like(pattern, escape="\\")))
                .order_by(first, last, Member.id).limit(limit))).scalars())

    def points_preview(self, member: Member, amount: Decimal, *, now: datetime | None = None) -> int:
        """The points a purchase of `amount` now would earn `member` (as award_purchase will count them)."""
        now = as_utc(now or utcnow())
        return self.programme.points_for(amount, tier=member.tier, birthday_month=_in_birthday_month(member, now))

    async def undo_counter_purchase(self, purchase_id: int, *, staff_id: int, now: datetime | None = None,
                                    update_key: str | None = None) -> CounterUndo:
        """Undo a purchase recorded at the counter by mistake: a full refund of it, audited with the staff member.

        Only within `counter.undo_minutes` of recording it, only by whoever recorded it (or an operator or
        admin), only while nothing of it was refunded otherwise. A repeat (a double tap) changes nothing."""
        now = as_utc(now or utcnow())
        role = await self.require_staff(staff_id)
        async with self.db.read() as s:
            purchase = await s.get(Purchase, purchase_id)
        if purchase is None:
            raise errors.UnknownPurchase()
        refund_id = f"counter-undo:{purchase.id}"
        async with self.db.read() as s:
            done = (await s.execute(select(Refund).where(Refund.external_id == refund_id))).scalar_one_or_none()
            ours = bool(update_key) and await effect_of(s, f"refund:{update_key}") is not None
        if done is not None:  # a double tap; or this update handled again (`ours`): its first answer
            result = RefundResult(refund=done, points_taken=done.points_taken, shortfall=done.shortfall,
                                  repeated=not ours)
            return CounterUndo(purchase=purchase, refund=result, member=await self.member(purchase.member_id))
        if purchase.source != "counter" or (purchase.recorded_by != staff_id and role == "agent"):
            raise errors.UndoNotPossible()
        if Decimal(purchase.refunded_amount) > 0:
            raise errors.UndoNotPossible("part of this purchase was already refunded")
        minutes = self.programme.counter.undo_minutes
        if now - as_utc(purchase.created_at) > timedelta(minutes=minutes):
            raise errors.UndoExpired(minutes=minutes)
        # The same refund id and amount on every try: refund_purchase then returns the first undo.
        result = await self.refund_purchase(purchase.external_id, refund_id=refund_id, amount=purchase.amount,
                                            now=now, actor=f"staff:{staff_id}", update_key=update_key)
        return CounterUndo(purchase=purchase, refund=result, member=await self.member(purchase.member_id))

    # --- feedback and surveys -----------------------------------------------------------------------

    async def record_feedback(self, member_id: int, text: str | None, *, rating: int | None = None,
                              now: datetime | None = None, update_key: str | None = None) -> Feedback:
        """Store a member's feedback; its id is the reference number they are given.
        With `update_key` (the Telegram update it came in), the same update stores it once."""
        now = as_utc(now or utcnow())
        text = (text or "").strip()
        if rating is not None and (isinstance(rating, bool) or not isinstance(rating, int) or not 1 <= rating <= 5):
            raise errors.ScoreOutOfRange(low=1, high=5)
        if (not text and rating is None) or len(text) > MAX_FEEDBACK_CHARS:
            raise errors.InvalidFeedback(limit=MAX_FEEDBACK_CHARS)
        async with self.db.transaction() as tx:
            await self._lock_member(tx, member_id)
            effect_key = f"feedback:{update_key}" if update_key else None
            if effect_key is not None and (done := await effect_of(tx, effect_key)) is not None:
                earlier = await tx.get(Feedback, int(done.get("feedback", 0)))
                if earlier is not None:
                    return earlier
            feedback = Feedback(member_id=member_id, text=text, rating=rating, created_at=now)
            tx.add(feedback)
            if effect_key is not None:
                await tx.flush()
                await remember_effect(tx, effect_key, {"feedback": feedback.id}, now=now)
            return feedback

    async def open_survey(self, member_id: int, kind: str, *, trigger: str, trigger_ref: str | None = None,
                          schedule_id: int | None = None, conversation_id: int | None = None,
                          staff_id: int | None = None, now: datetime | None = None) -> Survey | None:
        """Put a survey to a member; None when they already have one open (at most one at a time)."""
        now = as_utc(now or utcnow())
        if kind not in SURVEY_SCALES:
            raise errors.InvalidSetting("survey kind must be csat or nps", setting="kind")
        async with self.db.transaction() as tx:
            await self._lock_member(tx, member_id)
            open_one = await tx.execute(select(Survey.id).where(Survey.member_id == member_id,
                                                                Survey.status == "open"))
            if open_one.first() is not None:
                return None
            survey = Survey(member_id=member_id, kind=kind, trigger=trigger, trigger_ref=trigger_ref,
                            schedule_id=schedule_id, conversation_id=conversation_id, staff_id=staff_id,
                            created_at=now)
            tx.add(survey)
            await tx.flush()
            return survey

    async def record_survey_answer(self, member_id: int, survey_id: int, score: Any, *,
                                   comment: str | None = None, now: datetime | None = None,
                                   update_key: str | None = None) -> SurveyAnswer:
        """Store an answer to an open survey of this member; out-of-range scores and second answers are refused.
        The update that stored it (`update_key`), handled again after a crash, gets the stored answer back."""
        now = as_utc(now or utcnow())
        async with self.db.transaction() as tx:
            if update_key and (done := await effect_of(tx, f"survey:{update_key}")) is not None:
                earlier = await tx.get(SurveyAnswer, int(done.get("answer", 0)))
                if earlier is not None:
                    return earlier
            survey = (await tx.execute(select(Survey).where(Survey.id == survey_id).with_for_update()
                                       .execution_options(populate_existing=True))).scalar_one_or_none()
            if survey is None or survey.member_id != member_id:
                raise errors.UnknownSurvey()
            low, high = SURVEY_SCALES[survey.kind]
            if isinstance(score, bool) or not isinstance(score, int) or not low <= score <= high:
                raise errors.ScoreOutOfRange(low=low, high=high)
            if survey.status != "open":
                raise errors.SurveyClosed()
            survey.status, survey.answered_at = "answered", now
            answer = SurveyAnswer(survey_id=survey_id, member_id=member_id, kind=survey.kind, score=score,
                                  comment=(comment or "").strip()[:MAX_COMMENT_CHARS] or None,
                                  staff_id=survey.staff_id, created_at=now)
            tx.add_all([survey, answer])
            if update_key:
                await tx.flush()
                await remember_effect(tx, f"survey:{update_key}", {"answer": answer.id}, now=now)
            return answer

    async def add_survey_comment(self, member_id: int, survey_id: int, comment: str, *,
                                 update_key: str | None = None) -> SurveyAnswer:
        """Attach the optional follow-up comment to an answered survey (once; the update that attached it,
        `update_key`, handled again after a crash, gets the answer back instead of a refusal)."""
        comment = (comment or "").strip()
        if not comment or len(comment) > MAX_COMMENT_CHARS:
            raise errors.InvalidFeedback(limit=MAX_COMMENT_CHARS)
        async with self.db.transaction() as tx:
            answer = (await tx.execute(select(SurveyAnswer).where(SurveyAnswer.survey_id == survey_id)
                                       .with_for_update())).scalar_one_or_none()
            if answer is None or answer.member_id != member_id:
                raise errors.UnknownSurvey()
            if update_key and await effect_of(tx, f"survey_comment:{update_key}") is not None:
                return answer
            if answer.comment:
                raise errors.SurveyClosed()
            answer.comment = comment
            tx.add(answer)
            if update_key:
                await remember_effect(tx, f"survey_comment:{update_key}", {"answer": answer.id})
            return answer

    async def scores(self, kind: str, *, since: datetime, until: datetime, tier: str | None = None,
                     language: str | None = None) -> Scores:
        """CSAT (share of 4-5 answers, in %) or NPS (promoters minus detractors, in points) over a period."""
        query = (select(SurveyAnswer.score, sa.func.count()).join(Member, Member.id == SurveyAnswer.member_id)
                 .where(SurveyAnswer.kind == kind, col(SurveyAnswer.created_at) >= as_utc(since),
                        col(SurveyAnswer.created_at) < as_utc(until)).group_by(SurveyAnswer.score))
        if tier:
            query = query.where(Member.tier == tier)
        if language:
            query = query.where(Member.language == language)
        async with self.db.read() as s:
            dist = {int(score): int(n) for score, n in (await s.execute(query)).all()}
        total = sum(dist.values())
        if not total:
            return Scores(kind=kind, answers=0, value=None, distribution=dist)
        if kind == "csat":
            value = 100.0 * sum(n for score, n in dist.items() if score >= 4) / total
        else:
            promoters = sum(n for score, n in dist.items() if score >= 9)
            detractors = sum(n for score, n in dist.items() if score <= 6)
            value = 100.0 * (promoters - detractors) / total
        return Scores(kind=kind, answers=total, value=round(value, 1), distribution=dist)

    # --- privacy ------------------------------------------------------------------------------------

    async def export_member_data(self, member_id: int) -> dict[str, Any]:
        """Everything stored about the member, as a JSON-ready document."""
        member = await self.member(member_id)

        def dump(obj: Any, drop: tuple[str, ...] = ()) -> dict[str, Any]:
            data = obj.model_dump(exclude=set(drop))
            return {k: _jsonable(v) for k, v in data.items()}

        async with self.db.read() as s:
            async def rows(model: Any, where: Any, order: Any) -> list[Any]:
                return list((await s.execute(select(model).where(where).order_by(order))).scalars())

            ledger = await rows(LedgerEntry, LedgerEntry.member_id == member_id, LedgerEntry.id)
            purchases = await rows(Purchase, Purchase.member_id == member_id, Purchase.id)
            coupons = await rows(Coupon, Coupon.member_id == member_id, Coupon.id)
            feedback = await rows(Feedback, Feedback.member_id == member_id, Feedback.id)
            surveys = await rows(Survey, Survey.member_id == member_id, Survey.id)
            answers = await rows(SurveyAnswer, SurveyAnswer.member_id == member_id, SurveyAnswer.id)
            tiers = await rows(TierChange, TierChange.member_id == member_id, TierChange.id)
            conversations = await rows(HandoffConversation, HandoffConversation.member_id == member_id,
                                       HandoffConversation.id)
            messages = await rows(HandoffMessage, col(HandoffMessage.conversation_id).in_(
                [c.id for c in conversations] or [-1]), HandoffMessage.id)
        # Cards and notices the bot posted to staff are the bot's own records, not the member's data.
        messages = [m for m in messages if m.direction in ("in", "out")]
        return {
            "exported_at": _jsonable(utcnow()),
            "programme": self.programme.programme.name,
            "member": dump(member),
            "ledger": [dump(e) for e in ledger],
            "purchases": [dump(p) for p in purchases],
            "coupons": [dump(c) for c in coupons],
            "feedback": [dump(f) for f in feedback],
            "surveys": [dump(x) for x in surveys],
            "survey_answers": [dump(a) for a in answers],
            "tier_changes": [dump(t) for t in tiers],
            "support_conversations": [dump(c) for c in conversations],
            "support_messages": [dump(m, ("staff_id",)) for m in messages],
        }

    async def erase_member(self, member_id: int, *, actor: str, now: datetime | None = None,
                           update_key: str | None = None) -> None:
        """Erase the member's personal data. The ledger stays, anonymised, so the books still add up;
        the remaining balance is forfeited (recorded as an adjust entry), active coupons are voided.

        Every outbox row of the member, whatever its status, loses its text, buttons and chat id (rows
        not yet sent, `sending` included, are skipped as ``erased``); support messages lose their words
        and open conversations are closed. The staff topic is left to support, told by `MemberErased`
        after the commit (and found again at start-up if the process stops first)."""
        from loyalty.handoff import CLOSED, OPEN_STATES, HandoffStore

        now = as_utc(now or utcnow())
        async with self.db.transaction() as tx:
            member = await self._lock_member(tx, member_id)
            if member.balance:
                forfeited = member.balance
                await self._consume(tx, member, forfeited)
                tx.add(LedgerEntry(member_id=member_id, kind="adjust", delta=-forfeited,
                                   note="forfeited on erasure", reference="erasure", created_at=now))
                member.balance = 0
            if member.telegram_id is not None:
                await tx.execute(sa.delete(ConversationState).where(ConversationState.user_id == member.telegram_id))
                # The updates they sent, as recorded on arrival: the lane names their Telegram id, and a
                # handled one keeps no payload (the one being handled now loses its payload when done).
                lane = f"erased:{member_id}"
                await tx.execute(sa.update(InboxUpdate).where(InboxUpdate.lane == f"u:{member.telegram_id}")
                                 .values(lane=lane))
                await tx.execute(sa.update(InboxUpdate).where(InboxUpdate.lane == lane,
                                                              InboxUpdate.status != "pending").values(payload=None))
            for attr in ("telegram_id", "chat_id", "first_name", "last_name", "birthday", "phone", "quiet_start",
                         "quiet_end", "last_activity_at"):
                setattr(member, attr, None)
            member.status, member.erased_at, member.marketing_consent = "erased", now, False
            member.notify = {k: False for k in NOTIFY_KINDS}
            tx.add(member)
            await tx.execute(sa.update(Feedback).where(Feedback.member_id == member_id).values(text="[erased]"))
            await tx.execute(sa.update(SurveyAnswer).where(SurveyAnswer.member_id == member_id).values(comment=None))
            await tx.execute(sa.update(Coupon).where(Coupon.member_id == member_id, Coupon.status == "active")
                             .values(status="void"))
            await tx.execute(sa.update(Survey).where(Survey.member_id == member_id, Survey.status == "open")
                             .values(status="expired"))
            await tx.execute(sa.update(Outbox).where(Outbox.member_id == member_id,
                                                     col(Outbox.status).in_(("pending", "sending")))
                             .values(status="skipped", skip_reason="erased", claimed_by=None))
            await tx.execute(sa.update(Outbox).where(Outbox.member_id == member_id)
                             .values(text="", buttons=[], chat_id=0))
            conv_ids = select(HandoffConversation.id).where(HandoffConversation.member_id == member_id)
            await tx.execute(sa.update(HandoffMessage).where(col(HandoffMessage.conversation_id).in_(conv_ids))
                             .values(text=None))
            open_conversations = (await tx.execute(
                select(HandoffConversation).where(HandoffConversation.member_id == member_id,
                                                  col(HandoffConversation.state).in_(OPEN_STATES))
                .with_for_update())).scalars().all()
            for conv in open_conversations:
                HandoffStore._move(tx, conv, CLOSED, actor[:64], now)  # noqa: SLF001 - the one place that moves
                conv.closed_at = now
                conv.resolution_seconds = max(0, int((now - as_utc(conv.opened_at)).total_seconds()))
            tx.add(AuditLog(actor=actor[:64], action="erase", member_id=member_id, created_at=now))
            if update_key:  # the member's own "yes": a replay of it is told "erased" again, not "join first"
                await remember_effect(tx, f"erase:{update_key}", {"lang": member.language}, now=now)
        await self._emit(MemberErased(member_id))

    async def update_effect(self, name: str, update_key: str | None) -> dict[str, Any] | None:
        """What the Telegram update `update_key` already did as `name` (remembered with its write), or None."""
        if not update_key:
            return None
        async with self.db.read() as s:
            return await effect_of(s, f"{name}:{update_key}")


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return as_utc(value).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    return value


def local_today(member: Member, now: datetime) -> date:
    return as_utc(now).astimezone(_zone(member.timezone)).date()


__all__ = [
    "UTC",
    "AwardResult",
    "CatalogueItem",
    "CouponUsed",
    "CouponView",
    "ExpiringPoints",
    "Loyalty",
    "LoyaltyEvent",
    "MemberErased",
    "PointsSummary",
    "RedeemResult",
    "RefundResult",
    "Scores",
    "TierChanged",
    "TierProgress",
    "check_birthday",
    "local_today",
    "parse_amount",
]
