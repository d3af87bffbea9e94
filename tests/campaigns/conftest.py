"""Helpers for the campaign tests: members with purchases, visits, coupons and points, written straight to the
store (the root conftest's `db` runs each test on SQLite and on PostgreSQL)."""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest

from loyalbot.storage import Db
from loyalbot.storage.models import Member, Purchase

NOW = datetime(2026, 6, 15, 12, 0, tzinfo=UTC)
_numbers = itertools.count(1)


class World:
    """Writes members and their purchases; every helper returns the member's id."""

    def __init__(self, db: Db) -> None:
        self.db = db

    async def member(self, *, joined_days: float = 400, last_purchase_days: float | None = None,
                     last_visit_days: float | None = None, tier: str = "green", language: str = "en",
                     consent: bool = False, birthday: date | None = None, balance: int = 0,
                     status: str = "active") -> int:
        n = next(_numbers)
        member = Member(member_no=f"T{n:08d}", telegram_id=10_000 + n, chat_id=10_000 + n, first_name=f"M{n}",
                        tier=tier, language=language, marketing_consent=consent, birthday=birthday,
                        balance=balance, status=status, joined_at=NOW - timedelta(days=joined_days),
                        last_purchase_at=None if last_purchase_days is None else NOW - timedelta(days=last_purchase_days),
                        last_activity_at=None if last_visit_days is None else NOW - timedelta(days=last_visit_days))
        async with self.db.transaction() as tx:
            tx.add(member)
            await tx.flush()
            return int(member.id or 0)

    async def purchase(self, member_id: int, amount: str, *, days_ago: float, refunded: str = "0") -> None:
        async with self.db.transaction() as tx:
            tx.add(Purchase(external_id=f"p{next(_numbers)}", member_id=member_id, amount=Decimal(amount),
                            refunded_amount=Decimal(refunded), occurred_at=NOW - timedelta(days=days_ago)))


@pytest.fixture
def world(db: Db) -> World:
    return World(db)
