"""Switching the runtime on an existing database mid-conversation loses nothing and answers nothing twice."""

from __future__ import annotations

from pathlib import Path

import pytest

from loyalbot.bot.local_api import LocalApiControl, LocalBotApi
from tests.scenario.conftest import start_app
from tests.scenario.driver import Chat, TestClock

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest.mark.parametrize(("first", "second"), [("aiogram", "ptb"), ("ptb", "aiogram")])
async def test_registration_continues_on_the_other_runtime(server: LocalBotApi, tg: LocalApiControl,
                                                           store_file: Path, first: str, second: str) -> None:
    group = await tg.create_group("Staff")
    clock = TestClock()
    app = await start_app(server, store_file, first, group["id"], clock)
    try:
        chat = Chat(tg, app, group["id"], clock)
        ann = await chat.member("Ann")
        await ann.send("/start")
        await ann.press("English")
        await ann.press(ann.t("button.accept"))
    finally:
        await app.stop()
    # While no bot runs, Ann answers the next question; the next runtime must pick it up exactly once.
    message_id, data = await ann.find_button(ann.t("button.yes_please"))
    await tg.press(ann.id, ann.id, message_id, data)
    replies_before = len(await tg.bot_messages(ann.id))
    last_id = (await tg.transcript(ann.id))[-1]["message_id"]

    app = await start_app(server, store_file, second, group["id"], clock)
    try:
        chat.app = app
        await tg.wait_for_bot_message(ann.id, after_id=last_id)
        await app.runtime.pipeline.drain()
        assert len(await tg.bot_messages(ann.id)) == replies_before + 1, "the waiting press is answered once"
        await ann.press(ann.t("button.skip"))
        await ann.press_reply(ann.t("button.share_phone"))
        member = await ann.record()
        assert member.marketing_consent, "the answer given before the switch counts"
        assert ann.last_text_contains(member.member_no)
    finally:
        await app.stop()
    # Every update was confirmed to the server: the next process, on either runtime, starts clean.
    pending = await tg.pending_updates()
    assert all(not updates for updates in pending["bots"].values())
