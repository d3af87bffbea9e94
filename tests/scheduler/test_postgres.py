"""On PostgreSQL: planning is idempotent with bulk inserts, and two dispatchers never send the same row."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest
import sqlalchemy as sa

from loyalbot.loyalty.programme import load_programme
from loyalbot.loyalty.service import Loyalty
from loyalbot.scheduler.dispatcher import Dispatcher
from loyalbot.scheduler.planner import Planner
from loyalbot.storage import Db
from loyalbot.storage.models import Member, Outbox, Schedule
from tests.scheduler.conftest import FakeChat, at

pytestmark = pytest.mark.postgres
NOW = at("2025-06-10 10:00")


async def seed(db: Db, count: int) -> None:
    rows = [dict(telegram_id=7_000_000 + n, chat_id=7_000_000 + n, member_no=f"PG{n:08d}", first_name=f"P{n}",
                 language=("en", "zh_Hans", "zh_Hant")[n % 3], timezone="UTC", status="active", tier="green",
                 balance=n, notify={"care": True, "reminders": True, "surveys": True, "offers": True},
                 marketing_consent=n % 10 != 0, joined_at=at("2024-01-01 10:00"), support_blocked=False)
             for n in range(count)]
    async with db.transaction() as tx:
        await tx.execute(sa.insert(Member), rows)


@pytest.fixture
async def pg(pg_url):
    db = Db(pg_url)
    loyalty = Loyalty(db, load_programme())
    await loyalty.sync_programme()
    yield db, loyalty
    await db.dispose()


async def test_planning_on_postgres_is_bulk_and_idempotent(pg):
    db, loyalty = pg
    await seed(db, 2500)
    async with db.transaction() as tx:
        schedule = Schedule(name="news", kind="broadcast", one_off_at=NOW, created_at=NOW, updated_at=NOW)
        tx.add(schedule)
    planner = Planner(loyalty, batch_size=1000)
    first = await planner.run(schedule, now=NOW)
    second = await planner.run(schedule, now=NOW)
    assert (first.planned, first.skipped["no_consent"]) == (2250, 250)
    assert second.planned == 0 and second.already_planned == 2500
    async with db.read() as s:
        assert (await s.execute(sa.select(sa.func.count()).select_from(Outbox))).scalar_one() == 2500


async def test_two_dispatchers_never_send_the_same_row(pg, pg_url):
    db, loyalty = pg
    await seed(db, 600)
    async with db.transaction() as tx:
        schedule = Schedule(name="news", kind="broadcast", one_off_at=NOW, created_at=NOW, updated_at=NOW,
                            templates={"en": "hi {{ name }}", "zh_Hans": "你好 {{ name }}", "zh_Hant": "你好 {{ name }}"})
        tx.add(schedule)
    planned = (await Planner(loyalty).run(schedule, now=NOW)).planned
    chat = FakeChat()  # both "processes" deliver into one world, so a double send would show
    stores = [Db(pg_url), Db(pg_url)]
    try:
        dispatchers = [Dispatcher(store, chat, rate=1000, batch_size=40, worker_id=f"worker-{n}")
                       for n, store in enumerate(stores)]
        results = await asyncio.gather(*(d.drain(limit_seconds=60) for d in dispatchers))
    finally:
        for store in stores:
            await store.dispose()
    per_chat = Counter({chat_id: len(messages) for chat_id, messages in chat.delivered.items()})
    assert len(per_chat) == planned and set(per_chat.values()) == {1}
    assert chat.calls == planned
    assert all(r.sent > 0 for r in results)  # both took part
    async with db.read() as s:
        by_worker = dict((await s.execute(sa.select(Outbox.claimed_by, sa.func.count())
                                          .where(Outbox.status == "sent").group_by(Outbox.claimed_by))).all())
    assert set(by_worker) == {"worker-0", "worker-1"} and sum(by_worker.values()) == planned
