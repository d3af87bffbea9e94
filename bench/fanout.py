"""Fan-out benchmark: planning a care message for many members, dispatching at Telegram's limits,
and the usual alternative (one APScheduler job per message in a SQLAlchemy job store) side by side.

    python bench/fanout.py                       # 100k and 1M members on PostgreSQL
    python bench/fanout.py --members 100000      # scale down
    python bench/fanout.py --members 20000 --dispatch 30:150,1000:2000 --naive 5000
    python bench/fanout.py --members '' --dispatch '' --naive 0 --shared 30:600,1000:8000   # 3 dispatchers only

PostgreSQL comes from --pg-url (or LOYALBOT_TEST_DATABASE_URL); a scratch database is created and
dropped. Prints a table and one JSON line. Figures only: nothing here passes or fails.

Dispatch runs against the local Bot API server (bot/local_api) with its flood limits on at the
configured rate. By default that server runs in a child process (``python -m loyalbot.bot.local_api --port 0``,
configured through its control API), so the figure measures loyalbot's dispatcher, not the fake
Telegram sharing its event loop and CPU; ``--server same`` puts it back in this event loop (how the
figures before 2026-11 were taken). Each dispatch line also shows the share of one CPU the
dispatcher used (``dispatcher_cpu_share``) and the most sendMessage calls the server saw in any 1 s
and 100 ms window (``busiest_1s``, ``busiest_100ms``: arrival times at the server, so they include
both processes' scheduling jitter). Planning lines show ``planner_cpu_share``: the rest of the time
the planner waited for PostgreSQL. Run A/B comparisons interleaved and look at the machine's load
(``uptime``): on a shared machine single runs vary by 20% or more.

The ``shared`` lines run 3 dispatcher processes together on one PostgreSQL outbox, each set to the full
rate, sharing Telegram's limits through PostgreSQL and through Redis (storage/rates.py), against the
server in its own process with no burst allowed per chat and two messages per chat: the steady rate at
the server as a share of the target (aim >= 0.97), the 429s (aim 0) and the busiest chat's most messages
in any second (aim 1).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import resource
import signal
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import asyncpg  # noqa: E402
import sqlalchemy as sa  # noqa: E402

from loyalbot.loyalty.programme import load_programme  # noqa: E402
from loyalbot.loyalty.service import Loyalty  # noqa: E402
from loyalbot.scheduler.dispatcher import Dispatcher  # noqa: E402
from loyalbot.scheduler.planner import Planner  # noqa: E402
from loyalbot.storage import Db  # noqa: E402
from loyalbot.storage.migrate import upgrade  # noqa: E402
from loyalbot.storage.models import Outbox, Schedule  # noqa: E402

NOW = datetime(2025, 6, 10, 10, 0, tzinfo=UTC)
TOKEN = "777777:bench-token"
TEMPLATES = {"en": "Hello {{ name }}, you have {{ points|number }} points at {{ programme }}.",
             "zh_Hans": "{{ name }}，你好！你有 {{ points|number }} 积分。",
             "zh_Hant": "{{ name }}，你好！你有 {{ points|number }} 積分。"}


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_rss_mb() -> float:
    """This process's resident memory now (Linux), not the peak."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize() / 2**20


@contextlib.asynccontextmanager
async def rss_watch(result: dict) -> AsyncIterator[None]:
    """Sample resident memory every 50 ms while the block runs; result['rss_rise_mb']: highest minus start."""
    start = highest = current_rss_mb()

    async def sample() -> None:
        nonlocal highest
        while True:
            highest = max(highest, current_rss_mb())
            await asyncio.sleep(0.05)

    sampler = asyncio.create_task(sample())
    try:
        yield
    finally:
        sampler.cancel()
        highest = max(highest, current_rss_mb())
        result["rss_rise_mb"] = round(highest - start, 1)


def plain_dsn(url: str) -> str:
    return sa.engine.make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


