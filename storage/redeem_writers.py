"""redeem_reward's reads and writes on PostgreSQL, straight on the asyncpg connection, taking plain values.

What a redemption may do (the refusals, in their order) is decided in loyalty/rewards.py, which also keeps
the portable path (the ORM, used on SQLite). This writer only reads what that decision needs and writes
what it decided, in three prepared statements inside the caller's transaction (`Db.driver_transaction`):

1. `lock`: the member row, FOR UPDATE. Alone in its statement on purpose: PostgreSQL re-reads a row it
   waited to lock, but every other table a statement reads comes from the snapshot taken before the
   wait, so anything read beside the lock could be what the transaction before us left behind.
2. `look` (after the lock, so from a snapshot no other writer of this member can change): the coupon
   already issued for the request id, the reward, how many of it the member holds, the points that
   are due to expire, and whether the update (`update_key`) already did this.
3. `write`: the whole redemption in one statement: the due lots expired (an `expire` entry each), the
   lots that expire first consumed, the balance, the reward's stock (only while some is left: a
   concurrent redemption of the last one makes it return no stock, and the caller refuses and rolls
   back), the coupon, the `redeem` entry and the update's effect.

Every writer of a member's lots and coupons locks the member row first (members.lock_member, the award
writers), so between 1 and the commit this member's ledger is ours. The reward row is not locked before
the write: the stock decrement re-checks `stock > 0` on the newest row, and it is the last row taken, so
redemptions of one reward by different members queue only for the commit, not for the whole call.
Column names are those of storage.models (the schema drift test keeps the migrations equal to them).
tests/loyalty/test_redeem_paths.py holds this path to the portable one.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, NamedTuple

import asyncpg

from loyalbot.storage.inbox import effect_key as stored_effect_key

_PG_LOCK_MEMBER = "SELECT status, tier, balance FROM members WHERE id = $1 FOR UPDATE"

_REWARD_COLUMNS = ("id", "code", "titles", "descriptions", "cost", "stock", "per_member_limit", "validity_days",
                   "min_tier", "active_from", "active_until", "active", "sort_order")
_COUPON_COLUMNS = ("id", "code", "request_id", "reward_id", "member_id", "points_spent", "status", "issued_at",
                   "expires_at", "used_at", "used_by")

# $1 member, $2 reward, $3 request id, $4 now, $5 the update's effect key (NULL: none).
_PG_LOOK = f"""
SELECT {", ".join(f"r.{c}" for c in _REWARD_COLUMNS)},
       {", ".join(f"c.{c} AS coupon_{c}" for c in _COUPON_COLUMNS)},
       (SELECT count(*) FROM coupons WHERE member_id = $1 AND reward_id = $2 AND status <> 'void') AS taken,
       (SELECT COALESCE(SUM(remaining), 0) FROM ledger_entries
        WHERE member_id = $1 AND remaining > 0 AND expires_at <= $4) AS due,
       EXISTS (SELECT 1 FROM update_effects WHERE key = $5) AS effect_seen
FROM (SELECT 1) AS one
LEFT JOIN rewards r ON r.id = $2
LEFT JOIN coupons c ON c.request_id = $3
"""

# $1 member, $2 reward, $3 now, $4 cost, $5 coupon code, $6 request id, $7 coupon expiry, $8 reward code,
# $9 effect key (NULL: none), $10 effect result (JSON text).
# The due lots are found once (`due`) and both zeroed and written down from that one list; the lots to
# consume are the others with points left (a lot without an expiry last, as ORDER BY puts NULLs on
# PostgreSQL), each taking what the lots before it in that order left to take. Debit entries are
# inserted in the portable path's order: the expiries (soonest first), then the redemption.
_PG_REDEEM = """
WITH due AS (
    SELECT id, remaining, expires_at FROM ledger_entries
    WHERE member_id = $1 AND remaining > 0 AND expires_at <= $3
), expired AS (
    UPDATE ledger_entries l SET remaining = 0 FROM due WHERE l.id = due.id
), open_lots AS (
    SELECT id, remaining, SUM(remaining) OVER (ORDER BY expires_at, id) - remaining AS before
    FROM ledger_entries
    WHERE member_id = $1 AND remaining > 0 AND (expires_at IS NULL OR expires_at > $3)
), spent AS (
    UPDATE ledger_entries l SET remaining = l.remaining - LEAST(o.remaining, $4 - o.before)
    FROM open_lots o WHERE l.id = o.id AND o.before < $4
), debited AS (
    UPDATE members SET balance = balance - $4 - (SELECT COALESCE(SUM(remaining), 0) FROM due),
                       last_activity_at = $3
    WHERE id = $1
), stock AS (
    UPDATE rewards SET stock = stock - 1 WHERE id = $2 AND stock IS NOT NULL AND stock > 0 RETURNING stock
), coupon AS (
    INSERT INTO coupons (code, request_id, reward_id, member_id, points_spent, status, issued_at, expires_at)
    VALUES ($5, $6, $2, $1, $4, 'active', $3, $7)
    RETURNING id
), entries AS (
    INSERT INTO ledger_entries (member_id, kind, delta, reference, note, created_at)
    SELECT $1, kind, delta, reference, note, $3 FROM (
        SELECT 0 AS part, expires_at, id, 'expire' AS kind, -remaining AS delta, 'lot:' || id AS reference,
               'expired ' || to_char(expires_at AT TIME ZONE 'UTC', 'YYYY-MM-DD') AS note
        FROM due
        UNION ALL
        SELECT 1, NULL, NULL, 'redeem', -$4, $5, $8
    ) AS debit ORDER BY part, expires_at, id
), effect AS (
    INSERT INTO update_effects (key, result, created_at) SELECT $9::varchar, $10::text::json, $3 WHERE $9::varchar IS NOT NULL
)
SELECT (SELECT id FROM coupon) AS coupon_id, (SELECT stock FROM stock) AS stock,
       EXISTS (SELECT 1 FROM stock) AS took_stock
