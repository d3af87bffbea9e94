"""Purchases reported concurrently on PostgreSQL: each external id is awarded once, whoever reports it.

The awarding transaction locks the member row first; an identical report committed by another
process while it waited for that lock must come back as a repeat (not an error, not a second award).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from loyalbot.loyalty import Loyalty, errors, load_programme
from loyalbot.storage import Db
from tests.conftest import NO_PG, truncate_all

NOW = datetime(2026, 3, 10, 12, tzinfo=UTC)


@pytest.fixture
async def pg_loyalty(pg_database: str | None) -> AsyncIterator[Loyalty]:
    if pg_database is None:
        pytest.skip(NO_PG)
    await truncate_all(pg_database)
    db = Db(pg_database, pool_size=25)
    loyalty = Loyalty(db, load_programme())
    await loyalty.sync_programme()
    yield loyalty
    await db.dispose()


async def _driver(url: str) -> asyncpg.Connection:
    parsed = make_url(url)
    return await asyncpg.connect(host=parsed.host, port=parsed.port or 5432, user=parsed.username,
                                 password=parsed.password, database=parsed.database)


async def _wait_until_waiting_for_a_lock(probe: asyncpg.Connection, holder_pid: int) -> None:
    for _ in range(500):  # polls the server, not the clock
        if await probe.fetchval("SELECT count(*) FROM pg_locks WHERE NOT granted AND locktype = 'transactionid'"
                                " AND pid <> $1", holder_pid):
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the award never waited for the member lock")


async def test_a_report_committed_while_waiting_for_the_member_comes_back_as_a_repeat(pg_loyalty, pg_database):
    ann = await pg_loyalty.register_member(telegram_id=1, terms_accepted=True, now=NOW)
    other_replica, probe = await _driver(pg_database), await _driver(pg_database)
    try:
        # Another replica is in the middle of awarding the same till receipt: it holds Ann's row.
        await other_replica.execute("BEGIN")
        await other_replica.execute("SELECT 1 FROM members WHERE id = $1 FOR UPDATE", ann.id)
        ours = asyncio.create_task(pg_loyalty.award_purchase(ann.id, external_id="till-7", amount="40", now=NOW))
        await _wait_until_waiting_for_a_lock(probe, other_replica.get_server_pid())
        first_id = await other_replica.fetchval(
            "INSERT INTO purchases (external_id, member_id, amount, currency, occurred_at, points_awarded,"
            " refunded_amount, points_refunded, refund_shortfall, source, created_at)"
            " VALUES ('till-7', $1, 40, 'EUR', $2, 40, 0, 0, 0, 'api', $2) RETURNING id", ann.id, NOW)
        await other_replica.execute("INSERT INTO ledger_entries (member_id, kind, delta, remaining, created_at,"
                                    " purchase_id) VALUES ($1, 'earn', 40, 40, $2, $3)", ann.id, NOW, first_id)
        await other_replica.execute("UPDATE members SET balance = balance + 40 WHERE id = $1", ann.id)
        await other_replica.execute("COMMIT")
        result = await asyncio.wait_for(ours, 30)
    finally:
        await other_replica.close()
        await probe.close()
    assert result.repeated and result.purchase.id == first_id and result.points == 40
    assert result.purchase.amount == Decimal("40.00")
    assert await pg_loyalty.ledger_check(ann.id) == (40, 40, 40)


async def test_one_receipt_reported_for_two_members_at_once_is_awarded_once(pg_loyalty):
    ann = await pg_loyalty.register_member(telegram_id=1, terms_accepted=True, now=NOW)
    bob = await pg_loyalty.register_member(telegram_id=2, terms_accepted=True, now=NOW)

    async def report(member_id: int) -> str:
        try:
            result = await pg_loyalty.award_purchase(member_id, external_id="shared", amount="40", now=NOW)
        except errors.PurchaseConflict:
            return "conflict"
        return f"{'repeat' if result.repeated else 'awarded'}:{result.purchase.member_id}"

    outcomes = await asyncio.gather(*(report(m) for _ in range(12) for m in (ann.id, bob.id)))
    awarded = [o for o in outcomes if o.startswith("awarded")]
    assert len(awarded) == 1
    winner = int(awarded[0].split(":")[1])
    assert outcomes.count(f"repeat:{winner}") == 11 and outcomes.count("conflict") == 12
    balances = {m: await pg_loyalty.ledger_check(m) for m in (ann.id, bob.id)}
    assert balances == {m: (40, 40, 40) if m == winner else (0, 0, 0) for m in (ann.id, bob.id)}
