"""Dispatching to the local Bot API server: within its flood limits, through injected faults, exactly once."""

from __future__ import annotations

import sys
from collections import Counter
from datetime import timedelta

import pytest

from loyalbot.bot.local_api import LocalApiControl, LocalBotApi
from loyalbot.bot.senders import AiogramSender, make_aiogram_bot
from loyalbot.scheduler.dispatcher import UNKNOWN_DELIVERY, Dispatcher
from loyalbot.scheduler.planner import Planner
from loyalbot.storage.models import Member, Schedule
from tests.scheduler.conftest import ShiftedClock, add_member, at, outbox_rows

TOKEN = "424242:scheduler-test-token"
JOINED = at("2025-01-01 10:00")


@pytest.fixture
async def server():
    api = LocalBotApi(serve_page=False)
    await api.start()
    yield api
    await api.stop()


@pytest.fixture
async def tg(server):
    async with LocalApiControl(server.url) as control:
        yield control


@pytest.fixture
async def sender(server):
    bot = make_aiogram_bot(TOKEN, server.url)
    yield AiogramSender(bot)
    await bot.session.close()


async def members_in_chat(loyalty, tg, count: int, *, language: str = "en") -> list[Member]:
    """Members whose Telegram users exist on the local server (chat id = user id)."""
    members = []
    for n in range(count):
        member = await add_member(loyalty, now=JOINED, first_name=f"M{n}", language=language)
        await tg.create_user(member.telegram_id, f"M{n}", language_code="en")
        members.append(member)
    return members


async def broadcast(db, loyalty, name: str, now) -> Schedule:
    async with db.transaction() as tx:
        row = Schedule(name=name, kind="broadcast", one_off_at=now, created_at=now, updated_at=now,
                       templates={"en": f"{name}: hello {{{{ name }}}}"})
        tx.add(row)
    await Planner(loyalty).run(row, now=now)
    return row


async def bot_texts(tg, chat_id: int) -> list[str]:
    return [m["text"] for m in await tg.bot_messages(chat_id)]


async def test_default_rate_stays_within_telegrams_limits(db, loyalty, tg, sender):
    await tg.set_limits(enabled=True)  # Telegram's guidance: 30/s overall, 1/s per private chat
    members = await members_in_chat(loyalty, tg, 16)
    now = at("2025-06-10 10:00")
    for name in ("first", "second", "third"):  # three messages per chat: the per-chat limit matters too
        await broadcast(db, loyalty, name, now)
    dispatcher = Dispatcher(db, sender)  # default: 30/s, on the wall clock
    stats = await dispatcher.drain(limit_seconds=60)
    counters = await tg.stats()
    assert counters["total_rate_limited"] == 0 and stats.rate_limited == 0
    for member in members:
        assert sorted(await bot_texts(tg, member.chat_id)) == sorted(
            f"{name}: hello {member.first_name}" for name in ("first", "second", "third"))
    assert {r.status for r in await outbox_rows(db)} == {"sent"}


