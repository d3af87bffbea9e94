"""Stamp cards on both runtimes: coffees bought stamp the card, the member sees its progress, the tenth
issues the free coffee's coupon; staff stamp at the counter once per message."""

from __future__ import annotations

import pytest

from tests.scenario.driver import Chat

pytestmark = pytest.mark.asyncio(loop_scope="module")


def coffees(n: int) -> list[dict[str, object]]:
    return [{"sku": "latte", "category": "coffee", "quantity": n, "amount": str(3 * n)},
            {"sku": "muffin", "category": "pastry", "quantity": 1, "amount": "2"}]


async def test_coffees_stamp_the_card_and_the_tenth_gives_a_free_coffee(chat: Chat) -> None:
    ann = await chat.registered_member("Ann")
    member = await ann.record()
    # The till posts the purchase with its items (the shop API's POST /api/v1/purchases does just this).
    await chat.loyalty.award_purchase(member.id, external_id="till-1", amount="14", items=coffees(4))
    await ann.press_reply("☕ Stamp cards")
    assert ann.last_text_contains("Coffee card") and ann.last_text_contains("●●●●○○○○○○ 4/10")
    await chat.loyalty.award_purchase(member.id, external_id="till-2", amount="20", items=coffees(6))
    await ann.send("/stamps")
    assert ann.last_text_contains("○○○○○○○○○○ 0/10") and ann.last_text_contains("Completed once.")
    assert await chat.coupons_of(ann) == 1
    await ann.send("/coupons")
    assert ann.saw("A coffee of your choice")


async def test_staff_stamp_at_the_counter_in_chinese(chat: Chat) -> None:
    wei = await chat.registered_member("Wei", language_code="zh-hans")
    member = await wei.record()
    sam = await chat.staff("Sam", language_code="zh-hans")
    await sam.send(f"/stamp {member.member_no} coffee")
    assert sam.last_text_contains("●○○○○○○○○○ 1/10")
    await sam.send(f"/stamp {member.member_no} tea")
    assert sam.last_text_contains("没有这个名称的集章卡。")
    await wei.send("/stamps")
    assert wei.last_text_contains("咖啡集章卡") and wei.last_text_contains("1/10")


async def test_the_demo_programme_has_a_member_day_and_a_newcomer_finds_a_card_under_way(chat: Chat) -> None:
    from loyalbot.bot.seed import DEMO_STAMPS, demo_programme, give_demo_history

    programme = demo_programme(chat.loyalty.programme, 200)
    assert [(b.kind, b.weekday) for b in programme.bonuses] == [("member_day", "wednesday")]
    ann = await chat.registered_member("Ann")
    member = await ann.record()
    await give_demo_history(chat.loyalty, member.id, now=chat.clock())
    await give_demo_history(chat.loyalty, member.id, now=chat.clock())  # a second start gives no more stamps
    await ann.send("/stamps")
    assert ann.last_text_contains("●" * DEMO_STAMPS + "○" * (10 - DEMO_STAMPS))


async def test_a_bonus_campaign_is_named_in_the_points_history_and_the_tier_page_lists_benefits(chat: Chat) -> None:
    from loyalbot.loyalty.programme import programme_from_data

    data = chat.loyalty.programme.model_dump(mode="python", exclude_none=True)
    data["bonuses"] = [{"code": "double", "kind": "multiplier", "factor": 2,
                        "titles": {"en": "Double points weekend", "zh_Hant": "雙倍積分週末"}}]
    await chat.loyalty.save_programme(programme_from_data(data), author="test",
                                      based_on=chat.loyalty.in_force.version)
    mei = await chat.registered_member("Mei", language_code="zh-hant")
    member = await mei.record()
    await chat.loyalty.award_purchase(member.id, external_id="till-1", amount="60")
    await mei.send("/points")
    assert mei.last_text_contains("雙倍積分週末 · +60") and mei.last_text_contains("120")
    await mei.send("/tiers")
    assert mei.last_text_contains("<b>綠卡</b> ← 您的等級") or mei.last_text_contains("綠卡 ← 您的等級")
    assert mei.last_text_contains("櫃檯 10% 折扣")
