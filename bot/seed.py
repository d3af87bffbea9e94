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
from loyalbot.loyalty import Loyalty, errors
from loyalbot.loyalty.codes import SEEDED_MEMBER_BASE, member_no_from
from loyalbot.loyalty.events import LoyaltyEvent, MemberJoined
from loyalbot.loyalty.programme import Programme, programme_from_data
from loyalbot.storage import Db, utcnow
from loyalbot.storage.migrate import upgrade_async
from loyalbot.storage.models import LedgerEntry, Member, Notice, Purchase
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
                expires = programme.lot_expiry(occurred, tier=tier)
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
DEMO_STAMPS = 4  # coffees already on a newcomer's first stamp card, so /stamps shows a card under way
# The demo's bonus campaign: a member day, every Wednesday double points (see loyalty/bonuses.py).
DEMO_BONUS = {"code": "member-day", "kind": "member_day", "weekday": "wednesday", "factor": 2,
              "titles": {"en": "Member day: double points", "zh_Hans": "会员日双倍积分", "zh_Hant": "會員日雙倍積分"}}
DEMO_VISIT_AMOUNT = Decimal("24.50")  # a visit two days ago: its points pending until the window passes
DEMO_FRIENDS = (("Mia", True), ("Noah", False))  # friends who joined through the member's link; bought?
DEMO_FRIEND_BASE = 8_500_000_000  # their synthetic Telegram ids (no chat: they are never sent anything)
# Regulars who stopped coming: members for a year, last purchase 100-130 days ago, so the win-back play (90 days
# without a purchase) has an audience big enough for a control group and two variants. They are identities on the
# demo page (its picker shows their chats, where the win-back arrives), three in each language.
DEMO_LAPSED: tuple[dict[str, Any], ...] = tuple(
    {"id": 1101 + n, "first_name": name, "language_code": code, "role": "member", "days_away": 100 + 4 * n,
     "label": label.format(name=name)}
    for n, (name, code, label) in enumerate((
        ("Grace", "en", "{name} (member, English, away 3 months)"),
        ("Hugo", "en", "{name} (member, English, away 3 months)"),
        ("Isla", "en", "{name} (member, English, away 3 months)"),
        ("晓雯", "zh-hans", "{name} (会员, 简体中文, 3个月未到店)"),
        ("建国", "zh-hans", "{name} (会员, 简体中文, 3个月未到店)"),
        ("丽华", "zh-hans", "{name} (会员, 简体中文, 3个月未到店)"),
        ("家豪", "zh-hant", "{name} (會員, 繁體中文, 3個月未到店)"),
        ("淑芬", "zh-hant", "{name} (會員, 繁體中文, 3個月未到店)"),
        ("怡君", "zh-hant", "{name} (會員, 繁體中文, 3個月未到店)"),
    )))
DEMO_LAPSED_AMOUNT = Decimal("9.50")  # each of their three visits, two months apart
DEMO_LAPSED_LANGUAGES = {"en": "en", "zh-hans": "zh_Hans", "zh-hant": "zh_Hant"}


def demo_programme(programme: Programme, welcome_bonus: int) -> Programme:
    """The demo's programme: the configured one, with a welcome bonus and a member-day campaign added."""
    data = programme.model_dump(mode="python", exclude_none=True)
    data["earning"]["welcome_bonus"] = welcome_bonus
    if not data.get("bonuses"):
        data["bonuses"] = [DEMO_BONUS]
    return programme_from_data(data, "demo programme")


async def give_demo_history(loyalty: Loyalty, member_id: int, *, now: datetime) -> None:
    """What a member who joins the demo finds: points about to expire, a visit's points pending, two friends who
    joined through their link (one bought), a stamp card under way, and a birthday if they gave none.

    The README's operator walk then has something to show in the member's own chat: `schedule run-now
    expiring` (points expiring within 30 days) reminds them of these points, and `schedule preview
    birthdays` finds a member whose birthday is today. The points come without a message of their own.
    """
    member = await loyalty.member(member_id)
    if (member.telegram_id or 0) >= DEMO_FRIEND_BASE:
        return  # one of the demo's friends, joining as part of another member's history
    await loyalty.grant_bonus(member_id, DEMO_EXPIRING_POINTS, reference="demo-earlier-visits",
                              note=DEMO_EXPIRING_NOTE, now=now, expires_at=now + timedelta(days=DEMO_EXPIRING_DAYS),
                              tell=False)
    if loyalty.programme.stamp_cards:
        first = loyalty.programme.stamp_cards[0]
        await loyalty.give_stamps(member_id, first.code, min(DEMO_STAMPS, first.stamps_needed - 1),
                                  key=f"demo:{member_id}", now=now)
    await give_demo_referrals(loyalty, member_id, now=now)
    if member.birthday is None:
        today = now.astimezone(ZoneInfo(member.timezone)).date()
        born = date(1992 if (today.month, today.day) == (2, 29) else 1990, today.month, today.day)
        await loyalty.update_member(member_id, birthday=born, now=now)


