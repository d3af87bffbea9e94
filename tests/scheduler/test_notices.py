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


async def test_a_purchases_bonus_campaign_points_are_told_with_it(store: Db, programme):
    from loyalbot.loyalty.programme import programme_from_data

    data = programme.model_dump(mode="python", exclude_none=True)
    data["bonuses"] = [{"code": "double", "kind": "multiplier", "factor": 2, "titles": {"en": "Double points"}}]
    shop = Loyalty(store, programme_from_data(data))
    await shop.sync_programme()
    now = utcnow()
    ann = await add_member(shop, now=now, first_name="Ann")
    await shop.award_purchase(ann.id, external_id="till-1", amount="12.50", now=now)
    await Notifier(shop, delay=DELAY).plan_new(now=now)
    points, = told(await rows(shop.db), "points")
    assert points.text.startswith("Ann, you earned <b>24</b> points for your purchase of €12.50.")
    assert "balance is now <b>24</b>" in points.text


def coffees(n: int) -> list[dict[str, object]]:
    return [{"sku": "latte", "category": "coffee", "quantity": n, "amount": str(3 * n)}]


async def test_a_full_stamp_card_is_told_once_with_its_coupon_in_the_members_language(shop: Loyalty):
    now = utcnow()
    notifier = Notifier(shop, delay=DELAY)
    mei = await add_member(shop, now=now, first_name="美", language="zh_Hant")
    bob = await add_member(shop, now=now, first_name="Bob", notify={"activity": False})
    await shop.award_purchase(mei.id, external_id="till-1", amount="27", items=coffees(9), now=now)
    await notifier.plan_new(now=now)
    assert told(await rows(shop.db), "stamp_card") == []  # not full yet
    full = await shop.award_purchase(mei.id, external_id="till-2", amount="6", items=coffees(2), now=now)
    await shop.award_purchase(mei.id, external_id="till-2", amount="6", items=coffees(2), now=now)  # a retry
    await shop.award_purchase(bob.id, external_id="till-3", amount="30", items=coffees(10), now=now)
    await notifier.plan_new(now=now)
    assert await notifier.plan_new(now=now) == 0
    card, skipped = told(await rows(shop.db), "stamp_card")
    [code] = full.stamps[0].coupons
    assert card.member_id == mei.id and card.status == "pending" and card.not_before == now
    assert card.text.startswith("美，您的<b>咖啡集章卡</b>已集滿！") and code in card.text
    assert "任選咖啡一杯" in card.text
    assert (skipped.member_id, skipped.status, skipped.skip_reason) == (bob.id, "skipped", "opted_out")
    chat = FakeChat()
    await Dispatcher(shop.db, chat, rate=30, clock=lambda: utcnow() + timedelta(seconds=DELAY + 1)).drain()
    assert sum(code in t for t in chat.texts(mei.chat_id)) == 1


async def test_a_stamp_coupon_taken_back_before_it_was_told_is_not_told(shop: Loyalty):
    now = utcnow()
    ann = await add_member(shop, now=now, first_name="Ann")
    await shop.award_purchase(ann.id, external_id="till-1", amount="30", items=coffees(10), now=now)
    await shop.refund_purchase("till-1", refund_id="rf-1", amount="30", now=now)
    await Notifier(shop, delay=DELAY).plan_new(now=now)
    card, = told(await rows(shop.db), "stamp_card")
    assert (card.status, card.skip_reason) == ("skipped", "coupon_void")


async def test_a_birthday_gift_is_told_when_the_birthday_message_does_not_tell_it(shop: Loyalty):
    from datetime import date

    from loyalbot.scheduler.planner import Planner
    from loyalbot.storage.models import Member, Schedule
    from tests.scheduler.conftest import at

    joined = at("2023-03-01 12:00")
    ann = await add_member(shop, now=joined, first_name="Ann", birthday=date(1990, 6, 10), tier="silver")
    wei = await add_member(shop, now=joined, first_name="伟", language="zh_Hans", birthday=date(1985, 6, 10),
                           tier="gold", notify={"care": False})  # no birthday message: the notice tells the gift
    async with shop.db.transaction() as tx:
        schedule = Schedule(name="bday", kind="birthday", daily_time="10:00", timezone="UTC", created_at=joined,
                            updated_at=joined)
        tx.add(schedule)
    notifier = Notifier(shop, delay=DELAY)
    await notifier.plan_new(now=joined)  # their welcome bonuses
    now = at("2025-06-10 10:00")
    await shop.give_birthday_gift(wei.id, 2025, now=now)  # the planner's first step, its message not written yet
    assert await notifier.plan_new(now=now) == 0 and told(await rows(shop.db), "birthday_gift") == []
    await Planner(shop).run(schedule, now=now, window_start=at("2025-06-10 09:45"))
    await notifier.plan_new(now=now + timedelta(minutes=1))
    await notifier.plan_new(now=now + timedelta(minutes=2))
    gifts = {r.member_id: r for r in told(await rows(shop.db), "birthday_gift")}
    assert (gifts[ann.id].status, gifts[ann.id].skip_reason) == ("skipped", "birthday_message")
    [(coupon, _)] = await shop.coupons_of(wei.id, now=now)
    assert gifts[wei.id].status == "pending" and coupon.code in gifts[wei.id].text
    assert gifts[wei.id].text.startswith("伟，生日快乐！") and "金卡会员" in gifts[wei.id].text
    assert "任选咖啡一杯" in gifts[wei.id].text
    async with shop.db.read() as s:
        assert (await s.get(Member, wei.id)).notify == {"care": False}