async def admin(url: str, sql: str) -> None:
    conn = await asyncpg.connect(plain_dsn(url))
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def seed_members(url: str, count: int, *, start_id: int = 1) -> None:
    """Members straight into the table with COPY (seeding is not what is measured)."""
    conn = await asyncpg.connect(plain_dsn(url))
    notify = json.dumps({"care": True, "reminders": True, "surveys": True, "offers": True})
    zones = ("UTC", "Europe/Amsterdam", "Asia/Shanghai", "Asia/Taipei", "America/New_York")
    try:
        step = 50_000
        for first in range(start_id, start_id + count, step):
            records = [(n, 10_000_000 + n, 10_000_000 + n, f"B{n:09d}", f"M{n}", ("en", "zh_Hans", "zh_Hant")[n % 3],
                        zones[n % 5], "active", "green", n % 2000, notify, n % 10 != 0, False,
                        datetime(2024, 1, 1, tzinfo=UTC))
                       for n in range(first, min(first + step, start_id + count))]
            await conn.copy_records_to_table(
                "members", records=records,
                columns=["id", "telegram_id", "chat_id", "member_no", "first_name", "language", "timezone", "status",
                         "tier", "balance", "notify", "marketing_consent", "support_blocked", "joined_at"])
        await conn.execute("SELECT setval(pg_get_serial_sequence('members', 'id'), (SELECT max(id) FROM members))")
        await conn.execute("ANALYZE members")
    finally:
        await conn.close()


async def add_schedule(db: Db, name: str) -> Schedule:
    async with db.transaction() as tx:
        row = Schedule(name=name, kind="broadcast", one_off_at=NOW, templates=TEMPLATES, created_at=NOW,
                       updated_at=NOW)
        tx.add(row)
    return row


