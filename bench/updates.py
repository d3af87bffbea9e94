"""Updates per second and latency of each runtime, for /points from many distinct members, against an echo floor.

For each runtime (aiogram, python-telegram-bot) and store (SQLite; PostgreSQL when
LOYALBOT_TEST_DATABASE_URL or --pg is given), N registered members each send /points once through
the local Bot API server as fast as it answers (saturation: throughput, and the latency of a queue);
then a steady offered load (by default 50 updates a second for 20 s, each from the next member, sent on
schedule whatever the answers) gives the latency of a bot that keeps up. Latency is from injecting the
update to the server recording the bot's sendMessage. Beside it a bare echo bot on the same runtime and
server gives the floor (the ratio is of saturation throughputs). The server,
the bot and the injector share one process and one event loop, so the figures are for comparison
between runtimes and stores, not absolute capacity. Never part of the tests' pass/fail.

    .venv/bin/python -m bench.updates [--members 1000] [--pg postgresql://postgres@127.0.0.1/test]
    .venv/bin/python -m bench.updates --stores postgresql --rate 50 --seconds 20
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


async def _answers(tg: LocalApiControl, injected: dict[int, float], since: int, deadline: float) -> dict[int, float]:
    """When the bot's first answer after `since` reached each chat in `injected` (the server's clock)."""
    answered: dict[int, float] = {}
    seen = since
    while len(answered) < len(injected) and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
        for call in await tg.calls(method="sendMessage", since=seen):
            seen = max(seen, call["seq"])
            if call["ok"] and call["chat_id"] in injected:
                answered.setdefault(call["chat_id"], call["time"] + call["duration"])
    if len(answered) < len(injected):
        raise RuntimeError(f"only {len(answered)} of {len(injected)} members were answered")
    return answered


def _latency(injected: dict[int, float], answered: dict[int, float]) -> dict[str, float]:
    latencies = sorted((answered[uid] - injected[uid]) * 1000 for uid in injected)
    return {"p50_ms": round(statistics.median(latencies), 1),
            "p99_ms": round(latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))], 1)}


async def _saturate(tg: LocalApiControl, members: int, concurrency: int) -> dict[str, float]:
    """Every member sends /points once, `concurrency` injections in flight: throughput and its latency."""
    injected: dict[int, float] = {}
    gate = asyncio.Semaphore(concurrency)
    since = max((c["seq"] for c in await tg.calls()), default=0)

    async def one(user_id: int) -> None:
        async with gate:
            injected[user_id] = time.time()
            await tg.send_text(user_id, "/points")

    started = time.time()
    await asyncio.gather(*(one(FIRST_ID + i) for i in range(members)))
    answered = await _answers(tg, injected, since, time.monotonic() + 300)
    elapsed = max(answered.values()) - started
    return {"updates_per_second": round(members / elapsed, 1), **_latency(injected, answered)}


async def _steady(tg: LocalApiControl, members: int, rate: float, seconds: float) -> dict[str, float]:
    """/points at `rate` a second for `seconds` (each from the next member), on a schedule that does not
    wait for answers: the latency of a bot that keeps up, not of a queue."""
    count = min(members, int(rate * seconds))
    injected: dict[int, float] = {}
    since = max((c["seq"] for c in await tg.calls()), default=0)
    gate = asyncio.Semaphore(64)  # a stalled server must not pile up hundreds of open requests

    async def one(user_id: int) -> None:
        async with gate:
            injected[user_id] = time.time()
            await tg.send_text(user_id, "/points")

    start = time.monotonic()
    sends = []
    for i in range(count):
        await asyncio.sleep(max(0.0, start + i / rate - time.monotonic()))
        sends.append(asyncio.create_task(one(FIRST_ID + i)))
    await asyncio.gather(*sends)
    lag = time.monotonic() - start - (count - 1) / rate  # how far the injector itself fell behind
    answered = await _answers(tg, injected, since, time.monotonic() + 300)
    return {"offered_per_second": rate, "steady_count": count,
            "injector_lag_ms": round(lag * 1000, 1),
            **{f"steady_{k}": v for k, v in _latency(injected, answered).items()}}


async def _drive(tg: LocalApiControl, members: int, concurrency: int, rate: float, seconds: float
                 ) -> dict[str, float]:
    """Saturation first (every member once, as fast as it goes), then a steady offered load."""
    figures = await _saturate(tg, members, concurrency)
    if rate > 0 and seconds > 0:
        await asyncio.sleep(1)  # let the last answers of the burst settle
        figures.update(await _steady(tg, members, rate, seconds))
    return figures


async def bench_echo(server: LocalBotApi, framework: str, members: int, concurrency: int, rate: float,
                     seconds: float) -> dict[str, float]:
    runtime = make_runtime(framework, Connection(token=TOKEN, api_url=server.url, polling_timeout=1), Echo())
    await runtime.open()
    await runtime.start()
    try:
        async with LocalApiControl(server.url) as tg:
            return await _drive(tg, members, concurrency, rate, seconds)
    finally:
        await runtime.stop()


async def bench_loyalbot(server: LocalBotApi, framework: str, database_url: str, members: int,
                         concurrency: int, rate: float, seconds: float) -> dict[str, float]:
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
            return await _drive(tg, members, concurrency, rate, seconds)
    finally:
        await app.stop()


async def main(members: int, pg: str | None, frameworks: list[str], concurrency: int, stores_wanted: list[str],
               rate: float, seconds: float) -> list[dict[str, Any]]:
    logging.basicConfig(level=logging.WARNING)
    server = LocalBotApi(serve_page=False, call_log_size=max(10_000, members * 8))
    await server.start()
    rows: list[dict[str, Any]] = []
    tmp = Path(tempfile.mkdtemp(prefix="loyalbot-bench-"))
    stores: list[tuple[str, str, Any]] = []
    if "sqlite" in stores_wanted:
        stores.append(("sqlite", f"sqlite+aiosqlite:///{tmp / 'bench.db'}", None))
    if pg and "postgresql" in stores_wanted:
        url, drop = await _pg_database(pg)
        stores.append(("postgresql", url, drop))
    try:
        async with LocalApiControl(server.url) as tg:
            for i in range(members):
                await tg.create_user(FIRST_ID + i, f"M{i}", language_code="en")
        for _store, url, _ in stores:
            await upgrade_async(url)
        for framework in frameworks:
            echo = await bench_echo(server, framework, members, concurrency, rate, seconds)
            rows.append({"runtime": framework, "bot": "echo", "store": "-", **echo})
            for store, url, _ in stores:
                figures = await bench_loyalbot(server, framework, url, members, concurrency, rate, seconds)
                rows.append({"runtime": framework, "bot": "loyalbot /points", "store": store, **figures,
                             "ratio_to_echo": round(figures["updates_per_second"] / echo["updates_per_second"], 2)})
    finally:
        await server.stop()
        for _, _, drop in stores:
            if drop is not None:
                await drop()
    return rows


def show(rows: list[dict[str, Any]], members: int, concurrency: int, rate: float, seconds: float) -> None:
    header = (f"{'runtime':<8} {'bot':<17} {'store':<11} {'updates/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'vs echo':>8}"
              f" {'steady p50':>11} {'steady p99':>11}")
    print(f"saturation: {members} distinct members, one /points each, injected {concurrency} at a time; "
          f"steady: {rate:g} updates/s offered for {seconds:g} s")
    print(header)
    print("-" * len(header))
    for r in rows:
        ratio = f"{r['ratio_to_echo']:.2f}" if "ratio_to_echo" in r else ""
        print(f"{r['runtime']:<8} {r['bot']:<17} {r['store']:<11} {r['updates_per_second']:>10} "
              f"{r['p50_ms']:>8} {r['p99_ms']:>8} {ratio:>8} {r.get('steady_p50_ms', ''):>11} "
              f"{r.get('steady_p99_ms', ''):>11}")
    print(json.dumps({"bench": "updates", "members": members, "concurrency": concurrency, "steady_rate": rate,
                      "steady_seconds": seconds, "rows": rows}, ensure_ascii=False))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=1000)
    parser.add_argument("--pg", default=os.environ.get("LOYALBOT_TEST_DATABASE_URL"),
                        help="PostgreSQL server URL (default: LOYALBOT_TEST_DATABASE_URL); a scratch database is made")
    parser.add_argument("--stores", default="sqlite,postgresql", help="which of sqlite,postgresql to run")
    parser.add_argument("--frameworks", default="aiogram,ptb")
    parser.add_argument("--concurrency", type=int, default=32, help="updates injected at once (saturation)")
    parser.add_argument("--rate", type=float, default=50, help="updates a second offered in the steady phase (0: none)")
    parser.add_argument("--seconds", type=float, default=20, help="length of the steady phase")
    args = parser.parse_args()
    result = asyncio.run(main(args.members, args.pg, args.frameworks.split(","), args.concurrency,
                              args.stores.split(","), args.rate, args.seconds))
    show(result, args.members, args.concurrency, args.rate, args.seconds)
