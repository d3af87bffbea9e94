"""The expiry policy's variants: when a lot expires, how a purchase extends lots, and the yearly carry-over.

`[expiry] mode` (loyalty/programme.py) chooses:

* rolling: a lot expires at the end of the month `months` after it was earned; a tier with
  `points_validity_months` (when the programme has that key) uses its own number of months;
* activity_extends: as rolling, and each purchase moves every open lot's expiry to at least the end of
  the month `extend_months` after the purchase (never earlier than it was);
* yearly_reset: every lot expires at the next reset day; the expiry job then carries `carry_over_pct`
  of what expired (rounded down) into a `carry` lot that lasts until the reset after, once per member and
  reset. Carried points are not carried again.

The carry is worked out from the `expire` entries of the lots that expired at the reset, whoever wrote
them (the job, a redemption or a refund that expired them first), so it is the same either way.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased
from sqlmodel import col, select

from loyalbot.loyalty.ledger import add_lot, expire_member_lots
from loyalbot.loyalty.members import lock_member
from loyalbot.loyalty.programme import FollowsProgramme, Programme, ProgrammeInForce
from loyalbot.storage import Db, as_utc, utcnow
from loyalbot.storage.models import LedgerEntry, Member

CARRY = "carry"  # the ledger kind of a yearly reset's carried points


def lot_expiry(programme: Programme, earned_at: datetime, *, tier: str | None = None) -> datetime:
    """When points earned at `earned_at` by a member of `tier` expire."""
    months = getattr(programme.tier(tier), "points_validity_months", None) if tier else None
    return programme.lot_expiry(earned_at, months=months)


def activity_extension(programme: Programme, purchase_at: datetime | None) -> datetime | None:
    """How long a purchase at `purchase_at` keeps every open lot alive (activity_extends), else None."""
    if programme.expiry.mode != "activity_extends" or purchase_at is None:
        return None
    return programme.lot_expiry(as_utc(purchase_at), months=programme.expiry.extend_months)


def last_reset(programme: Programme, now: datetime) -> datetime:
    """The latest yearly reset at or before `now`."""
    local = now.astimezone(programme.zone)
    month, day = (int(part) for part in programme.expiry.reset_month_day.split("-"))
    for year in (local.year, local.year - 1):
        reset = as_utc(datetime(year, month, day, tzinfo=programme.zone))
        if reset <= now:
            return reset
    raise AssertionError("unreachable: last year's reset is always in the past")


def _reference(reset: datetime) -> str:
    return f"carry:{reset:%Y-%m-%dT%H:%M}"


async def carry_over(tx: AsyncSession, programme: Programme, member: Member, reset: datetime, now: datetime
                     ) -> int | None:
    """Carry `carry_over_pct` of what the member's lots lost at `reset` into a lot until the next reset, in
    the caller's transaction (member locked). None: already carried for this reset."""
    assert member.id is not None
    reference = _reference(reset)
    done = (await tx.execute(select(LedgerEntry.id).where(
        LedgerEntry.member_id == member.id, LedgerEntry.kind == CARRY, LedgerEntry.reference == reference))).first()
    if done is not None:
        return None
    await expire_member_lots(tx, member, now)  # the reset's lots first, if nobody has expired them yet
    lot, expired = aliased(LedgerEntry), aliased(LedgerEntry)
    lost = (await tx.execute(
        select(sa.func.coalesce(-sa.func.sum(expired.delta), 0))
        .join(lot, expired.reference == sa.literal("lot:") + sa.cast(lot.id, sa.String))
        .where(expired.member_id == member.id, expired.kind == "expire", lot.member_id == member.id,
               lot.kind != CARRY, lot.expires_at == reset)
    )).scalar_one()
    carried = int(lost) * programme.expiry.carry_over_pct // 100
    # Written even when nothing is carried: the entry is what says this reset is done for the member.
    add_lot(tx, member, kind=CARRY, points=carried, expires_at=programme.next_reset(now), now=now,
            reference=reference, note=f"carried over {programme.expiry.carry_over_pct}%")
    tx.add(member)
    return carried


class ExpiryVariants(FollowsProgramme):
    """The yearly reset's carry-over, run by the expiry job after the due lots have expired."""

    def __init__(self, db: Db, programme: ProgrammeInForce) -> None:
        self.db = db
        self._in_force = programme

    async def carry_over_due(self, *, now: datetime | None = None, batch: int = 500) -> int:
        """Carry over, for every member whose lots expired at the latest reset and who has no carry for it yet;
        returns the points carried. Nothing under another mode. Safe to run twice at once (the carry entry,
        looked for under the member's lock, says a member is done)."""
        programme = self.programme
        if programme.expiry.mode != "yearly_reset":
            return 0
        now = as_utc(now or utcnow())
        reset = last_reset(programme, now)
        reference = _reference(reset)
        total, after = 0, 0
        while True:
            carry = aliased(LedgerEntry)
            carried = select(carry.id).where(carry.member_id == col(Member.id), carry.kind == CARRY,
                                             carry.reference == reference)
            async with self.db.read() as s:
                ids: Sequence[int] = (await s.execute(
                    select(LedgerEntry.member_id).join(Member, col(Member.id) == LedgerEntry.member_id)
                    .where(LedgerEntry.expires_at == reset, LedgerEntry.kind != CARRY, col(LedgerEntry.delta) > 0,
                           col(LedgerEntry.member_id) > after, Member.status != "erased", ~carried.exists())
                    .distinct().order_by(LedgerEntry.member_id).limit(batch))).scalars().all()
            if not ids:
                return total
            for member_id in ids:
                async with self.db.transaction() as tx:
                    member = await lock_member(tx, member_id)
                    total += await carry_over(tx, programme, member, reset, now) or 0
            after = ids[-1]


__all__ = ["CARRY", "ExpiryVariants", "activity_extension", "carry_over", "last_reset", "lot_expiry"]
