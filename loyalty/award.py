"""Points for a purchase: the one earning rule, and the one path that awards them.

`points_earned` prices a purchase (the programme's rate, the tier's multiplier, the birthday month in
the member's own time zone); `award_purchase`, the counter's preview and both stores use it. The award
itself is written once, in `_award`, over an `AwardWriter`: prepared statements on asyncpg for
PostgreSQL (the shop API's hot path), SQLAlchemy Core for SQLite (storage/award_writers.py) and for a
counter award on either store, which also remembers its Telegram update (`update_key`) with the write.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any, Protocol

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlmodel import select

from loyalbot.loyalty import errors
from loyalbot.loyalty.amounts import parse_amount
from loyalbot.loyalty.basket import Basket, read_basket
from loyalbot.loyalty.bonuses import BonusWriter, apply_bonuses
from loyalbot.loyalty.codes import check_key
from loyalbot.loyalty.events import Events
from loyalbot.loyalty.expiry import activity_extension
from loyalbot.loyalty.members import member_zone
from loyalbot.loyalty.pending import pending_until
from loyalbot.loyalty.programme import FollowsProgramme, Programme, ProgrammeInForce
from loyalbot.loyalty.results import AwardResult
from loyalbot.loyalty.stamps import StampWriter, stamp_purchase
from loyalbot.loyalty.tiers import REASON_CHARS, tier_change
from loyalbot.storage import Db, as_utc, utcnow
from loyalbot.storage.award_writers import CoreAwardWriter, LockedMember, PgAwardWriter, Written
from loyalbot.storage.inbox import effect_of, remember_effect
from loyalbot.storage.models import Member, Purchase


def points_earned(programme: Programme, amount: Decimal, *, tier: str, birthday: date | None, timezone: str | None,
                  at: datetime) -> int:
    """The points spending `amount` at `at` earns a member of `tier` born on `birthday`, living in `timezone`.

    The programme's rate times the tier's multiplier, times the birthday-month multiplier when `at` falls
    in the member's birthday month in their own time zone; rounded down."""
    birthday_month = birthday is not None and at.astimezone(member_zone(timezone)).month == birthday.month
    return programme.points_for(amount, tier=tier, birthday_month=birthday_month)


class RuleWriter(BonusWriter, StampWriter, Protocol):
    """The bonus and stamp writes of a store (storage/rule_writers.py)."""


class AwardWriter(Protocol):
    """What the award needs of a store, inside one transaction (storage/award_writers.py); `rules` writes
    the bonuses and stamps the purchase earns (storage/rule_writers.py), in the same transaction."""

    @property
    def rules(self) -> RuleWriter: ...

    async def lock(self, member_id: int, external_id: str) -> LockedMember | None: ...

    async def recorded(self, external_id: str) -> dict[str, Any]: ...

    async def write(self, purchase: Purchase, *, lot_expires_at: datetime, window_start: datetime | None,
                    pending_until: datetime | None = None) -> Written | None: ...

    async def extend_lots(self, member_id: int, until: datetime) -> None: ...

    async def change_tier(self, member_id: int, from_tier: str, to_tier: str, reason: str,
                          now: datetime) -> None: ...


def _repeat_of(first: Purchase, member_id: int, amount: Decimal, currency: str) -> AwardResult:
    if first.member_id != member_id or Decimal(first.amount) != amount or first.currency != currency:
        raise errors.PurchaseConflict(
            "this purchase id was already used with a different member, amount or currency",
            external_id=first.external_id,
        )
    return AwardResult(purchase=first, points=first.points_awarded, repeated=True)


