"""Pending points: a purchase's points wait out the programme's return window before they can be spent.

Until then they are a `pending_points` row, outside the ledger: the balance (= the sum of the ledger =
what the lots hold) stays what the member can spend, and nothing can redeem them. The clearing job
(`Pending.clear_due`, run by the scheduler's planner) turns each due row into an earn lot in the
member's locked transaction, once: a row is cleared only while its status is still `pending`, read
after the lock. A refund inside the window lowers the pending rows first (`cancel_pending`), so the
earn-refund-keep-points exploit finds nothing to keep.

A purchase has a row per reason: "purchase" for its own points, "bonus:<code>" for each bonus campaign it
earned (loyalty/bonuses.py). The bonuses come from the purchase, so they wait with it (the same
`available_at`), are cancelled with it, and clear into bonus lots that name their campaign.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from loyalbot.loyalty.events import Events, record_notice
from loyalbot.loyalty.expiry import activity_extension
from loyalbot.loyalty.ledger import add_lot
from loyalbot.loyalty.members import lock_member
from loyalbot.loyalty.programme import FollowsProgramme, Programme, ProgrammeInForce
from loyalbot.loyalty.results import PendingView
from loyalbot.loyalty.tiers import REASON_CHARS, qualifying_spend, tier_change
from loyalbot.storage import Db, as_utc, utcnow
from loyalbot.storage.award_writers import change_tier
from loyalbot.storage.models import Member, PendingPoints, Purchase


def pending_until(programme: Programme, occurred: datetime, now: datetime) -> datetime | None:
    """When a purchase made at `occurred` clears the return window; None when its points are spendable now."""
    days = programme.pending.return_window_days
    if days == 0:
        return None
    until = occurred + timedelta(days=days)
    return until if until > now else None


PURCHASE_REASON = "purchase"


def bonus_reason(code: str) -> str:
    """The pending row's reason for the bonus campaign `code`."""
    return f"bonus:{code}"[:40]


async def cancel_pending(tx: AsyncSession, purchase_id: int, points: int, *, reasons: Sequence[str]) -> int:
    """Cancel up to `points` of the purchase's still-pending points of `reasons` (the member row locked), its
    own points first, then its bonuses in the order they were given; returns how many."""
    rows = (await tx.execute(select(PendingPoints).where(
        PendingPoints.purchase_id == purchase_id, PendingPoints.status == "pending",
        col(PendingPoints.reason).in_(list(reasons)),
    ).order_by(col(PendingPoints.reason) != PURCHASE_REASON, col(PendingPoints.id))
     .with_for_update().execution_options(populate_existing=True))).scalars().all()
    cancelled = 0
    for row in rows:
        if cancelled >= points:
            break
        taken = min(row.points, points - cancelled)
        row.points -= taken
        cancelled += taken
        if row.points == 0:
            row.status = "cancelled"
        tx.add(row)
    return cancelled


async def pending_of(s: AsyncSession, member_id: int) -> list[PendingView]:
    """The member's points still pending, by the time they become spendable, soonest first; at each time the
    purchases' own points first, then each bonus campaign's."""
    rows = (await s.execute(
        select(PendingPoints.available_at, PendingPoints.reason, sa.func.sum(PendingPoints.points))
        .where(PendingPoints.member_id == member_id, PendingPoints.status == "pending",
               col(PendingPoints.points) > 0)
        .group_by(col(PendingPoints.available_at), col(PendingPoints.reason))
        .order_by(col(PendingPoints.available_at), col(PendingPoints.reason) != PURCHASE_REASON,
                  col(PendingPoints.reason))
    )).all()
    return [PendingView(available_at=as_utc(at), points=int(points),
                        bonus=None if reason == PURCHASE_REASON else reason.removeprefix("bonus:"))
            for at, reason, points in rows]


class Pending(FollowsProgramme):
    """Clearing pending points into the ledger once their return window has passed."""

    def __init__(self, db: Db, programme: ProgrammeInForce, events: Events) -> None:
        self.db = db
        self._in_force = programme
        self.events = events

    async def clear_due(self, *, now: datetime | None = None, batch: int = 500) -> int:
        """Turn every pending row whose window has passed into an earn lot; returns the points cleared.

        Safe to run twice at once (two planners overlapping): each member's rows are re-read under the
        member's lock, and a row no longer `pending` is left alone."""
        now = as_utc(now or utcnow())
        total = 0
        while True:
            async with self.db.read() as s:
                ids: Sequence[int] = (await s.execute(
                    select(PendingPoints.member_id).join(Member, col(Member.id) == PendingPoints.member_id)
                    .where(PendingPoints.status == "pending", col(PendingPoints.available_at) <= now,
                           Member.status != "erased")  # erasure cancels them; never loop on one
                    .distinct().limit(batch))).scalars().all()
            if not ids:
                return total
            for member_id in ids:
                total += await self._clear_member(member_id, now)

    async def _clear_member(self, member_id: int, now: datetime) -> int:
        programme = self.programme
        change = None
        async with self.db.transaction() as tx:
            member = await lock_member(tx, member_id)
            rows = (await tx.execute(select(PendingPoints).where(
                PendingPoints.member_id == member_id, PendingPoints.status == "pending",
                col(PendingPoints.available_at) <= now,
            ).order_by(col(PendingPoints.id)).with_for_update().execution_options(populate_existing=True)
            )).scalars().all()
            cleared = 0
            told: set[int] = set()
            for row in rows:
                row.status, row.cleared_at = "cleared", now
                if row.points > 0:
                    purchase = await tx.get(Purchase, row.purchase_id)
                    assert purchase is not None
                    expires = row.lot_expires_at
                    extended = activity_extension(programme, member.last_purchase_at)
                    if extended is not None:
                        expires = max(as_utc(expires), extended)
                    if row.reason == PURCHASE_REASON:
                        entry = add_lot(tx, member, kind="earn", points=row.points, expires_at=expires, now=now,
                                        reference=purchase.external_id, purchase_id=row.purchase_id)
                    else:  # a bonus lot as the award gives one: its reference names the campaign
                        entry = add_lot(tx, member, kind="bonus", points=row.points, expires_at=expires, now=now,
                                        reference=row.reason, purchase_id=row.purchase_id,
                                        note=row.reason.removeprefix("bonus:"))
                    await tx.flush()
                    row.entry_id = entry.id
                    if row.purchase_id not in told:  # one notice tells the purchase's points and bonuses
                        await record_notice(tx, member_id, "points", f"points:purchase:{row.purchase_id}", now)
                        told.add(row.purchase_id)
                    cleared += row.points
                tx.add(row)
            tx.add(member)
            if rows and programme.pending.tier_spend_waits:
                spend = await qualifying_spend(tx, programme, member_id, now)
                change = tier_change(programme, member_id, member.tier, spend, scheduled=False)
                if change is not None:  # clearing, like a purchase, only raises a tier
                    await tx.flush()
                    await change_tier(tx, member_id, change.from_tier, change.to_tier, change.reason[:REASON_CHARS],
                                      now)
        await self.events.emit(change)
        return cleared

    async def pending_points(self, member_id: int) -> list[PendingView]:
        """What the member has pending, by when it becomes spendable."""
        async with self.db.read() as s:
            return await pending_of(s, member_id)


__all__ = ["PURCHASE_REASON", "Pending", "bonus_reason", "cancel_pending", "pending_of", "pending_until"]
