"""Conversation state survives restarts (SQL, Redis); the router's error boundary and extension hooks."""

from __future__ import annotations

import logging
import os
import uuid

import pytest

from loyalbot.chat.port import Incoming, Reply
from loyalbot.handlers.router import build_router
from loyalbot.handlers.state import RedisStateStore, SqlStateStore
from loyalbot.storage import Db


async def test_sql_state_survives_a_restart(tmp_path, migrated_template):
    import shutil

    path = tmp_path / "state.db"
    shutil.copy(migrated_template, path)
    first = Db(f"sqlite:///{path}")
    await SqlStateStore(first).set(10, 20, "reg.bday", {"lang": "zh_Hant", "mkt": True})
    await first.dispose()
    second = Db(f"sqlite:///{path}")
    store = SqlStateStore(second)
    state = await store.get(10, 20)
    assert state is not None and state.step == "reg.bday" and state.data == {"lang": "zh_Hant", "mkt": True}
    assert await store.get(20, 10) is None
    await store.set(10, 20, "reg.phone", {"lang": "zh_Hant"})
    assert (await store.get(10, 20)).step == "reg.phone"
    await store.clear(10, 20)
    assert await store.get(10, 20) is None
    await second.dispose()


async def test_a_conversation_continues_after_the_router_is_rebuilt(chat):
    ann = chat.person(1)
    await ann.send("/start")
    await ann.press("English")
    chat.router = build_router(chat.ctx)  # a restart (or the other runtime) picks up where it was
    await ann.press("I accept")
    assert ann.sees("offers")


@pytest.mark.skipif(not os.environ.get("LOYALBOT_TEST_REDIS_URL"),
                    reason="set LOYALBOT_TEST_REDIS_URL (e.g. redis://127.0.0.1:6379/15) to test the Redis store")
async def test_redis_state_is_shared_between_replicas():
    url = os.environ["LOYALBOT_TEST_REDIS_URL"]
    prefix = f"loyalbot-test:{uuid.uuid4().hex}:"
    one, two = RedisStateStore(url, prefix=prefix), RedisStateStore(url, prefix=prefix)
    try:
        await one.set(1, 2, "fb.rating", {"text": "很好 ☕"})
        state = await two.get(1, 2)
        assert state is not None and state.step == "fb.rating" and state.data == {"text": "很好 ☕"}
        await two.clear(1, 2)
        assert await one.get(1, 2) is None
    finally:
        await one.redis.delete(f"{prefix}1:2")
        await one.close()
        await two.close()


async def test_a_failing_handler_gets_a_polite_answer_and_no_personal_data_in_logs(chat, caplog):
    async def broken(turn):
        raise ValueError(f"cannot handle {turn.incoming.args}")

    chat.router.command("broken", broken)
    ann = await chat.registered(1, lang="zh_Hans")
    with caplog.at_level(logging.INFO):
        await ann.send("/broken my secret phone +31600000000")
    assert ann.sees("抱歉，我们这边出了点问题")
    assert "ValueError" in caplog.text
    assert "+31600000000" not in caplog.text and "secret" not in caplog.text


async def test_a_failing_button_handler_stops_the_spinner_with_a_toast(chat):
    async def broken(turn):
        raise RuntimeError("boom")

    chat.router.callback("cp", broken)
    ann = await chat.registered(2)
    await ann.press_data("1:cp:a")
    assert ann.replies[0].toast and "went wrong" in ann.replies[0].toast


async def test_an_interceptor_can_consume_private_messages(chat):
    seen = []

    async def relay(turn):
        if turn.incoming.text is not None and turn.incoming.text.startswith("psst"):
            seen.append(turn.incoming.text)
            return []
        return None

    chat.router.interceptor(relay)
    ann = await chat.registered(3)
    assert await ann.send("psst, a human please") == []
    assert seen == ["psst, a human please"]
    await ann.send("/points")
    assert ann.sees("You have")


async def test_group_messages_are_ignored_unless_a_group_handler_answers(chat):
    staff_group = Incoming(user_id=5, chat_id=-100123, chat_type="supergroup", text="hello", thread_id=7)
    assert await chat.router.handle(staff_group) == []

    async def group(turn):
        return [Reply(text=f"topic {turn.incoming.thread_id}")]

    chat.router.group(group)
    assert (await chat.router.handle(staff_group))[0].text == "topic 7"


async def test_staff_commands_registered_by_other_rooms_are_checked(chat):
    async def secret(turn):
        return [Reply(text="the staff-only thing")]

    chat.router.command("secret", secret, staff=True)
    bob = await chat.registered(4)
    await bob.send("/secret")
    assert bob.sees("only staff")
    sam = await chat.staff(5)
    await sam.send("/secret")
    assert sam.sees("the staff-only thing")


async def test_every_reply_stays_within_telegrams_limits(chat):
    async def chatty(turn):
        return [Reply(text="x" * 5000), Reply(toast="y" * 300)]

    chat.router.command("chatty", chatty)
    ann = await chat.registered(6)
    replies = await ann.send("/chatty")
    assert len(replies[0].text) == 4096 and len(replies[1].toast) == 200


async def test_an_edited_message_is_not_taken_as_a_new_answer(chat):
    ann = await chat.registered(7)
    await ann.send("/feedback")
    assert await ann.deliver(text="edited words", edited=True) == []
    await ann.send("the real feedback")
    assert ann.sees("How would you rate")
