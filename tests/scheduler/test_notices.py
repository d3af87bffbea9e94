"""Transactional notifications on SQLite and PostgreSQL: what happens to a member's points, tier and coupons
becomes one message each (a burst of purchases one message), exactly once, in their language, unless they
switched these messages off -- and a crash while planning loses nothing and plans nothing twice.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
import sqlalchemy as sa

from loyalbot.loyalty.service import Loyalty
from loyalbot.scheduler.dispatcher import Dispatcher
from loyalbot.scheduler.notices import Notifier
from loyalbot.storage import Db, utcnow
from loyalbot.storage.models import Notice, Outbox
from tests.scheduler.conftest import FakeChat, add_member

WELCOME = 50
DELAY = 30.0


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Db]:
    """Both stores (the scheduler folder's own `db` fixture is SQLite only)."""
    database = Db(store_url)
    yield database
    await database.dispose()


@pytest.fixture
async def shop(store: Db, programme) -> Loyalty:
    earning = programme.earning.model_copy(update={"welcome_bonus": WELCOME})
    service = Loyalty(store, programme.model_copy(update={"earning": earning}))
    await service.sync_programme()
    return service


async def rows(db: Db) -> list[Outbox]:
    async with db.read() as s:
        return list((await s.execute(sa.select(Outbox).order_by(Outbox.id))).scalars())


async def notices(db: Db) -> list[Notice]:
    async with db.read() as s:
        return list((await s.execute(sa.select(Notice).order_by(Notice.id))).scalars())


def told(outbox: list[Outbox], kind: str) -> list[Outbox]:
    return [r for r in outbox if r.kind == f"notice_{kind}"]


async def test_a_purchase_is_told_once_with_the_new_balance(shop: Loyalty):
    now = utcnow()
    notifier = Notifier(shop, delay=DELAY)
    ann = await add_member(shop, now=now, first_name="Ann")
    await shop.award_purchase(ann.id, external_id="till-1", amount="12.50", now=now)
    await shop.award_purchase(ann.id, external_id="till-1", amount="12.50", now=now)  # the till retries
    assert await notifier.plan_new(now=now) == 2  # the welcome bonus and the purchase
    assert await notifier.plan_new(now=now) == 0
    points, = told(await rows(shop.db), "points")
    assert points.status == "pending" and points.schedule_id is None
    assert points.text == ("Ann, you earned <b>12</b> points for your purchase of €12.50. ⭐\n"
                           f"Your balance is now <b>{WELCOME + 12}</b> points.")
    assert points.not_before == now + timedelta(seconds=DELAY), "it waits for more of the same to fold in"
    welcome, = told(await rows(shop.db), "welcome")
    assert f"<b>{WELCOME}</b> points" in welcome.text and welcome.not_before == now
    assert all(n.status == "planned" and n.outbox_id for n in await notices(shop.db))


async def test_five_quick_purchases_are_one_message(shop: Loyalty):
    now = utcnow()
    notifier = Notifier(shop, delay=DELAY)
    ann = await add_member(shop, now=now, first_name="Ann")
    for i in range(5):
        moment = now + timedelta(seconds=5 * i)
        await shop.award_purchase(ann.id, external_id=f"till-{i}", amount="10", now=moment)
        await notifier.plan_new(now=moment)  # planned as they come, as the running bot does
    points, = told(await rows(shop.db), "points")
    assert points.text.startswith("Ann, you earned <b>50</b> points for 5 purchases (€50.00 in all).")
    assert f"balance is now <b>{WELCOME + 50}</b>" in points.text
    chat = FakeChat()
    stats = await Dispatcher(shop.db, chat, rate=30, clock=lambda: utcnow() + timedelta(seconds=DELAY + 1)).drain()
    assert [t.split(",")[0] for t in chat.texts(ann.chat_id)] == ["Ann", "Ann"] and stats.sent == 2
    assert sum("5 purchases" in t for t in chat.texts(ann.chat_id)) == 1


async def test_a_message_already_on_its_way_is_not_changed(shop: Loyalty):
    now = utcnow()
    notifier = Notifier(shop, delay=0)
    ann = await add_member(shop, now=now, first_name="Ann")
    await shop.award_purchase(ann.id, external_id="till-1", amount="10", now=now)
    await notifier.plan_new(now=now)
    chat = FakeChat()
    await Dispatcher(shop.db, chat, rate=30, clock=utcnow).drain()
    await shop.adjust_points(ann.id, 25, reason="sorry for the wait", actor="staff:9", now=now)
    await notifier.plan_new(now=now)
    first, second = told(await rows(shop.db), "points")
    assert first.status == "sent" and "for your purchase of €10.00" in first.text
    assert second.status == "pending"
    assert second.text.startswith("Ann, <b>25</b> points were added to your account: sorry for the wait.")
    assert f"<b>{WELCOME + 35}</b>" in second.text


async def test_members_who_switched_updates_off_are_skipped_with_the_reason(shop: Loyalty):
    now = utcnow()
    notifier = Notifier(shop, delay=DELAY)
    ann = await add_member(shop, now=now, first_name="Ann")
    await shop.update_member(ann.id, notify={"activity": False}, now=now)
    await shop.award_purchase(ann.id, external_id="till-1", amount="10", now=now)
    await notifier.plan_new(now=now)
    points, = told(await rows(shop.db), "points")
    assert (points.status, points.skip_reason, points.text) == ("skipped", "opted_out", "")
    chat = FakeChat()
    await Dispatcher(shop.db, chat, rate=30, clock=lambda: utcnow() + timedelta(seconds=DELAY + 1)).drain()
    assert not any("purchase" in t for t in chat.texts(ann.chat_id))


async def test_tier_up_coupon_used_and_chinese_texts(shop: Loyalty):
    now = utcnow()
    notifier = Notifier(shop, delay=DELAY)
    mei = await add_member(shop, now=now, first_name="小明", language="zh_Hans")
    await shop.award_purchase(mei.id, external_id="big", amount="320", now=now)  # Silver from 300
    await notifier.plan_new(now=now)
    points, = told(await rows(shop.db), "points")
    tier, = told(await rows(shop.db), "tier")
    assert "获得 <b>320</b> 积分" in points.text and "您" in points.text
    assert tier.text.startswith("恭喜您，小明！您已升级为<b>银卡</b>会员。")
    assert "1.25 倍积分" in tier.text
    assert tier.not_before >= points.not_before and tier.id > points.id, "the tier follows the points"
    reward = (await shop.catalogue(mei.id, now=now))[0]
    redeemed = await shop.redeem_reward(mei.id, reward.reward.id, request_id="r-1", now=now)
    await shop.add_staff(9, "agent", name="Sam")
    await shop.use_coupon(redeemed.coupon.code, staff_id=9, now=now)
    await notifier.plan_new(now=now)
    used, = told(await rows(shop.db), "coupon_used")
    assert redeemed.coupon.code in used.text and "已于" in used.text and used.not_before == now


async def test_a_crash_while_planning_loses_nothing_and_plans_nothing_twice(shop: Loyalty, monkeypatch):
    now = utcnow()
    ann = await add_member(shop, now=now, first_name="Ann")
    await shop.award_purchase(ann.id, external_id="till-1", amount="10", now=now)
    crashing = Notifier(shop, delay=DELAY)
    place = crashing._place

    async def place_then_die(tx, notice, member, at):
        await place(tx, notice, member, at)  # the outbox row is written...
        raise RuntimeError("process killed")  # ...and the process dies before the commit

    monkeypatch.setattr(crashing, "_place", place_then_die)
    assert await crashing.plan_new(now=now) == 0
    assert await rows(shop.db) == [] and {n.status for n in await notices(shop.db)} == {"new"}
    assert await Notifier(shop, delay=DELAY).plan_new(now=now) == 2
    assert len(told(await rows(shop.db), "points")) == 1 and len(told(await rows(shop.db), "welcome")) == 1


async def test_a_tier_down_at_the_evaluation_says_what_it_takes_to_come_back(shop: Loyalty):
    then = utcnow() - timedelta(days=400)
    notifier = Notifier(shop, delay=0)
    amei = await add_member(shop, now=then, first_name="阿美", language="zh_Hant")
    await shop.award_purchase(amei.id, external_id="long-ago", amount="320", now=then)  # Silver, then
    changes = await shop.evaluate_tiers(now=utcnow())  # the spend left the 12-month window
    assert [(c.from_tier, c.to_tier, c.upgrade) for c in changes] == [("silver", "green", False)]
    await notifier.plan_new(now=utcnow())
    up, down = told(await rows(shop.db), "tier")
    assert up.text.startswith("恭喜您，阿美！您已升級為<b>銀卡</b>會員。")
    assert down.text == ("阿美，您的會員等級現為<b>綠卡</b>：每次消費可獲得 1 倍積分。\n"
                         "12 個月內消費滿 €300.00 即可重回銀卡。")
