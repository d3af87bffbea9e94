"""Concurrent redemptions: nobody can overspend (PostgreSQL: member row lock; SQLite: one writer at a time)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from loyalbot.loyalty import Loyalty, errors, load_programme
from loyalbot.storage import Db

NOW = datetime(2026, 3, 10, 12, tzinfo=UTC)


async def test_fifty_concurrent_redemptions_against_a_balance_for_ten(store_url):
    db = Db(store_url, pool_size=25)
    loyalty = Loyalty(db, load_programme())
    try:
        await loyalty.sync_programme()
        ann = await loyalty.register_member(telegram_id=1, terms_accepted=True, now=NOW)
        await loyalty.adjust_points(ann.id, 150 * 10, reason="test", actor="test", now=NOW)
        coffee = next(i.reward for i in await loyalty.catalogue(ann.id, now=NOW) if i.reward.code == "coffee")

        async def attempt(n: int) -> str:
            try:
                await loyalty.redeem_reward(ann.id, coffee.id, request_id=f"req-{n}", now=NOW)
                return "coupon"
            except errors.NotEnoughPoints:
                return "refused"

        outcomes = await asyncio.gather(*(attempt(n) for n in range(50)))
        assert outcomes.count("coupon") == 10 and outcomes.count("refused") == 40
        assert len(await loyalty.coupons_of(ann.id, now=NOW)) == 10
        assert await loyalty.ledger_check(ann.id) == (0, 0, 0)
    finally:
        await db.dispose()


async def test_concurrent_repeats_of_one_purchase_award_once(store_url):
    db = Db(store_url, pool_size=25)
    loyalty = Loyalty(db, load_programme())
    try:
        await loyalty.sync_programme()
        ann = await loyalty.register_member(telegram_id=1, terms_accepted=True, now=NOW)
        results = await asyncio.gather(*(loyalty.award_purchase(ann.id, external_id="same", amount="40", now=NOW)
                                         for _ in range(20)))
        assert sum(not r.repeated for r in results) == 1
        assert await loyalty.ledger_check(ann.id) == (40, 40, 40)
    finally:
        await db.dispose()
