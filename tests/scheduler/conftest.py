"""Fixtures for the scheduler's tests: a migrated store, the programme's services, members, a fake chat."""

from __future__ import annotations

import asyncio
import itertools
import os
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from loyalbot.chat.outbound import BadRequest, Blocked, Outgoing, RetryAfter, Sent, Transient
from loyalbot.loyalty.programme import load_programme
from loyalbot.loyalty.service import Loyalty
from loyalbot.storage import Db, utcnow
from loyalbot.storage.migrate import upgrade
from loyalbot.storage.models import Member, Outbox

PG_URL = os.environ.get("LOYALBOT_TEST_DATABASE_URL")


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    url = f"sqlite+aiosqlite:///{tmp_path / 'scheduler.db'}"
    upgrade(url)
    return url


@pytest.fixture
async def db(sqlite_url) -> AsyncIterator[Db]:
    store = Db(sqlite_url)
    yield store
    await store.dispose()


@pytest.fixture
def programme():
    return load_programme()


@pytest.fixture
async def loyalty(db, programme) -> Loyalty:
    service = Loyalty(db, programme)
    await service.sync_programme()
    return service


@pytest.fixture(scope="session")
def pg_admin_url() -> str:
    if not PG_URL:
        pytest.skip("LOYALBOT_TEST_DATABASE_URL is not set: PostgreSQL tests need it")
    return PG_URL


@pytest.fixture
def pg_url(pg_admin_url) -> str:
    """A fresh, uniquely named PostgreSQL database, migrated; dropped afterwards."""
    import asyncpg

    base = sa.engine.make_url(pg_admin_url)
    name = f"sched_{uuid.uuid4().hex[:10]}"
    dsn = base.set(drivername="postgresql").render_as_string(hide_password=False)

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    url = base.set(database=name).render_as_string(hide_password=False)
    upgrade(url)
    yield url
    asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


_ids = itertools.count(100_000)


async def add_member(loyalty: Loyalty, *, now: datetime, first_name: str = "Ann", language: str = "en",
                     timezone: str = "UTC", birthday: date | None = None, marketing_consent: bool = True,
                     **changes: Any) -> Member:
    """Register a member at `now` and apply further column changes directly (status, notify, quiet hours...)."""
    telegram_id = next(_ids)
    member = await loyalty.register_member(telegram_id=telegram_id, first_name=first_name, language=language,
                                           terms_accepted=True, marketing_consent=marketing_consent,
                                           birthday=birthday, timezone=timezone, now=now)
    if changes:
        async with loyalty.db.transaction() as tx:
            await tx.execute(sa.update(Member).where(Member.id == member.id).values(**changes))
    async with loyalty.db.read() as s:
        return await s.get(Member, member.id)


async def outbox_rows(db: Db, **where: Any) -> list[Outbox]:
    async with db.read() as s:
        query = sa.select(Outbox).order_by(Outbox.id)
        for key, value in where.items():
            query = query.where(getattr(Outbox, key) == value)
        return list((await s.execute(query)).scalars())


@dataclass
class FakeChat:
    """A ChatSender that records what would reach each chat; faults are queued per call."""

    delivered: dict[int, list[Outgoing]] = field(default_factory=lambda: defaultdict(list))
    faults: list[Exception | None] = field(default_factory=list)
    blocked: set[int] = field(default_factory=set)
    calls: int = 0
    _ids: Any = field(default_factory=lambda: itertools.count(1))

    async def send(self, message: Outgoing) -> Sent:
        self.calls += 1
        await asyncio.sleep(0)
        if self.faults:
            fault = self.faults.pop(0)
            if fault is not None:
                raise fault
        if message.chat_id in self.blocked:
            raise Blocked("Forbidden: bot was blocked by the user")
        self.delivered[message.chat_id].append(message)
        return Sent(message_id=next(self._ids))

    def texts(self, chat_id: int) -> list[str]:
        return [m.text or "" for m in self.delivered.get(chat_id, [])]


FAULTS = {"429": lambda: RetryAfter(0.2), "5xx": lambda: Transient("Internal Server Error"),
          "403": lambda: Blocked("Forbidden"), "400": lambda: BadRequest("Bad Request: chat not found")}


def at(text: str) -> datetime:
    """An aware UTC moment from 'YYYY-MM-DD HH:MM'."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


class ShiftedClock:
    """The wall clock moved on by `advance` (for backoff and retry waits kept in the outbox)."""

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def advance(self, by: timedelta) -> None:
        self.offset += by

    def __call__(self) -> datetime:
        return utcnow() + self.offset


def schedule_jobs(service: Any) -> list[Any]:
    """The APScheduler jobs of the operators' schedules (not the service's own, such as nightly scoring)."""
    return [job for job in service.scheduler.get_jobs() if job.id.startswith("schedule:")]
