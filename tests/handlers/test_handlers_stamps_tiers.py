"""Stamp cards, tiers and bonuses in the chat: the member sees a card's progress, every tier's benefits with
their own marked, the discount on the card and bonuses by name in the points history; staff give stamps."""

from __future__ import annotations

import sqlalchemy as sa

from loyalbot.storage.models import Member


def coffees(n: int) -> list[dict[str, object]]:
    return [{"sku": "latte", "category": "coffee", "quantity": n, "amount": str(3 * n)}]


async def test_a_member_sees_each_cards_progress_in_their_language(chat):
    ann = await chat.registered(1, lang="zh_Hant")
    member = await ann.member()
    await chat.loyalty.award_purchase(member.id, external_id="till-1", amount="12", items=coffees(4),
                                      now=chat.clock())
    await ann.send("/stamps")
    assert ann.sees("咖啡集章卡") and ann.sees("●●●●○○○○○○ 4/10") and ann.sees("再集 6 個章可得：任選咖啡一杯")


async def test_staff_stamp_a_card_and_the_last_stamp_issues_the_coupon(chat):
    ann = await chat.registered(1)
    member = await ann.member()
    await chat.loyalty.award_purchase(member.id, external_id="till-1", amount="27", items=coffees(9),
                                      now=chat.clock())
    sam = await chat.staff(90)
    await sam.send(f"/stamp {member.member_no} coffee")
    assert sam.sees("○○○○○○○○○○ 0/10") and sam.sees("Card full: coupon")
    [coupon] = await chat.coupons(ann)
    assert sam.sees(coupon.code)
    await ann.send("/stamps")
    assert ann.sees("0/10") and ann.sees("Completed once.")


async def test_a_stamp_for_an_unknown_member_or_card_is_refused_and_changes_nothing(chat):
    ann = await chat.registered(1)
    member = await ann.member()
    sam = await chat.staff(90, lang="zh_Hans")
    before = await chat.snapshot()
    await sam.send(f"/stamp {member.member_no} tea")
    assert sam.sees("没有这个名称的集章卡。") and sam.sees("集章卡：coffee")
    await sam.send("/stamp 999999999 coffee")
    assert sam.sees("会员")
    await sam.send("/stamp")
    assert sam.sees("/stamp 会员号|手机号|姓名 卡")
    assert await chat.snapshot() == before


async def test_only_staff_give_stamps(chat):
    ann = await chat.registered(1)
    member = await ann.member()
    await ann.send(f"/stamp {member.member_no} coffee")
    [progress] = await chat.loyalty.stamp_cards_of(member.id)
    assert progress.stamps == 0


async def test_the_tier_page_lists_each_tiers_benefits_with_the_members_own_marked(chat):
    ann = await chat.registered(1, lang="zh_Hans")
    async with chat.db.transaction() as tx:
        await tx.execute(sa.update(Member).where(Member.telegram_id == 1).values(tier="silver"))
    await ann.send("/tiers")
    assert ann.sees("<b>银卡</b> ← 您的等级") and ann.sees("<b>金卡</b>")
    assert ann.sees("柜台 10% 折扣") and ann.sees("生日礼物：任选咖啡一杯") and ann.sees("积分有效期 24 个月")
    assert ann.sees("联系人工客服时优先接待")


async def test_the_card_and_the_counter_show_the_tiers_discount(chat):
    ann = await chat.registered(1, first_name="Ann")
    async with chat.db.transaction() as tx:
        await tx.execute(sa.update(Member).where(Member.telegram_id == 1).values(tier="gold"))
    await ann.send("/card")
    assert ann.sees("Member discount: <b>10% off at the counter</b>") and ann.sees("priority support")
    sam = await chat.staff(90)
    await sam.send(f"/member {(await ann.member()).member_no}")
    assert sam.sees("Member discount: 10% off at the counter")
    assert sam.sees("Coffee card (<code>coffee</code>): ○○○○○○○○○○ 0/10")


async def test_a_green_card_shows_no_discount(chat):
    ann = await chat.registered(1)
    await ann.send("/card")
    assert not ann.sees("discount")


async def test_the_points_history_names_the_bonus(chat):
    from loyalbot.loyalty.programme import programme_from_data
    data = chat.loyalty.programme.model_dump(mode="python", exclude_none=True)
    data["bonuses"] = [{"code": "double", "kind": "multiplier", "factor": 2,
                        "titles": {"en": "Double points weekend", "zh_Hans": "双倍积分周末"}}]
    chat.loyalty.in_force.swap(programme_from_data(data), chat.loyalty.in_force.version)
    ann = await chat.registered(1, lang="zh_Hans")
    await chat.loyalty.award_purchase((await ann.member()).id, external_id="t-1", amount="60", now=chat.clock())
    await ann.send("/points")
    assert ann.sees("双倍积分周末 · +60")


