"""Bonus campaigns on both stores: each kind's window in the shop's time zone, per tier, store and category,
a threshold once per member and period, and each bonus its own ledger entry beside the purchase's points."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa

from loyalbot.loyalty import errors, load_programme
from loyalbot.loyalty.programme import ProgrammeError, programme_from_data
from loyalbot.storage.models import LedgerEntry, Member

# The shop is in Europe/Amsterdam (UTC+1 in December). 2026-12-02 is a Wednesday.
DOUBLE = {"code": "double-weekend", "kind": "multiplier", "factor": 2, "starts": datetime(2026, 12, 5),
          "ends": datetime(2026, 12, 7), "titles": {"en": "Double points weekend", "zh_Hans": "双倍积分周末",
                                                    "zh_Hant": "雙倍積分週末"}}
PASTRY = {"code": "pastry-x3", "kind": "multiplier", "factor": 3, "categories": ["pastry"], "stores": ["centraal"],
          "titles": {"en": "Triple points on pastries"}}
GOLD = {"code": "gold-nights", "kind": "multiplier", "factor": 2, "tiers": ["gold"], "starts": datetime(2026, 11, 1),
        "ends": datetime(2026, 11, 30), "titles": {"en": "Gold nights"}}
WEDNESDAY = {"code": "wednesday", "kind": "member_day", "weekday": "wednesday", "factor": 2,
             "starts": datetime(2026, 12, 1), "ends": datetime(2026, 12, 3), "titles": {"en": "Member day"}}
SPEND = {"code": "spend-1000", "kind": "threshold", "threshold": 1000, "period": "month", "points": 200,
         "starts": datetime(2027, 1, 1), "titles": {"en": "Spent 1,000 this month"}}


def with_bonuses(*bonuses: dict[str, Any]) -> Any:
    data = load_programme().model_dump(mode="python", exclude_none=True)
    return programme_from_data({**data, "bonuses": list(bonuses)})


@pytest.fixture
def programme():
    return with_bonuses(DOUBLE, PASTRY, GOLD, WEDNESDAY, SPEND)


async def entries(db, member_id: int) -> list[tuple[str, int, str | None]]:
    async with db.read() as s:
        rows = (await s.execute(sa.select(LedgerEntry.kind, LedgerEntry.delta, LedgerEntry.reference)
                                .where(LedgerEntry.member_id == member_id).order_by(LedgerEntry.id))).all()
    return [tuple(row) for row in rows]


async def join(loyalty, telegram_id: int = 1):
    return await loyalty.register_member(telegram_id=telegram_id, terms_accepted=True,
                                         now=datetime(2026, 10, 1, tzinfo=UTC))


async def buy(loyalty, member, ref: str, amount: str, at: datetime, **extra: Any):
    return await loyalty.award_purchase(member.id, external_id=ref, amount=amount, occurred_at=at, now=at, **extra)


async def balanced(loyalty, member_id: int) -> int:
    cached, ledger, lots = await loyalty.ledger_check(member_id)
    assert cached == ledger == lots
    return cached


@pytest.mark.parametrize(("at", "bonus"), [
    (datetime(2026, 12, 4, 22, 59, tzinfo=UTC), 0),   # 23:59 on Friday in Amsterdam: not yet
    (datetime(2026, 12, 4, 23, 0, tzinfo=UTC), 60),   # midnight, Saturday: starts
    (datetime(2026, 12, 6, 22, 59, tzinfo=UTC), 60),  # 23:59 on Sunday: still on
    (datetime(2026, 12, 6, 23, 0, tzinfo=UTC), 0),    # midnight, Monday: over
])
async def test_a_weekend_multiplier_runs_from_midnight_to_midnight_in_the_shops_zone(loyalty, db, at, bonus):
    ann = await join(loyalty)
    result = await buy(loyalty, ann, "till-1", "60", at)
    assert result.points == 60
    assert [b.points for b in result.bonuses] == ([bonus] if bonus else [])
    expected = [("earn", 60, "till-1")] + ([("bonus", 60, "bonus:double-weekend")] if bonus else [])
    assert await entries(db, ann.id) == expected
    assert await balanced(loyalty, ann.id) == 60 + bonus


async def test_a_repeated_purchase_earns_its_bonus_once(loyalty, db):
    ann = await join(loyalty)
    at = datetime(2026, 12, 5, 12, tzinfo=UTC)
    await buy(loyalty, ann, "till-1", "60", at)
    again = await buy(loyalty, ann, "till-1", "60", at)
    assert again.repeated and again.bonuses == ()
    assert await balanced(loyalty, ann.id) == 120


async def test_a_category_bonus_counts_only_those_items_and_only_in_its_store(loyalty, db):
    ann = await join(loyalty)
    at = datetime(2026, 12, 8, 12, tzinfo=UTC)  # a Tuesday, no other bonus on
    items = [{"sku": "croissant", "category": "pastry", "quantity": 2, "amount": "10"},
             {"sku": "latte", "category": "coffee", "quantity": 1, "amount": "20"}]
    there = await buy(loyalty, ann, "till-1", "30", at, store="centraal", items=items)
    assert [(b.code, b.points) for b in there.bonuses] == [("pastry-x3", 20)]  # 10 euros of pastry, x3 = +20
    elsewhere = await buy(loyalty, ann, "till-2", "30", at, store="zuid", items=items)
    no_items = await buy(loyalty, ann, "till-3", "30", at, store="centraal")
    assert elsewhere.bonuses == () and no_items.bonuses == ()
    assert await balanced(loyalty, ann.id) == 90 + 20


async def test_a_tier_bonus_is_for_that_tier_only(loyalty, db):
    ann, bob = await join(loyalty, 1), await join(loyalty, 2)
    async with db.transaction() as tx:
        await tx.execute(sa.update(Member).where(Member.id == bob.id).values(tier="gold"))
    at = datetime(2026, 11, 10, 12, tzinfo=UTC)
    assert (await buy(loyalty, ann, "a-1", "20", at)).bonuses == ()
    gold = await buy(loyalty, bob, "b-1", "20", at)
    assert [(b.code, b.points) for b in gold.bonuses] == [("gold-nights", 30)]  # 20 x 1.5 doubled


@pytest.mark.parametrize(("at", "bonus"), [
    (datetime(2026, 12, 1, 22, 59, tzinfo=UTC), 0),  # Tuesday 23:59 in Amsterdam
    (datetime(2026, 12, 1, 23, 0, tzinfo=UTC), 40),  # Wednesday 00:00
    (datetime(2026, 12, 2, 22, 59, tzinfo=UTC), 40),  # Wednesday 23:59
    (datetime(2026, 12, 2, 23, 0, tzinfo=UTC), 0),   # Thursday 00:00 (still a Wednesday in UTC)
])
async def test_the_member_day_is_the_weekday_in_the_shops_zone(loyalty, db, at, bonus):
    ann = await join(loyalty)
    result = await buy(loyalty, ann, "till-1", "40", at)
    assert [b.points for b in result.bonuses] == ([bonus] if bonus else [])


async def test_a_spend_threshold_gives_its_points_once_per_month(loyalty, db):
    ann = await join(loyalty)
    first = await buy(loyalty, ann, "t-1", "600", datetime(2027, 1, 3, 12, tzinfo=UTC))
    reached = await buy(loyalty, ann, "t-2", "400", datetime(2027, 1, 20, 12, tzinfo=UTC))
    beyond = await buy(loyalty, ann, "t-3", "900", datetime(2027, 1, 31, 22, 30, tzinfo=UTC))  # 23:30 local
    assert first.bonuses == () and beyond.bonuses == ()
    assert [(b.code, b.points) for b in reached.bonuses] == [("spend-1000", 200)]
    # 00:30 on 1 March in Amsterdam is still February in UTC: it counts for March, not February's 500
    await buy(loyalty, ann, "t-4", "500", datetime(2027, 2, 10, 12, tzinfo=UTC))
    first_of_march = await buy(loyalty, ann, "t-5", "900", datetime(2027, 2, 28, 23, 30, tzinfo=UTC))
    assert first_of_march.bonuses == ()
    march = await buy(loyalty, ann, "t-6", "100", datetime(2027, 3, 2, 12, tzinfo=UTC))
    assert [(b.code, b.points) for b in march.bonuses] == [("spend-1000", 200)]
    earned = sum(e[1] for e in await entries(db, ann.id) if e[0] == "earn")  # the tier rises meanwhile
    assert await balanced(loyalty, ann.id) == earned + 400


async def test_points_history_names_each_bonus(loyalty, db):
    ann = await join(loyalty)
    await buy(loyalty, ann, "till-1", "60", datetime(2026, 12, 5, 12, tzinfo=UTC))
    summary = await loyalty.points_summary(ann.id, now=datetime(2026, 12, 5, 13, tzinfo=UTC))
    from loyalbot.loyalty.bonuses import bonus_title
    titles = [bonus_title(loyalty.programme, e.reference, "zh_Hans") for e in summary.recent]
    assert "双倍积分周末" in titles


async def test_a_gold_members_points_last_the_gold_tiers_validity(loyalty, db):
    ann, bob = await join(loyalty, 1), await join(loyalty, 2)
    async with db.transaction() as tx:
        await tx.execute(sa.update(Member).where(Member.id == bob.id).values(tier="gold"))
    at = datetime(2026, 10, 10, 12, tzinfo=UTC)
    await buy(loyalty, ann, "a-1", "20", at)
    await buy(loyalty, bob, "b-1", "20", at)
    async with db.read() as s:
        expiry = dict((await s.execute(sa.select(LedgerEntry.member_id, LedgerEntry.expires_at)
                                       .where(LedgerEntry.kind == "earn"))).all())
    assert (expiry[ann.id].year, expiry[ann.id].month) == (2027, 10)  # [expiry] months = 12
    assert (expiry[bob.id].year, expiry[bob.id].month) == (2028, 10)  # gold: points_validity_months = 24


@pytest.mark.parametrize(("bonus", "named"), [
    ({"code": "x", "kind": "multiplier", "titles": {"en": "X"}}, "needs factor"),
    ({"code": "x", "kind": "member_day", "factor": 2, "titles": {"en": "X"}}, "needs weekday"),
    ({"code": "x", "kind": "threshold", "points": 5, "threshold": 100, "titles": {"en": "X"}}, "needs period"),
    ({"code": "x", "kind": "threshold", "points": 5, "threshold": 100, "period": "month", "stores": ["a"],
      "titles": {"en": "X"}}, "does not take stores"),
    ({"code": "x", "kind": "multiplier", "factor": 2, "tiers": ["platinum"], "titles": {"en": "X"}}, "platinum"),
    ({"code": "x", "kind": "multiplier", "factor": 2, "starts": datetime(2026, 2, 1), "ends": datetime(2026, 1, 1),
      "titles": {"en": "X"}}, "ends must be after starts"),
    ({"code": "x", "kind": "multiplier", "factor": 2, "titles": {"zh_Hans": "X"}}, "no title in en"),
    ({"code": "x", "kind": "member_day", "factor": 2, "weekday": "caturday", "titles": {"en": "X"}}, "weekday"),
])
def test_a_bonus_that_cannot_work_is_refused_naming_the_field(bonus, named):
    with pytest.raises(ProgrammeError, match=named):
        with_bonuses(bonus)


@pytest.mark.parametrize(("items", "named"), [
    ([{"sku": "latte", "quantity": 0}], r"items\[0\].quantity"),
    ([{"quantity": 1}], r"items\[0\] needs a sku or a category"),
    ([{"sku": "latte", "amount": "-1"}], r"items\[0\].amount"),
    ([{"sku": "la tte"}], r"items\[0\].sku"),
    ([{"sku": "latte", "price": 3}], r"items\[0\].price"),
    ([{"sku": "latte", "amount": "50"}], "add up to more"),
])
async def test_items_that_cannot_be_read_are_refused_and_change_nothing(loyalty, db, items, named):
    ann = await join(loyalty)
    with pytest.raises(errors.InvalidItems, match=named):
        await buy(loyalty, ann, "till-1", "20", datetime(2026, 12, 8, tzinfo=UTC), items=items)
    assert await entries(db, ann.id) == []


async def test_a_refund_takes_back_the_purchases_own_bonus_with_its_points(loyalty, db):
    ann = await join(loyalty)
    at = datetime(2026, 12, 2, 12, tzinfo=UTC)  # a Wednesday: the member day doubles the points
    result = await buy(loyalty, ann, "till-9", "40", at)
    assert result.points == 40 and [b.points for b in result.bonuses] == [40]
    assert await balanced(loyalty, ann.id) == 80
    half = await loyalty.refund_purchase("till-9", refund_id="r-1", amount="20", now=at)
    assert half.points_taken == 40 and await balanced(loyalty, ann.id) == 40
    rest = await loyalty.refund_purchase("till-9", refund_id="r-2", amount="20", now=at)
    assert rest.points_taken == 40 and await balanced(loyalty, ann.id) == 0
    again = await loyalty.refund_purchase("till-9", refund_id="r-2", amount="20", now=at)
    assert again.repeated and await balanced(loyalty, ann.id) == 0
