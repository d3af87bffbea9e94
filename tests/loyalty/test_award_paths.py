"""Purchases awarded on PostgreSQL (asyncpg prepared statements) land exactly as on SQLite (SQLAlchemy Core).

The same shop traffic -- birthdays across time zones, tiny amounts, tier climbs, old and just-future
purchases, refunds, repeats, conflicts, erased and unknown members -- is sent to a fresh SQLite store
and to a fresh PostgreSQL store; what the shop is told and what each store holds must be the same.
"""

from __future__ import annotations

import shutil
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from loyalbot.loyalty import Loyalty, errors, load_programme
from loyalbot.loyalty.programme import Expiry, Pending, Programme
from loyalbot.storage import Db
from loyalbot.storage.models import LedgerEntry, Member, Notice, PendingPoints, Purchase, TierChange
from tests.conftest import NO_PG, truncate_all

NOW = datetime(2026, 3, 31, 12, 0, tzinfo=UTC)

# (who, external id, amount, extra keyword arguments); who indexes the members made in _traffic.
SHOP_TRAFFIC: list[tuple[int, str, str, dict[str, Any]]] = [
    (0, "kiri-1", "20.00", {}),                                        # 1 April already in Kiritimati: x2
    (1, "utc-1", "20.00", {}),                                         # birthday in April, still March in UTC
    (2, "tiny", "0.99", {}),                                           # no points, no lot, still a purchase
    (2, "small", "1.00", {"source": "till:" + "x" * 60, "recorded_by": 42}),
    (1, "climb-1", "260", {}),
    (1, "future", "15", {"occurred_at": NOW + timedelta(minutes=3)}),  # dated ahead: not yet qualifying
    (1, "climb-2", "25", {}),                                          # 305 qualifying: silver
    (1, "earlier", "5", {"occurred_at": NOW - timedelta(days=3)}),     # last purchase date stays the latest
    (1, "climb-3", "700", {}),                                         # gold, the top tier
    (1, "at-top", "10", {}),                                           # top tier: no spend to sum
    (2, "old", "999", {"occurred_at": NOW - timedelta(days=400)}),     # outside the window: no climb
    (2, "climb-1", "290", {}),                                         # another member's id: conflict
    (1, "climb-1", "260.00", {}),                                      # a repeat: the first result
    (1, "climb-1", "261", {}),                                         # same id, other amount: conflict
    (2, "refunded", "350", {}),                                        # silver ...
    (3, "gone", "10", {}),                                             # erased member
    (99, "nobody", "10", {}),                                          # unknown member
    (2, "after-refund", "1", {"now": NOW + timedelta(days=1)}),
]


def _variant(name: str) -> Programme:
    """The default programme, or one with a return window (the spend waiting too), or expiry by activity."""
    programme = load_programme()
    if name == "pending":
        return programme.model_copy(update={"pending": Pending(return_window_days=14)})
    if name == "pending-spend-waits":
        return programme.model_copy(update={"pending": Pending(return_window_days=14, tier_spend_waits=True)})
    if name == "activity":
        return programme.model_copy(update={"expiry": Expiry(mode="activity_extends", months=3, extend_months=6)})
    return programme


