"""Synthetic demo data: the programme plus N members with two years of purchases, fast enough for millions.

Rows are generated in Python and written in bulk (COPY on PostgreSQL, executemany on SQLite) with
explicit ids, so one member's purchases and lots can refer to each other without a round trip.
The data obeys the ledger's invariants: each purchase is an earn lot; lots whose expiry has passed
carry an expire entry and nothing remaining; the cached balance is the sum of the ledger.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from loyalbot.bot.settings import Settings
from loyalbot.loyalty import Loyalty
from loyalbot.loyalty.codes import SEEDED_MEMBER_BASE, member_no_from
from loyalbot.loyalty.events import LoyaltyEvent, MemberJoined
from loyalbot.loyalty.programme import Programme
from loyalbot.storage import Db, utcnow
from loyalbot.storage.migrate import upgrade_async
from loyalbot.storage.models import LedgerEntry, Member, Purchase
from loyalbot.storage.rows import table_of

FIRST_NAMES = {
    "en": ["Ann", "Ben", "Chloe", "Dev", "Ella", "Finn", "Grace", "Hugo", "Isla", "Jack", "Kai", "Lena"],
    "zh_Hans": ["小明", "晓雯", "建国", "丽华", "志强", "婷婷", "子轩", "雨萱"],
    "zh_Hant": ["阿美", "家豪", "淑芬", "志明", "怡君", "冠宇", "雅婷", "承恩"],
}
ZONES = ["Europe/Amsterdam", "Europe/London", "Asia/Shanghai", "Asia/Taipei", "Asia/Hong_Kong"]
TELEGRAM_BASE = 8_000_000_000  # synthetic Telegram ids, far from real users' ids in a demo
BATCH = 5000

MEMBER_COLS = ["id", "telegram_id", "chat_id", "member_no", "first_name", "language", "timezone", "birthday",
               "terms_accepted_at", "marketing_consent", "marketing_consent_at", "status", "tier", "tier_since",
               "balance", "notify", "support_blocked", "joined_at", "last_activity_at", "last_purchase_at"]
PURCHASE_COLS = ["id", "external_id", "member_id", "amount", "currency", "occurred_at", "points_awarded",
                 "refunded_amount", "points_refunded", "refund_shortfall", "source", "created_at"]
LEDGER_COLS = ["member_id", "kind", "delta", "expires_at", "remaining", "reference", "purchase_id", "note",
               "created_at"]
NOTIFY = {"care": True, "reminders": True, "surveys": True, "offers": True, "activity": True}


def _member_rows(programme: Programme, rng: random.Random, first_id: int, first_purchase_id: int, count: int,
                 now: datetime) -> tuple[list[tuple], list[tuple], list[tuple]]:
    members: list[tuple] = []
    purchases: list[tuple] = []
    ledger: list[tuple] = []
    purchase_id = first_purchase_id
    currency = programme.programme.currency
    for offset in range(count):
        member_id = first_id + offset
        language = rng.choice(("en", "en", "zh_Hans", "zh_Hant"))
        joined = now - timedelta(days=rng.randint(1, 730), seconds=rng.randint(0, 86399))
        birthday = date(rng.randint(1950, 2006), rng.randint(1, 12), rng.randint(1, 28))
        zone = rng.choice(ZONES)
        marketing = rng.random() < 0.6
        balance = 0
        tier = programme.tiers.levels[0].code
        history: list[tuple[datetime, Decimal]] = []
        moments = sorted(joined + (now - joined) * rng.random() for _ in range(rng.randint(0, 8)))
        for occurred in moments:
            amount = Decimal(rng.randint(300, 9000)) / 100
            window = programme.window_start(occurred)
            spend = sum((a for at, a in history if at > window), Decimal(0)) + amount
            history.append((occurred, amount))
            points = programme.points_for(amount, tier=tier, birthday_month=occurred.month == birthday.month)
            if programme.tier_rank(programme.tier_for_spend(spend).code) > programme.tier_rank(tier):
                tier = programme.tier_for_spend(spend).code
            purchases.append((purchase_id, f"seed-{member_id}-{purchase_id}", member_id, amount, currency, occurred,
                              points, Decimal(0), 0, 0, "seed", occurred))
            if points:
                expires = programme.lot_expiry(occurred)
                live = expires > now
                ledger.append((member_id, "earn", points, expires, points if live else 0,
                               f"seed-{member_id}-{purchase_id}", purchase_id, None, occurred))
                if live:
                    balance += points
                else:
                    ledger.append((member_id, "expire", -points, None, None, f"purchase:{purchase_id}", None,
                                   f"expired {expires:%Y-%m-%d}", expires))
            purchase_id += 1
        last_purchase = moments[-1] if moments else None
        members.append((
            member_id, TELEGRAM_BASE + member_id, TELEGRAM_BASE + member_id,
            member_no_from(SEEDED_MEMBER_BASE + member_id), rng.choice(FIRST_NAMES[language]), language, zone,
            birthday, joined, marketing, joined if marketing else None, "active", tier, joined, balance,
            NOTIFY, False, joined, last_purchase or joined, last_purchase,
        ))
    return members, purchases, ledger


def _chunks(total: int, size: int) -> Iterator[int]:
    done = 0
    while done < total:
        yield min(size, total - done)
        done += size


async def _next_ids(db: Db) -> tuple[int, int]:
    async with db.read() as s:
        member_id = (await s.execute(sa.select(sa.func.max(Member.id)))).scalar_one()
        purchase_id = (await s.execute(sa.select(sa.func.max(Purchase.id)))).scalar_one()
    return (member_id or 0) + 1, (purchase_id or 0) + 1  # max() of an empty table is NULL


async def _write_postgres(db: Db, members: list[tuple], purchases: list[tuple], ledger: list[tuple]) -> None:
    async with db.engine.begin() as conn:
        raw = (await conn.get_raw_connection()).driver_connection
        if raw is None:
            raise RuntimeError("the pooled connection has no asyncpg connection behind it")
        notify_at = MEMBER_COLS.index("notify")
        member_records = [row[:notify_at] + (json.dumps(row[notify_at]),) + row[notify_at + 1:] for row in members]
        await raw.copy_records_to_table("members", records=member_records, columns=MEMBER_COLS)
        await raw.copy_records_to_table("purchases", records=purchases, columns=PURCHASE_COLS)
        await raw.copy_records_to_table("ledger_entries", records=ledger, columns=LEDGER_COLS)


async def _write_sqlite(db: Db, members: list[tuple], purchases: list[tuple], ledger: list[tuple]) -> None:
    async with db.transaction() as s:
        for table, cols, rows in ((table_of(Member), MEMBER_COLS, members),
                                  (table_of(Purchase), PURCHASE_COLS, purchases),
                                  (table_of(LedgerEntry), LEDGER_COLS, ledger)):
            if rows:
                await s.execute(sa.insert(table), [dict(zip(cols, row, strict=True)) for row in rows])


async def _fix_sequences(db: Db) -> None:
    if not db.is_postgres:
        return
    async with db.transaction() as s:
        for table in ("members", "purchases", "ledger_entries"):
            await s.execute(sa.text(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), COALESCE((SELECT MAX(id) FROM {table}), 1))"
            ))


async def seed_members(settings: Settings, count: int, *, seed: int = 7, console: Console | None = None,
                       now: datetime | None = None) -> dict[str, Any]:
    """Migrate, load the programme, and add `count` synthetic members; returns what was written."""
    console = console or Console()
    now = now or utcnow()
    await upgrade_async(settings.database_url)
    db = Db(settings.database_url)
    programme = settings.load_programme()
    try:
        await Loyalty(db, programme).sync_programme()
        rng = random.Random(seed)
        member_id, purchase_id = await _next_ids(db)
        write = _write_postgres if db.is_postgres else _write_sqlite
        totals = {"members": 0, "purchases": 0, "ledger_entries": 0}
        columns = (TextColumn("[bold]seeding members"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
        with Progress(*columns, console=console, transient=False) as progress:
            task = progress.add_task("members", total=count)
            for size in _chunks(count, BATCH):
                members, purchases, ledger = _member_rows(programme, rng, member_id, purchase_id, size, now)
                await write(db, members, purchases, ledger)
                member_id += size
                purchase_id += len(purchases)
                totals["members"] += len(members)
                totals["purchases"] += len(purchases)
                totals["ledger_entries"] += len(ledger)
                progress.advance(task, size)
        await _fix_sequences(db)
        console.print(f"Seeded {totals['members']:,} members, {totals['purchases']:,} purchases, "
                      f"{totals['ledger_entries']:,} ledger entries.")
        return totals
    finally:
        await db.dispose()


# --- the demo's members: history that makes the README's operator walk show something -------------------

DEMO_EXPIRING_POINTS = 80
DEMO_EXPIRING_DAYS = 12  # inside the README's `--offset-days 30` reminder window
DEMO_EXPIRING_NOTE = "points from visits before you joined (demo)"


async def give_demo_history(loyalty: Loyalty, member_id: int, *, now: datetime) -> None:
    """What a member who joins the demo finds: points about to expire, and a birthday if they gave none.

    The README's operator walk then has something to show in the member's own chat: `schedule run-now
    expiring` (points expiring within 30 days) reminds them of these points, and `schedule preview
    birthdays` finds a member whose birthday is today. The points come without a message of their own.
    """
    member = await loyalty.member(member_id)
    await loyalty.grant_bonus(member_id, DEMO_EXPIRING_POINTS, reference="demo-earlier-visits",
                              note=DEMO_EXPIRING_NOTE, now=now, expires_at=now + timedelta(days=DEMO_EXPIRING_DAYS),
                              tell=False)
    if member.birthday is None:
        today = now.astimezone(ZoneInfo(member.timezone)).date()
        born = date(1992 if (today.month, today.day) == (2, 29) else 1990, today.month, today.day)
        await loyalty.update_member(member_id, birthday=born, now=now)


async def seed_demo_history(app: Any) -> None:
    """A demo service: from the start on, each member who joins gets `give_demo_history`."""
    loyalty: Loyalty = app.loyalty

    async def joined(event: LoyaltyEvent) -> None:
        if isinstance(event, MemberJoined):
            await give_demo_history(loyalty, event.member_id, now=app.clock())

    loyalty.subscribe(joined)
