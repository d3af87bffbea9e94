"""Campaign benchmark: planning a campaign with a control group and two variants, and counting its results.

    python bench/campaign_results.py                                 # 1,000,000 members; 1M sent, 5M purchases
    python bench/campaign_results.py --members 100000 --sent 100000 --purchases 500000   # on a loaded machine

PostgreSQL comes from --pg-url (or LOYALBOT_TEST_DATABASE_URL); each measurement makes a scratch database
and drops it. Prints a table and one JSON line. Figures only: nothing here passes or fails.

* ``plan``: `Planner.run` of a broadcast with ``holdout_pct`` 10 and variants A/B (weights 1:1) over
  N members seeded with COPY: rows written per second (outbox rows plus campaign_holdouts rows; the
  aim is >= 20,000/s), the shares that came out, and the share of the time the planner was on the CPU
  (the rest it waited for PostgreSQL). Compare with `bench/fanout.py --members N --dispatch '' --shared ''
  --naive 0` run next to it: the same planning without a campaign.
* ``attribution``: `campaign_results` over S sent outbox rows (10% more members held out) and P
  purchases spread over the fortnight around the send, all seeded with COPY and ANALYZEd: seconds
  for the whole results (per variant, the control group, redemption look-up).

Seeding is not measured. On a shared machine runs vary by 20% or more; the table shows the load
average (`os.getloadavg`) at the start of each measurement so a slow figure can be read for what it is.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import asyncpg  # noqa: E402
import sqlalchemy as sa  # noqa: E402

from bench.fanout import admin, plain_dsn, seed_members  # noqa: E402
from loyalbot.loyalty.programme import load_programme  # noqa: E402
from loyalbot.loyalty.service import Loyalty  # noqa: E402
from loyalbot.scheduler.attribution import campaign_results  # noqa: E402
from loyalbot.scheduler.planner import Planner  # noqa: E402
from loyalbot.storage import Db  # noqa: E402
from loyalbot.storage.migrate import upgrade  # noqa: E402
from loyalbot.storage.models import Schedule  # noqa: E402

NOW = datetime(2026, 6, 1, 10, 0, tzinfo=UTC)
VARIANTS = [{"name": "A", "weight": 1, "templates": {"en": "Hello {{ name }}, A", "zh_Hans": "你好 {{ name }}，A",
                                                      "zh_Hant": "你好 {{ name }}，A"}},
            {"name": "B", "weight": 1, "templates": {"en": "Hello {{ name }}, B", "zh_Hans": "你好 {{ name }}，B",
                                                      "zh_Hant": "你好 {{ name }}，B"}}]
CAMPAIGN = {"holdout_pct": 10, "variants": VARIANTS, "window_days": 7}


class ScratchDatabase:
    """A migrated PostgreSQL database of the measurement's own, dropped afterwards."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.name = f"bench_campaigns_{uuid.uuid4().hex[:8]}"
        self.url = sa.engine.make_url(base_url).set(database=self.name).render_as_string(hide_password=False)

    async def __aenter__(self) -> str:
        await admin(self.base_url, f'CREATE DATABASE "{self.name}"')
        await asyncio.to_thread(upgrade, self.url)
        return self.url

    async def __aexit__(self, *exc: object) -> None:
        await admin(self.base_url, f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')


async def add_campaign(db: Db) -> Schedule:
    async with db.transaction() as tx:
        row = Schedule(name="bench-campaign", kind="broadcast", one_off_at=NOW, params=CAMPAIGN,
                       templates=VARIANTS[0]["templates"], created_at=NOW, updated_at=NOW)
        tx.add(row)
    return row


async def bench_plan(base_url: str, members: int) -> dict:
    """Plan a campaign (10% held out, A/B 1:1) for `members` members."""
    load = os.getloadavg()[0]
    async with ScratchDatabase(base_url) as url:
        await seed_members(url, members)
        db = Db(url)
        try:
            loyalty = Loyalty(db, load_programme())
            schedule = await add_campaign(db)
            cpu_started, started = time.process_time(), time.perf_counter()
            stats = await Planner(loyalty, batch_size=5000).run(schedule, now=NOW)
            seconds = time.perf_counter() - started
            cpu = time.process_time() - cpu_started
            async with db.read() as s:
                variants = dict((await s.execute(sa.text(
                    "SELECT coalesce(variant, '-'), count(*) FROM outbox WHERE status = 'pending' GROUP BY 1"))).all())
        finally:
            await db.dispose()
    rows = stats.planned + stats.held_out + sum(stats.skipped.values())
    return {"members": members, "rows": rows, "planned": stats.planned, "held_out": stats.held_out,
            "skipped": sum(stats.skipped.values()), "variants": {k: int(v) for k, v in variants.items()},
            "seconds": round(seconds, 2), "rows_per_s": round(rows / seconds),
            "planner_cpu_share": round(cpu / seconds, 2), "load_avg_1m": round(load, 1)}


async def seed_campaign_history(url: str, schedule_id: int, sent: int, purchases: int) -> None:
    """`sent` sent outbox rows (members 1..sent), 10% more members held out, `purchases` purchases."""
    rng = random.Random(11)
    conn = await asyncpg.connect(plain_dsn(url))
    held = sent // 10
    try:
        step = 50_000
        for first in range(1, sent + 1, step):
            await conn.copy_records_to_table("outbox", records=[
                (n, f"schedule:{schedule_id}:{n}:once", schedule_id, n, 10_000_000 + n, "broadcast", "once",
                 "AB"[n % 2], "hello", "[]", "sent", NOW, 1, NOW + timedelta(seconds=n % 3600), NOW)
                for n in range(first, min(first + step, sent + 1))],
                columns=["id", "idempotency_key", "schedule_id", "member_id", "chat_id", "kind", "period", "variant",
                         "text", "buttons", "status", "not_before", "attempts", "sent_at", "created_at"])
        await conn.copy_records_to_table("campaign_holdouts", records=[
            (n, schedule_id, sent + n, "once", NOW) for n in range(1, held + 1)],
            columns=["id", "schedule_id", "member_id", "period", "assigned_at"])
        everyone = sent + held
        for first in range(1, purchases + 1, step):
            records = []
            for n in range(first, min(first + step, purchases + 1)):
                when = NOW + timedelta(seconds=rng.randint(-7 * 86400, 14 * 86400))
                amount = Decimal(rng.randint(100, 20000)) / 100
                records.append((n, f"bench-{n}", rng.randint(1, everyone), amount, "EUR", when, int(amount),
                                Decimal(0), 0, 0, "api", when))
            await conn.copy_records_to_table("purchases", records=records, columns=[
                "id", "external_id", "member_id", "amount", "currency", "occurred_at", "points_awarded",
                "refunded_amount", "points_refunded", "refund_shortfall", "source", "created_at"])
        await conn.execute("ANALYZE outbox; ANALYZE campaign_holdouts; ANALYZE purchases")
    finally:
        await conn.close()


async def bench_attribution(base_url: str, sent: int, purchases: int) -> dict:
    """Count a campaign's results over `sent` sent messages and `purchases` purchases."""
    load = os.getloadavg()[0]
    async with ScratchDatabase(base_url) as url:
        await seed_members(url, sent + sent // 10)
        db = Db(url)
        try:
            schedule = await add_campaign(db)
            await seed_campaign_history(url, int(schedule.id or 0), sent, purchases)
            started = time.perf_counter()
            results = await campaign_results(db, schedule)
            seconds = time.perf_counter() - started
        finally:
            await db.dispose()
    control = results.control
    return {"sent": sent, "held_out": control.units if control else 0, "purchases": purchases,
            "seconds": round(seconds, 2), "sent_per_s": round(sent / seconds),
            "treated_conversion": round(results.treated.conversion.value or 0, 4),
            "control_conversion": round(control.conversion.value or 0, 4) if control else None,
            "load_avg_1m": round(load, 1)}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", default="1000000", help="comma-separated member counts to plan for")
    parser.add_argument("--sent", type=int, default=1_000_000, help="sent messages for the attribution (0: skip)")
    parser.add_argument("--purchases", type=int, default=5_000_000, help="purchases for the attribution")
    parser.add_argument("--pg-url", default=os.environ.get("LOYALBOT_TEST_DATABASE_URL",
                                                           "postgresql+asyncpg://postgres@127.0.0.1:5432/test"))
    args = parser.parse_args()
    results: dict = {"plan": [], "attribution": None}
    for count in (int(x) for x in args.members.split(",") if x):
        results["plan"].append(await bench_plan(args.pg_url, count))
        print("plan", results["plan"][-1], flush=True)
    if args.sent:
        results["attribution"] = await bench_attribution(args.pg_url, args.sent, args.purchases)
        print("attribution", results["attribution"], flush=True)

    print()
    print(f"{'what':56} {'figure':>40}")
    for p in results["plan"]:
        print(f"{'plan a campaign (10% held out, A/B) for ' + format(p['members'], ',') + ' members':56} "
              f"{p['rows_per_s']:>10,} rows/s {p['seconds']:>7}s, held out {p['held_out']:,}, "
              f"variants {p['variants']}, planner CPU {p['planner_cpu_share']:.0%}, load {p['load_avg_1m']}")
    if (a := results["attribution"]) is not None:
        print(f"{'results over ' + format(a['sent'], ',') + ' sent, ' + format(a['purchases'], ',') + ' purchases':56} "
              f"{a['seconds']:>10}s ({a['sent_per_s']:,} sent rows/s), held out {a['held_out']:,}, "
              f"load {a['load_avg_1m']}")
    print(json.dumps(results))


if __name__ == "__main__":
    asyncio.run(main())
