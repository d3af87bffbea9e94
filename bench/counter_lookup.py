"""Benchmark: finding a member at the counter by member number, phone (indexed, and stored oddly) and name.

Fills a fresh store with N members (phones as Telegram shares them, a few typed with spaces), then times
each kind of look-up through the Loyalty service, one at a time as staff make them. Prints a table and
one JSON line. Not part of the tests.

    python bench/counter_lookup.py                      # SQLite, plus PostgreSQL if LOYALBOT_TEST_DATABASE_URL is set
    python bench/counter_lookup.py --members 50000 --lookups 300
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import sqlalchemy as sa  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from loyalbot.loyalty import Loyalty, load_programme  # noqa: E402
from loyalbot.loyalty.codes import member_no_from  # noqa: E402
from loyalbot.storage import Db, utcnow  # noqa: E402
from loyalbot.storage.migrate import upgrade_async  # noqa: E402
from loyalbot.storage.models import Member  # noqa: E402

NAMES = ["Ann", "Anna", "Bob", "Chen", "Dana", "Eva", "Fang", "Hui", "Ivan", "Jun", "Kai", "Lena", "Mei", "Noor"]


async def _admin(server_url: str, statement: str) -> None:
    import asyncpg

    url = make_url(server_url)
    conn = await asyncpg.connect(host=url.host, port=url.port or 5432, user=url.username, password=url.password,
                                 database=url.database)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


async def _fill(db: Db, count: int) -> None:
    now = utcnow()
    rows = []
    for i in range(count):
        phone = f"316{i:08d}" if i % 50 else f"06 {i // 10000:04d} {i % 10000:04d}"  # 1 in 50 typed with spaces
        rows.append(dict(telegram_id=10_000_000 + i, chat_id=10_000_000 + i, member_no=member_no_from(10_000_000 + i),
                         first_name=f"{random.choice(NAMES)}{i % 97}", last_name=None, language="en",
                         timezone="Europe/Amsterdam", phone=phone, terms_accepted_at=now, tier="green",
                         tier_since=now, joined_at=now, balance=0, status="active", marketing_consent=False,
                         notify={}, last_activity_at=now))
    async with db.connection() as conn:
        for start in range(0, count, 2000):
            await conn.execute(sa.insert(Member.__table__), rows[start:start + 2000])


async def _time(label: str, store: str, lookups: list, loyalty_call) -> dict:
    start = time.perf_counter()
    found = 0
    for item in lookups:
        found += len(await loyalty_call(item))
    seconds = time.perf_counter() - start
    return {"store": store, "lookup": label, "count": len(lookups), "found": found,
            "ms_each": round(1000 * seconds / len(lookups), 3)}


async def bench(store: str, url: str, members: int, lookups: int) -> list[dict]:
    await upgrade_async(url)
    db = Db(url)
    loyalty = Loyalty(db, load_programme())
    await loyalty.sync_programme()
    await _fill(db, members)
    picks = [random.randrange(members) for _ in range(lookups)]
    rows = [
        await _time("member number", store, [member_no_from(10_000_000 + i) for i in picks],
                    lambda no: _one(loyalty, no)),
        await _time("phone (indexed)", store, [f"06{i:08d}" for i in picks if i % 50] or ["0600000001"],
                    loyalty.members_by_phone),
        await _time("phone (stored with spaces)", store, [f"06{i:08d}" for i in range(0, members, 50)][:lookups],
                    loyalty.members_by_phone),
        await _time("phone (nobody)", store, [f"06{members + i:08d}" for i in range(lookups)],
                    loyalty.members_by_phone),
        await _time("name prefix", store, [random.choice(NAMES)[:3].lower() for _ in range(lookups)],
                    lambda name: loyalty.members_by_name(name, limit=9)),
    ]
    await db.dispose()
    return rows


async def _one(loyalty: Loyalty, number: str) -> list:
    return [await loyalty.member_by_number(number)]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=20_000)
    parser.add_argument("--lookups", type=int, default=200)
    parser.add_argument("--pg", default=os.environ.get("LOYALBOT_TEST_DATABASE_URL"))
    args = parser.parse_args()
    random.seed(7)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        results += await bench("sqlite", f"sqlite+aiosqlite:///{tmp}/bench.db", args.members, args.lookups)
    if args.pg:
        name = f"bench_counter_{uuid.uuid4().hex[:8]}"
        server = make_url(args.pg).set(drivername="postgresql")
        await _admin(server.render_as_string(hide_password=False), f'CREATE DATABASE "{name}"')
        try:
            url = server.set(drivername="postgresql+asyncpg", database=name).render_as_string(hide_password=False)
            results += await bench("postgresql", url, args.members, args.lookups)
        finally:
            await _admin(server.render_as_string(hide_password=False), f'DROP DATABASE "{name}" WITH (FORCE)')
    print(f"{'store':<11} {'look-up':<28} {'count':>6} {'found':>6} {'ms each':>8}")
    for row in results:
        print(f"{row['store']:<11} {row['lookup']:<28} {row['count']:>6} {row['found']:>6} {row['ms_each']:>8}")
    print(json.dumps({"bench": "counter_lookup", "members": args.members, "results": results}))


if __name__ == "__main__":
    asyncio.run(main())
