"""Benchmark: purchases awarded and rewards redeemed per second, on SQLite and PostgreSQL, against a raw floor.

Each award is the full idempotent service call (`Loyalty.award_purchase` with a fresh external id:
lock the member, check the id, price the points, write purchase + lot, update balance and tier);
each redemption is `Loyalty.redeem_reward` (lock, expire, check, consume lots, issue a coupon).
On PostgreSQL a *floor* runs beside them at the same concurrency: one raw asyncpg transaction per call
(insert a ledger row, update the member's balance; BEGIN, two statements, COMMIT on a connection of
its own per worker, no pool and no SQLAlchemy), what the server and the driver alone allow. The
floor, the awards and the redemptions run back to back, `--repeat` times; the table shows the
median of each, and every subject as the median of its ratios to the floor run of the same round, so
that a machine shared with other work moves both sides of a ratio alike. The client process's CPU
per call is shown too: the bench and the store share the machine, so on PostgreSQL that is the
budget the Python side spends. Prints a table and one JSON line. Not part of the tests.

    python bench/ledger.py                       # SQLite, plus PostgreSQL if LOYALBOT_TEST_DATABASE_URL is set
    python bench/ledger.py --pg postgresql://postgres@127.0.0.1:5432/test --stores postgresql --concurrency 32
    python bench/ledger.py --pg postgresql://postgres@127.0.0.1:5432/test --awards 4000 --repeat 5
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy.engine import make_url  # noqa: E402

from loyalbot.loyalty import Loyalty, load_programme  # noqa: E402
from loyalbot.storage import Db  # noqa: E402
from loyalbot.storage.migrate import upgrade_async  # noqa: E402

# The floor's transaction: a ledger row that moves no points (delta 0, not a lot), and the balance it
# "moves", so the bench's store still passes the ledger check afterwards.
FLOOR_INSERT = ("INSERT INTO ledger_entries (member_id, kind, delta, reference, created_at)"
                " VALUES ($1, 'adjust', 0, $2, $3)")
FLOOR_UPDATE = "UPDATE members SET balance = balance + 0, last_activity_at = $2 WHERE id = $1"


def _connect_args(url: str) -> dict[str, Any]:
    parsed = make_url(url)
    return dict(host=parsed.host or "127.0.0.1", port=parsed.port or 5432, user=parsed.username,
                password=parsed.password, database=parsed.database)


async def _admin(server_url: str, statement: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(**_connect_args(server_url))
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


Call = Callable[[], Awaitable[Any]]


async def _run(calls: list[Call], concurrency: int) -> tuple[float, float]:
    """Run the calls on `concurrency` workers; returns (wall seconds, this process's CPU seconds)."""
    queue = iter(calls)

    async def worker() -> None:
        for call in queue:
            await call()

    start, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - start, time.process_time() - cpu


async def _floor(url: str, member_ids: list[int], count: int, concurrency: int, tag: str) -> tuple[float, float]:
    """`count` raw asyncpg transactions on `concurrency` connections of their own; (wall, CPU) seconds."""
    import asyncpg

    conns = [await asyncpg.connect(**_connect_args(url)) for _ in range(concurrency)]
    try:
        queue = iter(range(count))

        async def worker(conn: asyncpg.Connection) -> None:
            for n in queue:
                member_id, now = member_ids[n % len(member_ids)], datetime.now(UTC)
                async with conn.transaction():
                    await conn.execute(FLOOR_INSERT, member_id, f"floor-{tag}-{n}", now)
                    await conn.execute(FLOOR_UPDATE, member_id, now)

        start, cpu = time.perf_counter(), time.process_time()
        await asyncio.gather(*(worker(conn) for conn in conns))
        return time.perf_counter() - start, time.process_time() - cpu
    finally:
        for conn in conns:
            await conn.close()


def _figures(count: int, seconds: float, cpu: float) -> dict[str, float]:
    return {"per_second": count / seconds, "client_cpu_ms": cpu / count * 1000}


def _row(label: str, operation: str, concurrency: int, count: int, runs: list[dict[str, float]],
         floors: list[dict[str, float]] | None) -> dict[str, Any]:
    row: dict[str, Any] = {
        "store": label, "operation": operation, "concurrency": concurrency, "count": count, "repeats": len(runs),
        "per_second": round(statistics.median(r["per_second"] for r in runs), 1),
        "per_second_runs": [round(r["per_second"], 1) for r in runs],
        "client_cpu_ms": round(statistics.median(r["client_cpu_ms"] for r in runs), 3),
    }
    if floors:
        row["ratio_to_floor"] = round(statistics.median(
            r["per_second"] / f["per_second"] for r, f in zip(runs, floors, strict=True)), 2)
    return row


async def bench_store(url: str, label: str, members: int, awards: int, redemptions: int,
                      concurrencies: tuple[int, ...] = (1, 32), repeat: int = 3) -> list[dict[str, Any]]:
    await upgrade_async(url)
    db = Db(url, pool_size=40)
    loyalty = Loyalty(db, load_programme())
    results = []
    try:
        await loyalty.sync_programme()
        ids = [(await loyalty.register_member(telegram_id=10_000 + i, terms_accepted=True)).id for i in range(members)]
        coffee = next(i.reward.id for i in await loyalty.catalogue(ids[0]) if i.reward.code == "coffee")
        for concurrency in concurrencies:
            runs: dict[str, list[dict[str, float]]] = {"floor": [], "award_purchase": [], "redeem_reward": []}
            for _ in range(repeat):
                tag = uuid.uuid4().hex[:6]
                if db.is_postgres:
                    runs["floor"].append(_figures(awards or redemptions,
                                                  *await _floor(url, ids, awards or redemptions, concurrency, tag)))
                if awards:
                    calls: list[Call] = [
                        (lambda n=n, tag=tag: loyalty.award_purchase(ids[n % members], external_id=f"b-{tag}-{n}",
                                                                     amount="23.50"))
                        for n in range(awards)
                    ]
                    runs["award_purchase"].append(_figures(awards, *await _run(calls, concurrency)))
                if not redemptions:
                    continue
                for member_id in ids:
                    await loyalty.adjust_points(member_id, 150 * (redemptions // members + 2), reason="bench",
                                                actor="bench")
                calls = [
                    (lambda n=n, tag=tag: loyalty.redeem_reward(ids[n % members], coffee, request_id=f"r-{tag}-{n}"))
                    for n in range(redemptions)
                ]
                runs["redeem_reward"].append(_figures(redemptions, *await _run(calls, concurrency)))
            floors = runs["floor"] or None
            if floors:
                results.append(_row(label, "floor (raw asyncpg)", concurrency, awards or redemptions, floors, None))
            for operation, count in (("award_purchase", awards), ("redeem_reward", redemptions)):
                if runs[operation]:
                    results.append(_row(label, operation, concurrency, count, runs[operation], floors))
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
    parser.add_argument("--repeat", type=int, default=3, help="runs of floor, awards and redemptions; medians shown")
    args = parser.parse_args()
    concurrencies = tuple(int(c) for c in args.concurrency.split(","))
    stores = set(args.stores.split(","))

    rows: list[dict[str, Any]] = []
    if "sqlite" in stores:
        with tempfile.TemporaryDirectory() as tmp:
            rows += await bench_store(f"sqlite+aiosqlite:///{tmp}/bench.db", "sqlite", args.members, args.awards,
                                      args.redemptions, concurrencies, args.repeat)
    if args.pg and "postgresql" in stores:
        name = f"loyalbot_bench_{uuid.uuid4().hex[:8]}"
        await _admin(args.pg, f'CREATE DATABASE "{name}"')
        try:
            url = make_url(args.pg).set(drivername="postgresql+asyncpg", database=name)
            rows += await bench_store(url.render_as_string(hide_password=False), "postgresql", args.members,
                                      args.awards, args.redemptions, concurrencies, args.repeat)
        finally:
            await _admin(args.pg, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    load = os.getloadavg()
    print(f"{'store':<11} {'operation':<19} {'concurrency':>11} {'count':>7} {'per second':>11} {'client ms':>10}"
          f" {'vs floor':>9}")
    for row in rows:
        ratio = f"{row['ratio_to_floor']:.2f}" if "ratio_to_floor" in row else ""
        print(f"{row['store']:<11} {row['operation']:<19} {row['concurrency']:>11} {row['count']:>7} "
              f"{row['per_second']:>11,.1f} {row['client_cpu_ms']:>10.3f} {ratio:>9}")
    print(f"medians of {args.repeat} run(s) each; 'vs floor': the median ratio to the floor run of the same round")
    print(f"load average after the run: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} CPUs")
    print(json.dumps({"bench": "ledger", "cpus": os.cpu_count(), "load": [round(x, 2) for x in load],
                      "results": rows}))


if __name__ == "__main__":
    asyncio.run(main())