async def give_demo_referrals(loyalty: Loyalty, member_id: int, *, now: datetime) -> None:
    """A visit still inside the return window (pending points with their date) and two friends who joined
    through the member's link: one bought three weeks ago (both rewarded), one has not bought yet."""
    await loyalty.award_purchase(member_id, external_id=f"demo-visit:{member_id}", amount=DEMO_VISIT_AMOUNT,
                                 occurred_at=now - timedelta(days=2), now=now, source="demo")
    code = await loyalty.referral_code(member_id, now=now)
    for n, (name, bought) in enumerate(DEMO_FRIENDS):
        joined = now - timedelta(days=21 - n)
        friend = await loyalty.register_member(telegram_id=DEMO_FRIEND_BASE + member_id * 10 + n, first_name=name,
                                               terms_accepted=True, now=joined)
        assert friend.id is not None
        try:
            await loyalty.link_referral(friend.id, code, now=joined)
        except errors.AlreadyReferred:  # the history was given before (a second start): nothing more to add
            continue
        if bought:
            await loyalty.award_purchase(friend.id, external_id=f"demo-friend:{friend.id}", amount=DEMO_VISIT_AMOUNT,
                                         occurred_at=joined, now=joined, source="demo")
    await loyalty.ledger_upkeep(now=now)  # the first friend's purchase is past its window: both rewarded


async def give_demo_lapsed(loyalty: Loyalty, *, now: datetime) -> int:
    """Register the demo's lapsed regulars (`DEMO_LAPSED`) with their year of history; returns how many were new.

    Each joined about 400 days ago with marketing consent and came three times, the last `days_away` days ago;
    nothing has happened since. What they were told back then (the welcome, points credited) is marked as told,
    so starting the demo sends them nothing: the first message in their chats is the operator's campaign. A
    second start finds them registered and adds nothing.
    """
    added: list[int] = []
    for person in DEMO_LAPSED:
        if await loyalty.member_by_telegram(person["id"]) is not None:
            continue
        last = now - timedelta(days=person["days_away"], hours=3)
        joined = last - timedelta(days=300)
        member = await loyalty.register_member(telegram_id=person["id"], first_name=person["first_name"],
                                               language=DEMO_LAPSED_LANGUAGES[person["language_code"]],
                                               terms_accepted=True, marketing_consent=True, now=joined)
        assert member.id is not None
        for visit in range(3):
            at = last - timedelta(days=60 * (2 - visit))
            await loyalty.award_purchase(member.id, external_id=f"demo-lapsed:{member.id}:{visit}",
                                         amount=DEMO_LAPSED_AMOUNT, occurred_at=at, now=at, source="demo")
        added.append(member.id)
    if added:
        await loyalty.ledger_upkeep(now=now)  # their visits' points, long past the return window, are spendable
        async with loyalty.db.transaction() as tx:
            await tx.execute(sa.update(Notice).where(Notice.member_id.in_(added), Notice.status == "new")
                             .values(status="planned", planned_at=now))
    return len(added)


async def seed_demo_history(app: Any) -> None:
    """A demo service: the lapsed regulars are there from the start, and each member who joins gets
    `give_demo_history`."""
    loyalty: Loyalty = app.loyalty
    await give_demo_lapsed(loyalty, now=app.clock())

    async def joined(event: LoyaltyEvent) -> None:
        if isinstance(event, MemberJoined):
            await give_demo_history(loyalty, event.member_id, now=app.clock())

    loyalty.subscribe(joined)
