"""Stamp cards on both stores: stamps from a purchase's items, once per purchase; the last stamp issues one
coupon and the card starts again, also when two purchases race for it; /stamp at the counter and its refusals."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from loyalbot.loyalty import errors
from loyalbot.storage.models import Coupon, Reward
from tests.loyalty.helpers import snapshot

NOW = datetime(2026, 12, 8, 9, tzinfo=UTC)
STAFF = 900


def coffees(n: int) -> list[dict[str, object]]:
    return [{"sku": "latte", "category": "coffee", "quantity": n, "amount": str(3 * n)},
            {"sku": "croissant", "category": "pastry", "quantity": 1, "amount": "2"}]


async def join(loyalty, telegram_id: int = 1):
    return await loyalty.register_member(telegram_id=telegram_id, terms_accepted=True, now=NOW - timedelta(days=1))


async def card(loyalty, member_id: int) -> tuple[int, int]:
    [progress] = await loyalty.stamp_cards_of(member_id)
    return progress.stamps, progress.cycles


async def coupons(db, member_id: int) -> list[tuple[str, int, str]]:
    async with db.read() as s:
        rows = (await s.execute(sa.select(Reward.code, Coupon.points_spent, Coupon.status)
                                .join(Reward, Reward.id == Coupon.reward_id).where(Coupon.member_id == member_id)))
    return [tuple(row) for row in rows.all()]


async def buy(loyalty, member, ref: str, n: int, at: datetime = NOW):
    return await loyalty.award_purchase(member.id, external_id=ref, amount=str(3 * n + 2), items=coffees(n),
                                        now=at)


async def test_each_coffee_bought_is_a_stamp_and_a_repeated_purchase_stamps_nothing(loyalty, db):
    ann = await join(loyalty)
    assert await card(loyalty, ann.id) == (0, 0)
    first = await buy(loyalty, ann, "till-1", 3)
    assert [(s.card, s.added, s.stamps, s.needed) for s in first.stamps] == [("coffee", 3, 3, 10)]
    again = await buy(loyalty, ann, "till-1", 3)
    assert again.repeated and again.stamps == ()
    assert await card(loyalty, ann.id) == (3, 0)
    nothing = await loyalty.award_purchase(ann.id, external_id="till-2", amount="5",
                                           items=[{"sku": "croissant", "category": "pastry"}], now=NOW)
    assert nothing.stamps == () and await card(loyalty, ann.id) == (3, 0)


async def test_the_tenth_stamp_issues_one_free_coupon_and_the_card_starts_again(loyalty, db):
    ann = await join(loyalty)
    await buy(loyalty, ann, "till-1", 9)
    assert await coupons(db, ann.id) == []
    tenth = await buy(loyalty, ann, "till-2", 2)
    [stamped] = tenth.stamps
    assert (stamped.stamps, stamped.cycles, len(stamped.coupons)) == (1, 1, 1)
    assert await coupons(db, ann.id) == [("coffee", 0, "active")]
    assert await card(loyalty, ann.id) == (1, 1)
    [(coupon, reward)] = await loyalty.coupons_of(ann.id, now=NOW)
    assert coupon.code == stamped.coupons[0] and reward.code == "coffee"
    balance, ledger, lots = await loyalty.ledger_check(ann.id)
    assert balance == ledger == lots  # the coupon cost no points


async def test_two_purchases_racing_for_the_last_stamp_issue_one_coupon(loyalty, db):
    ann = await join(loyalty)
    await buy(loyalty, ann, "till-1", 9)
    await asyncio.gather(buy(loyalty, ann, "till-2", 1), buy(loyalty, ann, "till-3", 1))
    assert await coupons(db, ann.id) == [("coffee", 0, "active")]
    assert await card(loyalty, ann.id) == (1, 1)


async def test_staff_stamp_a_card_once_per_update(loyalty, db):
    ann = await join(loyalty)
    await loyalty.add_staff(STAFF, "agent")
    first = await loyalty.stamp_at_counter(ann.id, "coffee", staff_id=STAFF, update_key="u-1", now=NOW)
    again = await loyalty.stamp_at_counter(ann.id, "Coffee", staff_id=STAFF, update_key="u-1", now=NOW)
    assert (first.added, first.stamps, first.repeated) == (1, 1, False)
    assert (again.added, again.stamps, again.repeated) == (0, 1, True)
    await loyalty.stamp_at_counter(ann.id, "coffee", staff_id=STAFF, update_key="u-2", now=NOW)
    assert await card(loyalty, ann.id) == (2, 0)


async def test_a_counter_stamp_that_cannot_be_given_is_refused_and_changes_nothing(loyalty, db):
    ann = await join(loyalty)
    await loyalty.add_staff(STAFF, "agent")
    before = await snapshot(db)
    with pytest.raises(errors.UnknownStampCard):
        await loyalty.stamp_at_counter(ann.id, "tea", staff_id=STAFF, update_key="u-1", now=NOW)
    with pytest.raises(errors.UnknownMember):
        await loyalty.stamp_at_counter(ann.id + 100, "coffee", staff_id=STAFF, update_key="u-2", now=NOW)
    with pytest.raises(errors.NotPermitted):
        await loyalty.stamp_at_counter(ann.id, "coffee", staff_id=STAFF + 1, update_key="u-3", now=NOW)
    assert await snapshot(db) == before


async def test_a_members_export_holds_their_stamp_cards(loyalty, db):
    ann = await join(loyalty)
    await buy(loyalty, ann, "till-1", 3)
    export = await loyalty.export_member_data(ann.id)
    assert [(c["card_code"], c["stamps"]) for c in export["stamp_cards"]] == [("coffee", 3)]
