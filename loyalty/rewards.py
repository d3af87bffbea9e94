"""Rewards and coupons: the catalogue (mirrored from the programme in force), redeeming points, using coupons."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.engine import CursorResult
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from loyalbot.loyalty import errors
from loyalbot.loyalty.codes import check_key, new_coupon_code, normalise_coupon_code
from loyalbot.loyalty.events import CouponUsed, Events, record_notice
from loyalbot.loyalty.ledger import consume, expire_member_lots
from loyalbot.loyalty.members import Members, lock_member
from loyalbot.loyalty.programme import FollowsProgramme, Programme, ProgrammeInForce, RewardSpec
from loyalbot.loyalty.results import CatalogueItem, CouponView, RedeemResult
from loyalbot.loyalty.staff import StaffRoles
from loyalbot.storage import Db, as_utc, utcnow
from loyalbot.storage.inbox import effect_of, remember_effect
from loyalbot.storage.models import AuditLog, Coupon, LedgerEntry, Member, Reward
from loyalbot.storage.redeem_writers import PgRedeemWriter


def _on_offer(reward: Reward, now: datetime) -> bool:
    """Within the reward's dates (if it has any)."""
    return not ((reward.active_from and as_utc(reward.active_from) > now)
                or (reward.active_until and as_utc(reward.active_until) <= now))


def _coupon_refusal(coupon: Coupon, now: datetime) -> errors.Refusal | None:
    if coupon.status == "used":
        return errors.CouponAlreadyUsed(used_at=coupon.used_at)
    if coupon.status == "void":
        return errors.CouponVoid()
    if coupon.status == "expired" or as_utc(coupon.expires_at) <= now:
        return errors.CouponExpired(expired_at=coupon.expires_at)
    return None


async def _taken(s: AsyncSession, member_id: int) -> dict[int, int]:
    """How many of each reward the member holds or used (void coupons do not count)."""
    rows = (await s.execute(select(Coupon.reward_id, sa.func.count())
                            .where(Coupon.member_id == member_id, Coupon.status != "void")
                            .group_by(col(Coupon.reward_id)))).all()
    return {reward_id: int(n) for reward_id, n in rows}


async def _view(s: AsyncSession, coupon: Coupon) -> CouponView:
    """The coupon with its reward and member, as the counter shows it."""
    reward = await s.get(Reward, coupon.reward_id)
    member = await s.get(Member, coupon.member_id)
    assert reward is not None and member is not None
    return CouponView(coupon=coupon, reward=reward, member=member)


def _stock_after(spec: RewardSpec, before: RewardSpec | None, reward: Reward) -> int | None:
    """What the table's stock becomes: a new reward starts with the programme's stock; after that the store
    counts it down, and a programme change of the stock moves what is left by the same amount (a restock of
    50 adds 50 to what is left, so redemptions made meanwhile stay counted)."""
    if before is None or before.stock == spec.stock:
        return reward.stock
    if spec.stock is None or before.stock is None or reward.stock is None:
        return spec.stock
    return max(0, reward.stock + spec.stock - before.stock)


async def mirror_rewards(tx: AsyncSession, programme: Programme, previous: Programme | None) -> None:
    """Make the rewards table the programme's catalogue (by code, so coupons keep their reward), in the
    caller's transaction. A reward left out of the programme stays, inactive."""
    existing = {r.code: r for r in (await tx.execute(select(Reward).with_for_update()
                                                     .execution_options(populate_existing=True))).scalars()}
    before = {r.code: r for r in previous.rewards} if previous else {}
    for order, spec in enumerate(programme.rewards):
        reward = existing.pop(spec.code, None)
        if reward is None:
            reward = Reward(code=spec.code, cost=spec.cost, stock=spec.stock)
        else:
            reward.stock = _stock_after(spec, before.get(spec.code), reward)
        reward.titles, reward.descriptions = dict(spec.titles), dict(spec.descriptions)
        reward.cost, reward.per_member_limit = spec.cost, spec.per_member_limit
        reward.validity_days, reward.min_tier = spec.validity_days, spec.min_tier
        reward.active_from = as_utc(spec.active_from) if spec.active_from else None
        reward.active_until = as_utc(spec.active_until) if spec.active_until else None
        reward.active, reward.sort_order = spec.active, order
        tx.add(reward)
    for retired in existing.values():
        retired.active = False
        tx.add(retired)


