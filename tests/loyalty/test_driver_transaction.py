"""Db.driver_transaction: the asyncpg connection under the hot path is one transaction, and goes back clean.

Whatever happens inside -- a refusal, a constraint the server enforces, a caller that gives up half-way --
nothing half-done is committed and no pooled connection is left inside a transaction.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from loyalbot.storage import Db
from tests.conftest import NO_PG, truncate_all

INSERT_STAFF = "INSERT INTO staff (telegram_id, role, added_at) VALUES ($1, 'agent', now())"


@pytest.fixture
async def pg_db(pg_database: str | None) -> AsyncIterator[Db]:
    if pg_database is None:
        pytest.skip(NO_PG)
    await truncate_all(pg_database)
    db = Db(pg_database, pool_size=2)
    yield db
    await db.dispose()


async def _staff_ids(db: Db) -> list[int]:
    async with db.read() as s:
        return list((await s.execute(sa.text("SELECT telegram_id FROM staff ORDER BY telegram_id"))).scalars())


async def _open_transactions(db: Db) -> int:
    async with db.read() as s:
        return (await s.execute(sa.text(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND state LIKE 'idle in transaction%'"))).scalar_one()


async def test_what_the_block_writes_is_committed(pg_db):
    async with pg_db.driver_transaction() as conn:
        await conn.execute(INSERT_STAFF, 1)
        await conn.execute(INSERT_STAFF, 2)
    assert await _staff_ids(pg_db) == [1, 2]


async def test_a_refusal_half_way_writes_nothing_and_the_connection_is_reused(pg_db):
    class Refused(Exception):
        pass

    for attempt in range(5):  # more attempts than the pool has connections: each one went back
        with pytest.raises(Refused):
            async with pg_db.driver_transaction() as conn:
                await conn.execute(INSERT_STAFF, 10 + attempt)
                raise Refused()
    assert await _staff_ids(pg_db) == []
    assert pg_db.engine.pool.checkedout() == 0
    assert await _open_transactions(pg_db) == 0


async def test_a_constraint_the_server_enforces_is_sqlalchemys_integrity_error_and_undoes_the_block(pg_db):
    with pytest.raises(sa.exc.IntegrityError, match="uq_staff_telegram_id|duplicate key"):
        async with pg_db.driver_transaction() as conn:
            await conn.execute(INSERT_STAFF, 5)
            await conn.execute(INSERT_STAFF, 5)
    assert await _staff_ids(pg_db) == []
    async with pg_db.driver_transaction() as conn:
        await conn.execute(INSERT_STAFF, 6)
    assert await _staff_ids(pg_db) == [6]


async def test_a_caller_cancelled_mid_statement_leaves_no_transaction_open(pg_db):
    started = asyncio.Event()

    async def slow() -> None:
        async with pg_db.driver_transaction() as conn:
            await conn.execute(INSERT_STAFF, 7)
            started.set()
            await conn.execute("SELECT pg_sleep(30)")

    task = asyncio.create_task(slow())
    await asyncio.wait_for(started.wait(), 10)
    await asyncio.sleep(0.05)  # let the sleep reach the server
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert pg_db.engine.pool.checkedout() == 0
    for _ in range(3):
        async with pg_db.driver_transaction() as conn:
            assert await conn.fetchval("SELECT 1") == 1
    assert await _staff_ids(pg_db) == []
    for _ in range(100):  # the cancelled backend goes away asynchronously: poll the server
        if await _open_transactions(pg_db) == 0:
            break
        await asyncio.sleep(0.05)
    assert await _open_transactions(pg_db) == 0


async def test_sqlite_has_no_driver_transaction(tmp_path: Path):
    db = Db(f"sqlite+aiosqlite:///{tmp_path / 'x.db'}")
    try:
        with pytest.raises(RuntimeError, match="PostgreSQL"):
            async with db.driver_transaction():
                pass
    finally:
        await db.dispose()
