"""Soak: several `loyalbot run` webhook replicas behind nginx on one PostgreSQL and Redis, under members chatting,
a till posting purchases and a campaign going out, while a replica is SIGKILLed, PostgreSQL restarts and the
Bot API server answers storms of 429 and 5xx. Prints a table and a JSON line.

    .venv/bin/python bench/soak.py --duration 300 --members 1000 --campaign 100000 --restart-postgres

What it counts:
- updates sent / answered / lost / duplicated: every member's updates against the bot's answers in that
  chat (a member's updates are seconds apart, so the n-th answer belongs to the n-th update); a repeated
  *answer* can happen for an update in hand at a kill, a repeated *effect* may not (feedback rows are
  counted per member, ledger rows per purchase);
- purchases posted / awarded / duplicated: the till posts each purchase twice (a shop's retry), 200 at a
  time, through nginx; awarded = purchase rows, duplicated = a purchase with more than one earning entry;
- campaign planned / sent / lost / duplicated / unknown: the outbox against the chats the server delivered
  the campaign's text to (a chat that got it twice is a duplicate; a planned row neither sent nor failed
  when the run settles is lost; "delivery unknown" is the dispatcher's own mark for a row cut at a kill);
- the highest 1-second send count for the bot and for any chat, and the highest 1-minute count for the
  staff group, from the server's own call log;
- p50/p99 update latency (sent -> answered) outside the kill, restart and storm windows, and p99 inside the
  kill/restart windows and inside the storm windows (from a storm's injection until the server has used its
  last fault, plus what the replies' retries take to catch up), each with how many updates it covers;
- the ledger invariant: every member's balance = the sum of their ledger = the points left in their lots.

It needs PostgreSQL (a fresh database of its own is made and dropped), Debian's nginx, and Redis when
--redis-url is given (else the replicas share conversation state and limits through PostgreSQL).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import sqlalchemy as sa
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.fanout import ServerProcess, busiest  # noqa: E402
from loyalbot.bot.local_api import LocalApiControl  # noqa: E402
from loyalbot.console.api import create_api_key  # noqa: E402
from loyalbot.loyalty import Loyalty, load_programme  # noqa: E402
from loyalbot.loyalty.codes import SEEDED_MEMBER_BASE, member_no_from  # noqa: E402
from loyalbot.scheduler import editing  # noqa: E402
from loyalbot.storage import Db, utcnow  # noqa: E402
from loyalbot.storage.migrate import upgrade_async  # noqa: E402
from loyalbot.storage.models import Feedback, LedgerEntry, Member, Outbox, Purchase, Schedule  # noqa: E402
from tests.bot.conftest import free_port  # noqa: E402
from tests.replicas.conftest import HOOK_PATH, TOKEN, Fleet, Replica, replica_env, start_nginx  # noqa: E402

CAMPAIGN_TEXT = "Spring menu for {{ name }}"
CHAT_BASE, CAMPAIGN_BASE, STAFF_ID, GROUP_ID = 30_000_000, 40_000_000, 29_999_001, -1009_999_000_001


def percentile(values: list[float], share: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


async def admin(url: str, sql: str) -> None:
    parts = make_url(url)
    conn = await asyncpg.connect(host=parts.host or "127.0.0.1", port=parts.port or 5432, user=parts.username,
                                 password=parts.password, database="postgres")
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def seed_campaign_members(url: str, count: int) -> None:
    """The campaign's audience straight into the members table with COPY (seeding is not measured)."""
    parts = make_url(url)
    conn = await asyncpg.connect(host=parts.host or "127.0.0.1", port=parts.port or 5432, user=parts.username,
                                 password=parts.password, database=parts.database)
    now = utcnow()
    notify = json.dumps({"care": True, "reminders": True, "surveys": True, "offers": True})
    try:
        await conn.copy_records_to_table("members", columns=[
            "telegram_id", "chat_id", "member_no", "first_name", "language", "timezone", "status", "tier", "balance",
            "notify", "marketing_consent", "support_blocked", "joined_at"], records=[
            (CAMPAIGN_BASE + n, CAMPAIGN_BASE + n, member_no_from(SEEDED_MEMBER_BASE + 5_000_000 + n), f"C{n}", "zh_Hant", "UTC", "active",
             "green", 0, notify, True, False, now) for n in range(count)])
    finally:
        await conn.close()


