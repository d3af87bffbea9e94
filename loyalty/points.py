"""Points after they are earned: refunds, adjustments by hand, bonuses, expiry, and what a member holds.

Points are an append-only ledger. A positive entry (earn, bonus, positive adjust) is also a *lot* with
`remaining` and `expires_at`; a debit (redeem, refund, negative adjust, expire) consumes the lots that
expire first (loyalty/ledger.py). Purchases earn points in loyalty/award.py.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlmodel import col, select

from loyalbot.loyalty import errors
from loyalbot.loyalty.amounts import parse_amount
from loyalbot.loyalty.bonuses import thresholds_lost
from loyalbot.loyalty.codes import check_key
from loyalbot.loyalty.events import record_notice
from loyalbot.loyalty.ledger import add_lot, consume, expire_member_lots, lots_due, points_to_expire
from loyalbot.loyalty.members import Members, lock_member
from loyalbot.loyalty.pending import PURCHASE_REASON, bonus_reason, cancel_pending, pending_of
from loyalbot.loyalty.programme import FollowsProgramme, ProgrammeInForce
from loyalbot.loyalty.results import CounterUndo, ExpiringPoints, PointsSummary, RefundResult
from loyalbot.loyalty.staff import StaffRoles
from loyalbot.loyalty.stamps import take_back_stamps
from loyalbot.storage import Db, as_utc, utcnow
from loyalbot.storage.inbox import effect_of, remember_effect
from loyalbot.storage.models import AuditLog, BonusGrant, LedgerEntry, Member, Purchase, Refund

MAX_ADJUSTMENT = 10_000_000


def _repeated(refund: Refund, *, ours: bool = False) -> RefundResult:
    """The first result of a refund asked for again: `repeated`, unless `ours` (its own update, handled again)."""
    return RefundResult(refund=refund, points_taken=refund.points_taken, shortfall=refund.shortfall,
                        repeated=not ours, pending_cancelled=refund.pending_cancelled)


class Points(FollowsProgramme):
    """Refunds, adjustments, bonuses and expiry on the ledger, and the member's view of it."""

    def __init__(self, db: Db, programme: ProgrammeInForce, members: Members, staff: StaffRoles) -> None:
        self.db = db
        self._in_force = programme
        self.members = members
        self.staff = staff

    async def refund_purchase(
        self, purchase_external_id: str, *, refund_id: str, amount: Any, now: datetime | None = None,
        actor: str | None = None, update_key: str | None = None,
    ) -> RefundResult:
        """Take back the points of a refunded part of a purchase: first those of it still pending, then from the
        balance, never below zero (what the balance cannot cover is recorded as the shortfall, not owed later).
        With them go the stamps it added (loyalty/stamps.py: a completed card's unused coupon is voided, a
        used one leaves the card in debt) and a threshold bonus its period's spend no longer reaches.
        With `actor` (e.g. "staff:42" undoing an /award) the refund is audited in the same transaction; with
        `update_key` (the Telegram update that asked) that update, handled again, gets its first answer."""
        now = as_utc(now or utcnow())
        purchase_external_id = check_key(purchase_external_id, "external_id")
        refund_id = check_key(refund_id, "refund_id")
        amount = parse_amount(amount)
        async with self.db.read() as s:
            found = (await s.execute(
                select(Purchase).where(Purchase.external_id == purchase_external_id))).scalar_one_or_none()
        if found is None:
            raise errors.UnknownPurchase()
        async with self.db.transaction() as tx:
            member = await lock_member(tx, found.member_id)
            done = (await tx.execute(select(Refund).where(Refund.external_id == refund_id))).scalar_one_or_none()
            if done is not None:
                if done.purchase_id != found.id or Decimal(done.amount) != amount:
                    raise errors.PurchaseConflict("this refund id was already used for a different refund")
                return _repeated(done, ours=bool(update_key)
                                 and await effect_of(tx, f"refund:{update_key}") is not None)
            purchase = await tx.get(Purchase, found.id, populate_existing=True)
            assert purchase is not None
            left = Decimal(purchase.amount) - Decimal(purchase.refunded_amount)
            if amount > left:
                raise errors.RefundTooLarge(f"only {left} of this purchase is left to refund", left=str(left))
            # The purchase's own bonuses (a multiplier, a member day: loyalty/bonuses.py) go back with it, so a
            # refund never keeps double points.
            own = (await tx.execute(select(BonusGrant.bonus_code, BonusGrant.points).where(
                BonusGrant.purchase_id == purchase.id, BonusGrant.period == f"purchase:{purchase.id}"))).all()
            earned = purchase.points_awarded + sum(points for _, points in own)
            if amount == left:
                owed = earned - purchase.points_refunded
            else:
                owed = math.floor(earned * amount / Decimal(purchase.amount))
            assert member.id is not None and purchase.id is not None
            # Points still inside the return window go first (its own, then its bonuses); only the rest comes
            # off the balance.
            reasons = [PURCHASE_REASON, *(bonus_reason(code) for code, _ in own)]
            cancelled = await cancel_pending(tx, purchase.id, owed, reasons=reasons)
            from_balance = owed - cancelled
            purchase.refunded_amount = Decimal(purchase.refunded_amount) + amount
            tx.add(purchase)
            await tx.flush()
            # What else the purchase earned: the stamps it added, and a spend threshold it no longer reaches.
            stamps = await take_back_stamps(tx, self.programme, purchase, refund_id=refund_id, now=now)
            lost = await thresholds_lost(tx, self.programme, member.id, as_utc(purchase.occurred_at),
                                         refund_id=refund_id)
            for bonus, earned_by in lost:
                waiting = 0 if earned_by is None else await cancel_pending(
                    tx, earned_by, bonus.points, reasons=[bonus_reason(bonus.code)])
                cancelled += waiting
                from_balance += bonus.points - waiting
            await expire_member_lots(tx, member, now)
            taken = await consume(tx, member, min(from_balance, member.balance), prefer_purchase=purchase.id)
            shortfall = from_balance - taken
            if taken:
                tx.add(LedgerEntry(member_id=member.id, kind="refund", delta=-taken, reference=refund_id,
                                   purchase_id=purchase.id, created_at=now,
                                   note=f"shortfall {shortfall}" if shortfall else None))
                member.balance -= taken
            purchase.points_refunded += owed
            purchase.refund_shortfall += shortfall
            refund = Refund(external_id=refund_id, purchase_id=purchase.id, amount=amount, points_taken=taken,
                            shortfall=shortfall, pending_cancelled=cancelled, created_at=now)
            tx.add_all([purchase, member, refund])
            if update_key:
                await remember_effect(tx, f"refund:{update_key}", {"refund": refund_id}, now=now)
            if actor is not None:
                tx.add(AuditLog(actor=actor[:64], action="refund_purchase", member_id=member.id, created_at=now,
                                details={"purchase_id": purchase.id, "refund_id": refund_id, "amount": str(amount),
                                         "points_taken": taken, "shortfall": shortfall,
                                         "pending_cancelled": cancelled}))
            return RefundResult(refund=refund, points_taken=taken, shortfall=shortfall, repeated=False,
                                pending_cancelled=cancelled, stamps=tuple(stamps),
                                bonuses=tuple(bonus for bonus, _ in lost))

    async def undo_counter_purchase(self, purchase_id: int, *, staff_id: int, now: datetime | None = None,
                                    update_key: str | None = None) -> CounterUndo:
        """Undo a purchase recorded at the counter by mistake: a full refund of it, audited with the staff member.

        Only within `counter.undo_minutes` of recording it, only by whoever recorded it (or an operator or
        admin), only while nothing of it was refunded otherwise. A repeat (a double tap) changes nothing."""
        now = as_utc(now or utcnow())
        role = await self.staff.require_staff(staff_id)
        async with self.db.read() as s:
            purchase = await s.get(Purchase, purchase_id)
        if purchase is None:
            raise errors.UnknownPurchase()
        refund_id = f"counter-undo:{purchase.id}"
        async with self.db.read() as s:
            done = (await s.execute(select(Refund).where(Refund.external_id == refund_id))).scalar_one_or_none()
            ours = bool(update_key) and await effect_of(s, f"refund:{update_key}") is not None
        if done is not None:  # a double tap; or this update handled again (`ours`): its first answer
            return CounterUndo(purchase=purchase, refund=_repeated(done, ours=ours),
                               member=await self.members.member(purchase.member_id))
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
        return CounterUndo(purchase=purchase, refund=result, member=await self.members.member(purchase.member_id))

    async def adjust_points(self, member_id: int, points: Any, *, reason: str, actor: str,
                            now: datetime | None = None) -> LedgerEntry:
        """Add or take points by hand (staff or operator). A reason is required and the change is audited."""
        now = as_utc(now or utcnow())
        if not isinstance(points, int) or isinstance(points, bool) or points == 0 or abs(points) > MAX_ADJUSTMENT:
            raise errors.InvalidAdjustment()
        reason = (reason or "").strip()
        if not reason:
            raise errors.ReasonRequired()
        async with self.db.transaction() as tx:
            member = await lock_member(tx, member_id)
            if points > 0:
                entry = add_lot(tx, member, kind="adjust", points=points, now=now,
                                expires_at=self.programme.lot_expiry(now), note=reason[:500], reference=actor[:128])
                await tx.flush()
                await record_notice(tx, member_id, "points", f"points:ledger:{entry.id}", now)
            else:
                await expire_member_lots(tx, member, now)
                if member.balance < -points:
                    raise errors.NotEnoughPoints(balance=member.balance, cost=-points)
                await consume(tx, member, -points)
                entry = LedgerEntry(member_id=member_id, kind="adjust", delta=points, note=reason[:500],
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
            member = await lock_member(tx, member_id)
            done = await tx.execute(select(LedgerEntry.id).where(
                LedgerEntry.member_id == member_id, LedgerEntry.kind == "bonus", LedgerEntry.reference == reference))
            if done.first() is not None:
                return None
            entry = add_lot(tx, member, kind="bonus", points=points, now=now, reference=reference,
                            expires_at=as_utc(expires_at) if expires_at else self.programme.lot_expiry(now),
                            note=note[:500])
            tx.add(member)
            if tell:
                await tx.flush()
                await record_notice(tx, member_id, "points", f"points:ledger:{entry.id}", now)
            return entry

    async def expire_points(self, *, now: datetime | None = None, batch: int = 500) -> int:
        """Expire what is left of every lot whose expiry has passed; returns the points expired."""
        now = as_utc(now or utcnow())
        total = 0
        while True:
            async with self.db.read() as s:
                ids: Sequence[int] = (await s.execute(
                    select(LedgerEntry.member_id).where(*lots_due(now)).distinct().limit(batch)
                )).scalars().all()
            if not ids:
                return total
            for member_id in ids:
                async with self.db.transaction() as tx:
                    member = await lock_member(tx, member_id)
                    total += await expire_member_lots(tx, member, now)
                    tx.add(member)

    async def points_expiring(self, member_id: int, *, within_days: int | None = None,
                              now: datetime | None = None) -> list[ExpiringPoints]:
        """What will expire (within `within_days`, or ever), grouped by expiry time, soonest first."""
        now = as_utc(now or utcnow())
        async with self.db.read() as s:
            return await points_to_expire(s, member_id, now, within_days)

    async def points_summary(self, member_id: int, *, now: datetime | None = None, recent: int = 10
                             ) -> PointsSummary:
        """Balance, what expires when, what is still pending until when, and the latest ledger entries (one read session; its statements each
        see the latest commit, as every read does)."""
        now = as_utc(now or utcnow())
        async with self.db.read() as s:
            member = (await s.execute(sa.select(col(Member.balance), col(Member.status))
                                      .where(col(Member.id) == member_id))).first()
            if member is None:
                raise errors.UnknownMember()
            if member.status == "erased":
                raise errors.MemberErased()
            expiring = await points_to_expire(s, member_id, now)
            pending = await pending_of(s, member_id)
            entries = (await s.execute(
                select(LedgerEntry).where(LedgerEntry.member_id == member_id)
                .order_by(col(LedgerEntry.created_at).desc(), col(LedgerEntry.id).desc()).limit(recent)
            )).scalars().all()
        return PointsSummary(balance=member.balance, expiring=expiring, recent=list(entries), pending=pending)


__all__ = ["MAX_ADJUSTMENT", "Points"]
