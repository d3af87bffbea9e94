"""Benchmark: purchases awarded and rewards redeemed per second, on SQLite and PostgreSQL, at concurrency 1 and 32.

Each award is the full idempotent service call (`Loyalty.award_purchase` with a fresh external id:
lock the member, check the id, price the points, write purchase + lot, update balance and tier);
each redemption is `Loyalty.redeem_reward` (lock, expire, check, consume lots, issue a coupon).
Prints a table (with the client process's CPU per call: the bench and the store share the machine,
so on PostgreSQL that is the budget the Python side spends) and one JSON line. Not part of the tests.

    python bench/ledger.py                       # SQLite, plus PostgreSQL if LOYALBOT_TEST_DATABASE_URL is set
    python bench/ledger.py --pg postgresql://postgres@127.0.0.1:5432/test --awards 4000
    python bench/ledger.py --pg postgresql://postgres@127.0.0.1:5432/test --stores postgresql --operations award
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy.engine import make_url  # noqa: E402

from loyalbot.loyalty import Loyalty, load_programme  # noqa: E402
from loyalbot.storage import Db  # noqa: E402
from loyalbot.storage.migrate import upgrade_async  # noqa: E402


async def _admin(server_url: str, statement: str) -> None:
    import asyncpg

    url = make_url(server_url)
    conn = await asyncpg.connect(host=url.host, port=url.port or 5432, user=url.username, password=url.password,
                                 database=url.database)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


async def _run(calls: list, concurrency: int) -> tuple[float, float]:
    """Run the calls on `concurrency` workers; returns (wall seconds, this process's CPU seconds)."""
    queue = iter(calls)

    async def worker() -> None:
        for call in queue:
            await call()

    start, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - start, time.process_time() - cpu


def _row(label: str, operation: str, concurrency: int, count: int, seconds: float, cpu: float) -> dict:
    return {"store": label, "operation": operation, "concurrency": concurrency, "count": count,
            "per_second": round(count / seconds, 1), "client_cpu_ms": round(cpu / count * 1000, 3)}


async def bench_store(url: str, label: str, members: int, awards: int, redemptions: int,
                      concurrencies: tuple[int, ...] = (1, 32)) -> list[dict]:
    await upgrade_async(url)
    db = Db(url, pool_size=40)
    loyalty = Loyalty(db, load_programme())
    results = []
    try:
        await loyalty.sync_programme()
        ids = [(await loyalty.register_member(telegram_id=10_000 + i, terms_accepted=True)).id for i in range(members)]
        coffee = next(i.reward.id for i in await loyalty.catalogue(ids[0]) if i.reward.code == "coffee")
        for concurrency in concurrencies:
            tag = uuid.uuid4().hex[:6]
            calls = [
                (lambda n=n, tag=tag: loyalty.award_purchase(ids[n % members], external_id=f"b-{tag}-{n}",
                                                     amount="23.50"))
                for n in range(awards)
            ]
            if awards:
                results.append(_row(label, "award_purchase", concurrency, awards, *await _run(calls, concurrency)))
            if not redemptions:
                continue
            for member_id in ids:
                await loyalty.adjust_points(member_id, 150 * (redemptions // members + 2), reason="bench",
                                            actor="bench")
            calls = [
                (lambda n=n, tag=tag: loyalty.redeem_reward(ids[n % members], coffee, request_id=f"r-{tag}-{n}"))
                for n in range(redemptions)
            ]
            results.append(_row(label, "redeem_reward", concurrency, redemptions,
                                *await _run(calls, concurrency)))
    finally:
        await db.dispose()
    return results


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pg", default=os.environ.get("LOYALBOT_TEST_DATABASE_URL"),
                        help="PostgreSQL server URL (a scratch database is created and dropped)")
    parser.add_argument("--members", type=int, default=500)
    parser.add_argument("--awards", type=int, default=3000)
    parser.add_argument("--redemptions", type=int, default=1000, help="0 skips redemptions")
    parser.add_argument("--concurrency", default="1,32", help="comma-separated, e.g. 32")
    parser.add_argument("--stores", default="sqlite,postgresql", help="which of sqlite,postgresql to run")
    args = parser.parse_args()
    concurrencies = tuple(int(c) for c in args.concurrency.split(","))
    stores = set(args.stores.split(","))

    rows: list[dict] = []
    if "sqlite" in stores:
        with tempfile.TemporaryDirectory() as tmp:
            rows += await bench_store(f"sqlite+aiosqlite:///{tmp}/bench.db", "sqlite", args.members, args.awards,
                                      args.redemptions, concurrencies)
    if args.pg and "postgresql" in stores:
        name = f"loyalbot_bench_{uuid.uuid4().hex[:8]}"
        await _admin(args.pg, f'CREATE DATABASE "{name}"')
        try:
            url = make_url(args.pg).set(drivername="postgresql+asyncpg", database=name)
            rows += await bench_store(url.render_as_string(hide_password=False), "postgresql", args.members,
                                      args.awards, args.redemptions, concurrencies)
        finally:
            await _admin(args.pg, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    load = os.getloadavg()
    print(f"{'store':<11} {'operation':<15} {'concurrency':>11} {'count':>7} {'per second':>11} {'client ms':>10}")
    for row in rows:
        print(f"{row['store']:<11} {row['operation']:<15} {row['concurrency']:>11} {row['count']:>7} "
              f"{row['per_second']:>11,.1f} {row['client_cpu_ms']:>10.3f}")
    print(f"load average after the run: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} CPUs")
    print(json.dumps({"bench": "ledger", "cpus": os.cpu_count(), "load": [round(x, 2) for x in load],
                      "results": rows}))


if __name__ == "__main__":
    asyncio.run(main())
