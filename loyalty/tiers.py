"""Tiers: a member's tier follows their qualifying spend over the programme's rolling window.

`tier_change` is the one place that decides a change and says why; a purchase only ever raises a tier
(loyalty/award.py), the scheduled evaluation moves it either way (`Tiers.evaluate_tiers`). Either way
the change is written with the TierChange row and the notice that tells the member, in one transaction.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlmodel import col, select

from loyalbot.loyalty.events import Events, TierChanged
from loyalbot.loyalty.members import Members, lock_member
from loyalbot.loyalty.programme import FollowsProgramme, Programme, ProgrammeInForce
from loyalbot.loyalty.results import TierProgress
from loyalbot.storage import Db, as_utc, utcnow
from loyalbot.storage.award_writers import change_tier
from loyalbot.storage.models import Member, PendingPoints, Purchase, Tier, TierChange

REASON_CHARS = 200  # tier_changes.reason


def tier_change(programme: Programme, member_id: int, tier: str, spend: Decimal, *, scheduled: bool
                ) -> TierChanged | None:
    """The change of tier that `spend` earns a member now in `tier`, or None.

    A purchase (`scheduled` False) only raises a tier; the scheduled evaluation also lowers it."""
    target = programme.tier_for_spend(spend)
    upgrade = programme.tier_rank(target.code) > programme.tier_rank(tier)
    if scheduled and target.code != tier:
        verb = "reached" if upgrade else "fell to"
        reason = f"scheduled evaluation: qualifying spend {spend} {verb} {target.code}"
    elif not scheduled and upgrade:
        reason = f"qualifying spend {spend} reached {target.code} ({target.threshold})"
    else:
        return None
    return TierChanged(member_id=member_id, from_tier=tier, to_tier=target.code, reason=reason, upgrade=upgrade)


async def qualifying_spend(tx: AsyncSession | AsyncConnection, programme: Programme, member_id: int,
                           now: datetime) -> Decimal:
    """What the member spent (less refunds) in the window that ends `now`; with `pending.tier_spend_waits`,
    a purchase still inside its return window does not count yet."""
    start = programme.window_start(now)
    query = (select(sa.func.coalesce(sa.func.sum(Purchase.amount - Purchase.refunded_amount), 0))
             .where(Purchase.member_id == member_id, col(Purchase.occurred_at) > start,
                    col(Purchase.occurred_at) <= now))
    if programme.pending.tier_spend_waits:
        query = query.where(~sa.exists().where(col(PendingPoints.purchase_id) == Purchase.id,
                                               col(PendingPoints.status) == "pending"))
    spend = (await tx.execute(query)).scalar_one()
    return Decimal(spend)


async def mirror_tiers(tx: AsyncSession, programme: Programme) -> None:
    """Make the tiers table the programme file's tiers (by code), in the caller's transaction."""
    existing = {t.code: t for t in (await tx.execute(select(Tier))).scalars()}
    for rank, level in enumerate(programme.tiers.levels):
        tier = existing.pop(level.code, None) or Tier(code=level.code, rank=rank, threshold=Decimal(0))
        tier.rank, tier.names = rank, dict(level.names)
        tier.threshold, tier.multiplier = level.threshold, level.multiplier
        tx.add(tier)
    for stale in existing.values():
        await tx.delete(stale)


class Tiers(FollowsProgramme):
    """The scheduled tier evaluation, and where a member stands."""

    def __init__(self, db: Db, programme: ProgrammeInForce, events: Events, members: Members) -> None:
        self.db = db
        self._in_force = programme
        self.events = events
        self.members = members

    async def evaluate_tiers(self, *, now: datetime | None = None, batch: int = 1000) -> list[TierChanged]:
        """The scheduled evaluation: every member's tier follows their qualifying spend, down as well as up."""
        now = as_utc(now or utcnow())
        programme = self.programme  # one version for the whole evaluation
        changes: list[TierChanged] = []
        last_id = 0
        while True:
            async with self.db.read() as s:
                ids = [i for i in (await s.execute(
                    select(Member.id).where(col(Member.id) > last_id, col(Member.status) != "erased")
                    .order_by(col(Member.id)).limit(batch))).scalars() if i is not None]
            if not ids:
                break
            last_id = ids[-1]
            for member_id in ids:
                async with self.db.transaction() as tx:
                    member = await lock_member(tx, member_id)
                    spend = await qualifying_spend(tx, programme, member_id, now)
                    change = tier_change(programme, member_id, member.tier, spend, scheduled=True)
                    if change is not None:
                        await change_tier(tx, member_id, change.from_tier, change.to_tier,
                                          change.reason[:REASON_CHARS], now)
                        changes.append(change)
        for change in changes:
            await self.events.emit(change)
        return changes

    async def tier_progress(self, member_id: int, *, now: datetime | None = None) -> TierProgress:
        now = as_utc(now or utcnow())
        member = await self.members.member(member_id)
        programme = self.programme
        async with self.db.read() as s:
            spend = await qualifying_spend(s, programme, member_id, now)
        upcoming = programme.next_tier(member.tier)
        return TierProgress(tier=member.tier, spend=spend, next_tier=upcoming.code if upcoming else None,
                            needed=max(upcoming.threshold - spend, Decimal(0)) if upcoming else None,
                            window_months=programme.tiers.window_months)

    async def tier_history(self, member_id: int) -> list[TierChange]:
        async with self.db.read() as s:
            return list((await s.execute(select(TierChange).where(TierChange.member_id == member_id)
                                         .order_by(col(TierChange.id)))).scalars())


__all__ = ["Tiers", "mirror_tiers", "qualifying_spend", "tier_change"]
