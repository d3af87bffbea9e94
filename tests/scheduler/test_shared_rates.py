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
