"""A campaign's offer end to end, on aiogram and on python-telegram-bot, through the local Bot API server:
the member receives the message with their coupon's code, presses its button and sees the coupon."""

from __future__ import annotations

import pytest

from loyalbot.chat.callbacks import decode
from tests.scenario.driver import Chat, eventually
from tests.scenario.test_scheduled_messages import (
    add_schedule,
    all_sent,
    bot_messages_after,
    chat,  # noqa: F401 - the fixture: the app with its scheduler
    labels,
    last_id,
    rows_of,
    run_now,
)

pytestmark = pytest.mark.asyncio(loop_scope="module")


async def test_a_member_gets_the_offer_presses_its_button_and_sees_the_coupon(chat: Chat) -> None:  # noqa: F811
    mei = await chat.member("小美", language_code="zh-hant")
    await mei.join(marketing=True)
    bob = await chat.registered_member("Bob", language_code="en")  # said no to offers: neither message nor coupon
    before = await last_id(mei)
    campaign = await add_schedule(
        chat, "spring-gift", "--kind", "broadcast", "--offer-reward", "coffee", "--offer-valid-days", "7",
        "--template", "zh_Hant={{ name }}，春天快樂！{{ offer.title }}：<code>{{ offer.code }}</code>")
    stats = await run_now(chat, campaign)
    assert stats.planned == 1 and stats.skipped["no_consent"] == 1
    await eventually(lambda: all_sent(chat, campaign))

    [message] = await bot_messages_after(mei, before)
    assert message["text"].startswith("小美，春天快樂！任選咖啡一杯：")
    [label] = labels(message)
    assert label == "查看我的優惠券"
    code = decode(message["reply_markup"]["inline_keyboard"][0][0]["callback_data"]).args[1]
    assert code in message["text"] and await chat.coupons_of(mei) == 1 and await chat.coupons_of(bob) == 0

    await mei.press("查看我的優惠券")
    assert mei.last_message.get("photo_file_id") and code in mei.last_text  # the coupon's QR, captioned with its code
    [row] = [r for r in await rows_of(chat, campaign) if r.status == "sent"]
    assert row.coupon_id is not None
    # A forged press (someone else's code, or one never issued) shows nothing and says so in her language.
    await mei.press_data(message["message_id"], "1:cp:c:AAAA-BBBB-CCCC-DDDD")
    assert mei.last_toast == mei.t("coupons.gone")
