"""Outbox idempotency keys on SQLite and PostgreSQL: every row has one, a repeat adds nothing, old rows get theirs."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError, StatementError

from loyalbot.storage import Db
from loyalbot.storage.migrate import schema_drift, upgrade
from loyalbot.storage.models import Outbox, Schedule, outbox_key
from tests.conftest import NO_PG, _admin_exec, pg_server_url
from tests.loyalty.helpers import snapshot

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


async def _member(loyalty, telegram_id: int = 41):
    return await loyalty.register_member(telegram_id=telegram_id, first_name="Ann", terms_accepted=True, now=NOW)


def _row(member_id: int, **values) -> dict:
    return {"member_id": member_id, "chat_id": 41, "kind": "coupon_used", "period": "now", "text": "Hi",
            "buttons": [], "status": "pending", "not_before": NOW, "created_at": NOW, "attempts": 0, **values}


async def test_a_row_without_a_schedule_must_bring_its_own_key_and_a_repeat_is_refused(loyalty, db):
    member = await _member(loyalty)
    before = await snapshot(db)
    with pytest.raises((StatementError, ValueError)):
        async with db.transaction() as tx:
            await tx.execute(sa.insert(Outbox), [_row(member.id)])
    assert await snapshot(db) == before
    async with db.transaction() as tx:
        await tx.execute(sa.insert(Outbox), [_row(member.id, idempotency_key="coupon_used:1:7")])
    # The same event enqueued again (a retry, a second replica): refused by the store, not sent twice.
    with pytest.raises(IntegrityError):
        async with db.transaction() as tx:
            await tx.execute(sa.insert(Outbox), [_row(member.id, idempotency_key="coupon_used:1:7")])
    async with db.read() as s:
        keys = (await s.execute(sa.select(Outbox.idempotency_key))).scalars().all()
    assert keys == ["coupon_used:1:7"]


async def test_scheduled_rows_get_the_documented_key_when_inserted_without_one(loyalty, db):
    member = await _member(loyalty)
    async with db.transaction() as tx:
        schedule = Schedule(name="birthday", kind="birthday", daily_time="09:00")
        tx.add(schedule)
        await tx.flush()
        tx.add(Outbox(schedule_id=schedule.id, **_row(member.id, period="2026")))
    async with db.read() as s:
        row = (await s.execute(sa.select(Outbox))).scalar_one()
    assert row.idempotency_key == f"schedule:{schedule.id}:{member.id}:2026" == outbox_key(schedule.id, member.id,
                                                                                           "2026")


@pytest.fixture(params=["sqlite", "postgres"])
def blank_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database of this test's own (migrations are run on it step by step)."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'blank.db'}"
        return
    server = pg_server_url()
    if server is None:
        pytest.skip(NO_PG)
    name = f"loyalbot_keys_{uuid.uuid4().hex[:10]}"
    _admin_exec(server, f'CREATE DATABASE "{name}"')
    try:
        yield make_url(server).set(drivername="postgresql+asyncpg", database=name).render_as_string(
            hide_password=False)
    finally:
        _admin_exec(server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_rows_planned_before_keys_existed_get_their_key_when_migrating(blank_url):
    upgrade(blank_url, "0002")

    async def seed() -> None:
        db = Db(blank_url)
        try:
            async with db.transaction() as tx:
                for statement in (
                    "INSERT INTO members (id, member_no, language, timezone, status, tier, balance, notify, "
                    "marketing_consent, support_blocked, joined_at) VALUES (1, 'M1', 'en', 'UTC', 'active', 'green', "
                    "0, '{}', false, false, :now)",
                    "INSERT INTO schedules (id, name, kind, enabled, timezone, member_local_time, offset_days, "
                    "segment, templates, params, created_at, updated_at) VALUES (3, 'bday', 'birthday', true, 'UTC', "
                    "false, 0, '{}', '{}', '{}', :now, :now)",
                    "INSERT INTO outbox (id, schedule_id, member_id, chat_id, kind, period, text, buttons, status, "
                    "not_before, attempts, created_at) VALUES (10, 3, 1, 5, 'birthday', '2025', 'x', '[]', 'sent', "
                    ":now, 1, :now)",
                    "INSERT INTO outbox (id, schedule_id, member_id, chat_id, kind, period, text, buttons, status, "
                    "not_before, attempts, created_at) VALUES (11, NULL, 1, 5, 'notice', 'p', 'x', '[]', 'pending', "
                    ":now, 0, :now)",
                    "INSERT INTO outbox (id, schedule_id, member_id, chat_id, kind, period, text, buttons, status, "
                    "not_before, attempts, created_at) VALUES (12, NULL, 1, 5, 'notice', 'p', 'x', '[]', 'pending', "
                    ":now, 0, :now)",
                ):
                    await tx.execute(sa.text(statement), {"now": NOW})
            await db.dispose()
        finally:
            await db.dispose()

    async def keys() -> dict[int, str]:
        db = Db(blank_url)
        try:
            async with db.read() as s:
                return dict((await s.execute(sa.select(Outbox.id, Outbox.idempotency_key))).all())
        finally:
            await db.dispose()

    asyncio.run(seed())
    upgrade(blank_url)
    assert asyncio.run(keys()) == {10: "schedule:3:1:2025", 11: "legacy:11", 12: "legacy:12"}
    assert asyncio.run(schema_drift(blank_url)) == []
