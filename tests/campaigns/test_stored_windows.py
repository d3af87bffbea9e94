"""Spend and purchase windows counted from the figures a scoring run stored: the same members as summing the
purchases, whatever was bought, refunded or dated ahead since the run, and the stored figures really used."""

from __future__ import annotations

import random
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa

from loyalbot.loyalty.programme import load_programme
from loyalbot.scheduler.rfm import score_members
from loyalbot.scheduler.segments import named_segments, scored_source, segment_conditions, segment_size
from loyalbot.storage import Db
from loyalbot.storage.models import Member, MemberScore, Purchase, PurchaseChange
from tests.campaigns.conftest import NOW, World

SCORED_AT = NOW - timedelta(hours=14)  # last night's run; the counts are asked at NOW

WINDOWS = [
    {"spend": {"days": 30, "min": 50}},
    {"spend": {"days": 90, "max": 0}},  # 0 in range: members without purchases are in it
    {"spend": {"days": 90, "min": "10.5", "max": 200}},
    {"spend": {"days": 180, "max": 120}},
    {"spend": {"days": 365, "min": 1}},
    {"purchases": {"days": 30, "min": 1}},
    {"purchases": {"days": 30, "max": 1}},
    {"purchases": {"days": 90, "min": 2, "max": 3}},
    {"purchases": {"days": 365, "max": 0}},
    {"purchases": {"days": 45, "min": 1}},  # not a stored window: summed
    {"any": [{"lifecycle": ["dormant"]}, {"spend": {"days": 90, "min": 100}}], "not": {"purchases": {"days": 30,
                                                                                                     "min": 2}}},
]


async def members_of(db: Db, segment: dict[str, Any], *, stored: bool) -> set[int]:
    """Stored: as a count reads it (joined to the scores, the run's figures); otherwise every window summed."""
    named = await named_segments(db, segment)
    if not stored:
        conditions = segment_conditions(segment, NOW, named=named)
        async with db.read() as s:
            return set((await s.execute(sa.select(Member.id).where(Member.status != "erased", *conditions)))
                       .scalars())
    joins: list[Any] = []
    conditions = segment_conditions(segment, NOW, named=named, joined=True, scored_at=SCORED_AT, joins=joins)
    async with db.read() as s:
        return set((await s.execute(sa.select(Member.id).select_from(scored_source(joins))
                                    .where(Member.status != "erased", *conditions))).scalars())


async def refund(db: Db, purchase_id: int, amount: str) -> None:
    async with db.transaction() as tx:
        purchase = await tx.get(Purchase, purchase_id)
        assert purchase is not None
        purchase.refunded_amount = Decimal(purchase.refunded_amount) + Decimal(amount)


async def purchase_ids(db: Db, member_id: int) -> list[int]:
    async with db.read() as s:
        return list((await s.execute(sa.select(Purchase.id).where(Purchase.member_id == member_id)
                                     .order_by(Purchase.id))).scalars())


@pytest.fixture
def rules():
    return load_programme(None).lifecycle