class Load:
    """What the drivers did, for the counts at the end."""

    def __init__(self) -> None:
        self.sent: dict[int, list[float]] = defaultdict(list)  # member -> when each update was sent
        self.feedback_flows: Counter[int] = Counter()
        self.posts = 0
        self.post_statuses: Counter[int] = Counter()
        self.windows: list[tuple[float, float]] = []  # (from, until) of kills and restarts
        self.storms: list[tuple[float, float]] = []  # (from, until) of the injected 429 and 5xx storms
        self.events: list[str] = []


async def member_loop(tg: LocalApiControl, telegram_id: int, load: Load, stop: asyncio.Event, gap: float,
                      gate: asyncio.Semaphore) -> None:
    feedback_round = random.randrange(2, 6)
    rounds = 0
    await asyncio.sleep(random.uniform(0, gap))
    while not stop.is_set():
        rounds += 1
        script = ["/points"] if rounds != feedback_round else ["/feedback", f"Soak feedback {telegram_id}", "4"]
        for line in script:
            async with gate:
                load.sent[telegram_id].append(time.time())
                try:
                    await tg.send_text(telegram_id, line)
                except Exception as exc:  # the fake Telegram itself refusing is a driver problem: say so
                    load.events.append(f"send_text failed for a member: {type(exc).__name__}")
                    load.sent[telegram_id].pop()
            await asyncio.sleep(3.0)
        if rounds == feedback_round:
            load.feedback_flows[telegram_id] += 1
        await asyncio.sleep(random.uniform(0.5, 1.5) * gap)


async def till(url: str, key: str, numbers: list[str], load: Load, stop: asyncio.Event, concurrency: int) -> None:
    async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=30,
                                 limits=httpx.Limits(max_connections=concurrency)) as client:
        async def post(body: dict[str, str]) -> int:
            for _ in range(40):
                try:
                    response = await client.post("/api/v1/purchases", json=body)
                    if response.status_code not in (500, 502, 503, 504):
                        return response.status_code
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.5)
            return 0

        async def worker(n: int) -> None:
            count = 0
            while not stop.is_set():
                count += 1
                body = {"member_no": random.choice(numbers), "external_id": f"soak-{n}-{count}", "amount": "7.50"}
                load.posts += 1
                load.post_statuses[await post(body)] += 1
                load.post_statuses[await post(body)] += 1  # the shop's retry: must award nothing new
                await asyncio.sleep(random.uniform(0.5, 1.5))

        await asyncio.gather(*(worker(n) for n in range(concurrency)))


async def faults(fleet: Fleet, tg: LocalApiControl, load: Load, duration: float, restart_pg: bool,
                 started: float) -> None:
    async def at(share: float) -> None:
        await asyncio.sleep(max(0.0, started + share * duration - time.time()))

    victim = fleet.replicas[1]
    await at(0.2)
    load.events.append(f"{time.time() - started:6.1f}s SIGKILL {victim.name}")
    kill_at = time.time()
    victim.kill()
    await at(0.3)
    victim.start()
    load.events.append(f"{time.time() - started:6.1f}s restarted {victim.name}")
    load.windows.append((kill_at - 5, time.time() + 30))
    if restart_pg:
        await at(0.45)
        version = sorted(os.listdir("/etc/postgresql"))[-1]
        begun = time.time()
        done = await asyncio.to_thread(subprocess.run, ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main",
                                                        "restart"], capture_output=True, text=True)
        load.events.append(f"{time.time() - started:6.1f}s PostgreSQL restarted (rc {done.returncode})")
        load.windows.append((begun - 5, time.time() + 30))
    await at(0.6)
    load.events.append(f"{time.time() - started:6.1f}s 429 storm")
    begun = time.time()
    await tg.inject_fault("429", method="sendMessage", count=300, retry_after=2)
    await storm_over(tg, load, begun, started, until=started + 0.7 * duration)
    await at(0.7)
    load.events.append(f"{time.time() - started:6.1f}s 5xx storm")
    begun = time.time()
    await tg.inject_fault("500", method="sendMessage", count=150)
    await tg.inject_fault("502", method="sendMessage", count=150)
    await storm_over(tg, load, begun, started, until=started + duration)


# After a storm's last fault, replies still in their backoff (up to 8 s) or handed back to the inbox (5 s,
# or a 429's retry_after) catch up: their latency belongs to the storm.
STORM_TAIL = 15.0


