"""Rewards redeemed on PostgreSQL's fast path (asyncpg, storage/redeem_writers.py) land exactly as on the portable one.

The same redemptions -- lots that expire on the way (and must be written off first), lots spent soonest
expiring first across several, stock running out, per-member limits, tiers, a retired reward, repeats of a
request id, its reuse for another reward, an update handled again after a crash, erased and unknown members
and rewards -- are made on a fresh SQLite store (the portable path), on PostgreSQL through the portable path
and on PostgreSQL through the fast path; what the member is told and every row the redemption touches must
be the same.
"""

from __future__ import annotations

import asyncio
import itertools
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlmodel import col

from loyalbot.loyalty import Loyalty, errors, load_programme
from loyalbot.storage import Db
from loyalbot.storage.models import Coupon, LedgerEntry, Member, Reward, UpdateEffect
from tests.conftest import NO_PG, truncate_all

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
LATER = NOW + timedelta(days=6)

# (when, who, reward code, request id, update key); who indexes the members made in _traffic
# (0 ann, 1 ben, 2 cat, 3 erased, 99 nobody); reward "nothing" is an id no reward has.
REDEMPTIONS: list[tuple[datetime, int, str, str, str | None]] = [
    (NOW, 0, "coffee", "ann-1", None),        # writes off the lot that expired yesterday, spends the soonest
    (NOW, 0, "coffee", "ann-1", None),        # a repeat: the first coupon, told it is a repeat
    (NOW, 0, "pastry", "ann-1", None),        # the same request id for another reward: a conflict
    (NOW, 1, "coffee", "ann-1", None),        # ... or by another member: a conflict
    (NOW, 0, "tote", "ann-2", "u-7"),         # stock 2 -> 1; remembered for update u-7
    (NOW, 0, "tote", "ann-2", "u-7"),         # update u-7 handled again: its first answer, not a repeat
    (NOW, 0, "tote", "ann-2", "u-8"),         # another update with the same request: a repeat
    (NOW, 0, "tote", "ann-3", None),          # one per member
    (NOW, 1, "tote", "ben-1", None),          # the last one: stock 0
    (NOW, 2, "tote", "cat-1", None),          # out of stock
    (NOW, 2, "beans", "cat-2", None),         # silver and up
    (NOW, 2, "brunch", "cat-3", None),        # retired
    (NOW, 2, "nothing", "cat-4", None),       # no such reward
    (NOW, 2, "coffee", "cat-5", None),        # not enough points
    (NOW, 3, "coffee", "gone-1", None),       # erased
    (NOW, 99, "coffee", "nobody-1", None),    # unknown member
    (LATER, 0, "coffee", "ann-4", None),      # the lot due in five days has expired by now: written off first;
    (LATER, 0, "pastry", "ann-5", None),      # then the lots are spent soonest expiring first, across two
    (LATER, 0, "coffee", "ann-6", None),      # not enough left
    (LATER, 1, "pastry", "ben-2", None),
]


def _codes() -> Any:
    counter = itertools.count(1)
    return lambda: f"TEST-{next(counter):04d}-0000-0000"


async def _traffic(url: str, *, fast_path: bool, monkeypatch: pytest.MonkeyPatch) -> tuple[list[Any], dict[str, Any]]:
    """Make REDEMPTIONS on the store at `url`; what each caller was told, and the rows a redemption touches."""
    monkeypatch.setattr("loyalbot.loyalty.rewards.new_coupon_code", _codes())
    db = Db(url)
    loyalty = Loyalty(db, load_programme())
    loyalty.rewards.fast_path = fast_path
    try:
        await loyalty.sync_programme()
        joined = NOW - timedelta(days=60)
        members = [await loyalty.register_member(telegram_id=n, terms_accepted=True, now=joined) for n in (1, 2, 3, 4)]
        ann, ben, cat, gone = (m.id for m in members)
        # Ann's lots, granted out of order: 140 due in 10 days (lot 1), 50 expired yesterday (lot 2), 1000 due in
        # 5 days (lot 3), 200 in 40 days (lot 4).
        for points, expires, ref in ((140, NOW + timedelta(days=10), "c"), (50, NOW - timedelta(days=1), "a"),
                                     (1000, NOW + timedelta(days=5), "b"), (200, NOW + timedelta(days=40), "d")):
            await loyalty.grant_bonus(ann, points, reference=ref, note="test", now=joined, expires_at=expires,
                                      tell=False)
        await loyalty.grant_bonus(ben, 900, reference="b", note="test", now=joined, tell=False)
        await loyalty.grant_bonus(cat, 1000, reference="c", note="test", now=joined, tell=False)
        await loyalty.adjust_points(cat, -900, reason="test", actor="test", now=joined)  # cat: 100
        await loyalty.erase_member(gone, actor="test", now=joined)
        rewards = {i.reward.code: i.reward.id for i in await loyalty.catalogue(ann, now=NOW)}
        await loyalty.set_reward_stock(rewards["tote"], 2)
        async with db.transaction() as tx:
            await tx.execute(sa.update(Reward).where(col(Reward.id) == rewards["brunch"]).values(active=False))
        told: list[Any] = []
        for when, who, code, request_id, update_key in REDEMPTIONS:
            member_id = members[who].id if who < len(members) else 10_000
            reward_id = rewards.get(code, 9_999)
            try:
                result = await loyalty.redeem_reward(member_id, reward_id, request_id=request_id, now=when,
                                                     update_key=update_key)
            except errors.Refusal as refusal:
                told.append((request_id, type(refusal).__name__, refusal.params))
                continue
            c, r = result.coupon, result.reward
            told.append((request_id, result.repeated,
                         tuple(getattr(c, column.name) for column in Coupon.__table__.c),
                         tuple(getattr(r, column.name) for column in Reward.__table__.c)))
        rows: dict[str, Any] = {}
        async with db.read() as s:
            for name, columns in (
                ("members", [Member.id, Member.status, Member.balance, Member.last_activity_at]),
                ("ledger_entries", list(LedgerEntry.__table__.c)),
                ("coupons", list(Coupon.__table__.c)),
                ("rewards", [Reward.id, Reward.code, Reward.stock]),
                ("update_effects", list(UpdateEffect.__table__.c)),
            ):
                rows[name] = [dict(r._mapping) for r in await s.execute(sa.select(*columns).order_by(columns[0]))]
        for check in (ann, ben, cat):
            balance, total, remaining = await loyalty.ledger_check(check)
            assert balance == total == remaining >= 0
        return told, rows
    finally:
        await db.dispose()


