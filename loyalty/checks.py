"""The ledger's invariant, checked: a member's cached balance, the sum of their ledger and what their lots
hold are one number. Tests and operators call it; no service relies on it."""

from __future__ import annotations

import sqlalchemy as sa
from sqlmodel import select

from loyalbot.storage import Db
from loyalbot.storage.models import LedgerEntry, Member


async def ledger_check(db: Db, member_id: int) -> tuple[int, int, int]:
    """(cached balance, ledger sum, lots remaining) for a member: all three must be equal."""
    async with db.read() as s:
        member = await s.get(Member, member_id)
        total = (await s.execute(select(sa.func.coalesce(sa.func.sum(LedgerEntry.delta), 0))
                                 .where(LedgerEntry.member_id == member_id))).scalar_one()
        remaining = (await s.execute(select(sa.func.coalesce(sa.func.sum(LedgerEntry.remaining), 0))
                                     .where(LedgerEntry.member_id == member_id))).scalar_one()
    return (member.balance if member else 0), int(total), int(remaining or 0)


__all__ = ["ledger_check"]
