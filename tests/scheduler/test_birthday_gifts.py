"""The birthday schedule gives each member their tier's gift coupon once a year, and the message names it."""

from __future__ import annotations

from datetime import date

import sqlalchemy as sa

from loyalbot.scheduler.planner import Planner
from loyalbot.storage.models import Coupon, Member, Reward, Schedule
from tests.scheduler.conftest import add_member, at, outbox_rows

JOINED = at("2023-03-01 12:00")


async def gifts(db) -> list[tuple[int, str, str]]:
    async with db.read() as s:
        rows = await s.execute(sa.select(Coupon.member_id, Reward.code, Coupon.request_id)
                               .join(Reward, Reward.id == Coupon.reward_id).order_by(Coupon.id))
    return [tuple(r) for r in rows.all()]


async def test_a_silver_member_gets_the_tiers_gift_once_a_year_and_green_members_none(loyalty, db):
    ann = await add_member(loyalty, now=JOINED, first_name="Ann", birthday=date(1990, 6, 10), timezone="UTC")
    wei = await add_member(loyalty, now=JOINED, first_name="伟", language="zh_Hans", birthday=date(1985, 6, 10),
                           timezone="UTC")
    green = await add_member(loyalty, now=JOINED, birthday=date(1991, 6, 10), timezone="UTC")
    async with db.transaction() as tx:
        await tx.execute(sa.update(Member).where(Member.id == ann.id).values(tier="silver"))
        await tx.execute(sa.update(Member).where(Member.id == wei.id).values(tier="gold"))
        schedule = Schedule(name="bday", kind="birthday", daily_time="10:00", timezone="UTC",
                            created_at=JOINED, updated_at=JOINED)
        tx.add(schedule)
    planner = Planner(loyalty)
    await planner.run(schedule, now=at("2025-06-10 10:00"), window_start=at("2025-06-10 09:45"))
    await planner.run(schedule, now=at("2025-06-10 12:00"), window_start=at("2025-06-09 00:00"))  # a catch-up
    assert await gifts(db) == [(ann.id, "pastry", f"birthday:{ann.id}:2025"),
                               (wei.id, "coffee", f"birthday:{wei.id}:2025")]
    texts = {r.member_id: r.text for r in await outbox_rows(db, schedule_id=schedule.id)}
    [(_, ann_coupon)] = await loyalty.coupons_of(ann.id, now=at("2025-06-10 12:00"))
    assert "A pastry from the counter" in texts[ann.id] and ann_coupon.code in texts[ann.id]
    assert "您的生日礼物：<b>任选咖啡一杯</b>" in texts[wei.id]
    assert "gift" not in texts[green.id]
    # A year later: one more each
    await planner.run(schedule, now=at("2026-06-10 10:00"), window_start=at("2026-06-10 09:45"))
    assert [request for _, _, request in await gifts(db)][2:] == [f"birthday:{ann.id}:2026",
                                                                  f"birthday:{wei.id}:2026"]


async def test_a_repeated_gift_for_the_same_year_is_the_same_coupon(loyalty, db):
    ann = await add_member(loyalty, now=JOINED, birthday=date(1990, 6, 10))
    async with db.transaction() as tx:
        await tx.execute(sa.update(Member).where(Member.id == ann.id).values(tier="gold"))
    first = await loyalty.give_birthday_gift(ann.id, 2025, now=at("2025-06-10 10:00"))
    again = await loyalty.give_birthday_gift(ann.id, 2025, now=at("2025-06-10 11:00"))
    assert first is not None and again is not None
    assert (first.repeated, again.repeated, again.coupon_code) == (False, True, first.coupon_code)
    assert len(await gifts(db)) == 1
