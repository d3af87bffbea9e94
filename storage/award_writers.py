"""award_purchase's writes, per dialect, taking and returning plain values.

What to write (the points, the lot's expiry, whether the tier rises) is decided by the programme's rules
in loyalty/award.py; a writer here only writes it, in as few round trips as it can, inside the caller's
transaction. Both give the same answers and leave the same rows (tests/loyalty/test_award_paths.py holds them to it):

* `PgAwardWriter`: PostgreSQL, prepared statements straight on the asyncpg connection (see
  `Db.driver_transaction`): lock + look up in one round trip, the whole write in a second. The texts are
  hand-written so that asyncpg prepares each once per connection; their column names are those of
  storage.models (the schema drift test keeps the migrations equal to them).
* `CoreAwardWriter`: SQLite (and any SQLAlchemy connection), in SQLAlchemy Core: no ORM bookkeeping.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any, NamedTuple

import asyncpg
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from loyalbot.storage.clock import as_utc
from loyalbot.storage.models import LedgerEntry, Member, Notice, PendingPoints, Purchase, TierChange
from loyalbot.storage.rows import table_of
from loyalbot.storage.rule_writers import CoreRuleWriter, PgRuleWriter

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

# The same for a purchase whose points wait out the return window: a pending row instead of the lot, the
# balance unchanged, no notice yet (the clearing tells). $11 available at, [, $12 window start].
_PG_AWARD_PENDING = _PG_AWARD.replace("""INSERT INTO ledger_entries (member_id, kind, delta, remaining, expires_at, reference, purchase_id, created_at)
    SELECT $2, 'earn', $6, $6, $10, $1, purchase.id, $9 FROM purchase WHERE $6 > 0""", """INSERT INTO pending_points (member_id, purchase_id, points, lot_expires_at, available_at, status, created_at)
    SELECT $2, purchase.id, $6, $10, $11, 'pending', $9 FROM purchase WHERE $6 > 0""").replace(
    "SET balance = balance + $6, ", "SET ").replace(""", notice AS (
    INSERT INTO notices (member_id, kind, key, status, created_at)
    SELECT $2, 'points', 'points:purchase:' || purchase.id, 'new', $9 FROM purchase WHERE $6 > 0
)""", "")

# Every open lot of member $1 lasts at least until $2 (expiry extended by a purchase).
_PG_EXTEND_LOTS = """
UPDATE ledger_entries SET expires_at = $2 WHERE member_id = $1 AND remaining > 0 AND expires_at < $2
"""

# The same, plus the member's qualifying spend before this purchase (for a tier upgrade).
_PG_AWARD_AND_SPEND = _PG_AWARD.replace("SELECT id FROM purchase", """SELECT id, (
    SELECT COALESCE(SUM(amount - refunded_amount), 0) FROM purchases
    WHERE member_id = $2 AND occurred_at > $11 AND occurred_at <= $9
) FROM purchase""")

# $1 member, $2 from tier, $3 to tier, $4 reason, $5 now.
_PG_AWARD_PENDING_AND_SPEND = _PG_AWARD_PENDING.replace("SELECT id FROM purchase", """SELECT id, (
    SELECT COALESCE(SUM(amount - refunded_amount), 0) FROM purchases
    WHERE member_id = $2 AND occurred_at > $12 AND occurred_at <= $9
) FROM purchase""")

_PG_CHANGE_TIER = """
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


class LockedMember(NamedTuple):
    """The member row as the award needs it, locked; `seen`: the external id is already recorded."""

    status: str
    tier: str
    birthday: date | None
    timezone: str
    seen: bool


class Written(NamedTuple):
    """The purchase's new id and, when asked for, the member's qualifying spend before it."""

    purchase_id: int
    spend_before: Decimal | None