async def storm_over(tg: LocalApiControl, load: Load, begun: float, started: float, *, until: float) -> None:
    """Wait until the server has used every injected fault (or `until`), and note the storm's window."""
    while time.time() < until and await tg.faults():  # noqa: ASYNC110 - another process's state, polled
        await asyncio.sleep(0.5)
    load.storms.append((begun - 1.0, time.time() + STORM_TAIL))
    load.events.append(f"{time.time() - started:6.1f}s storm's faults used up")


async def campaign(db: Db, loyalty: Loyalty, load: Load, started: float, duration: float) -> int:
    await asyncio.sleep(max(0.0, started + 0.1 * duration - time.time()))
    row = Schedule(name="soak campaign", kind="broadcast", one_off_at=utcnow().replace(year=2030),
                   timezone="UTC", segment={"languages": ["zh_Hant"]},
                   templates={"en": CAMPAIGN_TEXT, "zh_Hant": CAMPAIGN_TEXT})
    saved = await editing.add(loyalty, row, actor="soak")
    stats = await editing.run_now(loyalty, saved, actor="soak")
    load.events.append(f"{time.time() - started:6.1f}s campaign planned: {stats.planned} rows")
    return int(saved.id or 0)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    server_url = args.database_url
    name = f"soak_{uuid.uuid4().hex[:8]}"
    await admin(server_url, f"CREATE DATABASE {name}")
    url = make_url(server_url).set(database=name).render_as_string(hide_password=False)
    url = url.replace("postgresql://", "postgresql+asyncpg://", 1) if url.startswith("postgresql://") else url
    work = Path(tempfile.mkdtemp(prefix="soak-"))
    load = Load()
    result: dict[str, Any] = {"bench": "soak", "replicas": args.replicas, "members": args.members,
                              "campaign": args.campaign, "duration_s": args.duration}
    try:
        await upgrade_async(url)
        db = Db(url)
        loyalty = Loyalty(db, load_programme())
        await loyalty.sync_programme()
        async with ServerProcess("--call-log-size", str(args.campaign * 2 + args.members * 200),
                                 "--webhook-retry-delay", "0.05", "--webhook-retry-max", "1",
                                 start_within=60) as server, LocalApiControl(server.url) as tg:
            await tg.create_bot(TOKEN, first_name="Soak Bot", username="soak_bot")
            await tg.set_limits(enabled=True, global_per_second=1000 if args.paid else 30)
            chat_ids = [CHAT_BASE + n for n in range(args.members)]
            numbers = []
            for n, telegram_id in enumerate(chat_ids):
                member = await loyalty.register_member(telegram_id=telegram_id, first_name=f"M{n}",
                                                       terms_accepted=True)
                numbers.append(member.member_no)
            gate = asyncio.Semaphore(32)

            async def make_user(user_id: int, first: str, lang: str) -> None:
                async with gate:
                    await tg.create_user(user_id, first, language_code=lang)

            await asyncio.gather(*(make_user(t, f"M{t}", "en") for t in chat_ids))
            await tg.create_user(STAFF_ID, "Sam", language_code="en")
            await tg.create_group("Soak staff", chat_id=GROUP_ID, members=[STAFF_ID], admins=[STAFF_ID])
            await loyalty.add_staff(STAFF_ID, "agent", name="Sam", actor="soak")
            await seed_campaign_members(url, args.campaign)
            await asyncio.gather(*(make_user(CAMPAIGN_BASE + n, f"C{n}", "zh-hant") for n in range(args.campaign)))
            key = await create_api_key(db, "soak till")

            nginx_port = free_port()
            hook_url = f"http://127.0.0.1:{nginx_port}{HOOK_PATH}"
            frameworks = (["aiogram", "ptb"] * args.replicas)[:args.replicas]
            replicas = []
            for n, framework in enumerate(frameworks, 1):
                hook, web = free_port(), free_port()
                settings = {"staff_group_id": str(GROUP_ID), "paid_broadcast": "true" if args.paid else "false",
                            "send_rate": "1000" if args.paid else "30"}
                replicas.append(Replica(f"replica-{n}", framework, hook, web, replica_env(
                    f"replica-{n}", framework, store_url=url, api_url=server.url, hook_url=hook_url,
                    webhook_port=hook, console_port=web, redis_url=args.redis_url, **settings),
                    work / f"replica-{n}.log"))
            (work / "nginx").mkdir()
            fleet = Fleet(replicas, nginx_port, work / "nginx", db)
            start_nginx(fleet)
            for replica in replicas:
                replica.start()
            for replica in replicas:
                deadline = time.time() + 600
                while not await replica.ready():
                    if (died := replica.died()) or time.time() > deadline:
                        raise RuntimeError(died or f"{replica.name} not ready")
                    await asyncio.sleep(0.2)

            stop = asyncio.Event()
            started = time.time()
            member_gate = asyncio.Semaphore(64)
            drivers = [asyncio.create_task(member_loop(tg, t, load, stop, args.gap, member_gate)) for t in chat_ids]
            drivers.append(asyncio.create_task(till(fleet.url, key, numbers, load, stop, args.till)))
            chaos = asyncio.create_task(faults(fleet, tg, load, args.duration, args.restart_postgres, started))
            planned = asyncio.create_task(campaign(db, loyalty, load, started, args.duration))
            await asyncio.sleep(args.duration)
            stop.set()
            await asyncio.gather(*drivers, return_exceptions=True)
            await chaos
            schedule_id = await planned
            load.events.append(f"{time.time() - started:6.1f}s load stopped; settling")
            await db.dispose()  # its connections may predate the PostgreSQL restart
            db = fleet.db = Db(url)

            expected = {t: len(times) for t, times in load.sent.items()}
            settle_until = time.time() + args.settle
            while time.time() < settle_until:
                async with db.read() as s:
                    busy = (await s.execute(sa.select(sa.func.count()).select_from(Outbox).where(
                        Outbox.status.in_(("pending", "sending"))))).scalar_one()
                answered = Counter(c["chat_id"] for c in await tg.calls(method="sendMessage")
                                   if c.get("ok") and c.get("chat_id") in expected)
                if busy == 0 and all(answered[t] >= n for t, n in expected.items()):
                    break
                await asyncio.sleep(2)
            calls = [c for c in await tg.calls() if c.get("ok")]
            sends = [c for c in calls if c.get("method") in ("sendMessage", "sendPhoto", "editMessageText",
                                                             "createForumTopic", "copyMessage", "sendDocument")]
            result.update(await count(db, load, sends, expected, schedule_id, started))
            result["events"] = load.events
            for replica in replicas:
                replica.kill()
            if fleet.nginx is not None:
                fleet.nginx.send_signal(signal.SIGQUIT)
                fleet.nginx.wait(timeout=20)
        await db.dispose()
    finally:
        try:
            await admin(server_url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        except Exception as exc:  # a leftover database is a nuisance, not a result
            print(f"could not drop {name}: {exc}", file=sys.stderr)
    return result


async def count(db: Db, load: Load, sends: list[dict[str, Any]], expected: dict[int, int], schedule_id: int,
                started: float) -> dict[str, Any]:
    by_chat: dict[int, list[float]] = defaultdict(list)
    for call in sends:
        by_chat[int(call.get("chat_id") or 0)].append(float(call["time"]))
    # updates: the n-th answer in a member's chat belongs to the n-th update (they are seconds apart)
    lost = duplicated = 0
    latencies: list[float] = []  # outside every window
    in_kills: list[float] = []
    in_storms: list[float] = []
    for telegram_id, times in load.sent.items():
        answers = sorted(t for t in by_chat.get(telegram_id, []))
        lost += max(0, len(times) - len(answers))
        duplicated += max(0, len(answers) - len(times))
        pointer = 0
        for sent_at in times:
            while pointer < len(answers) and answers[pointer] < sent_at:
                pointer += 1
            if pointer < len(answers):
                latency = answers[pointer] - sent_at
                if any(a <= sent_at <= b for a, b in load.windows):
                    in_kills.append(latency)
                elif any(a <= sent_at <= b for a, b in load.storms):
                    in_storms.append(latency)
                else:
                    latencies.append(latency)
                pointer += 1
    all_times = sorted(t for times in by_chat.values() for t in times)
    private = [sorted(times) for chat, times in by_chat.items() if chat > 0]
    group = sorted(by_chat.get(GROUP_ID, []))
    async with db.read() as s:
        outbox = dict((await s.execute(sa.select(Outbox.status, sa.func.count()).where(
            Outbox.schedule_id == schedule_id).group_by(Outbox.status))).all())
        unknown = (await s.execute(sa.select(sa.func.count()).select_from(Outbox).where(
            Outbox.schedule_id == schedule_id, Outbox.last_error.like("%delivery unknown%")))).scalar_one()
        purchases = (await s.execute(sa.select(sa.func.count()).select_from(Purchase))).scalar_one()
        doubled_awards = (await s.execute(sa.select(sa.func.count()).select_from(
            sa.select(LedgerEntry.purchase_id).where(LedgerEntry.kind == "earn", LedgerEntry.purchase_id.is_not(None))
            .group_by(LedgerEntry.purchase_id).having(sa.func.count() > 1).subquery()))).scalar_one()
        feedback = Counter(dict((await s.execute(sa.select(Member.telegram_id, sa.func.count(Feedback.id)).join(
            Feedback, Feedback.member_id == Member.id).group_by(Member.telegram_id))).all()))
        ledger = (await s.execute(sa.select(Member.id, Member.balance,
                                            sa.func.coalesce(sa.func.sum(LedgerEntry.delta), 0),
                                            sa.func.coalesce(sa.func.sum(LedgerEntry.remaining), 0))
                                  .join(LedgerEntry, LedgerEntry.member_id == Member.id, isouter=True)
                                  .group_by(Member.id, Member.balance))).all()
    campaign_chats = Counter(chat for chat, times in by_chat.items() for _ in times
                             if chat >= 40_000_000)
    planned = sum(outbox.values())
    sent = int(outbox.get("sent", 0))
    failed = int(outbox.get("failed", 0))
    doubled_feedback = sum(max(0, feedback[t] - n) for t, n in load.feedback_flows.items())
    missing_feedback = sum(max(0, n - feedback[t]) for t, n in load.feedback_flows.items())
    broken = sum(1 for _id, balance, total, left in ledger if not balance == total == left)
    return {
        "updates_sent": sum(len(t) for t in load.sent.values()), "updates_answered": sum(
            min(len(t), len(by_chat.get(m, []))) for m, t in load.sent.items()),
        "updates_lost": lost, "answers_repeated": duplicated,
        "feedback_flows": sum(load.feedback_flows.values()), "feedback_missing": missing_feedback,
        "feedback_duplicated": doubled_feedback,
        "purchases_posted": load.posts, "purchases_awarded": int(purchases), "purchases_duplicated": int(doubled_awards),
        "post_statuses": {str(k): v for k, v in load.post_statuses.items()},
        "campaign_planned": planned, "campaign_sent": sent, "campaign_failed": failed,
        "campaign_lost": max(0, planned - sent - failed), "campaign_unknown": int(unknown),
        "campaign_duplicated": sum(n - 1 for n in campaign_chats.values() if n > 1),
        "max_bot_per_s": busiest(all_times, 1.0), "max_chat_per_s": max((busiest(t, 1.0) for t in private), default=0),
        "max_group_per_min": busiest(group, 60.0),
        "p50_latency_s": percentile(latencies, 0.5), "p99_latency_s": percentile(latencies, 0.99),
        "latency_updates": len(latencies),
        "p99_latency_kill_windows_s": percentile(in_kills, 0.99), "latency_updates_kill_windows": len(in_kills),
        "p99_latency_storms_s": percentile(in_storms, 0.99), "latency_updates_storms": len(in_storms),
        "ledger_broken_members": broken, "ledger_members": len(ledger),
    }


def table(result: dict[str, Any]) -> str:
    rows = [(k, v) for k, v in result.items() if k not in ("events", "bench")]
    width = max(len(k) for k, _ in rows)
    lines = [f"{k:<{width}}  {round(v, 3) if isinstance(v, float) else v}" for k, v in rows]
    return "\n".join(["soak", "-" * (width + 12), *lines, "", "events:", *result.get("events", [])])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", default=os.environ.get("LOYALBOT_TEST_DATABASE_URL",
                                                                 "postgresql://postgres@127.0.0.1:5432/test"))
    parser.add_argument("--redis-url", default=os.environ.get("LOYALBOT_TEST_REDIS_URL"))
    parser.add_argument("--replicas", type=int, default=3)
    parser.add_argument("--members", type=int, default=1000)
    parser.add_argument("--campaign", type=int, default=100_000)
    parser.add_argument("--duration", type=float, default=300.0)
    parser.add_argument("--gap", type=float, default=30.0, help="seconds between a member's updates, on average")
    parser.add_argument("--till", type=int, default=200, help="concurrent purchase posts")
    parser.add_argument("--settle", type=float, default=240.0, help="seconds to wait for the last answers")
    parser.add_argument("--restart-postgres", action="store_true", help="restart the PostgreSQL cluster once")
    parser.add_argument("--no-paid", dest="paid", action="store_false", help="30/s instead of the 1,000/s lane")
    args = parser.parse_args()
    result = asyncio.run(run(args))
    print(table(result))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