class Rewards(FollowsProgramme):
    """The reward catalogue, redemptions and the coupons they issue."""

    def __init__(self, db: Db, programme: ProgrammeInForce, events: Events, members: Members, staff: StaffRoles) -> None:
        self.db = db
        self._in_force = programme
        self.events = events
        self.members = members
        self.staff = staff
        # PostgreSQL redeems through storage/redeem_writers.py; off, it takes the portable (ORM) path, which
        # tests compare it with.
        self.fast_path = True

    async def set_reward_stock(self, reward_id: int, stock: int | None) -> None:
        if stock is not None and stock < 0:
            raise errors.InvalidSetting("stock cannot be negative", setting="stock")
        async with self.db.transaction() as tx:
            reward = await tx.get(Reward, reward_id)
            if reward is None:
                raise errors.UnknownReward()
            reward.stock = stock
            tx.add(reward)

    def _reward_refusal(self, reward: Reward, tier: str, balance: int, taken: int, now: datetime
                        ) -> errors.Refusal | None:
        """Why a member of `tier` with `balance` points, holding `taken` of `reward`, cannot have it (in this
        order), or None. The one list of refusals: the catalogue and both redemption paths use it."""
        if not reward.active or not _on_offer(reward, now):
            return errors.RewardUnavailable()
        if reward.min_tier and self.programme.tier_rank(tier) < self.programme.tier_rank(reward.min_tier):
            return errors.TierTooLow(tier=reward.min_tier)
        if reward.per_member_limit is not None and taken >= reward.per_member_limit:
            return errors.LimitReached(limit=reward.per_member_limit)
        if reward.stock is not None and reward.stock <= 0:
            return errors.OutOfStock()
        if balance < reward.cost:
            return errors.NotEnoughPoints(balance=balance, cost=reward.cost, short=reward.cost - balance)
        return None

    async def catalogue(self, member_id: int, *, now: datetime | None = None) -> list[CatalogueItem]:
        """The rewards on offer now, each marked with whether this member can take it and why not."""
        now = as_utc(now or utcnow())
        member = await self.members.member(member_id)
        async with self.db.read() as s:
            rewards: Sequence[Reward] = (await s.execute(
                select(Reward).where(col(Reward.active).is_(True))
                .order_by(col(Reward.sort_order), col(Reward.id)))).scalars().all()
            taken = await _taken(s, member_id)
        items = []
        for reward in rewards:
            if not _on_offer(reward, now):
                continue
            refusal = self._reward_refusal(reward, member.tier, member.balance, taken.get(reward.id or 0, 0), now)
            items.append(CatalogueItem(reward=reward, available=refusal is None,
                                       reason=refusal.code if refusal else None, taken=taken.get(reward.id or 0, 0)))
        return items

    async def reward(self, reward_id: int) -> Reward:
        async with self.db.read() as s:
            reward = await s.get(Reward, reward_id)
        if reward is None:
            raise errors.UnknownReward()
        return reward

    async def redeem_reward(self, member_id: int, reward_id: int, *, request_id: str,
                            now: datetime | None = None, update_key: str | None = None) -> RedeemResult:
        """Spend points on a reward and issue its coupon. Repeating `request_id` returns the same coupon
        (`repeated`), except to the update that issued it (`update_key`), handled again after a crash."""
        now = as_utc(now or utcnow())
        request_id = check_key(request_id, "request_id")
        if self.db.is_postgres and self.fast_path:
            return await self._redeem_pg(member_id, reward_id, request_id, now, update_key)
        return await self._redeem_portable(member_id, reward_id, request_id, now, update_key)

    async def _redeem_pg(self, member_id: int, reward_id: int, request_id: str, now: datetime,
                         update_key: str | None) -> RedeemResult:
        """redeem_reward on PostgreSQL: five round trips on asyncpg (BEGIN, lock, look, write, COMMIT), the
        same decisions in the same order as `_redeem_portable` (storage/redeem_writers.py says why it is safe)."""
        effect_key = f"redeem:{update_key}" if update_key else None
        async with self.db.driver_transaction() as conn:
            writer = PgRedeemWriter(conn)
            locked = await writer.lock(member_id)
            if locked is None:
                raise errors.UnknownMember()
            if locked.status == "erased":
                raise errors.MemberErased()
            look = await writer.look(member_id, reward_id, request_id, now, effect_key)
            if look.coupon is not None:
                done = Coupon(**look.coupon)
                if done.member_id != member_id or done.reward_id != reward_id:
                    raise errors.PurchaseConflict("this request id was already used for another redemption")
                assert look.reward is not None  # the coupon's own reward: coupons keep theirs
                return RedeemResult(coupon=done, reward=Reward(**look.reward), repeated=not look.effect_seen)
            if look.reward is None:
                raise errors.UnknownReward()
            reward = Reward(**look.reward)
            balance = locked.balance - look.due  # after the expiry the write begins with
            refusal = self._reward_refusal(reward, locked.tier, balance, look.taken, now)
            if refusal is not None:
                raise refusal
            coupon = Coupon(code=new_coupon_code(), request_id=request_id, reward_id=reward_id, member_id=member_id,
                            points_spent=reward.cost, issued_at=now,
                            expires_at=now + timedelta(days=reward.validity_days))
            written = await writer.write(
                member_id=member_id, reward_id=reward_id, reward_code=reward.code, cost=reward.cost,
                code=coupon.code, request_id=request_id, now=now, expires_at=coupon.expires_at,
                effect_key=effect_key, effect={"request": request_id} if effect_key else None)
            if reward.stock is not None and not written.took_stock:
                raise errors.OutOfStock()  # a concurrent redemption took the last one; this one is rolled back
            coupon.id, reward.stock = written.coupon_id, written.stock if written.took_stock else reward.stock
            return RedeemResult(coupon=coupon, reward=reward, repeated=False)

    async def _redeem_portable(self, member_id: int, reward_id: int, request_id: str, now: datetime,
                               update_key: str | None) -> RedeemResult:
        """redeem_reward through the ORM: SQLite's path (and PostgreSQL's with `fast_path` off)."""
        async with self.db.transaction() as tx:
            member = await lock_member(tx, member_id)
            done = (await tx.execute(select(Coupon).where(Coupon.request_id == request_id))).scalar_one_or_none()
            if done is not None:
                if done.member_id != member_id or done.reward_id != reward_id:
                    raise errors.PurchaseConflict("this request id was already used for another redemption")
                first = await tx.get(Reward, done.reward_id)
                assert first is not None
                ours = bool(update_key) and await effect_of(tx, f"redeem:{update_key}") is not None
                return RedeemResult(coupon=done, reward=first, repeated=not ours)
            reward = (await tx.execute(select(Reward).where(Reward.id == reward_id).with_for_update()
                                       .execution_options(populate_existing=True))).scalar_one_or_none()
            if reward is None:
                raise errors.UnknownReward()
            await expire_member_lots(tx, member, now)
            taken = (await _taken(tx, member_id)).get(reward_id, 0)
            refusal = self._reward_refusal(reward, member.tier, member.balance, taken, now)
            if refusal is not None:
                raise refusal
            await consume(tx, member, reward.cost)
            member.balance -= reward.cost
            if reward.stock is not None:
                reward.stock -= 1
            coupon = Coupon(code=new_coupon_code(), request_id=request_id, reward_id=reward_id, member_id=member_id,
                            points_spent=reward.cost, issued_at=now,
                            expires_at=now + timedelta(days=reward.validity_days))
            tx.add_all([member, reward, coupon])
            tx.add(LedgerEntry(member_id=member_id, kind="redeem", delta=-reward.cost, reference=coupon.code,
                               note=reward.code, created_at=now))
            member.last_activity_at = now
            if update_key:
                await remember_effect(tx, f"redeem:{update_key}", {"request": request_id}, now=now)
            return RedeemResult(coupon=coupon, reward=reward, repeated=False)

    async def coupons_of(self, member_id: int, *, status: str | None = "active", now: datetime | None = None
                         ) -> list[tuple[Coupon, Reward]]:
        """The member's coupons (active by default; None for all), newest first, with their rewards."""
        now = as_utc(now or utcnow())
        query = (select(Coupon, Reward).join(Reward, col(Reward.id) == col(Coupon.reward_id))
                 .where(Coupon.member_id == member_id).order_by(col(Coupon.issued_at).desc(), col(Coupon.id).desc()))
        if status == "active":
            query = query.where(Coupon.status == "active", col(Coupon.expires_at) > now)
        elif status == "inactive":
            query = query.where(sa.or_(col(Coupon.status) != "active", col(Coupon.expires_at) <= now))
        async with self.db.read() as s:
            return [(c, r) for c, r in (await s.execute(query)).all()]

    async def coupon_for_counter(self, code: str, *, staff_id: int, now: datetime | None = None) -> CouponView:
        """What staff see before marking a coupon used; refuses exactly as `use_coupon` would."""
        now = as_utc(now or utcnow())
        await self.staff.require_staff(staff_id)
        canonical = normalise_coupon_code(code or "")
        if canonical is None:
            raise errors.UnknownCoupon()
        async with self.db.read() as s:
            row = (await s.execute(select(Coupon, Reward, Member)
                                   .join(Reward, col(Reward.id) == col(Coupon.reward_id))
                                   .join(Member, col(Member.id) == col(Coupon.member_id))
                                   .where(Coupon.code == canonical))).first()
        if row is None:
            raise errors.UnknownCoupon()
        coupon, reward, member = row
        refusal = _coupon_refusal(coupon, now)
        if refusal is not None:
            raise refusal
        return CouponView(coupon=coupon, reward=reward, member=member)

    async def use_coupon(self, code: str, *, staff_id: int, now: datetime | None = None,
                         update_key: str | None = None) -> CouponView:
        """Mark a coupon used at the counter, exactly once. Unknown, expired, used and void are refused;
        but the update that used it (`update_key`), handled again after a crash, gets its first answer."""
        now = as_utc(now or utcnow())
        await self.staff.require_staff(staff_id)
        canonical = normalise_coupon_code(code or "")
        if canonical is None:
            raise errors.UnknownCoupon()
        async with self.db.transaction() as tx:
            coupon = (await tx.execute(select(Coupon).where(Coupon.code == canonical).with_for_update()
                                       .execution_options(populate_existing=True))).scalar_one_or_none()
            if coupon is None:
                raise errors.UnknownCoupon()
            if update_key and await effect_of(tx, f"coupon_use:{update_key}") is not None:
                return await _view(tx, coupon)  # told once already (and listeners with it)
            refusal = _coupon_refusal(coupon, now)
            if refusal is not None:
                raise refusal
            coupon.status, coupon.used_at, coupon.used_by = "used", now, staff_id
            if update_key:
                await remember_effect(tx, f"coupon_use:{update_key}", {"coupon": coupon.id}, now=now)
            tx.add(coupon)
            tx.add(AuditLog(actor=f"staff:{staff_id}", action="use_coupon", member_id=coupon.member_id,
                            details={"coupon": coupon.code}, created_at=now))
            await record_notice(tx, coupon.member_id, "coupon_used", f"coupon_used:{coupon.id}", now)
            view = await _view(tx, coupon)
        await self.events.emit(CouponUsed(member_id=coupon.member_id, coupon_id=coupon.id or 0, staff_id=staff_id))
        return view

    async def void_coupon(self, coupon_id: int, *, actor: str, member_id: int | None = None,
                          now: datetime | None = None) -> tuple[Coupon, bool]:
        """Void an active coupon (an operator's decision, audited with `actor`); returns it and whether it was
        void already (a repeat changes nothing). Used and expired coupons are refused; with `member_id`, a
        coupon of another member is unknown. The points spent on it are not given back (adjust them if due)."""
        now = as_utc(now or utcnow())
        async with self.db.transaction() as tx:
            coupon = (await tx.execute(select(Coupon).where(Coupon.id == coupon_id).with_for_update()
                                       .execution_options(populate_existing=True))).scalar_one_or_none()
            if coupon is None or (member_id is not None and coupon.member_id != member_id):
                raise errors.UnknownCoupon()
            if coupon.status == "void":
                return coupon, True
            refusal = _coupon_refusal(coupon, now)
            if refusal is not None:
                raise refusal
            coupon.status = "void"
            tx.add(coupon)
            tx.add(AuditLog(actor=actor[:64], action="void_coupon", member_id=coupon.member_id,
                            details={"coupon": coupon.code}, created_at=now))
            return coupon, False

    async def expire_coupons(self, *, now: datetime | None = None) -> int:
        """Mark every active coupon past its expiry as expired; returns how many."""
        now = as_utc(now or utcnow())
        async with self.db.transaction() as tx:
            result = await tx.execute(sa.update(Coupon).where(col(Coupon.status) == "active",
                                                              col(Coupon.expires_at) <= now).values(status="expired"))
            return int(cast("CursorResult[Any]", result).rowcount or 0)


__all__ = ["Rewards", "mirror_rewards"]