class PgAwardWriter:
    """award_purchase's writes on PostgreSQL, in the asyncpg transaction `conn`."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn
        self.rules = PgRuleWriter(conn)  # the purchase's bonuses and stamps, in the same transaction

    async def lock(self, member_id: int, external_id: str) -> LockedMember | None:
        """Lock the member row and look the external id up (one round trip); None: no such member."""
        row = await self.conn.fetchrow(_PG_LOCK_MEMBER, member_id, external_id)
        return None if row is None else LockedMember(*row)

    async def recorded(self, external_id: str) -> dict[str, Any]:
        """The columns of the purchase recorded under `external_id` (the lock or the write found it)."""
        return dict(await self.conn.fetchrow(_PG_PURCHASE_BY_EXTERNAL_ID, external_id))

    async def write(self, purchase: Purchase, *, lot_expires_at: datetime, window_start: datetime | None,
                    pending_until: datetime | None = None) -> Written | None:
        """Write the purchase, its earn lot and notice (if it earns points) and the member's balance at once;
        with `pending_until`, a pending row until then instead of the lot (no balance, no notice yet).

        With `window_start`, also sum the member's qualifying spend before this purchase. None: another
        transaction committed the external id meanwhile (ON CONFLICT), and nothing was written."""
        p = purchase
        args = (p.external_id, p.member_id, p.amount, p.currency, p.occurred_at, p.points_awarded, p.source,
                p.recorded_by, p.created_at, lot_expires_at)
        if pending_until is not None:
            if window_start is None:
                row = await self.conn.fetchrow(_PG_AWARD_PENDING, *args, pending_until)
                return None if row is None else Written(row[0], None)
            row = await self.conn.fetchrow(_PG_AWARD_PENDING_AND_SPEND, *args, pending_until, window_start)
            return None if row is None else Written(row[0], Decimal(row[1]))
        if window_start is None:
            row = await self.conn.fetchrow(_PG_AWARD, *args)
            return None if row is None else Written(row[0], None)
        row = await self.conn.fetchrow(_PG_AWARD_AND_SPEND, *args, window_start)
        return None if row is None else Written(row[0], Decimal(row[1]))

    async def change_tier(self, member_id: int, from_tier: str, to_tier: str, reason: str, now: datetime) -> None:
        """Move the member to `to_tier`, recording the change and the notice that tells them (one round trip)."""
        await self.conn.execute(_PG_CHANGE_TIER, member_id, from_tier, to_tier, reason, now)

    async def extend_lots(self, member_id: int, until: datetime) -> None:
        """Make every open lot of the member last at least until `until`."""
        await self.conn.execute(_PG_EXTEND_LOTS, member_id, until)


_members, _purchases, _ledger = table_of(Member), table_of(Purchase), table_of(LedgerEntry)
_notices, _tier_changes, _pending = table_of(Notice), table_of(TierChange), table_of(PendingPoints)


async def extend_lots(tx: AsyncConnection | AsyncSession, member_id: int, until: datetime) -> None:
    """Make every open lot of the member last at least until `until` (SQLAlchemy Core, the caller's transaction)."""
    await tx.execute(sa.update(_ledger).where(_ledger.c.member_id == member_id, _ledger.c.remaining > 0,
                                              _ledger.c.expires_at < until).values(expires_at=until))


async def change_tier(tx: AsyncConnection | AsyncSession, member_id: int, from_tier: str, to_tier: str, reason: str,
                      now: datetime) -> int:
    """Move the member to `to_tier`, recording the change and the notice that tells them; the change's id.

    SQLAlchemy Core on the caller's connection or session: the SQLite award and every scheduled evaluation."""
    await tx.execute(sa.update(_members).where(_members.c.id == member_id).values(tier=to_tier, tier_since=now))
    change_id: int = (await tx.execute(sa.insert(_tier_changes).values(
        member_id=member_id, from_tier=from_tier, to_tier=to_tier, reason=reason, created_at=now,
    ).returning(_tier_changes.c.id))).scalar_one()
    await tx.execute(sa.insert(_notices).values(member_id=member_id, kind="tier", key=f"tier:{change_id}"[:128],
                                                status="new", created_at=now))
    return change_id


class CoreAwardWriter:
    """award_purchase's writes in SQLAlchemy Core on `conn`: the SQLite path (writers queue there)."""

    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn
        self.rules = CoreRuleWriter(conn)  # the purchase's bonuses and stamps, in the same transaction
        self._last_purchase_at: datetime | None = None
        self._last_activity_at: datetime | None = None

    async def lock(self, member_id: int, external_id: str) -> LockedMember | None:
        """Lock the member row (a no-op on SQLite) and look the external id up; None: no such member."""
        seen = sa.exists().where(_purchases.c.external_id == external_id).label("seen")
        row = (await self.conn.execute(
            sa.select(_members.c.status, _members.c.tier, _members.c.birthday, _members.c.timezone, seen,
                      _members.c.last_purchase_at, _members.c.last_activity_at)
            .where(_members.c.id == member_id).with_for_update()
        )).first()
        if row is None:
            return None
        self._last_purchase_at, self._last_activity_at = row.last_purchase_at, row.last_activity_at
        return LockedMember(row.status, row.tier, row.birthday, row.timezone, bool(row.seen))

    async def recorded(self, external_id: str) -> dict[str, Any]:
        """The columns of the purchase recorded under `external_id`."""
        row = (await self.conn.execute(sa.select(_purchases).where(_purchases.c.external_id == external_id))).one()
        return dict(row._mapping)

    async def write(self, purchase: Purchase, *, lot_expires_at: datetime, window_start: datetime | None,
                    pending_until: datetime | None = None) -> Written:
        """Write the purchase, its earn lot and notice (if it earns points) and the member's balance; with
        `pending_until`, a pending row until then instead of the lot (no balance, no notice yet).

        With `window_start`, first sum the member's qualifying spend before this purchase."""
        spend_before: Decimal | None = None
        member_id, occurred, now = purchase.member_id, purchase.occurred_at, purchase.created_at
        if window_start is not None:
            spend_before = Decimal((await self.conn.execute(
                sa.select(sa.func.coalesce(sa.func.sum(_purchases.c.amount - _purchases.c.refunded_amount), 0))
                .where(_purchases.c.member_id == member_id, _purchases.c.occurred_at > window_start,
                       _purchases.c.occurred_at <= now)
            )).scalar_one())
        purchase_id: int = (await self.conn.execute(
            sa.insert(_purchases).values(purchase.model_dump(exclude={"id"})).returning(_purchases.c.id)
        )).scalar_one()
        points = purchase.points_awarded
        if points > 0 and pending_until is not None:
            await self.conn.execute(sa.insert(_pending).values(
                member_id=member_id, purchase_id=purchase_id, points=points, lot_expires_at=lot_expires_at,
                available_at=pending_until, status="pending", created_at=now))
            points = 0
        elif points > 0:
            await self.conn.execute(sa.insert(_ledger).values(
                member_id=member_id, kind="earn", delta=points, remaining=points, expires_at=lot_expires_at,
                reference=purchase.external_id, purchase_id=purchase_id, created_at=now))
            await self.conn.execute(sa.insert(_notices).values(
                member_id=member_id, kind="points", key=f"points:purchase:{purchase_id}"[:128], status="new",
                created_at=now))
        await self.conn.execute(sa.update(_members).where(_members.c.id == member_id).values(
            balance=_members.c.balance + points,
            last_purchase_at=max(as_utc(self._last_purchase_at or occurred), occurred),
            last_activity_at=max(as_utc(self._last_activity_at or now), now)))
        return Written(purchase_id, spend_before)

    async def change_tier(self, member_id: int, from_tier: str, to_tier: str, reason: str, now: datetime) -> None:
        await change_tier(self.conn, member_id, from_tier, to_tier, reason, now)

    async def extend_lots(self, member_id: int, until: datetime) -> None:
        """Make every open lot of the member last at least until `until`."""
        await extend_lots(self.conn, member_id, until)


__all__ = ["CoreAwardWriter", "LockedMember", "PgAwardWriter", "Written", "change_tier", "extend_lots"]
