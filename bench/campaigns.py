"""Benchmark: campaigns on PostgreSQL with 1,000,000 members: scoring (RFM and lifecycle) and audience counts.

Seeds (or reuses) a database of N members with `loyalbot seed-demo`'s generator (COPY: purchases and lots over
two years), then times, one function per measurement (add yours to MEASUREMENTS):

- `scoring`: a scoring run (scheduler/rfm.py) over every member: the first (every score inserted) and the next
  ones (every score replaced, the changes of stage found); goal under 60 s;
- `audience`: the count of a compound segment (lifecycle, RFM, a spend window, a coupon test, consent, any/not)
  and of each of its parts alone, as the console's live count asks it, right after the scoring run; goal under 1 s;
- `after_a_day`: the counts with a window once 2% of the members bought since the run (their windows summed, the
  rest from the figures the run stored), each against summing the window for every member in the same run.

Prints a table and one JSON line. Not part of the tests. The database is kept for the next run (--fresh drops it).

    python bench/campaigns.py --pg postgresql://postgres@127.0.0.1:5432/test
    python bench/campaigns.py --pg postgresql://postgres@127.0.0.1:5432/test --members 100000 --db bench_campaigns_small
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import sqlalchemy as sa  # noqa: E402
from seeded_db import seeded_database  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from loyalbot.loyalty import load_programme  # noqa: E402
from loyalbot.scheduler.rfm import score_members  # noqa: E402
from loyalbot.scheduler.segments import segment_conditions, segment_size  # noqa: E402
from loyalbot.storage import Db, utcnow  # noqa: E402
from loyalbot.storage.models import Member  # noqa: E402

# What an operator's win-back audience looks like: valuable members slipping away, or big spenders of the
# quarter, who consented and hold no coupon yet.
COMPOUND = {
    "any": [{"lifecycle": ["at_risk", "dormant"], "rfm": {"m": [4, 5]}},
            {"spend": {"days": 90, "min": 100}}],
    "not": {"holds_coupon": True},
    "marketing_consent": True,
}
PARTS = {"lifecycle": {"lifecycle": ["at_risk", "dormant"]}, "rfm": {"rfm": {"m": [4, 5], "r": [1, 2]}},
         "spend window": {"spend": {"days": 90, "min": 100}}, "purchases window": {"purchases": {"days": 30, "min": 2}},
         "days since purchase": {"days_since_purchase": {"min": 90}}, "birthday month": {"birthday_month": "current"},
         "holds coupon": {"holds_coupon": True}, "expiring points": {"expiring_points_days": 30}}

Row = dict[str, Any]
Measurement = Callable[[Db, int], Awaitable[list[Row]]]


async def prepare(server: str, name: str, members: int, *, fresh: bool) -> tuple[str, dict[str, Any]]:
    """The bench database with `members` members and their purchases; seeds only what is missing."""
    url, figures = await seeded_database(server, name, members, fresh=fresh)
    db = Db(url)
    try:
        if figures:  # seeded just now
            async with db.engine.connect() as conn:
                await (await conn.execution_options(isolation_level="AUTOCOMMIT")).execute(sa.text("VACUUM ANALYZE"))
        async with db.read() as s:
            for table in ("members", "purchases", "ledger_entries", "coupons"):
                figures[table] = (await s.execute(sa.text(f"SELECT count(*) FROM {table}"))).scalar_one()
    finally:
        await db.dispose()
    return url, figures


def _row(what: str, seconds: list[float], **extra: Any) -> Row:
    ms = sorted(s * 1000 for s in seconds)
    p95 = ms[min(len(ms) - 1, round(0.95 * (len(ms) - 1)))]
    return {"what": what, "runs": len(ms), "median_ms": round(statistics.median(ms), 1), "p95_ms": round(p95, 1),
            **extra}


async def scoring(db: Db, runs: int) -> list[Row]:
    """A scoring run over every member: the first (scores table emptied) and the next ones."""
    rules = load_programme().lifecycle
    async with db.transaction() as s:
        await s.execute(sa.text("DELETE FROM member_stage_changes"))
        await s.execute(sa.text("DELETE FROM member_scores"))
    start = time.perf_counter()
    first = await score_members(db, rules, utcnow())
    rows = [_row("scoring, first run", [time.perf_counter() - start], members=first.scored)]
    again = []
    for _ in range(max(1, runs // 3)):
        start = time.perf_counter()
        run = await score_members(db, rules, utcnow())
        again.append(time.perf_counter() - start)
    rows.append(_row("scoring, next runs", again, members=run.scored, changes=run.changes))
    return rows


async def audience(db: Db, runs: int) -> list[Row]:
    """The audience count of the compound segment, and of each part alone (scores from the scoring run)."""
    zone = load_programme().zone
    rows = []
    for label, segment in {"compound segment": COMPOUND, **PARTS}.items():
        await segment_size(db, segment, utcnow(), zone=zone)  # warm the cache, as a page already open has
        times, size = [], 0
        for _ in range(runs):
            start = time.perf_counter()
            size = await segment_size(db, segment, utcnow(), zone=zone)
            times.append(time.perf_counter() - start)
        rows.append(_row(f"count: {label}", times, members=size))
    return rows


WINDOWED = {"compound segment": COMPOUND, "spend window": PARTS["spend window"],
            "purchases window": PARTS["purchases window"]}


async def after_a_day(db: Db, runs: int) -> list[Row]:
    """The counts with a window a day after the scoring run: 2% of the members marked as having bought since
    (about four days' purchases of the seeded store), so their windows are summed and the others' come from the
    stored figures; against each window summed for every member (`summed`: how it was counted before stored
    windows). Only the marks are written (purchases would cost a foreign-key scan each to take out again), so the
    members' windows are unchanged and both columns count the same members."""
    zone = load_programme().zone
    async with db.transaction() as s:
        bought = (await s.execute(sa.text(
            "INSERT INTO purchase_changes (member_id, version) SELECT id, 1 FROM members WHERE status <> 'erased'"
            " ORDER BY random() LIMIT (SELECT count(*) / 50 FROM members) ON CONFLICT (member_id) DO NOTHING"))
                  ).rowcount
        await s.execute(sa.text("ANALYZE purchase_changes"))
    rows = []
    try:
        for label, segment in WINDOWED.items():
            times, size = [], 0
            await segment_size(db, segment, utcnow(), zone=zone)
            for _ in range(runs):
                start = time.perf_counter()
                size = await segment_size(db, segment, utcnow(), zone=zone)
                times.append(time.perf_counter() - start)
            summed_times, summed = [], 0
            for _ in range(runs):
                conditions = segment_conditions(segment, utcnow(), named={}, zone=zone)
                start = time.perf_counter()
                async with db.read() as s:
                    summed = int((await s.execute(sa.select(sa.func.count()).select_from(Member).where(
                        Member.status != "erased", *conditions))).scalar_one())
                summed_times.append(time.perf_counter() - start)
            ratio = statistics.median(summed_times) / statistics.median(times)
            rows.append(_row(f"day after: {label}", times, members=size, bought_since=bought))
            rows.append(_row(f"  summed: {label}", summed_times, members=summed, speedup=round(ratio, 1)))
    finally:  # a member marked stays summed until the next run, which clears the marks it reads
        async with db.transaction() as s:
            await s.execute(sa.text("DELETE FROM purchase_changes WHERE version = 1"))
    return rows


MEASUREMENTS: list[Measurement] = [scoring, audience, after_a_day]


async def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--pg", default=os.environ.get("LOYALBOT_TEST_DATABASE_URL"), required=False)
    parser.add_argument("--db", default="loyalbot_bench_campaigns", help="The bench database (kept between runs).")
    parser.add_argument("--members", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--fresh", action="store_true", help="Drop the bench database and seed it again.")
    args = parser.parse_args()
    if not args.pg:
        parser.error("give --pg postgresql://... (or set LOYALBOT_TEST_DATABASE_URL)")
    server = make_url(args.pg).set(drivername="postgresql").render_as_string(hide_password=False)
    url, seeded = await prepare(server, args.db, args.members, fresh=args.fresh)
    db = Db(url)
    try:
        results = [row for measure in MEASUREMENTS for row in await measure(db, args.runs)]
    finally:
        await db.dispose()
    print("seeded:", ", ".join(f"{k} {v:,}" for k, v in seeded.items()), flush=True)
    print(f"{'what':<34} {'runs':>5} {'median ms':>10} {'p95 ms':>9} {'members':>9} {'stored x':>9}")
    for row in results:
        print(f"{row['what']:<34} {row['runs']:>5} {row['median_ms']:>10} {row['p95_ms']:>9} "
              f"{row.get('members', ''):>9} {row.get('speedup', ''):>9}")
    print("goals: a scoring run under 60000 ms, an audience count under 1000 ms; 'stored x': how many times faster "
          "the stored windows counted than summing them")
    print(json.dumps({"bench": "campaigns", "members": args.members, "seeded": seeded, "results": results}))


if __name__ == "__main__":
    asyncio.run(main())