async def _traffic(url: str, variant: str = "default") -> tuple[list[Any], dict[str, Any]]:
    """Send SHOP_TRAFFIC to the store at `url`; what the shop was told, and the award tables' rows."""
    db = Db(url)
    loyalty = Loyalty(db, _variant(variant))
    try:
        await loyalty.sync_programme()
        joined = NOW - timedelta(days=60)
        members = [
            await loyalty.register_member(telegram_id=1, terms_accepted=True, birthday=date(1990, 4, 2),
                                          timezone="Pacific/Kiritimati", now=joined),
            await loyalty.register_member(telegram_id=2, terms_accepted=True, birthday=date(1985, 4, 20),
                                          timezone="UTC", now=joined),
            await loyalty.register_member(telegram_id=3, terms_accepted=True, now=joined),
            await loyalty.register_member(telegram_id=4, terms_accepted=True, now=joined),
        ]
        await loyalty.erase_member(members[3].id, actor="test", now=joined)
        told: list[Any] = []
        for who, external_id, amount, extra in SHOP_TRAFFIC:
            if external_id == "after-refund":
                await loyalty.refund_purchase("refunded", refund_id="r1", amount="100", now=NOW)
            member_id = members[who].id if who < len(members) else 10_000
            kwargs = {"now": NOW, **extra}
            try:
                result = await loyalty.award_purchase(member_id, external_id=external_id, amount=amount, **kwargs)
            except errors.Refusal as refusal:
                told.append((external_id, type(refusal).__name__))
                continue
            p = result.purchase
            told.append((external_id, result.points, result.repeated, result.tier_change,
                         (p.id, p.external_id, p.member_id, p.amount, p.currency, p.occurred_at, p.points_awarded,
                          p.refunded_amount, p.source, p.recorded_by, p.created_at)))
        rows: dict[str, Any] = {}
        async with db.read() as s:
            for name, columns in (
                ("members", [Member.id, Member.status, Member.tier, Member.tier_since, Member.balance,
                             Member.last_purchase_at, Member.last_activity_at]),
                ("purchases", [c for c in Purchase.__table__.c]),
                ("ledger_entries", [c for c in LedgerEntry.__table__.c]),
                ("tier_changes", [c for c in TierChange.__table__.c]),
                ("pending_points", [c for c in PendingPoints.__table__.c]),
                ("notices", [Notice.id, Notice.member_id, Notice.kind, Notice.key]),
            ):
                rows[name] = [tuple(r) for r in (await s.execute(sa.select(*columns).order_by(columns[0])))]
        return told, rows
    finally:
        await db.dispose()


@pytest.mark.parametrize("variant", ["pending", "pending-spend-waits", "activity"])
async def test_postgres_writes_pending_points_and_extensions_exactly_as_sqlite(
        sqlite_template: Path, tmp_path: Path, pg_database: str | None, variant: str) -> None:
    if pg_database is None:
        pytest.skip(NO_PG)
    await truncate_all(pg_database)
    shutil.copy(sqlite_template, tmp_path / "store.db")
    told_sqlite, rows_sqlite = await _traffic(f"sqlite+aiosqlite:///{tmp_path / 'store.db'}", variant)
    told_pg, rows_pg = await _traffic(pg_database, variant)
    if variant.startswith("pending"):  # the traffic reaches the return window: points wait, balances stay
        assert len(rows_sqlite["pending_points"]) > 5
        old = next(row for row in rows_sqlite["purchases"] if row[1] == "old")
        assert any(row[7] == old[0] for row in rows_sqlite["ledger_entries"]), "a purchase past its window earns"
    climbs = [entry[3] for entry in told_sqlite if entry[0] == "climb-2"]
    assert (climbs[0] is None) == (variant == "pending-spend-waits")
    assert told_pg == told_sqlite
    assert rows_pg == rows_sqlite


async def test_postgres_awards_exactly_what_sqlite_awards(sqlite_template: Path, tmp_path: Path,
                                                          pg_database: str | None) -> None:
    if pg_database is None:
        pytest.skip(NO_PG)
    await truncate_all(pg_database)
    shutil.copy(sqlite_template, tmp_path / "store.db")
    told_sqlite, rows_sqlite = await _traffic(f"sqlite+aiosqlite:///{tmp_path / 'store.db'}")
    told_pg, rows_pg = await _traffic(pg_database)

    # The scenario really reaches the cases it is there for (on SQLite, the path that is not under test).
    outcomes = {entry[0]: entry[1:] for entry in told_sqlite if entry[0] != "climb-1"}
    assert outcomes["kiri-1"][0] == 40 and outcomes["utc-1"][0] == 20
    assert outcomes["tiny"][0] == 0
    assert outcomes["future"][2] is None and outcomes["climb-2"][2].to_tier == "silver"
    assert outcomes["climb-3"][2].to_tier == "gold" and outcomes["old"][2] is None
    assert outcomes["gone"] == ("MemberErased",) and outcomes["nobody"] == ("UnknownMember",)
    climb = [entry[1:] for entry in told_sqlite if entry[0] == "climb-1"]
    assert climb[1] == climb[3] == ("PurchaseConflict",)
    assert climb[2] == (260, True, None, climb[0][3])  # the repeat is told the first purchase

    assert told_pg == told_sqlite
    assert rows_pg == rows_sqlite