async def bench_planning(base_url: str, members: int) -> dict:
    name = f"bench_fanout_{uuid.uuid4().hex[:8]}"
    url = sa.engine.make_url(base_url).set(database=name).render_as_string(hide_password=False)
    await admin(base_url, f'CREATE DATABASE "{name}"')
    try:
        await asyncio.to_thread(upgrade, url)
        await seed_members(url, members)
        db = Db(url)
        loyalty = Loyalty(db, load_programme())
        schedule = await add_schedule(db, "bench")
        before = rss_mb()
        memory: dict = {}
        cpu_started, started = time.process_time(), time.perf_counter()
        async with rss_watch(memory):
            stats = await Planner(loyalty, batch_size=5000).run(schedule, now=NOW)
        seconds = time.perf_counter() - started
        cpu = time.process_time() - cpu_started
        again_started = time.perf_counter()
        again = await Planner(loyalty, batch_size=5000).run(schedule, now=NOW)
        again_seconds = time.perf_counter() - again_started
        await db.dispose()
        rows = stats.planned + sum(stats.skipped.values())
        return {"members": members, "rows": rows, "planned": stats.planned, "skipped": sum(stats.skipped.values()),
                "seconds": round(seconds, 2), "rows_per_s": round(rows / seconds),
                "planner_cpu_share": round(cpu / seconds, 2),
                "replan_new_rows": again.planned, "replan_seconds": round(again_seconds, 2),
                "peak_rss_mb": round(rss_mb(), 1), "rss_growth_mb": round(rss_mb() - before, 1),
                "planning_rss_rise_mb": memory["rss_rise_mb"]}
    finally:
        await admin(base_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def busiest(times: list[float], window: float) -> int:
    """The most calls that arrived within any `window` seconds (sorted arrival times): no bursts."""
    most, first = 0, 0
    for last, moment in enumerate(times):
        while moment - times[first] >= window:
            first += 1
        most = max(most, last - first + 1)
    return most


class ServerProcess:
    """The local Bot API server in a child process (``python -m loyalbot.bot.local_api --port 0``).

    In the dispatcher's own process and event loop the fake Telegram would take CPU from the code
    being measured (at 1000/s it parses and answers every request), so the dispatch figures would
    describe both; in its own process it uses its own core, as Telegram would."""

    def __init__(self, *options: str, start_within: float = 30.0) -> None:
        """`options`: more of the server's command-line options (e.g. ``--call-log-size 200000``)."""
        self.proc: asyncio.subprocess.Process | None = None
        self.url = ""
        self.options, self.start_within = options, start_within

    async def __aenter__(self) -> ServerProcess:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "loyalbot.bot.local_api", "--port", "0", *self.options, cwd=str(ROOT),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
        assert self.proc.stdout is not None
        while not self.url:
            line = (await asyncio.wait_for(self.proc.stdout.readline(), self.start_within)).decode()
            if not line:
                raise RuntimeError("the local Bot API server did not start")
            if found := re.search(r"listening on (http://\S+)", line):
                self.url = found.group(1)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.terminate()
            await self.proc.wait()


@contextlib.asynccontextmanager
async def bot_api(separate: bool) -> AsyncIterator[str]:
    """The URL of a local Bot API server: in a child process, or in this event loop (``--server same``)."""
    if separate:
        async with ServerProcess() as server:
            yield server.url
        return
    from loyalbot.bot.local_api import LocalBotApi

    api = LocalBotApi(serve_page=False, call_log_size=10_000)  # as the standalone server
    await api.start()
    try:
        yield api.url
    finally:
        await api.stop()


async def bench_dispatch(rate: float, messages: int, *, separate_server: bool = True) -> dict:
    """Dispatch `messages` to the local Bot API server with its flood limits at `rate`."""
    from loyalbot.bot.local_api import LocalApiControl
    from loyalbot.bot.senders import AiogramSender, make_aiogram_bot

    tmp = tempfile.mkdtemp()
    url = f"sqlite+aiosqlite:///{tmp}/dispatch.db"
    await asyncio.to_thread(upgrade, url)
    db = Db(url)
    async with bot_api(separate_server) as api_url, LocalApiControl(api_url) as tg:
        bot = make_aiogram_bot(TOKEN, api_url)
        try:
            await tg.set_limits(enabled=True, global_per_second=rate)
            users = [20_000_000 + n for n in range(messages)]
            for user in users:
                await tg.create_user(user, f"U{user}")
            async with db.transaction() as tx:
                await tx.execute(sa.text(
                    "INSERT INTO members (id, telegram_id, chat_id, member_no, language, timezone, status, tier, "
                    "balance, notify, marketing_consent, support_blocked, joined_at) VALUES "
                    "(:id, :id, :id, :no, 'en', 'UTC', 'active', 'green', 0, '{}', 1, 0, :joined)"),
                    [{"id": u, "no": f"D{u}", "joined": NOW} for u in users])
                await tx.execute(sa.insert(Outbox), [
                    {"member_id": u, "chat_id": u, "idempotency_key": f"bench:{u}", "kind": "broadcast",
                     "period": "bench", "text": f"hello {u}",
                     "buttons": [], "status": "pending", "not_before": NOW, "created_at": NOW} for u in users])
            dispatcher = Dispatcher(db, AiogramSender(bot), rate=rate)
            cpu_started, started, wall_started = time.process_time(), time.perf_counter(), time.time()
            await dispatcher.drain(limit_seconds=messages / rate * 3 + 30)
            seconds = time.perf_counter() - started
            wall_ended = time.time()
            cpu = time.process_time() - cpu_started
            stats = await tg.stats()
            arrivals = sorted(c["time"] for c in await tg.calls("sendMessage") if c["outcome"] == "ok")
            async with db.read() as s:
                sent_rows = (await s.execute(sa.select(sa.func.count()).where(Outbox.status == "sent"))).scalar_one()
            delivered = int(stats["total_delivered"]) if "total_delivered" in stats else None
        finally:
            await bot.session.close()
            await db.dispose()
    achieved = dispatcher.stats.sent / seconds
    return {"rate": rate, "messages": messages, "sent": dispatcher.stats.sent, "rows_marked_sent": int(sent_rows),
            "delivered_by_server": delivered, "seconds": round(seconds, 2), "achieved_per_s": round(achieved, 1),
            "share_of_configured": round(achieved / rate, 3), "429s": int(stats["total_rate_limited"]),
            "dispatcher_cpu_share": round(cpu / seconds, 2),
            "busiest_1s": busiest(arrivals, 1.0), "busiest_100ms": busiest(arrivals, 0.1),
            # From the first message's arrival to the last's: the rate without start-up and wind-down.
            "steady_per_s": round((len(arrivals) - 1) / (arrivals[-1] - arrivals[0]), 1) if len(arrivals) > 1 else None,
            "first_arrival_after_s": round(arrivals[0] - wall_started, 3) if arrivals else None,
            "wind_down_s": round(wall_ended - arrivals[-1], 3) if arrivals else None,
            "server": "child process" if separate_server else "same event loop"}


async def bench_shared_dispatch(base_url: str, rate: float, messages: int, *, processes: int = 3,
                                redis_url: str | None = None) -> dict:
    """`processes` dispatcher processes (``python -m loyalbot.bot.dispatch``) on one PostgreSQL outbox, each
    configured at the full `rate`, sharing Telegram's limits (Redis, or PostgreSQL without one), against the
    local Bot API server in its own process with its flood limits at `rate` and no burst per chat. Each
    chat gets two messages, so per-chat spacing across processes is measured too."""
    from loyalbot.bot.local_api import LocalApiControl

    name = f"bench_shared_{uuid.uuid4().hex[:8]}"
    url = sa.engine.make_url(base_url).set(database=name).render_as_string(hide_password=False)
    await admin(base_url, f'CREATE DATABASE "{name}"')
    procs: list[asyncio.subprocess.Process] = []
    try:
        await asyncio.to_thread(upgrade, url)
        db = Db(url)
        chats = max(1, messages // 2)
        async with ServerProcess() as server, LocalApiControl(server.url) as tg:
            await tg.set_limits(enabled=True, global_per_second=rate, private_burst=1, private_per_second=1)
            users = [30_000_000 + n for n in range(chats)]
            for user in users:
                await tg.create_user(user, f"U{user}")
            async with db.transaction() as tx:
                await tx.execute(sa.text(
                    "INSERT INTO members (id, telegram_id, chat_id, member_no, language, timezone, status, tier, "
                    "balance, notify, marketing_consent, support_blocked, joined_at) VALUES "
                    "(:id, :tg, :chat, :no, 'en', 'UTC', 'active', 'green', 0, '{}', true, false, :joined)"),
                    [{"id": u, "tg": u, "chat": u, "no": f"D{u}", "joined": NOW} for u in users])
                await tx.execute(sa.insert(Outbox), [
                    {"member_id": u, "chat_id": u, "idempotency_key": f"bench:{u}:{k}", "kind": "broadcast",
                     "period": f"bench{k}", "text": f"hello {u} #{k}", "buttons": [], "status": "pending",
                     "not_before": NOW, "created_at": NOW} for k in range(2) for u in users][:messages])
            env = {**os.environ, "LOYALBOT_BOT_TOKEN": TOKEN, "PYTHONPATH": str(ROOT)}
            env.pop("LOYALBOT_REDIS_URL", None)
            if redis_url:
                env["LOYALBOT_REDIS_URL"] = redis_url
            extra = ["--paid-broadcast"] if rate > 30 else []
            started = time.perf_counter()
            for n in range(processes):
                procs.append(await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "loyalbot.bot.dispatch", "--database-url", url, "--api-url", server.url,
                    "--rate", str(rate), *extra, "--worker-id", f"bench{n}", "--log-level", os.environ.get("BENCH_LOG_LEVEL", "WARNING"),
                    cwd=str(ROOT), env=env))
            # The processes' start-up (imports, on a loaded machine tens of seconds) is not what is measured:
            # the time limit counts from the first message at the server; the rate is taken between arrivals.
            first_by = time.monotonic() + 600
            while not int((await tg.stats()).get("total_delivered", 0)) and time.monotonic() < first_by:  # noqa: ASYNC110
                await asyncio.sleep(0.2)
            deadline = time.monotonic() + messages / rate * 4 + 60
            while time.monotonic() < deadline:
                async with db.read() as s:
                    left = (await s.execute(sa.select(sa.func.count()).where(
                        Outbox.status.in_(("pending", "sending"))))).scalar_one()
                if not left:
                    break
                await asyncio.sleep(0.1)
            seconds = time.perf_counter() - started
            for proc in procs:
                proc.send_signal(signal.SIGTERM)
            for proc in procs:
                await asyncio.wait_for(proc.wait(), 60)
            stats = await tg.stats()
            calls = [c for c in await tg.calls("sendMessage") if c["outcome"] == "ok"]
            async with db.read() as s:
                by_status = dict((await s.execute(sa.select(Outbox.status, sa.func.count())
                                                  .group_by(Outbox.status))).all())
                by_worker = dict((await s.execute(sa.select(Outbox.claimed_by, sa.func.count())
                                                  .where(Outbox.status == "sent").group_by(Outbox.claimed_by))).all())
        await db.dispose()
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        await admin(base_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    arrivals = sorted(float(c["time"]) for c in calls)
    per_chat: dict[int, list[float]] = {}
    for call in calls:
        per_chat.setdefault(int(call["chat_id"]), []).append(float(call["time"]))
    steady = (len(arrivals) - 1) / (arrivals[-1] - arrivals[0]) if len(arrivals) > 1 else 0.0
    # What is measured is the steady rate at the server (first arrival to last), against the target; the
    # whole run's figure (start-up of three processes included) is shown beside it.
    return {"rate": rate, "messages": messages, "processes": processes,
            "limits": "redis" if redis_url else "postgres", "sent_rows": int(by_status.get("sent", 0)),
            "by_status": {str(k): int(v) for k, v in by_status.items()},
            "sent_by_process": sorted(int(v) for v in by_worker.values()),
            "delivered_by_server": int(stats.get("total_delivered", 0)), "seconds": round(seconds, 2),
            "steady_per_s": round(steady, 1), "share_of_target": round(steady / rate, 3),
            "whole_run_share": round(len(arrivals) / seconds / rate, 3),
            "429s": int(stats["total_rate_limited"]),
            "busiest_1s": busiest(arrivals, 1.0),
            "busiest_chat_1s": max((busiest(sorted(t), 1.0) for t in per_chat.values()), default=0)}


def bench_naive(members: int) -> dict:
    """The common alternative: one APScheduler job per message, persisted in a SQLAlchemy job store."""
    from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
    from apscheduler.schedulers.background import BackgroundScheduler

    tmp = tempfile.mkdtemp()
    scheduler = BackgroundScheduler(jobstores={"default": SQLAlchemyJobStore(url=f"sqlite:///{tmp}/jobs.db")},
                                    timezone="UTC")
    scheduler.start(paused=True)
    try:
        started = time.perf_counter()
        for n in range(members):
            scheduler.add_job(print, "date", run_date=datetime.now(UTC) + timedelta(days=365), args=[n, f"Hello M{n}"],
                              id=f"msg-{n}")
        seconds = time.perf_counter() - started
    finally:
        scheduler.shutdown(wait=False)
    return {"members": members, "seconds": round(seconds, 2), "jobs_per_s": round(members / seconds)}


async def bench_ours_sqlite(members: int) -> dict:
    tmp = tempfile.mkdtemp()
    url = f"sqlite+aiosqlite:///{tmp}/plan.db"
    await asyncio.to_thread(upgrade, url)
    db = Db(url)
    try:
        async with db.transaction() as tx:
            await tx.execute(sa.text(
                "INSERT INTO members (id, telegram_id, chat_id, member_no, first_name, language, timezone, status, "
                "tier, balance, notify, marketing_consent, support_blocked, joined_at) VALUES (:id, :id, :id, :no, "
                ":name, 'en', 'UTC', 'active', 'green', 10, :notify, 1, 0, :joined)"),
                [{"id": n, "no": f"S{n}", "name": f"M{n}", "joined": NOW,
                  "notify": json.dumps({"offers": True})} for n in range(1, members + 1)])
        schedule = await add_schedule(db, "naive-compare")
        started = time.perf_counter()
        stats = await Planner(Loyalty(db, load_programme()), batch_size=2000).run(schedule, now=NOW)
        seconds = time.perf_counter() - started
        return {"members": members, "planned": stats.planned, "seconds": round(seconds, 2),
                "rows_per_s": round(stats.planned / seconds)}
    finally:
        await db.dispose()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", default="100000,1000000", help="comma-separated member counts")
    parser.add_argument("--pg-url", default=os.environ.get("LOYALBOT_TEST_DATABASE_URL",
                                                           "postgresql+asyncpg://postgres@127.0.0.1:5432/test"))
    parser.add_argument("--dispatch", default="30:300,1000:5000", help="rate:messages pairs")
    parser.add_argument("--naive", type=int, default=10_000, help="members for the side-by-side (0: skip)")
    parser.add_argument("--server", choices=("process", "same"), default="process",
                        help="run the local Bot API server in a child process (default) or in this event loop")
    parser.add_argument("--shared", default="30:600,1000:8000",
                        help="rate:messages pairs for 3 dispatcher processes together on PostgreSQL ('' skips)")
    parser.add_argument("--shared-limits", choices=("postgres", "redis", "both"), default="both",
                        help="where the 3 processes share the limits (redis needs --redis-url)")
    parser.add_argument("--redis-url", default=os.environ.get("LOYALBOT_TEST_REDIS_URL", "redis://127.0.0.1:6379/15"))
    args = parser.parse_args()

    results: dict = {"planning": [], "dispatch": [], "shared": [], "naive": None}
    for count in (int(x) for x in args.members.split(",") if x):
        results["planning"].append(await bench_planning(args.pg_url, count))
        print("planning", results["planning"][-1], flush=True)
    for pair in (p for p in args.dispatch.split(",") if p):
        rate, messages = pair.split(":")
        results["dispatch"].append(await bench_dispatch(float(rate), int(messages),
                                                      separate_server=args.server == "process"))
        print("dispatch", results["dispatch"][-1], flush=True)
    backends = ["postgres", "redis"] if args.shared_limits == "both" else [args.shared_limits]
    for pair in (p for p in args.shared.split(",") if p):
        rate, messages = pair.split(":")
        for backend in backends:
            results["shared"].append(await bench_shared_dispatch(
                args.pg_url, float(rate), int(messages), redis_url=args.redis_url if backend == "redis" else None))
            print("shared", results["shared"][-1], flush=True)
    if args.naive:
        naive = await asyncio.to_thread(bench_naive, args.naive)
        ours_sqlite = await bench_ours_sqlite(args.naive)
        ours_pg = await bench_planning(args.pg_url, args.naive)
        results["naive"] = {"one_job_per_message_sqlalchemy_jobstore": naive, "outbox_sqlite": ours_sqlite,
                            "outbox_postgres": ours_pg,
                            "ratio_sqlite": round(naive["seconds"] / max(ours_sqlite["seconds"], 1e-9), 1),
                            "ratio_postgres": round(naive["seconds"] / max(ours_pg["seconds"], 1e-9), 1)}

    print()
    print(f"{'what':44} {'figure':>40}")
    for p in results["planning"]:
        print(f"{'plan ' + format(p['members'], ',') + ' members (PostgreSQL)':44} "
              f"{p['rows_per_s']:>12,} rows/s {p['seconds']:>7}s, RSS rise while planning "
              f"{p['planning_rss_rise_mb']} MB (process peak {p['peak_rss_mb']} MB)")
    for d in results["dispatch"]:
        print(f"{'dispatch at ' + str(int(d['rate'])) + '/s, ' + str(d['messages']) + ' messages':44} "
              f"{d['achieved_per_s']:>10}/s ({d['share_of_configured']:.1%}), 429s: {d['429s']}, "
              f"busiest 1 s: {d['busiest_1s']}, server: {d['server']}")
    for d in results["shared"]:
        print(f"{'3 dispatchers at ' + str(int(d['rate'])) + '/s (' + d['limits'] + '), ' + str(d['messages']) + ' msgs':44} "
              f"{d['steady_per_s']:>10}/s ({d['share_of_target']:.1%} of target), 429s: {d['429s']}, "
              f"busiest chat 1 s: {d['busiest_chat_1s']}, busiest 1 s: {d['busiest_1s']}, "
              f"sent {d['sent_rows']}/{d['messages']} by {d['sent_by_process']}")
    if results["naive"]:
        n = results["naive"]
        print(f"{'one APScheduler job per message (SQLite)':44} "
              f"{n['one_job_per_message_sqlalchemy_jobstore']['seconds']:>10}s for {args.naive:,}")
        print(f"{'outbox planning (SQLite / PostgreSQL)':44} "
              f"{n['outbox_sqlite']['seconds']}s / {n['outbox_postgres']['seconds']}s -> "
              f"{n['ratio_sqlite']}x / {n['ratio_postgres']}x faster")
    print(json.dumps(results))


if __name__ == "__main__":
    asyncio.run(main())
