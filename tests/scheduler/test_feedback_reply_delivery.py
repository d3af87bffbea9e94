"""An operator's reply to feedback (the console's inbox) reaches the member's chat through the dispatcher, once,
however often it was posted and however often the outbox is drained."""

from __future__ import annotations

import pytest

from loyalbot.bot.local_api import LocalApiControl, LocalBotApi
from loyalbot.bot.senders import AiogramSender, make_aiogram_bot
from loyalbot.scheduler.dispatcher import Dispatcher
from tests.scheduler.test_delivery import TOKEN


@pytest.fixture
async def tg():
    api = LocalBotApi(serve_page=False)
    await api.start()
    async with LocalApiControl(api.url) as control:
        await control.create_bot(TOKEN, first_name="Loyal Bot", username="loyal_bot")
        control.url = api.url  # type: ignore[attr-defined]
        yield control
    await api.stop()


async def test_a_feedback_reply_is_delivered_once(db, loyalty, tg):
    ann = await loyalty.register_member(telegram_id=4242, first_name="Ann", terms_accepted=True, language="zh_Hant")
    await tg.create_user(4242, "Ann", language_code="zh-hant")
    feedback = await loyalty.record_feedback(ann.id, "The queue was long")
    await loyalty.reply_to_feedback(feedback.id, "Sorry, we are adding a till.", actor="console:mia")
    again = await loyalty.reply_to_feedback(feedback.id, "Sorry, we are adding a till.", actor="console:mia")
    assert again.repeated
    bot = make_aiogram_bot(TOKEN, tg.url)
    try:
        dispatcher = Dispatcher(db, AiogramSender(bot), rate=100)
        await dispatcher.drain(limit_seconds=10)
        await dispatcher.drain(limit_seconds=2)
    finally:
        await bot.session.close()
    texts = [m["text"] for m in await tg.bot_messages(4242)]
    assert len(texts) == 1 and "Sorry, we are adding a till." in texts[0] and "我們的回覆" in texts[0]