"""


class LockedForRedeem(NamedTuple):
    """The member row as a redemption needs it, locked."""

    status: str
    tier: str
    balance: int


class RedeemLook(NamedTuple):
    """What the redemption decides on, read after the lock.

    `reward` and `coupon` are the rows' columns (None: no such row); `taken`: the member's coupons of
    this reward that are not void; `due`: the points of their lots whose expiry has passed; `effect_seen`:
    the update's effect key is recorded."""

    reward: dict[str, Any] | None
    coupon: dict[str, Any] | None
    taken: int
    due: int
    effect_seen: bool


class Redeemed(NamedTuple):
    """The new coupon's id; the reward's stock after it (None: unlimited), and whether stock was taken."""

    coupon_id: int
    stock: int | None
    took_stock: bool


class PgRedeemWriter:
    """redeem_reward's statements on PostgreSQL, in the asyncpg transaction `conn`."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def lock(self, member_id: int) -> LockedForRedeem | None:
        """Lock the member row; None: no such member."""
        row = await self.conn.fetchrow(_PG_LOCK_MEMBER, member_id)
        return None if row is None else LockedForRedeem(*row)

    async def look(self, member_id: int, reward_id: int, request_id: str, now: datetime,
                   effect_key: str | None) -> RedeemLook:
        """Read what the redemption is decided on (one round trip; call it after `lock`)."""
        row = await self.conn.fetchrow(_PG_LOOK, member_id, reward_id, request_id, now,
                                       stored_effect_key(effect_key) if effect_key is not None else None)
        values = list(row.values())
        n = len(_REWARD_COLUMNS)
        reward = dict(zip(_REWARD_COLUMNS, values[:n], strict=True))
        coupon = dict(zip(_COUPON_COLUMNS, values[n:n + len(_COUPON_COLUMNS)], strict=True))
        return RedeemLook(reward=reward if reward["id"] is not None else None,
                          coupon=coupon if coupon["id"] is not None else None,
                          taken=int(row["taken"]), due=int(row["due"]), effect_seen=bool(row["effect_seen"]))

    async def write(self, *, member_id: int, reward_id: int, reward_code: str, cost: int, code: str,
                    request_id: str, now: datetime, expires_at: datetime, effect_key: str | None,
                    effect: dict[str, Any] | None) -> Redeemed:
        """Expire the due lots, spend `cost` from the lots that expire first, take one of the reward's stock
        (if it is counted and some is left), issue the coupon and write the debit entries (one round trip).

        The caller checks `took_stock` against the reward it decided on: stock counted but none taken means
        a concurrent redemption took the last one, and the transaction must be rolled back."""
        row = await self.conn.fetchrow(
            _PG_REDEEM, member_id, reward_id, now, cost, code, request_id, expires_at, reward_code,
            stored_effect_key(effect_key) if effect_key is not None else None,
            json.dumps(effect) if effect is not None else None)
        return Redeemed(coupon_id=int(row["coupon_id"]), stock=row["stock"], took_stock=bool(row["took_stock"]))


__all__ = ["LockedForRedeem", "PgRedeemWriter", "RedeemLook", "Redeemed"]
