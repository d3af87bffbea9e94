"""Property tests: random sequences of purchases, refunds, redemptions, expiries and adjustments.

After every step the ledger must agree with itself: cached balance == ledger sum == lots remaining,
nothing negative; and repeating an idempotency key that already succeeded changes nothing.
"""

from __future__ import annotations

import asyncio
import shutil
from datetime import UTC, datetime, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from loyalbot.loyalty import Loyalty, errors, load_programme
from loyalbot.storage import Db
from tests.conftest import truncate_all
from tests.loyalty.helpers import snapshot

START = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
STAFF = 777

purchase = st.tuples(st.just("purchase"), st.integers(0, 2), st.sampled_from(["a", "b", "c", "d", "e"]),
                     st.integers(1, 60_000).map(lambda cents: f"{cents / 100:.2f}"))
refund = st.tuples(st.just("refund"), st.sampled_from(["a", "b", "c", "d", "e"]), st.sampled_from(["r1", "r2", "r3"]),
                   st.integers(1, 30_000).map(lambda cents: f"{cents / 100:.2f}"))
redeem = st.tuples(st.just("redeem"), st.integers(0, 2), st.sampled_from(["coffee", "pastry", "tote", "beans"]),
                   st.sampled_from(["q1", "q2", "q3", "q4"]))
adjust = st.tuples(st.just("adjust"), st.integers(0, 2), st.integers(-300, 300).filter(bool))
wait = st.tuples(st.just("wait"), st.integers(1, 400))
use = st.tuples(st.just("use"), st.integers(0, 3))
steps = st.lists(st.one_of(purchase, refund, redeem, adjust, wait, use), min_size=1, max_size=25)


async def check_invariants(loyalty: Loyalty, member_ids: list[int]) -> None:
    for member_id in member_ids:
        balance, total, remaining = await loyalty.ledger_check(member_id)
        assert balance == total == remaining, (balance, total, remaining)
        assert balance >= 0


async def play(url: str, ops: list[tuple]) -> None:
    db = Db(url)
    loyalty = Loyalty(db, load_programme())
    try:
        await loyalty.sync_programme()
        await loyalty.add_staff(STAFF, "agent")
        members = [await loyalty.register_member(telegram_id=100 + i, terms_accepted=True,
                                                 now=START - timedelta(days=1)) for i in range(3)]
        ids = [m.id for m in members]
        rewards = {item.reward.code: item.reward.id for item in await loyalty.catalogue(ids[0], now=START)}
        now = START
        done_keys: set[tuple] = set()
        coupons: list[str] = []
        for op in ops:
            key: tuple | None = None
            call = None
            if op[0] == "purchase":
                _, who, ext, amount = op
                key = ("purchase", ext, who, amount)
                call = loyalty.award_purchase(ids[who], external_id=ext, amount=amount, now=now)
            elif op[0] == "refund":
                _, ext, rid, amount = op
                key = ("refund", ext, rid, amount)
                call = loyalty.refund_purchase(ext, refund_id=rid, amount=amount, now=now)
            elif op[0] == "redeem":
                _, who, code, rid = op
                key = ("redeem", who, code, rid)
                call = loyalty.redeem_reward(ids[who], rewards[code], request_id=rid, now=now)
            elif op[0] == "adjust":
                _, who, points = op
                call = loyalty.adjust_points(ids[who], points, reason="property", actor="test", now=now)
            elif op[0] == "wait":
                now += timedelta(days=op[1])
                await loyalty.expire_points(now=now)
                await loyalty.expire_coupons(now=now)
            elif op[0] == "use" and coupons:
                call = loyalty.use_coupon(coupons[op[1] % len(coupons)], staff_id=STAFF, now=now)
            if call is None:
                await check_invariants(loyalty, ids)
                continue
            repeat = key is not None and key in done_keys
            before = await snapshot(db) if repeat else None
            try:
                result = await call
            except errors.Refusal:
                result = None
            if repeat:
                assert await snapshot(db) == before, f"repeating {key} changed the store"
            elif result is not None and key is not None:
                done_keys.add(key)
                if key[0] == "redeem":
                    coupons.append(result.coupon.code)
            await check_invariants(loyalty, ids)
    finally:
        await db.dispose()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=steps)
def test_ledger_invariants_hold_after_every_step(ops, store_url, sqlite_template, tmp_path):
    if store_url.startswith("sqlite"):
        path = tmp_path / "property.db"
        shutil.copy(sqlite_template, path)
        url = f"sqlite+aiosqlite:///{path}"
    else:
        url = store_url
        asyncio.run(truncate_all(url))
    asyncio.run(play(url, ops))