async def test_postgres_fast_path_redeems_exactly_as_the_portable_path(
        sqlite_template: Path, tmp_path: Path, pg_database: str | None, monkeypatch: pytest.MonkeyPatch) -> None:
    if pg_database is None:
        pytest.skip(NO_PG)
    shutil.copy(sqlite_template, tmp_path / "store.db")
    told_sqlite, rows_sqlite = await _traffic(f"sqlite+aiosqlite:///{tmp_path / 'store.db'}", fast_path=False,
                                              monkeypatch=monkeypatch)
    await truncate_all(pg_database)
    told_portable, rows_portable = await _traffic(pg_database, fast_path=False, monkeypatch=monkeypatch)
    await truncate_all(pg_database)
    told_fast, rows_fast = await _traffic(pg_database, fast_path=True, monkeypatch=monkeypatch)

    # The scenario reaches the cases it is there for (told by the portable path, which is not under test).
    outcomes = [(entry[0], entry[1]) for entry in told_sqlite]
    assert [o for _, o in outcomes[:4]] == [False, True, "PurchaseConflict", "PurchaseConflict"]
    assert [o for _, o in outcomes[4:10]] == [False, False, True, "LimitReached", False, "OutOfStock"]
    assert [o for _, o in outcomes[10:16]] == ["TierTooLow", "RewardUnavailable", "UnknownReward",
                                               "NotEnoughPoints", "MemberErased", "UnknownMember"]
    assert [o for _, o in outcomes[16:]] == [False, False, "NotEnoughPoints", False]
    ann_ledger = [(r["kind"], r["delta"], r["reference"]) for r in rows_sqlite["ledger_entries"] if r["member_id"] == 1]
    assert [e for e in ann_ledger if e[0] == "expire"] == [("expire", -50, "lot:2"), ("expire", -250, "lot:3")]
    assert ann_ledger.index(("expire", -250, "lot:3")) == ann_ledger.index(("redeem", -150, "TEST-0004-0000-0000")) - 1
    ann_lots = [(r["id"], r["remaining"]) for r in rows_sqlite["ledger_entries"]
                if r["member_id"] == 1 and r["kind"] == "bonus"]
    assert ann_lots == [(1, 0), (2, 0), (3, 0), (4, 70)]

    assert told_portable == told_sqlite
    assert rows_portable == rows_sqlite
    assert told_fast == told_portable
    assert rows_fast == rows_portable


async def test_the_last_of_a_reward_goes_to_one_member_however_many_ask_at_once(store_url: str) -> None:
    db = Db(store_url, pool_size=25)
    loyalty = Loyalty(db, load_programme())
    try:
        await loyalty.sync_programme()
        members = [await loyalty.register_member(telegram_id=100 + n, terms_accepted=True, now=NOW)
                   for n in range(30)]
        for member in members:
            await loyalty.adjust_points(member.id, 700, reason="test", actor="test", now=NOW)
        tote = next(i.reward for i in await loyalty.catalogue(members[0].id, now=NOW) if i.reward.code == "tote")
        await loyalty.set_reward_stock(tote.id, 12)

        async def attempt(member_id: int) -> str:
            try:
                await loyalty.redeem_reward(member_id, tote.id, request_id=f"tote-{member_id}", now=NOW)
                return "coupon"
            except errors.OutOfStock:
                return "out of stock"

        outcomes = await asyncio.gather(*(attempt(m.id) for m in members))
        assert outcomes.count("coupon") == 12 and outcomes.count("out of stock") == 18
        assert (await loyalty.reward(tote.id)).stock == 0
        for member, outcome in zip(members, outcomes, strict=True):
            assert len(await loyalty.coupons_of(member.id, now=NOW)) == (outcome == "coupon")
            assert await loyalty.ledger_check(member.id) == ((100, 100, 100) if outcome == "coupon"
                                                             else (700, 700, 700))
    finally:
        await db.dispose()
