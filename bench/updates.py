"""Updates per second and latency of each runtime, for /points from many distinct members, against an echo floor.

For each runtime (aiogram, python-telegram-bot) and store (SQLite; PostgreSQL when
LOYALBOT_TEST_DATABASE_URL or --pg is given), N registered members each send /points once through
the local Bot API server; latency is from injecting the update to the server recording the bot's
sendMessage. Beside it a bare echo bot on the same runtime and server gives the floor. The server,
the bot and the injector share one process and one event loop, so the figures are for comparison
between runtimes and stores, not absolute capacity. Never part of the tests' pass/fail.

    /work/venv/bin/python -m bench.updates [--members 1000] [--pg postgresql://postgres@127.0.0.1/test]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from loyalbot.bot.app import App, make_runtime
from loyalbot.bot.local_api import LocalApiControl, LocalBotApi
from loyalbot.bot.runtime import Connection
from loyalbot.bot.settings import load_settings
from loyalbot.chat.port import Incoming, Reply
from loyalbot.storage.migrate import upgrade_async

TOKEN = "555000:bench-token"
FIRST_ID = 100_000


class Echo:
    """The floor: answers every message with its own text, touching nothing else."""

    async def handle(self, incoming: Incoming) -> list[Reply]:
        return [Reply(text=f"echo {incoming.text or incoming.command}")]


async def _pg_database(server_url: str) -> tuple[str, Any]:
    """A scratch database on the PostgreSQL server; returns its URL and a coroutine function that drops it."""
    import asyncpg
    from sqlalchemy.engine import make_url

    url = make_url(server_url)
    name = f"loyalbot_bench_{uuid.uuid4().hex[:8]}"
    params = dict(host=url.host or "127.0.0.1", port=url.port or 5432, user=url.username, password=url.password,
                  database=url.database or "postgres")
    conn = await asyncpg.connect(**params)
    await conn.execute(f'CREATE DATABASE "{name}"')
    await conn.close()

    async def drop() -> None:
        admin = await asyncpg.connect(**params)
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()

    return url.set(drivername="postgresql+asyncpg", database=name).render_as_string(hide_password=False), drop


async def _drive(tg: LocalApiControl, members: int, concurrency: int) -> dict[str, float]:
    """Every member sends /points once; returns throughput and latency figures."""
    injected: dict[int, float] = {}
    gate = asyncio.Semaphore(concurrency)
    seq_before = max((c["seq"] for c in await tg.calls()), default=0)

    async def one(user_id: int) -> None:
        async with gate:
            injected[user_id] = time.time()
            await tg.send_text(user_id, "/points")

    started = time.time()
    await asyncio.gather(*(one(FIRST_ID + i) for i in range(members)))
    answered: dict[int, float] = {}
    deadline = time.monotonic() + 120
    while len(answered) < members and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
        for call in await tg.calls(method="sendMessage"):
            if call["seq"] > seq_before and call["ok"] and call["chat_id"] in injected:
                answered.setdefault(call["chat_id"], call["time"] + call["duration"])
    if len(answered) < members:
        raise RuntimeError(f"only {len(answered)} of {members} members were answered")
    latencies = sorted((answered[uid] - injected[uid]) * 1000 for uid in injected)
    elapsed = max(answered.values()) - started
    return {
        "updates_per_second": round(members / elapsed, 1),
        "p50_ms": round(statistics.median(latencies), 1),
        "p99_ms": round(latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))], 1),
    }


async def bench_echo(server: LocalBotApi, framework: str, members: int, concurrency: int) -> dict[str, float]:
    runtime = make_runtime(framework, Connection(token=TOKEN, api_url=server.url, polling_timeout=1), Echo())
    await runtime.open()
    await runtime.start()
    try:
        async with LocalApiControl(server.url) as tg:
            return await _drive(tg, members, concurrency)
    finally:
        await runtime.stop()


async def bench_loyalbot(server: LocalBotApi, framework: str, database_url: str, members: int,
                         concurrency: int) -> dict[str, float]:
    settings = load_settings(database_url=database_url, bot_token=TOKEN, telegram_api_url=server.url,
                             webhook_url=None, redis_url=None)
    app = App(settings, framework=framework, connection=Connection(token=TOKEN, api_url=server.url,
                                                                   polling_timeout=1))
    await app.start()
    try:
        assert app.loyalty is not None
        for i in range(members):  # registered once per store; a second runtime finds them there
            member = await app.loyalty.register_member(telegram_id=FIRST_ID + i, first_name=f"M{i}",
                                                       terms_accepted=True)
            if member.balance == 0:
                await app.loyalty.grant_bonus(member.id, 100 + i % 500, reference=f"bench-{i}", note="bench")
        async with LocalApiControl(server.url) as tg:
            return await _drive(tg, members, concurrency)
    finally:
        await app.stop()


async def main(members: int, pg: str | None, frameworks: list[str], concurrency: int) -> list[dict[str, Any]]:
    logging.basicConfig(level=logging.WARNING)
    server = LocalBotApi(serve_page=False, call_log_size=max(10_000, members * 8))
    await server.start()
    rows: list[dict[str, Any]] = []
    tmp = Path(tempfile.mkdtemp(prefix="loyalbot-bench-"))
    stores: list[tuple[str, str, Any]] = [("sqlite", f"sqlite+aiosqlite:///{tmp / 'bench.db'}", None)]
    if pg:
        url, drop = await _pg_database(pg)
        stores.append(("postgresql", url, drop))
    try:
        async with LocalApiControl(server.url) as tg:
            for i in range(members):
                await tg.create_user(FIRST_ID + i, f"M{i}", language_code="en")
        for _store, url, _ in stores:
            await upgrade_async(url)
        for framework in frameworks:
            echo = await bench_echo(server, framework, members, concurrency)
            rows.append({"runtime": framework, "bot": "echo", "store": "-", **echo})
            for store, url, _ in stores:
                figures = await bench_loyalbot(server, framework, url, members, concurrency)
                rows.append({"runtime": framework, "bot": "loyalbot /points", "store": store, **figures,
                             "ratio_to_echo": round(figures["updates_per_second"] / echo["updates_per_second"], 2)})
    finally:
        await server.stop()
        for _, _, drop in stores:
            if drop is not None:
                await drop()
    return rows


def show(rows: list[dict[str, Any]], members: int, concurrency: int) -> None:
    header = f"{'runtime':<8} {'bot':<17} {'store':<11} {'updates/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'vs echo':>8}"
    print(f"{members} distinct members, one /points each, injected {concurrency} at a time")
    print(header)
    print("-" * len(header))
    for r in rows:
        ratio = f"{r['ratio_to_echo']:.2f}" if "ratio_to_echo" in r else ""
        print(f"{r['runtime']:<8} {r['bot']:<17} {r['store']:<11} {r['updates_per_second']:>10} "
              f"{r['p50_ms']:>8} {r['p99_ms']:>8} {ratio:>8}")
    print(json.dumps({"bench": "updates", "members": members, "rows": rows}, ensure_ascii=False))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=1000)
    parser.add_argument("--pg", default=os.environ.get("LOYALBOT_TEST_DATABASE_URL"),
                        help="PostgreSQL server URL (default: LOYALBOT_TEST_DATABASE_URL); a scratch database is made")
    parser.add_argument("--frameworks", default="aiogram,ptb")
    parser.add_argument("--concurrency", type=int, default=32, help="updates injected at once")
    args = parser.parse_args()
    result = asyncio.run(main(args.members, args.pg, args.frameworks.split(","), args.concurrency))
    show(result, args.members, args.concurrency)