async def test_staff_see_the_waiting_queue_with_higher_tiers_first(chat):
    from datetime import timedelta

    from loyalbot.loyalty.handoff import HandoffStore
    store = HandoffStore(chat.db)
    for user_id, name, tier in ((1, "Ann", "green"), (2, "Bob", "gold")):
        await chat.registered(user_id, first_name=name)
        async with chat.db.transaction() as tx:
            await tx.execute(sa.update(Member).where(Member.telegram_id == user_id).values(tier=tier))
        member = await chat.person(user_id).member()
        await store.request(member.id, now=chat.clock() - timedelta(minutes=30 if name == "Ann" else 5))
    sam = await chat.staff(90)
    await sam.send("/queue")
    text = sam.texts()
    assert text.index("Bob") < text.index("Ann") and "30 min" in text and "⭐" in text
    ann = chat.person(1)
    await ann.send("/queue")
    assert not ann.sees("Bob")


async def test_the_counter_sees_each_bonus_an_award_earned(chat):
    from loyalbot.loyalty.programme import programme_from_data
    data = chat.loyalty.programme.model_dump(mode="python", exclude_none=True)
    data["bonuses"] = [{"code": "double", "kind": "multiplier", "factor": 2, "titles": {"en": "Double points"}}]
    chat.loyalty.in_force.swap(programme_from_data(data), chat.loyalty.in_force.version)
    ann = await chat.registered(1)
    sam = await chat.staff(90)
    await sam.send(f"/award {(await ann.member()).member_no} 10")
    await sam.press("✅ Confirm")
    assert sam.sees("10 points awarded") and sam.sees("🎁 Double points: +10")
    assert (await ann.member()).balance == 20


async def test_a_pending_purchases_bonus_is_shown_pending_by_name_in_each_language(chat):
    from loyalbot.loyalty.programme import Pending, programme_from_data
    data = chat.loyalty.programme.model_dump(mode="python", exclude_none=True)
    data["bonuses"] = [{"code": "double", "kind": "multiplier", "factor": 2,
                        "titles": {"en": "Double points weekend", "zh_Hans": "双倍积分周末", "zh_Hant": "雙倍積分週末"}}]
    made = programme_from_data(data).model_copy(update={"pending": Pending(return_window_days=14)})
    chat.loyalty.in_force.swap(made, chat.loyalty.in_force.version)
    for user_id, lang, own, bonus in ((1, "en", "60 points pending", "60 bonus points pending (Double points weekend)"),
                                      (2, "zh_Hans", "60 积分待生效", "60 奖励积分待生效（双倍积分周末）"),
                                      (3, "zh_Hant", "60 積分待生效", "60 獎勵積分待生效（雙倍積分週末）")):
        person = await chat.registered(user_id, lang=lang)
        await chat.loyalty.award_purchase((await person.member()).id, external_id=f"t-{user_id}", amount="60",
                                          now=chat.clock())
        await person.send("/points")
        assert person.sees(own) and person.sees(bonus)
        assert (await person.member()).balance == 0


async def test_a_card_left_in_debt_by_a_refund_says_so(chat):
    ann = await chat.registered(1)
    member = await ann.member()
    await chat.loyalty.award_purchase(member.id, external_id="till-1", amount="27", items=coffees(9),
                                      now=chat.clock())
    full = await chat.loyalty.award_purchase(member.id, external_id="till-2", amount="6", items=coffees(2),
                                             now=chat.clock())
    sam = await chat.staff(90)
    await chat.loyalty.use_coupon(full.stamps[0].coupons[0], staff_id=90, now=chat.clock())
    await chat.loyalty.refund_purchase("till-2", refund_id="rf-1", amount="6", now=chat.clock())
    await ann.send("/stamps")
    assert ann.sees("○○○○○○○○○○ 0/10") and ann.sees("This card owes 1 stamp") and ann.sees("Completed once.")
    await sam.send(f"/member {member.member_no}")
    assert sam.sees("0/10")


async def test_staff_stamp_a_card_by_phone_or_by_name_as_they_look_members_up(chat):
    ann = await chat.registered(1, first_name="Ann")
    member = await ann.member()
    await chat.loyalty.update_member(member.id, phone="31612345678")
    sam = await chat.staff(90)
    await sam.send("/stamp 06 1234 5678 coffee")  # the phone as staff type it, spaces and all
    assert sam.sees(f"{member.member_no}") and sam.sees("●○○○○○○○○○ 1/10")
    await sam.send("/stamp ann coffee")
    assert sam.sees("●●○○○○○○○○ 2/10")
    [progress] = await chat.loyalty.stamp_cards_of(member.id)
    assert progress.stamps == 2


async def test_a_stamp_by_a_name_or_phone_several_share_asks_to_choose_and_stamps_nobody(chat):
    for uid, name in ((60, "Ann"), (61, "Anna")):
        person = await chat.registered(uid, first_name=name)
        await chat.loyalty.update_member((await person.member()).id, phone="31612345678")
    sam = await chat.staff(90, lang="zh_Hant")
    before = await chat.snapshot()
    await sam.send("/stamp ann coffee")
    assert sam.sees("有多位會員符合") and len(sam.buttons()) == 2
    await sam.send("/stamp +31612345678 coffee")
    assert sam.sees("有多位會員符合") and len(sam.buttons()) == 2
    await sam.send("/stamp nobody-at-all coffee")
    assert sam.sees("會員")
    assert await chat.snapshot() == before