async def test_recovers_from_429_5xx_403_and_timeouts(db, loyalty, tg, sender):
    members = await members_in_chat(loyalty, tg, 6)
    blocked, slow = members[0], members[1]
    now = at("2025-06-10 10:00")
    await broadcast(db, loyalty, "news", now)
    await tg.set_user_state(blocked.telegram_id, blocked=True)
    await tg.inject_fault("429", method="sendMessage", chat_id=members[2].chat_id, retry_after=1)
    await tg.inject_fault("500", method="sendMessage", chat_id=members[3].chat_id, count=2)
    await tg.inject_fault("502", method="sendMessage", chat_id=members[4].chat_id)
    await tg.inject_fault("delay", method="sendMessage", chat_id=slow.chat_id, delay=1.5)
    clock = ShiftedClock()
    dispatcher = Dispatcher(db, sender, rate=200, backoff_base=30, send_timeout=0.5, clock=clock)
    stats = await dispatcher.drain(limit_seconds=5, until_empty=False)
    # Backoff waits are in the outbox's time: move the clock on instead of sleeping for them.
    for _ in range(4):
        clock.advance(timedelta(minutes=5))
        stats = await dispatcher.drain(limit_seconds=10)
    rows = {r.member_id: r for r in await outbox_rows(db)}
    for member in members[2:]:
        assert await bot_texts(tg, member.chat_id) == [f"news: hello {member.first_name}"]
        assert rows[member.id].status == "sent" and rows[member.id].telegram_message_id
    assert rows[members[3].id].attempts == 3 and rows[members[2].id].attempts == 1
    # Blocked: no message, the member is unreachable, the row failed with Telegram's reason.
    assert await bot_texts(tg, blocked.chat_id) == []
    assert rows[blocked.id].status == "failed" and "Blocked" in rows[blocked.id].last_error
    assert (await loyalty.member(blocked.id)).status == "unreachable"
    # No answer in time: the server did deliver it, and it is not sent a second time.
    assert rows[slow.id].status == "failed" and UNKNOWN_DELIVERY in rows[slow.id].last_error
    assert stats.rate_limited == 1 and stats.blocked == 1 and stats.unknown == 1
    # /metrics counts each send by its result: 4 delivered, 3 retried (two 500s, a 502), one each of the rest.
    sends = {result: dispatcher.metrics.registry.get_sample_value("loyalbot_outbox_sends_total",
                                                                  {"result": result})
             for result in ("ok", "retry", "429", "403", "error", "unknown")}
    assert sends == {"ok": 4, "retry": 3, "429": 1, "403": 1, "error": 0, "unknown": 1}
    assert dispatcher.metrics.registry.get_sample_value("loyalbot_telegram_429_total", {"source": "outbox"}) == 1
    # Writing to the bot again makes the member reachable for the next run.
    await loyalty.touch(blocked.id, now=now)
    assert (await loyalty.member(blocked.id)).status == "active"


async def test_a_transient_error_that_persists_gives_up_and_keeps_the_error(db, loyalty, tg, sender):
    (member,) = await members_in_chat(loyalty, tg, 1)
    now = at("2025-06-10 10:00")
    await broadcast(db, loyalty, "news", now)
    await tg.inject_fault("500", method="sendMessage", chat_id=member.chat_id, count=10)
    clock = ShiftedClock()
    dispatcher = Dispatcher(db, sender, rate=100, max_attempts=3, backoff_base=60, clock=clock)
    for _ in range(5):
        await dispatcher.drain(limit_seconds=5)
        clock.advance(timedelta(minutes=30))
    (row,) = await outbox_rows(db)
    assert row.status == "failed" and row.attempts == 3 and "gave up after 3 attempts" in row.last_error
    assert Counter(c["outcome"] for c in await tg.calls("sendMessage"))["fault"] == 3
    assert await bot_texts(tg, member.chat_id) == []


async def test_a_bad_request_fails_at_once(db, loyalty, tg, sender):
    (member,) = await members_in_chat(loyalty, tg, 1)
    now = at("2025-06-10 10:00")
    await broadcast(db, loyalty, "news", now)
    await tg.inject_fault("error", method="sendMessage", error_code=400, description="Bad Request: chat not found")
    await Dispatcher(db, sender, rate=100).drain(limit_seconds=5)
    (row,) = await outbox_rows(db)
    assert row.status == "failed" and row.attempts == 1 and "chat not found" in row.last_error


async def test_a_store_that_fails_while_recording_sends_loses_no_record_of_them(db, loyalty, tg, sender, monkeypatch):
    members = await members_in_chat(loyalty, tg, 3)
    now = at("2025-06-10 10:00")
    await broadcast(db, loyalty, "restart", now)
    dispatcher = Dispatcher(db, sender, rate=100)
    real, failures = db.connection, []

    def flaky():  # the store restarts: the first write of the sent rows fails, the next one works
        if sys._getframe(1).f_code.co_name == "_flush_sent" and not failures:
            failures.append(1)
            raise OSError("connection reset by the store")
        return real()

    monkeypatch.setattr(db, "connection", flaky)
    await dispatcher.drain(limit_seconds=10)
    assert failures and {r.status for r in await outbox_rows(db)} == {"sent"}
    for member in members:
        assert await bot_texts(tg, member.chat_id) == [f"restart: hello {member.first_name}"]