async def _award(writer: AwardWriter, programme: Programme, purchase: Purchase, *, basket: Basket = Basket(),
                 update: tuple[AsyncConnection, str] | None = None) -> AwardResult:
    """Record `purchase` (its points still to price) with its lot, balance and any tier it reaches.

    A repeat of the external id, found by the lock or committed while we waited for it (the write then
    writes nothing), returns the first result. With `update` (the writer's connection and the effect's
    key) the write is remembered, and that same update handled again gets the first answer as it was
    (not `repeated`)."""
    member_id, amount, currency = purchase.member_id, Decimal(purchase.amount), purchase.currency
    locked = await writer.lock(member_id, purchase.external_id)
    if locked is None:
        raise errors.UnknownMember()
    if locked.status == "erased":
        raise errors.MemberErased()
    if locked.seen:
        repeat = _repeat_of(Purchase(**await writer.recorded(purchase.external_id)), member_id, amount, currency)
        if update is not None and await effect_of(*update) is not None:
            return replace(repeat, repeated=False)  # this very update recorded it: its first answer
        return repeat
    occurred, now = purchase.occurred_at, purchase.created_at
    purchase.points_awarded = points_earned(programme, amount, tier=locked.tier, birthday=locked.birthday,
                                            timezone=locked.timezone, at=occurred)
    # Inside the return window the points wait (loyalty/pending.py); so may the spend that counts for a tier.
    waits = pending_until(programme, occurred, now)
    spend_waits = waits is not None and programme.pending.tier_spend_waits
    start = programme.window_start(now) if programme.next_tier(locked.tier) is not None and not spend_waits else None
    expires_at = programme.lot_expiry(occurred, tier=locked.tier)
    written = await writer.write(purchase, lot_expires_at=expires_at, window_start=start, pending_until=waits)
    if written is None:
        return _repeat_of(Purchase(**await writer.recorded(purchase.external_id)), member_id, amount, currency)
    purchase.id = written.purchase_id
    extended = activity_extension(programme, occurred)
    if extended is not None:  # every open lot lives at least `extend_months` past this purchase
        await writer.extend_lots(member_id, extended)
    if update is not None:
        await remember_effect(*update, {"purchase": purchase.id}, now=now)

    def price(part: Decimal) -> int:
        return points_earned(programme, part, tier=locked.tier, birthday=locked.birthday, timezone=locked.timezone,
                             at=occurred)

    bonuses = await apply_bonuses(writer.rules, programme, purchase, basket, tier=locked.tier, price=price,
                                  expires_at=expires_at, pending_until=waits)
    stamps = await stamp_purchase(writer.rules, programme, member_id, basket, external_id=purchase.external_id,
                                  purchase_id=purchase.id, now=now)
    change = None
    if start is not None and written.spend_before is not None:
        # The spend was summed before this purchase was written: it counts if it falls in the window.
        spend = written.spend_before + (amount if start < occurred <= now else 0)
        change = tier_change(programme, member_id, locked.tier, spend, scheduled=False)
        if change is not None:
            await writer.change_tier(member_id, change.from_tier, change.to_tier, change.reason[:REASON_CHARS], now)
    return AwardResult(purchase=purchase, points=purchase.points_awarded, repeated=False, tier_change=change,
                       bonuses=tuple(bonuses), stamps=tuple(stamps))


class Awards(FollowsProgramme):
    """Points for purchases: awarding them (the shop API's and the counter's hot path) and previewing them."""

    def __init__(self, db: Db, programme: ProgrammeInForce, events: Events) -> None:
        self.db = db
        self._in_force = programme
        self.events = events

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
        store: str | None = None,
        items: list[dict[str, Any]] | None = None,
    ) -> AwardResult:
        """Award points for a purchase. A repeat of `external_id` returns the first result and awards nothing.
        With `update_key` (the Telegram update of a counter /award) the same update handled again gets the
        first result as it was (not `repeated`); another update with the same `external_id` is a repeat.

        The shop API's hot path: on PostgreSQL, prepared statements straight on asyncpg (four round trips:
        BEGIN, lock + look up, write, COMMIT); on SQLite, SQLAlchemy Core. tests/loyalty/test_award_paths.py holds the two to
        writing the same rows and telling the shop the same thing.

        `store` and `items` (sku, category, quantity, amount), when the shop sends them, earn the bonuses
        per store or category and the stamps of stamp cards (loyalty/bonuses.py, loyalty/stamps.py). A bonus
        that applies, or a stamp card the items qualify for, adds its round trips to the same transaction;
        a purchase no rule touches makes none.
        """
        now = as_utc(now or utcnow())
        external_id = check_key(external_id, "external_id")
        amount = parse_amount(amount)
        expected = self.programme.programme.currency
        currency = (currency or expected).upper()
        if currency != expected:
            raise errors.InvalidAmount(f"the programme counts in {expected}, not {currency[:3]}")
        basket = read_basket(store, items, amount)
        occurred = as_utc(occurred_at) if occurred_at else now
        if occurred > now + timedelta(minutes=5):
            raise errors.InvalidAmount("the purchase is dated in the future")
        purchase = Purchase(external_id=external_id, member_id=member_id, amount=amount, currency=currency,
                            occurred_at=occurred, points_awarded=0, source=source[:32], recorded_by=recorded_by,
                            created_at=now, refunded_amount=Decimal(0), points_refunded=0, refund_shortfall=0)
        if self.db.is_postgres and update_key is None:
            async with self.db.driver_transaction() as conn:
                result = await _award(PgAwardWriter(conn), self.programme, purchase, basket=basket)
        else:  # a counter award (with its update) is no hot path: the Core writer also remembers the update
            try:
                async with self.db.connection() as tx:
                    update = (tx, f"award:{update_key}") if update_key else None
                    result = await _award(CoreAwardWriter(tx), self.programme, purchase, basket=basket,
                                          update=update)
            except IntegrityError:
                # Another process recorded the same external id at the same moment (this one's writers queue).
                async with self.db.read() as s:
                    first = (await s.execute(select(Purchase).where(Purchase.external_id == external_id))
                             ).scalar_one()
                result = _repeat_of(first, member_id, amount, currency)
        await self.events.emit(result.tier_change)
        return result

    def points_preview(self, member: Member, amount: Decimal, *, now: datetime | None = None) -> int:
        """The points a purchase of `amount` now would earn `member` (as award_purchase will count them)."""
        return points_earned(self.programme, amount, tier=member.tier, birthday=member.birthday,
                             timezone=member.timezone, at=as_utc(now or utcnow()))


__all__ = ["AwardWriter", "Awards", "points_earned"]
