"""The points ledger inside a transaction: lots are added, consumed soonest-expiring first, and expired.

Every function here runs in the caller's transaction on a member row the caller has locked, and keeps
the member's cached balance equal to the sum of the ledger (the caller adds the member to the session).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from loyalbot.loyalty.results import ExpiringPoints
from loyalbot.storage import as_utc
from loyalbot.storage.models import LedgerEntry, Member


def add_lot(tx: AsyncSession, member: Member, *, kind: str, points: int, expires_at: datetime, now: datetime,
            reference: str | None = None, purchase_id: int | None = None, note: str | None = None) -> LedgerEntry:
    """A positive entry that is also a lot: `points` to spend until `expires_at`."""
    assert member.id is not None
    entry = LedgerEntry(member_id=member.id, kind=kind, delta=points, remaining=points, expires_at=expires_at,
                        reference=reference, purchase_id=purchase_id, note=note, created_at=now)
    tx.add(entry)
    member.balance += points
    return entry


async def consume(tx: AsyncSession, member: Member, points: int, *, prefer_purchase: int | None = None) -> int:
    """Take up to `points` from the member's lots, those that expire first first; returns what was taken.

    Only the lots' `remaining` changes: the caller writes the debit entry and its balance."""
    if points <= 0:
        return 0
    order: list[Any] = [col(LedgerEntry.expires_at).asc(), col(LedgerEntry.id).asc()]
    if prefer_purchase is not None:
        order.insert(0, sa.case((col(LedgerEntry.purchase_id) == prefer_purchase, 0), else_=1))
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


async def expire_member_lots(tx: AsyncSession, member: Member, now: datetime) -> int:
    """Expire what is left of the member's lots whose time has come: an `expire` entry each; returns the points."""
    lots = (await tx.execute(
        select(LedgerEntry)
        .where(LedgerEntry.member_id == member.id, *lots_due(now))
        .order_by(col(LedgerEntry.expires_at), col(LedgerEntry.id))
        .with_for_update()
    )).scalars().all()
    total = 0
    assert member.id is not None
    for lot in lots:
        amount = lot.remaining or 0
        lot.remaining = 0
        tx.add(lot)
        tx.add(LedgerEntry(member_id=member.id, kind="expire", delta=-amount, reference=f"lot:{lot.id}",
                           note=f"expired {lot.expires_at:%Y-%m-%d}", created_at=now))
        total += amount
    member.balance -= total
    return total


def lots_left(now: datetime, *, until: datetime | None = None) -> list[sa.ColumnElement[bool]]:
    """Where a lot still holds points that expire after `now` (and by `until`): what will expire when."""
    where = [col(LedgerEntry.remaining) > 0, col(LedgerEntry.expires_at) > now]
    if until is not None:
        where.append(col(LedgerEntry.expires_at) <= until)
    return where


def lots_due(now: datetime) -> list[sa.ColumnElement[bool]]:
    """Where a lot still holds points whose expiry has passed: what expiry takes now."""
    return [col(LedgerEntry.remaining) > 0, col(LedgerEntry.expires_at) <= now]


async def points_to_expire(s: AsyncSession, member_id: int, now: datetime, within_days: int | None = None
                           ) -> list[ExpiringPoints]:
    """The member's points still to expire (within `within_days`, or ever), by expiry time, soonest first."""
    until = now + timedelta(days=within_days) if within_days is not None else None
    rows = (await s.execute(
        select(LedgerEntry.expires_at, sa.func.sum(LedgerEntry.remaining))
        .where(LedgerEntry.member_id == member_id, *lots_left(now, until=until))
        .group_by(col(LedgerEntry.expires_at)).order_by(col(LedgerEntry.expires_at))
    )).all()
    return [ExpiringPoints(expires_at=as_utc(at), points=int(points or 0)) for at, points in rows if at is not None]


__all__ = ["add_lot", "consume", "expire_member_lots", "points_to_expire", "lots_due", "lots_left"]
