"""Three dispatcher processes on one PostgreSQL outbox share Telegram's limits (through Redis, or through
PostgreSQL when no Redis is configured): the local Bot API server, which answers 429 the moment a limit is
exceeded, never has to; no chat gets two messages within a second at the server; every row goes once."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections import defaultdict
from pathlib import Path

import pytest
import sqlalchemy as sa

from loyalbot.bot.local_api import LocalApiControl, LocalBotApi
from loyalbot.loyalty.programme import load_programme
from loyalbot.loyalty.service import Loyalty
from loyalbot.scheduler.planner import Planner
from loyalbot.storage import Db
from loyalbot.storage.models import Outbox, Schedule
from tests.scheduler.conftest import add_member, at

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "626262:shared-rates-token"
NOW = at("2025-06-10 10:00")
RATE = 30.0
SCHEDULES = ("one", "two", "three")


async def start_dispatcher(db_url: str, api_url: str, redis_url: str | None, name: str
                           ) -> asyncio.subprocess.Process:
    env = {**os.environ, "LOYALBOT_BOT_TOKEN": TOKEN, "PYTHONPATH": str(ROOT)}
    env.pop("LOYALBOT_REDIS_URL", None)
    if redis_url:
        env["LOYALBOT_REDIS_URL"] = redis_url
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "loyalbot.bot.dispatch", "--database-url", db_url, "--api-url", api_url,
        "--rate", str(RATE), "--worker-id", name, "--log-level", "WARNING", cwd=ROOT, env=env)


@pytest.mark.parametrize("backend", ["postgres", "redis"])
async def test_three_dispatchers_together_keep_the_bot_and_every_chat_within_telegrams_limits(pg_url, backend):
    redis_url = None
    if backend == "redis":
        redis_url = os.environ.get("LOYALBOT_TEST_REDIS_URL")
        if not redis_url:
            pytest.skip("set LOYALBOT_TEST_REDIS_URL (e.g. redis://127.0.0.1:6379/15) to share limits through Redis")
    db = Db(pg_url)
    loyalty = Loyalty(db, load_programme())
    await loyalty.sync_programme()
    api = LocalBotApi(serve_page=False)
    await api.start()
    tg = LocalApiControl(api.url)
    processes: list[asyncio.subprocess.Process] = []
    try:
        # Telegram's limits, strictly: 30/s for the bot, and no burst per chat (a second message to a chat
        # within a second is a 429). Each dispatcher alone runs at 30/s: three unshared would be 90/s.
        await tg.set_limits(enabled=True, global_per_second=RATE, private_burst=1, private_per_second=1)
        members = []
        for n in range(40):
            member = await add_member(loyalty, now=at("2025-01-01 10:00"), first_name=f"R{n}")
            await tg.create_user(member.telegram_id, f"R{n}")
            members.append(member)
        for name in SCHEDULES:
            async with db.transaction() as tx:
                schedule = Schedule(name=name, kind="broadcast", one_off_at=NOW, created_at=NOW, updated_at=NOW,
                                    templates={"en": f"{name} for {{{{ name }}}}"})
                tx.add(schedule)
            assert (await Planner(loyalty).run(schedule, now=NOW)).planned == 40

        processes = [await start_dispatcher(pg_url, api.url, redis_url, f"d{n}") for n in range(3)]

        async def open_rows() -> int:
            async with db.read() as s:
                return (await s.execute(sa.select(sa.func.count()).select_from(Outbox).where(
                    Outbox.status.in_(("pending", "sending"))))).scalar_one()

        deadline = time.monotonic() + 180  # 120 messages at 30/s take 4 s; a loaded machine takes longer
        while await open_rows():
            assert time.monotonic() < deadline, "the dispatchers did not finish"
            assert all(p.returncode is None for p in processes), "a dispatcher died"
            await asyncio.sleep(0.2)
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for process in processes:
            assert await asyncio.wait_for(process.wait(), 60) == 0

        stats = await tg.stats()
        assert stats["total_rate_limited"] == 0  # not one 429: the limits held across the three processes
        for member in members:
            texts = sorted(m["text"] for m in await tg.bot_messages(member.chat_id))
            assert texts == sorted(f"{name} for {member.first_name}" for name in SCHEDULES)
        async with db.read() as s:
            rows = (await s.execute(sa.select(Outbox.status, Outbox.claimed_by))).all()
        assert {r.status for r in rows} == {"sent"} and len(rows) == 120
        assert len({r.claimed_by for r in rows}) > 1  # the work really was shared
        arrivals: dict[int, list[float]] = defaultdict(list)
        for call in await tg.calls("sendMessage"):
            assert call["outcome"] == "ok"
            arrivals[int(call["chat_id"])].append(float(call["time"]))
        for times in arrivals.values():  # as the server saw them: a full second between two to one chat
            times.sort()
            assert all(later - earlier >= 0.99 for earlier, later in zip(times, times[1:], strict=False))
    finally:
        for process in processes:
            if process.returncode is None:
                process.kill()
                await process.wait()
        await tg.aclose()
        await api.stop()
        await db.dispose()


async def _broadcast(loyalty, count: int) -> list:
    members = [await add_member(loyalty, now=at("2025-01-01 10:00"), first_name=f"U{n}") for n in range(count)]
    async with loyalty.db.transaction() as tx:
        schedule = Schedule(name="news", kind="broadcast", one_off_at=NOW, created_at=NOW, updated_at=NOW,
                            templates={"en": "news for {{ name }}"})
        tx.add(schedule)
    assert (await Planner(loyalty).run(schedule, now=NOW)).planned == count
    return members


async def test_when_the_shared_limits_cannot_be_reached_nothing_is_sent_and_nothing_is_lost(db, loyalty):
    from loyalbot.scheduler.dispatcher import Dispatcher
    from loyalbot.storage.rates import RedisLimits
    from tests.scheduler.conftest import FakeChat, outbox_rows

    await _broadcast(loyalty, 5)
    chat = FakeChat()
    limits = RedisLimits("redis://127.0.0.1:1/0", socket_timeout=0.5)  # nothing listens there
    dispatcher = Dispatcher(db, chat, rate=30, limits=limits, idle_poll=0.05)
    try:
        task = asyncio.create_task(dispatcher.run())
        while dispatcher.stats.limits_unavailable < 2:  # noqa: ASYNC110 -- it tried, and tried again
            await asyncio.sleep(0.05)
        dispatcher.stop()
        await asyncio.wait_for(task, 30)
    finally:
        await limits.close()
    assert chat.calls == 0  # never sent unlimited
    rows = await outbox_rows(db)
    assert {r.status for r in rows} == {"pending"} and all(r.attempts == 0 and r.claimed_by is None for r in rows)
    # Once the limits answer again (here: memory), the same rows go, once each.
    stats = await Dispatcher(db, chat, rate=30).drain(limit_seconds=30)
    assert stats.sent == 5 and chat.calls == 5


async def test_a_429_pauses_its_chat_and_a_second_chats_429_pauses_the_whole_bot(db, loyalty):
    from loyalbot.chat.outbound import RetryAfter
    from loyalbot.scheduler.dispatcher import Dispatcher
    from loyalbot.storage.rates import MemoryLimits
    from tests.scheduler.conftest import FakeChat

    members = await _broadcast(loyalty, 4)
    limits = MemoryLimits()
    chat = FakeChat(faults=[RetryAfter(30)])
    dispatcher = Dispatcher(db, chat, rate=30, limits=limits)
    await dispatcher.drain(limit_seconds=10, horizon=1.0)
    first = members[0].chat_id
    assert dispatcher.stats.chat_pauses == 1 and dispatcher.stats.bot_pauses == 0
    assert (await limits.hold([f"chat:{first}"], lease=1.0))[f"chat:{first}"] > 20  # that chat waits
    assert sorted(chat.delivered) == sorted(m.chat_id for m in members[1:])  # the others went on
    assert (await limits.reserve("bot", 1, interval=1 / 30)).delays  # and so did the bot's rate

    chat.faults = [RetryAfter(30)]
    async with db.transaction() as tx:  # one more message for a member who got theirs
        schedule = Schedule(name="more", kind="broadcast", one_off_at=NOW, created_at=NOW, updated_at=NOW,
                            templates={"en": "more for {{ name }}"})
        tx.add(schedule)
    await Planner(loyalty).run(schedule, now=NOW)
    await dispatcher.drain(limit_seconds=20, horizon=2.0)  # the chats are free again a second after the last
    assert dispatcher.stats.bot_pauses == 1  # 429s for two chats within one retry_after: the bot waits
    # Stored in the shared limits, for every dispatcher (a chat's pause is its release's spacing).
    assert limits.stats.pauses == {"bot": 1}