async def test_stored_windows_match_summed_ones_after_purchases_refunds_and_edges(db: Db, world: World,
                                                                                  rules) -> None:
    rng = random.Random(11)
    members = [await world.member(joined_days=rng.choice([5, 100, 500])) for _ in range(40)]
    for member in members[:32]:
        for _ in range(rng.randint(1, 5)):
            await world.purchase(member, str(rng.choice([5, 20, 49.5, 80, 150])), days_ago=rng.uniform(0.6, 400),
                                 refunded=rng.choice(["0", "0", "0", "5"]))
    # right at the edges: leaving a window between the run and now (dated N days + a few hours ago), just inside
    for days in (30, 90, 180, 365):
        await world.purchase(members[0], "60", days_ago=days + 0.2)
        await world.purchase(members[1], "60", days_ago=days - 0.2)
    await world.purchase(members[2], "70", days_ago=0.1)  # dated after the run, recorded before it
    await score_members(db, rules, SCORED_AT)

    async with db.read() as s:
        left = set((await s.execute(sa.select(PurchaseChange.member_id))).scalars())
    assert left == set(), "the run stored every member's windows"

    # after the run: new purchases, refunds (part and whole), one dated back into the windows, a new member
    await world.purchase(members[3], "100", days_ago=0.3)
    await world.purchase(members[33], "45", days_ago=0.2)  # first purchase of a member who had none
    await world.purchase(members[4], "90", days_ago=60)  # recorded late, dated two months back
    first, *_ = await purchase_ids(db, members[5])
    await refund(db, first, "5")
    for purchase in await purchase_ids(db, members[6]):
        async with db.read() as s:
            amount = (await s.execute(sa.select(Purchase.amount - Purchase.refunded_amount)
                                      .where(Purchase.id == purchase))).scalar_one()
        await refund(db, purchase, str(amount))
    newcomer = await world.member(joined_days=0.1)
    await world.purchase(newcomer, "300", days_ago=0.05)

    async with db.read() as s:
        changed = set((await s.execute(sa.select(PurchaseChange.member_id))).scalars())
    assert changed == {members[3], members[33], members[4], members[5], members[6], newcomer}

    for segment in WINDOWS:
        summed = await members_of(db, segment, stored=False)
        assert await members_of(db, segment, stored=True) == summed, segment
        assert await segment_size(db, segment, NOW) == len(summed), segment


async def test_a_count_reads_the_stored_figures_and_sums_those_who_bought_since(db: Db, world: World, rules) -> None:
    regular = await world.member()
    await world.purchase(regular, "40", days_ago=10)
    since = await world.member()
    await world.purchase(since, "40", days_ago=10)
    await score_members(db, rules, SCORED_AT)
    segment = {"spend": {"days": 90, "min": 1000}}
    assert await segment_size(db, segment, NOW) == 0

    # a stored figure that no purchase backs is believed for a member with no purchase since the run, so the
    # count comes from the stored figures (this is what makes it fast), but never for one who bought since
    async with db.transaction() as tx:
        await tx.execute(sa.update(MemberScore).values(spend_90d=5000))
    await world.purchase(since, "1", days_ago=0.1)
    assert await segment_size(db, segment, NOW) == 1
    assert await members_of(db, segment, stored=True) == {regular}
    assert await members_of(db, segment, stored=False) == set()


async def test_windows_are_summed_when_the_run_is_older_than_the_window_or_missing(db: Db, world: World,
                                                                                 rules) -> None:
    buyer = await world.member()
    await world.purchase(buyer, "40", days_ago=40)
    await score_members(db, rules, NOW - timedelta(days=31))  # a month ago: a 30-day window is past it
    async with db.transaction() as tx:
        await tx.execute(sa.update(MemberScore).values(spend_30d=5000, spend_90d=5000))
    assert await segment_size(db, {"spend": {"days": 30, "min": 1000}}, NOW) == 0
    assert await segment_size(db, {"spend": {"days": 90, "min": 1000}}, NOW) == 1  # still within 90 days


async def test_every_write_of_a_purchase_marks_its_member_until_a_run_reads_it(db: Db, world: World, loyalty,
                                                                             rules) -> None:
    member = await world.member()

    async def version() -> int | None:
        async with db.read() as s:
            return (await s.execute(sa.select(PurchaseChange.version).where(PurchaseChange.member_id == member))
                    ).scalar_one_or_none()

    await loyalty.award_purchase(member, external_id="till-1", amount="10", now=NOW - timedelta(days=3))
    await loyalty.award_purchase(member, external_id="till-2", amount="10", now=NOW - timedelta(days=2))
    assert await version() == 2
    await score_members(db, rules, SCORED_AT)
    assert await version() is None
    await loyalty.refund_purchase("till-1", refund_id="back-1", amount="3", now=NOW)
    assert await version() is not None  # one per statement that wrote the purchase
    assert await segment_size(db, {"spend": {"days": 30, "min": 17}}, NOW) == 1
    assert await segment_size(db, {"spend": {"days": 30, "min": "17.01"}}, NOW) == 0
