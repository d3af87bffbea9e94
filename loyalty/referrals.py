"""Referrals: a member's link brings a newcomer; both are rewarded once the newcomer's first purchase has cleared.

* Every member has one code (`code_for`): 12 random url-safe characters after an `r`, made on first use
  and kept, so the link (t.me/<bot>?start=<code>, a deep-link payload of at most 64 characters of
  [A-Za-z0-9_-]) never changes and cannot be guessed from the member's number or id.
* `link` ties a newcomer to the code's owner: only a member who has just joined (within
  `NEWCOMER_WINDOW`, no purchase yet), never to themselves, once (a unique newcomer per referral).
* `settle_due` (the clearing job, after pending points are cleared) looks at every open referral: once the
  newcomer's first purchase of at least `min_purchase` is past its return window (its pending points
  cleared), both get their points (ledger kind `referral`) and the referrer any milestone they reached;
  if that purchase was refunded below `min_purchase` the referral is void and earns nothing, ever.
  Both members are locked (lower id first) and the referral re-read under the locks: two clearing
  runs at once reward once.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from loyalbot.loyalty import errors
from loyalbot.loyalty.codes import new_coupon_code
from loyalbot.loyalty.events import record_notice
from loyalbot.loyalty.ledger import add_lot
from loyalbot.loyalty.members import lock_member
from loyalbot.loyalty.pending import PURCHASE_REASON
from loyalbot.loyalty.programme import FollowsProgramme, ProgrammeInForce
from loyalbot.loyalty.results import ReferralStats
from loyalbot.storage import Db, as_utc, utcnow
from loyalbot.storage.models import (
    Coupon,
    LedgerEntry,
    Member,
    PendingPoints,
    Purchase,
    Referral,
    ReferralCode,
    Reward,
)

CODE_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")  # what Telegram carries in a /start payload
NEWCOMER_WINDOW = timedelta(hours=24)  # a member who joined longer ago is no newcomer
KIND = "referral"


def looks_like_code(text: str) -> bool:
    """Whether a /start payload can be a referral code at all (the shape our codes have)."""
    return bool(CODE_PATTERN.match(text)) and text.startswith("r")


class Referrals(FollowsProgramme):
    """Referral codes, links between members and the rewards once a friend has bought."""

    def __init__(self, db: Db, programme: ProgrammeInForce) -> None:
        self.db = db
        self._in_force = programme

    async def code_for(self, member_id: int, *, now: datetime | None = None) -> str:
        """The member's referral code, made on the first call and the same ever after."""
        async with self.db.read() as s:
            found = await s.get(ReferralCode, member_id)
        if found is not None:
            return found.code
        now = as_utc(now or utcnow())
        try:
            async with self.db.transaction() as tx:
                await lock_member(tx, member_id)
                found = await tx.get(ReferralCode, member_id)
                if found is not None:
                    return found.code
                code = "r" + secrets.token_urlsafe(9)  # 72 random bits, 13 characters in all
                tx.add(ReferralCode(member_id=member_id, code=code, created_at=now))
            return code
        except IntegrityError:  # the same random code twice: vanishingly rare, so one more try
            return await self.code_for(member_id, now=now)

    async def link(self, newcomer_id: int, code: str, *, now: datetime | None = None) -> Referral:
        """Tie a newcomer to the member whose code they came with. Refused: an unknown or malformed code
        (UnknownReferralCode), one's own (SelfReferral), a member who is no newcomer (NotANewcomer), a
        second link (AlreadyReferred), referrals switched off (ReferralsClosed)."""
        now = as_utc(now or utcnow())
        if not self.programme.referrals.enabled:
            raise errors.ReferralsClosed()
        if not isinstance(code, str) or not CODE_PATTERN.match(code):
            raise errors.UnknownReferralCode()
        try:
            async with self.db.transaction() as tx:
                newcomer = await lock_member(tx, newcomer_id)
                owner = (await tx.execute(select(ReferralCode).where(ReferralCode.code == code))
                         ).scalar_one_or_none()
                if owner is None:
                    raise errors.UnknownReferralCode()
                if owner.member_id == newcomer_id:
                    raise errors.SelfReferral()
                if (await tx.execute(select(Referral.id).where(Referral.newcomer_id == newcomer_id))).first():
                    raise errors.AlreadyReferred()
                bought = (await tx.execute(select(Purchase.id).where(Purchase.member_id == newcomer_id).limit(1)
                                           )).first()
                if bought is not None or as_utc(newcomer.joined_at) < now - NEWCOMER_WINDOW:
                    raise errors.NotANewcomer()
                referral = Referral(referrer_id=owner.member_id, newcomer_id=newcomer_id, status="joined",
                                    created_at=now)
                tx.add(referral)
            return referral
        except IntegrityError:  # the same newcomer linked by two updates at once: the other one won
            raise errors.AlreadyReferred() from None

    async def stats(self, member_id: int) -> ReferralStats:
        """The member's code, how many friends joined through it and how many of them bought (rewarded)."""
        code = await self.code_for(member_id)
        async with self.db.read() as s:
            rows = dict((await s.execute(
                select(Referral.status, sa.func.count()).where(Referral.referrer_id == member_id)
                .group_by(col(Referral.status)))).all())
        rewarded = int(rows.get("rewarded", 0))
        ahead = sorted(m.friends for m in self.programme.referrals.milestones if m.friends > rewarded)
        return ReferralStats(code=code, joined=sum(int(n) for n in rows.values()), rewarded=rewarded,
                             next_milestone=ahead[0] if ahead else None)

    async def settle_due(self, *, now: datetime | None = None, batch: int = 500) -> int:
        """Reward (or void) every open referral whose newcomer's first qualifying purchase is settled; returns
        how many referrals were rewarded."""
        now = as_utc(now or utcnow())
        rewarded, after = 0, 0
        least = self.programme.referrals.min_purchase
        while True:
            async with self.db.read() as s:
                found: Sequence[Any] = (await s.execute(
                    select(Referral.id, Referral.referrer_id, Referral.newcomer_id)
                    .where(Referral.status == "joined", col(Referral.id) > after)
                    .where(sa.exists().where(Purchase.member_id == Referral.newcomer_id,
                                             col(Purchase.amount) >= least))
                    .order_by(col(Referral.id)).limit(batch))).all()
            if not found:
                return rewarded
            for referral_id, referrer_id, newcomer_id in found:
                rewarded += await self._settle(referral_id, referrer_id, newcomer_id, now)
            after = found[-1][0]

    async def _settle(self, referral_id: int, referrer_id: int, newcomer_id: int, now: datetime) -> int:
        programme = self.programme
        rules = programme.referrals
        async with self.db.transaction() as tx:
            members: dict[int, Member | None] = {}
            for member_id in sorted((referrer_id, newcomer_id)):  # one order everywhere: no deadlock
                try:
                    members[member_id] = await lock_member(tx, member_id)
                except (errors.UnknownMember, errors.MemberErased):
                    members[member_id] = None
            referral = (await tx.execute(select(Referral).where(Referral.id == referral_id).with_for_update()
                                         .execution_options(populate_existing=True))).scalar_one()
            if referral.status != "joined":
                return 0  # another run settled it first
            purchase = (await tx.execute(
                select(Purchase).where(Purchase.member_id == newcomer_id, col(Purchase.amount) >= rules.min_purchase)
                .order_by(col(Purchase.occurred_at), col(Purchase.id)).limit(1))).scalar_one_or_none()
            if purchase is None:
                return 0
            referrer, newcomer = members[referrer_id], members[newcomer_id]
            kept = Decimal(purchase.amount) - Decimal(purchase.refunded_amount)
            if kept < rules.min_purchase or referrer is None or newcomer is None:
                referral.status, referral.purchase_id, referral.settled_at = "void", purchase.id, now
                tx.add(referral)
                return 0
            if not await _cleared(tx, purchase, programme.pending.return_window_days, now):
                return 0
            referral.status, referral.purchase_id, referral.settled_at = "rewarded", purchase.id, now
            tx.add(referral)
            reference = f"referral:{referral_id}"
            for member, points in ((referrer, rules.referrer_points), (newcomer, rules.friend_points)):
                if points > 0:
                    await _give(tx, member, points, reference, programme.lot_expiry(now), now)
            await tx.flush()
            await self._milestones(tx, referrer, now)
            return 1

    async def _milestones(self, tx: AsyncSession, referrer: Member, now: datetime) -> None:
        """Give the referrer each milestone their rewarded referrals reach, once each."""
        assert referrer.id is not None
        count = (await tx.execute(select(sa.func.count()).select_from(Referral).where(
            Referral.referrer_id == referrer.id, Referral.status == "rewarded"))).scalar_one()
        for milestone in self.programme.referrals.milestones:
            if milestone.friends > count:
                continue
            reference = f"referral-milestone:{referrer.id}:{milestone.friends}"
            if milestone.points is not None:
                if not (await tx.execute(select(LedgerEntry.id).where(
                        LedgerEntry.member_id == referrer.id, LedgerEntry.kind == KIND,
                        LedgerEntry.reference == reference))).first():
                    await _give(tx, referrer, milestone.points, reference, self.programme.lot_expiry(now), now)
            elif not (await tx.execute(select(Coupon.id).where(Coupon.request_id == reference))).first():
                reward = (await tx.execute(select(Reward).where(Reward.code == milestone.reward))).scalar_one_or_none()
                if reward is not None and reward.id is not None:
                    tx.add(Coupon(code=new_coupon_code(), request_id=reference, reward_id=reward.id,
                                  member_id=referrer.id, points_spent=0, issued_at=now,
                                  expires_at=now + timedelta(days=reward.validity_days)))

    async def referral_counts(self) -> tuple[int, int]:
        """(friends who joined through a link, of them rewarded after their first purchase): the dashboard's."""
        async with self.db.read() as s:
            rows = dict((await s.execute(select(Referral.status, sa.func.count())
                                         .group_by(col(Referral.status)))).all())
        return sum(int(n) for n in rows.values()), int(rows.get("rewarded", 0))


async def _cleared(tx: AsyncSession, purchase: Purchase, window_days: int, now: datetime) -> bool:
    """Whether the purchase is past its return window: its own pending points cleared (its bonuses wait beside
    them, loyalty/pending.py), or (none pending) its days."""
    status = (await tx.execute(select(PendingPoints.status).where(PendingPoints.purchase_id == purchase.id,
                                                                  PendingPoints.reason == PURCHASE_REASON))
              ).scalar_one_or_none()
    if status is not None:
        return status == "cleared"
    return as_utc(purchase.occurred_at) + timedelta(days=window_days) <= now


async def _give(tx: AsyncSession, member: Member, points: int, reference: str, expires_at: datetime,
                now: datetime) -> None:
    """Referral points as a lot of their own kind, and the notice that tells the member (no note: the notice
    would show it untranslated)."""
    entry = add_lot(tx, member, kind=KIND, points=points, expires_at=expires_at, now=now, reference=reference)
    tx.add(member)
    await tx.flush()
    assert member.id is not None
    await record_notice(tx, member.id, "points", f"points:ledger:{entry.id}", now)


__all__ = ["CODE_PATTERN", "NEWCOMER_WINDOW", "Referrals", "looks_like_code"]
