"""Bonus campaigns' and stamp cards' writes inside the award's (or the counter's) transaction, per dialect.

What to write (which bonus, how many stamps, when a card completes) is decided in loyalty/bonuses.py and
loyalty/stamps.py; a writer here only writes, on the member row the caller has locked. Both give the same
answers and leave the same rows (tests/loyalty/test_bonuses.py and test_stamps.py run on both stores):

* `PgRuleWriter`: PostgreSQL, statements straight on the award's asyncpg connection, each repeat guard an
  `ON CONFLICT DO NOTHING` on the row's unique key.
* `CoreRuleWriter`: SQLAlchemy Core on any connection (SQLite, and counter work on either store): the member
  lock makes look-then-insert safe, and the unique keys stay the backstop.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import NamedTuple

import asyncpg
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from loyalbot.storage.models import (
    BonusGrant,
    Coupon,
    LedgerEntry,
    Member,
    Notice,
    PendingPoints,
    Purchase,
    Reward,
    StampCard,
    StampEvent,
)
from loyalbot.storage.rows import table_of

_members, _purchases, _ledger = table_of(Member), table_of(Purchase), table_of(LedgerEntry)
_grants, _cards, _events = table_of(BonusGrant), table_of(StampCard), table_of(StampEvent)
_coupons, _rewards, _pending = table_of(Coupon), table_of(Reward), table_of(PendingPoints)
_notices = table_of(Notice)


class Grant(NamedTuple):
    """A bonus's points to give once: `period` is what makes it once (a purchase, a month...). With
    `pending_until` (the purchase's points wait out the return window) the points wait with them: a
    pending row (reason "bonus:<code>") until then, in no balance yet."""

    member_id: int
    bonus_code: str
    period: str
    points: int
    expires_at: datetime
    reference: str
    purchase_id: int | None
    now: datetime
    pending_until: datetime | None = None


class NewCoupon(NamedTuple):
    """A coupon given for nothing (a stamp card's reward, a birthday gift), once per `request_id`. With
    `notice` (a notice kind) the member is told, in the same transaction: a notice keyed `<kind>:<coupon id>`."""

    member_id: int
    reward_code: str
    code: str
    request_id: str
    validity_days: int | None  # None: the reward's own
    now: datetime
    notice: str | None = None


# $1 member, $2 bonus, $3 period, $4 points, $5 expires, $6 reference, $7 purchase, $8 now.
_PG_GRANT = """
WITH grant_row AS (
    INSERT INTO bonus_grants (member_id, bonus_code, period, points, purchase_id, created_at)
    VALUES ($1, $2, $3, $4, $7, $8) ON CONFLICT (member_id, bonus_code, period) DO NOTHING RETURNING id
), lot AS (
    INSERT INTO ledger_entries (member_id, kind, delta, remaining, expires_at, reference, purchase_id, note, created_at)
    SELECT $1, 'bonus', $4, $4, $5, $6, $7, $2, $8 FROM grant_row
), balance AS (
    UPDATE members SET balance = balance + $4 WHERE id = $1 AND EXISTS (SELECT 1 FROM grant_row)
)
SELECT id FROM grant_row
"""

# The same for a purchase still inside its return window: a pending row instead of the lot and balance.
# $1 member, $2 bonus, $3 period, $4 points, $5 expires, $6 reason, $7 purchase, $8 now, $9 available at.
_PG_GRANT_PENDING = """
WITH grant_row AS (
    INSERT INTO bonus_grants (member_id, bonus_code, period, points, purchase_id, created_at)
    VALUES ($1, $2, $3, $4, $7, $8) ON CONFLICT (member_id, bonus_code, period) DO NOTHING RETURNING id
), waiting AS (
    INSERT INTO pending_points (member_id, purchase_id, reason, points, lot_expires_at, available_at, status,
                                created_at)
    SELECT $1, $7, $6, $4, $5, $9, 'pending', $8 FROM grant_row
)
SELECT id FROM grant_row
"""

_PG_SPEND = """
SELECT COALESCE(SUM(amount - refunded_amount), 0) FROM purchases
WHERE member_id = $1 AND occurred_at >= $2 AND occurred_at < $3
"""

# $1 member, $2 card, $3 key, $4 stamps, $5 purchase, $6 staff, $7 now.
_PG_STAMP_EVENT = """
INSERT INTO stamp_events (member_id, card_code, key, stamps, purchase_id, staff_id, coupons_issued, created_at)
VALUES ($1, $2, $3, $4, $5, $6, 0, $7) ON CONFLICT (card_code, key) DO NOTHING RETURNING id
"""

_PG_CARD = "SELECT stamps, cycles FROM stamp_cards WHERE member_id = $1 AND card_code = $2"

_PG_SAVE_CARD = """
INSERT INTO stamp_cards (member_id, card_code, stamps, cycles, updated_at) VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (member_id, card_code) DO UPDATE SET stamps = excluded.stamps, cycles = excluded.cycles,
                                                 updated_at = excluded.updated_at
"""

_PG_EVENT_COUPONS = "UPDATE stamp_events SET coupons_issued = $2 WHERE id = $1"

# $1 member, $2 reward code, $3 code, $4 request id, $5 validity days (NULL: the reward's), $6 now.
_PG_COUPON = """
INSERT INTO coupons (code, request_id, reward_id, member_id, points_spent, status, issued_at, expires_at)
SELECT $3, $4, id, $1, 0, 'active', $6::timestamptz,
       $6::timestamptz + make_interval(days => COALESCE($5::int, validity_days))
FROM rewards WHERE code = $2
ON CONFLICT (request_id) DO NOTHING RETURNING id
"""

_PG_NOTICE = "INSERT INTO notices (member_id, kind, key, status, created_at) VALUES ($1, $2, $3, 'new', $4)"


class PgRuleWriter:
    """Bonus and stamp writes on PostgreSQL, in the asyncpg transaction `conn`."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def spend_between(self, member_id: int, start: datetime, end: datetime) -> Decimal:
        """The member's spend (less refunds) on purchases made in [start, end)."""
        return Decimal(await self.conn.fetchval(_PG_SPEND, member_id, start, end))

    async def grant(self, grant: Grant) -> bool:
        """Give the bonus (its grant, its lot, the balance) unless given for this period already; True if given."""
        g = grant
        if g.pending_until is not None:
            return await self.conn.fetchval(_PG_GRANT_PENDING, g.member_id, g.bonus_code, g.period, g.points,
                                            g.expires_at, g.reference, g.purchase_id, g.now, g.pending_until
                                            ) is not None
        return await self.conn.fetchval(_PG_GRANT, g.member_id, g.bonus_code, g.period, g.points, g.expires_at,
                                        g.reference, g.purchase_id, g.now) is not None

    async def add_stamp_event(self, member_id: int, card_code: str, key: str, stamps: int, *,
                              purchase_id: int | None, staff_id: int | None, now: datetime) -> int | None:
        """Record stamps under `key`; None: that key already stamped this card."""
        event_id: int | None = await self.conn.fetchval(_PG_STAMP_EVENT, member_id, card_code, key, stamps,
                                                        purchase_id, staff_id, now)
        return event_id

    async def card(self, member_id: int, card_code: str) -> tuple[int, int]:
        """(stamps, completed cycles) on the member's card; (0, 0) before the first stamp."""
        row = await self.conn.fetchrow(_PG_CARD, member_id, card_code)
        return (0, 0) if row is None else (row[0], row[1])

    async def save_card(self, member_id: int, card_code: str, stamps: int, cycles: int, now: datetime,
                        event_id: int, coupons: int) -> None:
        await self.conn.execute(_PG_SAVE_CARD, member_id, card_code, stamps, cycles, now)
        if coupons:
            await self.conn.execute(_PG_EVENT_COUPONS, event_id, coupons)

    async def issue_coupon(self, coupon: NewCoupon) -> int | None:
        """Issue the coupon unless `request_id` has one (or the reward is unknown); its id if issued."""
        c = coupon
        coupon_id: int | None = await self.conn.fetchval(_PG_COUPON, c.member_id, c.reward_code, c.code, c.request_id,
                                                         c.validity_days, c.now)
        if coupon_id is not None and c.notice is not None:
            await self.conn.execute(_PG_NOTICE, c.member_id, c.notice, f"{c.notice}:{coupon_id}", c.now)
        return coupon_id


class CoreRuleWriter:
    """Bonus and stamp writes in SQLAlchemy Core on `conn` (SQLite; counter stamps on either store)."""

    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    async def spend_between(self, member_id: int, start: datetime, end: datetime) -> Decimal:
        return Decimal((await self.conn.execute(
            sa.select(sa.func.coalesce(sa.func.sum(_purchases.c.amount - _purchases.c.refunded_amount), 0))
            .where(_purchases.c.member_id == member_id, _purchases.c.occurred_at >= start,
                   _purchases.c.occurred_at < end))).scalar_one())

    async def grant(self, grant: Grant) -> bool:
        g = grant
        seen = (await self.conn.execute(sa.select(_grants.c.id).where(
            _grants.c.member_id == g.member_id, _grants.c.bonus_code == g.bonus_code, _grants.c.period == g.period,
        ))).first()
        if seen is not None:
            return False
        await self.conn.execute(sa.insert(_grants).values(
            member_id=g.member_id, bonus_code=g.bonus_code, period=g.period, points=g.points,
            purchase_id=g.purchase_id, created_at=g.now))
        if g.pending_until is not None:
            await self.conn.execute(sa.insert(_pending).values(
                member_id=g.member_id, purchase_id=g.purchase_id, reason=g.reference, points=g.points,
                lot_expires_at=g.expires_at, available_at=g.pending_until, status="pending", created_at=g.now))
            return True
        await self.conn.execute(sa.insert(_ledger).values(
            member_id=g.member_id, kind="bonus", delta=g.points, remaining=g.points, expires_at=g.expires_at,
            reference=g.reference, purchase_id=g.purchase_id, note=g.bonus_code, created_at=g.now))
        await self.conn.execute(sa.update(_members).where(_members.c.id == g.member_id)
                                .values(balance=_members.c.balance + g.points))
        return True

    async def add_stamp_event(self, member_id: int, card_code: str, key: str, stamps: int, *,
                              purchase_id: int | None, staff_id: int | None, now: datetime) -> int | None:
        seen = (await self.conn.execute(sa.select(_events.c.id).where(
            _events.c.card_code == card_code, _events.c.key == key))).first()
        if seen is not None:
            return None
        event_id: int = (await self.conn.execute(sa.insert(_events).values(
            member_id=member_id, card_code=card_code, key=key, stamps=stamps, purchase_id=purchase_id,
            staff_id=staff_id, coupons_issued=0, created_at=now).returning(_events.c.id))).scalar_one()
        return event_id

    async def card(self, member_id: int, card_code: str) -> tuple[int, int]:
        row = (await self.conn.execute(sa.select(_cards.c.stamps, _cards.c.cycles).where(
            _cards.c.member_id == member_id, _cards.c.card_code == card_code))).first()
        return (0, 0) if row is None else (row[0], row[1])

    async def save_card(self, member_id: int, card_code: str, stamps: int, cycles: int, now: datetime,
                        event_id: int, coupons: int) -> None:
        where = (_cards.c.member_id == member_id, _cards.c.card_code == card_code)
        changed = await self.conn.execute(sa.update(_cards).where(*where).values(
            stamps=stamps, cycles=cycles, updated_at=now))
        if not changed.rowcount:
            await self.conn.execute(sa.insert(_cards).values(member_id=member_id, card_code=card_code, stamps=stamps,
                                                             cycles=cycles, updated_at=now))
        if coupons:
            await self.conn.execute(sa.update(_events).where(_events.c.id == event_id).values(coupons_issued=coupons))

    async def issue_coupon(self, coupon: NewCoupon) -> int | None:
        c = coupon
        if (await self.conn.execute(sa.select(_coupons.c.id).where(_coupons.c.request_id == c.request_id))
                ).first() is not None:
            return None
        reward = (await self.conn.execute(sa.select(_rewards.c.id, _rewards.c.validity_days)
                                          .where(_rewards.c.code == c.reward_code))).first()
        if reward is None:
            return None
        coupon_id: int = (await self.conn.execute(sa.insert(_coupons).values(
            code=c.code, request_id=c.request_id, reward_id=reward.id, member_id=c.member_id, points_spent=0,
            status="active", issued_at=c.now, expires_at=c.now + timedelta(days=c.validity_days or reward.validity_days))
            .returning(_coupons.c.id))).scalar_one()
        if c.notice is not None:
            await self.conn.execute(sa.insert(_notices).values(member_id=c.member_id, kind=c.notice,
                                                               key=f"{c.notice}:{coupon_id}", status="new",
                                                               created_at=c.now))
        return coupon_id


__all__ = ["CoreRuleWriter", "Grant", "NewCoupon", "PgRuleWriter"]
