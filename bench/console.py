"""Benchmark: the console's dashboard page and its CSVs on PostgreSQL with 1,000,000 members, per range.

Seeds (or reuses) a database of N members with `loyalbot seed-demo`'s generator (COPY: purchases and lots over
two years), then adds in SQL (INSERT ... SELECT over generate_series) a year of coupons with their redeem
entries, outbox rows with statuses and skip reasons, survey answers (CSAT and NPS), closed support
conversations and tier changes. It times, through the ASGI app with a signed-in operator:

- the first build of the rollup (daily_stats emptied first: every day and week of the year computed once;
  --keep-rollup keeps what an earlier run built),
- the page (/console?days=7|30|365, built afresh each time) and every chart's CSV downloaded from it (the
  page's board is reused for a minute), for each range, over several runs (median, p95),
- the console's other daily pages: member search by number, name (and phone when the members have one), a
  member's page, the feedback inbox, survey results, the support list, schedules and the programme.

Prints a table and one JSON line. Not part of the tests. The database is kept for the next run (--fresh drops it).

    python bench/console.py --pg postgresql://postgres@127.0.0.1:5432/test
    python bench/console.py --pg postgresql://postgres@127.0.0.1:5432/test --members 100000 --db bench_console_small
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from pathlib import Path
from urllib.parse import quote

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx  # noqa: E402
import sqlalchemy as sa  # noqa: E402
from seeded_db import seeded_database  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from loyalbot.console.accounts import add_operator  # noqa: E402
from loyalbot.console.api import create_app  # noqa: E402
from loyalbot.console.dashboard_stats import CHART_KEYS  # noqa: E402
from loyalbot.loyalty import Loyalty, load_programme  # noqa: E402
from loyalbot.storage import Db  # noqa: E402

PASSWORD = "bench bench bench"

# A year of everything the dashboard counts besides purchases, written by the server itself.
EXTRA = [
    # Coupons for members who can pay for one, with the redeem entry and the balance taken down.
    """CREATE TEMP TABLE picks ON COMMIT DROP AS
       SELECT id AS member_id, row_number() OVER (ORDER BY id) AS n,
              now() - random() * interval '365 days' AS at
       FROM members WHERE balance >= 150 ORDER BY id LIMIT {coupons}""",
    "UPDATE members m SET balance = m.balance - 150 FROM picks p WHERE m.id = p.member_id",
    """INSERT INTO coupons (code, request_id, reward_id, member_id, points_spent, status, issued_at, expires_at,
                           used_at)
       SELECT 'BENCH' || n, 'bench-' || n, (SELECT min(id) FROM rewards), member_id, 150,
              CASE WHEN n % 5 < 3 THEN 'used' ELSE 'active' END, at, at + interval '30 days',
              CASE WHEN n % 5 < 3 THEN least(at + random() * interval '10 days', now()) END
       FROM picks""",
    """INSERT INTO ledger_entries (member_id, kind, delta, reference, created_at)
       SELECT member_id, 'redeem', -150, 'bench-' || n, at FROM picks""",
    """INSERT INTO outbox (idempotency_key, member_id, chat_id, kind, period, text, buttons, status, skip_reason,
                          not_before, attempts, created_at)
       SELECT 'bench:' || g, m, 8000000000 + m, 'care', 'bench', 'bench', '[]',
              CASE WHEN r < 0.85 THEN 'sent' WHEN r < 0.93 THEN 'skipped' WHEN r < 0.95 THEN 'failed'
                   ELSE 'pending' END,
              CASE WHEN r >= 0.85 AND r < 0.93 THEN (ARRAY['quiet_hours', 'opted_out', 'unreachable',
                   'frequency_cap'])[1 + g % 4] END,
              at, 1, at
       FROM (SELECT g, 1 + (g * 7919) % {members} AS m, random() AS r,
                    now() - random() * interval '365 days' AS at FROM generate_series(1::bigint, {outbox}) g) s""",
    """INSERT INTO surveys (id, member_id, kind, trigger, status, created_at, answered_at)
       SELECT {survey_base} + g, 1 + (g * 104729) % {members}, CASE WHEN g % 3 = 0 THEN 'nps' ELSE 'csat' END,
              'schedule', 'answered', now() - (g % 365) * interval '1 day' - (g % 86000) * interval '1 second',
              now() - (g % 365) * interval '1 day' - (g % 86000) * interval '1 second'
       FROM generate_series(1::bigint, {answers}) g""",
    """INSERT INTO survey_answers (survey_id, member_id, kind, score, created_at)
       SELECT id, member_id, kind,
              CASE WHEN kind = 'csat' THEN 1 + floor(random() * 4.99)::int ELSE floor(random() * 10.99)::int END,
              created_at FROM surveys WHERE id > {survey_base}""",
    """INSERT INTO handoff_conversations (member_id, state, opened_at, first_response_at, closed_at,
                                         first_response_seconds, resolution_seconds)
       SELECT m, 'closed', at, at + f * interval '1 second', at + (f + r) * interval '1 second', f, f + r
       FROM (SELECT 1 + (g * 15485863) % {members} AS m, now() - random() * interval '365 days' AS at,
                    (30 + random() * 3600)::int AS f, (60 + random() * 86400)::int AS r
             FROM generate_series(1::bigint, {handoffs}) g) s""",
    """INSERT INTO tier_changes (member_id, from_tier, to_tier, reason, created_at)
       SELECT 1 + (g * 32452843) % {members}, 'green', CASE WHEN g % 4 = 0 THEN 'gold' ELSE 'silver' END,
              'spend', now() - random() * interval '365 days' FROM generate_series(1::bigint, {tier_changes}) g""",
]


async def prepare(server: str, name: str, members: int, *, fresh: bool) -> tuple[str, dict]:
    """The bench database with `members` members and a year of everything; seeds only what is missing."""
    url, figures = await seeded_database(server, name, members, fresh=fresh)
    db = Db(url)
    try:
        async with db.read() as s:
            extra = (await s.execute(sa.text("SELECT count(*) FROM coupons WHERE code LIKE 'BENCH%'"))).scalar_one()
            survey_base = (await s.execute(sa.text("SELECT coalesce(max(id), 0) FROM surveys"))).scalar_one()
        if not extra:
            start = time.perf_counter()
            sizes = {"members": members, "coupons": members // 5, "outbox": members * 2, "answers": members // 10,
                     "handoffs": members // 20, "tier_changes": members // 20, "survey_base": survey_base}
            async with db.transaction() as s:
                for statement in EXTRA:
                    await s.execute(sa.text(statement.format(**sizes)))
            async with db.transaction() as s:
                await s.execute(sa.text("SELECT setval(pg_get_serial_sequence('surveys', 'id'), "
                                        "(SELECT max(id) FROM surveys))"))
            figures["seed_extra_s"] = round(time.perf_counter() - start, 1)
        if figures:  # just seeded: the planner's statistics and the visibility map for index-only scans
            async with db.engine.connect() as conn:
                await (await conn.execution_options(isolation_level="AUTOCOMMIT")).execute(sa.text("VACUUM ANALYZE"))
        async with db.read() as s:
            for table in ("members", "purchases", "ledger_entries", "coupons", "outbox", "survey_answers",
                          "handoff_conversations", "tier_changes"):
                figures[table] = (await s.execute(sa.text(f"SELECT count(*) FROM {table}"))).scalar_one()
    finally:
        await db.dispose()
    return url, figures


def _ms(values: list[float]) -> tuple[float, float]:
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return round(1000 * statistics.median(ordered), 1), round(1000 * p95, 1)


async def _other_pages(db: Db) -> list[tuple[str, str]]:
    """The console's other pages a shop opens every day, on a member picked from the middle of the table."""
    async with db.read() as s:
        member_id, number, phone, name = (await s.execute(sa.text(
            "SELECT id, member_no, phone, first_name FROM members WHERE first_name IS NOT NULL AND status = 'active' "
            "ORDER BY id OFFSET (SELECT count(*) / 2 FROM members) LIMIT 1"))).one()
    pages = [("members search no.", f"/console/members?q={number}"),
             ("members search name", f"/console/members?q={quote(name.split()[0])}"),
             ("member page", f"/console/members/{member_id}"),
             ("feedback inbox", "/console/feedback"), ("surveys", "/console/surveys"),
             ("support list", "/console/support"), ("schedules", "/console/schedules"),
             ("programme", "/console/programme")]
    if phone:  # the demo's generator gives no phones; a shop's members have them
        pages.append(("members search phone", f"/console/members?q={quote(phone)}"))
    return pages


async def bench(url: str, runs: int, *, cold: bool = True, ranges: tuple[int, ...] = (7, 30, 365)
                ) -> tuple[dict, list[dict]]:
    db = Db(url)
    loyalty = Loyalty(db, load_programme())
    await loyalty.sync_programme()
    await add_operator(db, "bench", PASSWORD, role="operator")
    app = create_app(db, loyalty)
    results: list[dict] = []
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://console",
                                     timeout=600) as web:
            signed = await web.post("/console/signin", data={"name": "bench", "password": PASSWORD})
            assert signed.status_code == 303, signed.text
            built: dict = {}
            if cold:
                async with db.transaction() as s:
                    await s.execute(sa.text("DELETE FROM daily_stats"))
                    await s.execute(sa.text("DELETE FROM daily_members"))
            start = time.perf_counter()
            assert (await web.get("/console?days=365")).status_code == 200
            built["first_365_days_s"] = round(time.perf_counter() - start, 2)
            for days in ranges:
                # As an operator uses it: a page (always built afresh), then each chart's CSV from it.
                targets = [("page", f"/console?days={days}")] + [
                    (f"{key}.csv", f"/console/dashboard/{key}.csv?days={days}") for key in CHART_KEYS]
                took: dict[str, list[float]] = {label: [] for label, _ in targets}
                for _ in range(runs):
                    for label, target in targets:
                        start = time.perf_counter()
                        got = await web.get(target)
                        took[label].append(time.perf_counter() - start)
                        assert got.status_code == 200, (target, got.status_code)
                for label, _ in targets:
                    median, p95 = _ms(took[label])
                    results.append({"what": label, "days": days, "runs": runs, "median_ms": median, "p95_ms": p95})
                    print(f"  measured {label} over {days} days: median {median} ms, p95 {p95} ms", flush=True)
            for label, target in await _other_pages(db):
                took = []
                for _ in range(runs):
                    start = time.perf_counter()
                    got = await web.get(target)
                    took.append(time.perf_counter() - start)
                    assert got.status_code == 200, (target, got.status_code)
                median, p95 = _ms(took)
                results.append({"what": label, "days": 0, "runs": runs, "median_ms": median, "p95_ms": p95})
                print(f"  measured {label}: median {median} ms, p95 {p95} ms", flush=True)
    finally:
        await db.dispose()
    return built, results


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pg", default=os.environ.get("LOYALBOT_TEST_DATABASE_URL"), required=False)
    parser.add_argument("--db", default="loyalbot_bench_console", help="The bench database (kept between runs).")
    parser.add_argument("--members", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--ranges", default="7,30,365", help="Comma-separated preset ranges to time.")
    parser.add_argument("--fresh", action="store_true", help="Drop the bench database and seed it again.")
    parser.add_argument("--keep-rollup", action="store_true", help="Time the pages on the rollup already built.")
    args = parser.parse_args()
    if not args.pg:
        parser.error("give --pg postgresql://... (or set LOYALBOT_TEST_DATABASE_URL)")
    server = make_url(args.pg).set(drivername="postgresql").render_as_string(hide_password=False)
    url, seeded = await prepare(server, args.db, args.members, fresh=args.fresh)
    ranges = tuple(int(part) for part in args.ranges.split(","))
    cold, results = await bench(url, args.runs, cold=not args.keep_rollup, ranges=ranges)
    print("seeded:", ", ".join(f"{k} {v:,}" for k, v in seeded.items()), flush=True)
    print("first requests (building the rollup unless --keep-rollup):", ", ".join(f"{k} {v}" for k, v in cold.items()))
    print(f"{'what':<22} {'days':>5} {'runs':>5} {'median ms':>10} {'p95 ms':>9}")
    for row in results:
        print(f"{row['what']:<22} {row['days'] or '':>5} {row['runs']:>5} {row['median_ms']:>10} {row['p95_ms']:>9}")
    worst = max(row["p95_ms"] for row in results)
    print(f"slowest p95: {worst} ms (goal: under 1000 ms)")
    print(json.dumps({"bench": "console_dashboard", "members": args.members, "seeded": seeded, "cold": cold,
                      "results": results, "slowest_p95_ms": worst}))


if __name__ == "__main__":
    asyncio.run(main())
