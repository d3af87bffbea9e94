"""What a purchase earns beyond its points, on both stores: its bonuses wait out the return window with it and
are cancelled with it; a refund takes back the stamps it added (a completed card's unused coupon with them, a
used one leaving the card in debt) and a spend-threshold bonus whose period no longer reaches the threshold.
Refunds repeated and refunds in parts take nothing twice."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from loyalbot.loyalty import errors, load_programme
from loyalbot.loyalty.programme import Pending, programme_from_data
from loyalbot.storage.models import Coupon, LedgerEntry, Notice, Reward
from tests.loyalty.helpers import snapshot

# The shop is in Europe/Amsterdam. 2026-12-02 is a Wednesday: the member day doubles the points.
WEDNESDAY = {"code": "wednesday", "kind": "member_day", "weekday": "wednesday", "factor": 2,
             "titles": {"en": "Member day"}}
SPEND = {"code": "spend-1000", "kind": "threshold", "threshold": 1000, "period": "month", "points": 200,
         "titles": {"en": "Spent 1,000 this month"}}
WED = datetime(2026, 12, 2, 12, tzinfo=UTC)
THU = datetime(2026, 12, 3, 12, tzinfo=UTC)
WINDOW = timedelta(days=14)
STAFF = 900


def programme_with(*, window: int, bonuses: tuple[dict[str, Any], ...] = (WEDNESDAY, SPEND)) -> Any:
    data = load_programme().model_dump(mode="python", exclude_none=True)
    made = programme_from_data({**data, "bonuses": list(bonuses)})
    return made.model_copy(update={"pending": Pending(return_window_days=window)})


@pytest.fixture
def programme():
    return programme_with(window=14)


async def join(loyalty, telegram_id: int = 1):
    return await loyalty.register_member(telegram_id=telegram_id, terms_accepted=True,
                                         now=datetime(2026, 10, 1, tzinfo=UTC))


async def balanced(loyalty, member_id: int) -> int:
    cached, ledger, lots = await loyalty.ledger_check(member_id)
    assert cached == ledger == lots
    return cached


async def pending(loyalty, member_id: int, now: datetime) -> list[tuple[int, datetime, str | None]]:
    return [(p.points, p.available_at, p.bonus) for p in (await loyalty.points_summary(member_id, now=now)).pending]


async def entries(db, member_id: int) -> list[tuple[str, int, str | None]]:
    async with db.read() as s:
        rows = (await s.execute(sa.select(LedgerEntry.kind, LedgerEntry.delta, LedgerEntry.reference)
                                .where(LedgerEntry.member_id == member_id).order_by(LedgerEntry.id))).all()
    return [tuple(row) for row in rows]


# --- 1. a purchase's bonuses wait with it ------------------------------------------------------------------


async def test_a_pending_purchases_bonus_waits_with_it_and_clears_with_it_named(loyalty, db):
    ann = await join(loyalty)
    result = await loyalty.award_purchase(ann.id, external_id="till-1", amount="40", now=WED)
    assert result.points == 40 and [(b.code, b.points) for b in result.bonuses] == [("wednesday", 40)]
    assert await balanced(loyalty, ann.id) == 0  # nothing of it is spendable yet, the bonus neither
    assert await pending(loyalty, ann.id, WED) == [(40, WED + WINDOW, None), (40, WED + WINDOW, "wednesday")]
    coffee = next(item for item in await loyalty.catalogue(ann.id, now=WED) if item.reward.code == "coffee")
    with pytest.raises(errors.NotEnoughPoints):
        await loyalty.redeem_reward(ann.id, coffee.reward.id, request_id="r-1", now=WED + timedelta(days=1))

    again = await loyalty.award_purchase(ann.id, external_id="till-1", amount="40", now=WED)
    assert again.repeated and len(await pending(loyalty, ann.id, WED)) == 2

    await loyalty.ledger_upkeep(now=WED + WINDOW - timedelta(seconds=1))
    assert await balanced(loyalty, ann.id) == 0
    await loyalty.ledger_upkeep(now=WED + WINDOW)
    await loyalty.ledger_upkeep(now=WED + WINDOW + timedelta(hours=1))  # twice: credited once
    assert await balanced(loyalty, ann.id) == 80
    assert await entries(db, ann.id) == [("earn", 40, "till-1"), ("bonus", 40, "bonus:wednesday")]
    assert await pending(loyalty, ann.id, WED + WINDOW) == []
    async with db.read() as s:  # one message tells the purchase and its bonus
        keys = (await s.execute(sa.select(Notice.key).where(Notice.member_id == ann.id,
                                                            Notice.kind == "points"))).scalars().all()
    assert keys == [f"points:purchase:{result.purchase.id}"]


async def test_a_threshold_reached_by_a_pending_purchase_waits_with_that_purchase(loyalty):
    ann = await join(loyalty)
    await loyalty.award_purchase(ann.id, external_id="t-1", amount="600", now=THU)
    later = THU + timedelta(days=5)
    reached = await loyalty.award_purchase(ann.id, external_id="t-2", amount="400", now=later)
    assert [(b.code, b.points) for b in reached.bonuses] == [("spend-1000", 200)]
    assert await balanced(loyalty, ann.id) == 0
    assert (200, later + WINDOW, "spend-1000") in await pending(loyalty, ann.id, later)
    await loyalty.ledger_upkeep(now=THU + WINDOW)  # the first purchase clears; the bonus waits for the second
    assert await balanced(loyalty, ann.id) == 600
    await loyalty.ledger_upkeep(now=later + WINDOW)
    assert await balanced(loyalty, ann.id) == 600 + reached.points + 200


async def test_a_refund_in_the_window_cancels_the_bonus_with_the_points(loyalty):
    ann = await join(loyalty)
    await loyalty.award_purchase(ann.id, external_id="till-1", amount="40", now=WED)
    half = await loyalty.refund_purchase("till-1", refund_id="rf-1", amount="20", now=WED + timedelta(days=1))
    # Half the purchase is half of what it earned (80): its own points go first.
    assert (half.pending_cancelled, half.points_taken, half.shortfall) == (40, 0, 0)
    assert await pending(loyalty, ann.id, WED) == [(40, WED + WINDOW, "wednesday")]
    again = await loyalty.refund_purchase("till-1", refund_id="rf-1", amount="20", now=WED + timedelta(days=2))
    assert again.repeated and await pending(loyalty, ann.id, WED) == [(40, WED + WINDOW, "wednesday")]
    rest = await loyalty.refund_purchase("till-1", refund_id="rf-2", amount="20", now=WED + timedelta(days=2))
    assert rest.pending_cancelled == 40 and await pending(loyalty, ann.id, WED) == []
    with pytest.raises(errors.RefundTooLarge):
        await loyalty.refund_purchase("till-1", refund_id="rf-3", amount="1", now=WED + timedelta(days=2))
    await loyalty.ledger_upkeep(now=WED + WINDOW)
    assert await balanced(loyalty, ann.id) == 0


# --- 2. a refund takes back the stamps a purchase added ---------------------------------------------------


def coffees(n: int) -> list[dict[str, object]]:
    return [{"sku": "latte", "category": "coffee", "quantity": n, "amount": str(3 * n)}]


async def card(loyalty, member_id: int) -> tuple[int, int]:
    [progress] = await loyalty.stamp_cards_of(member_id)
    return progress.stamps, progress.cycles


async def coupon_states(db, member_id: int) -> list[str]:
    async with db.read() as s:
        rows = (await s.execute(sa.select(Coupon.status).join(Reward, Reward.id == Coupon.reward_id)
                                .where(Coupon.member_id == member_id).order_by(Coupon.id))).scalars()
    return list(rows)


@pytest.mark.parametrize("window", [0, 14])
async def test_a_refund_takes_back_its_stamps_in_parts_and_never_twice(db, window):
    from loyalbot.loyalty import Loyalty
    loyalty = Loyalty(db, programme_with(window=window, bonuses=()))
    await loyalty.sync_programme()
    ann = await join(loyalty)
    await loyalty.award_purchase(ann.id, external_id="till-1", amount="12", items=coffees(4), now=THU)
    assert await card(loyalty, ann.id) == (4, 0)
    half = await loyalty.refund_purchase("till-1", refund_id="rf-1", amount="6", now=THU)
    assert [(s.card, s.stamps, s.left) for s in half.stamps] == [("coffee", 2, 2)]
    again = await loyalty.refund_purchase("till-1", refund_id="rf-1", amount="6", now=THU)
    assert again.repeated and await card(loyalty, ann.id) == (2, 0)
    small = await loyalty.refund_purchase("till-1", refund_id="rf-2", amount="1", now=THU)  # 7 of 12: 2 stamps
    assert small.stamps == () and await card(loyalty, ann.id) == (2, 0)
    rest = await loyalty.refund_purchase("till-1", refund_id="rf-3", amount="5", now=THU)
    assert [(s.stamps, s.left) for s in rest.stamps] == [(2, 0)] and await card(loyalty, ann.id) == (0, 0)


async def test_a_refund_that_empties_a_completed_card_takes_back_its_unused_coupon(loyalty, db):
    ann = await join(loyalty)
    await loyalty.award_purchase(ann.id, external_id="till-1", amount="27", items=coffees(9), now=THU)
    full = await loyalty.award_purchase(ann.id, external_id="till-2", amount="6", items=coffees(2), now=THU)
    [code] = full.stamps[0].coupons
    assert await card(loyalty, ann.id) == (1, 1) and await coupon_states(db, ann.id) == ["active"]
    refund = await loyalty.refund_purchase("till-2", refund_id="rf-1", amount="6", now=THU)
    assert [(s.stamps, s.left, s.coupons_voided) for s in refund.stamps] == [(2, 9, (code,))]
    assert await card(loyalty, ann.id) == (9, 0)  # as before the purchase
    assert await coupon_states(db, ann.id) == ["void"] and await loyalty.coupons_of(ann.id, now=THU) == []
    await loyalty.add_staff(STAFF, "agent")
    with pytest.raises(errors.Refusal):
        await loyalty.use_coupon(code, staff_id=STAFF, now=THU)
    again = await loyalty.award_purchase(ann.id, external_id="till-3", amount="3", items=coffees(1), now=THU)
    assert len(again.stamps[0].coupons) == 1 and await card(loyalty, ann.id) == (0, 1)  # earned again, once


async def test_a_refund_after_the_coupon_was_used_leaves_the_card_in_debt(loyalty, db):
    ann = await join(loyalty)
    await loyalty.award_purchase(ann.id, external_id="till-1", amount="27", items=coffees(9), now=THU)
    full = await loyalty.award_purchase(ann.id, external_id="till-2", amount="6", items=coffees(2), now=THU)
    await loyalty.add_staff(STAFF, "agent")
    await loyalty.use_coupon(full.stamps[0].coupons[0], staff_id=STAFF, now=THU)
    refund = await loyalty.refund_purchase("till-2", refund_id="rf-1", amount="6", now=THU)
    assert [(s.stamps, s.left, s.coupons_voided) for s in refund.stamps] == [(2, -1, ())]
    assert await card(loyalty, ann.id) == (-1, 1) and await coupon_states(db, ann.id) == ["used"]
    before = await snapshot(db)
    assert (await loyalty.refund_purchase("till-2", refund_id="rf-1", amount="6", now=THU)).repeated
    assert await snapshot(db) == before
    paid = await loyalty.award_purchase(ann.id, external_id="till-3", amount="3", items=coffees(1), now=THU)
    assert paid.stamps[0].coupons == () and await card(loyalty, ann.id) == (0, 1)  # the debt is paid first
    await loyalty.award_purchase(ann.id, external_id="till-4", amount="30", items=coffees(10), now=THU)
    assert await card(loyalty, ann.id) == (0, 2) and await coupon_states(db, ann.id) == ["used", "active"]


# --- 2. a refund takes back a threshold bonus that no longer holds ----------------------------------------


@pytest.fixture
def at_once():
    return programme_with(window=0)


async def test_a_refund_below_the_threshold_takes_the_bonus_back_once(db, at_once):
    from loyalbot.loyalty import Loyalty
    loyalty = Loyalty(db, at_once)
    await loyalty.sync_programme()
    ann = await join(loyalty)
    first = await loyalty.award_purchase(ann.id, external_id="t-1", amount="600", now=THU)
    second = await loyalty.award_purchase(ann.id, external_id="t-2", amount="400", now=THU + timedelta(days=1))
    earned = await balanced(loyalty, ann.id)
    assert earned == first.points + second.points + 200  # the bonus was given
    cent = await loyalty.refund_purchase("t-2", refund_id="rf-0", amount="0.01", now=THU + timedelta(days=2))
    # 999.99 is below 1,000: the bonus goes back, though a cent takes back no point of the purchase's own
    assert [(b.code, b.points) for b in cent.bonuses] == [("spend-1000", 200)]
    assert cent.points_taken == 200
    assert await balanced(loyalty, ann.id) == earned - 200

    more = await loyalty.refund_purchase("t-1", refund_id="rf-1", amount="100", now=THU + timedelta(days=2))
    own = first.points * 100 // 600
    assert more.bonuses == () and more.points_taken == own  # the bonus is taken back once, not again
    assert (await loyalty.refund_purchase("t-1", refund_id="rf-1", amount="100", now=THU + timedelta(days=2))
            ).repeated
    assert await balanced(loyalty, ann.id) == earned - 200 - own

    # Reaching the threshold again in the same month earns it again, once.
    back = await loyalty.award_purchase(ann.id, external_id="t-3", amount="200", now=THU + timedelta(days=3))
    assert [(b.code, b.points) for b in back.bonuses] == [("spend-1000", 200)]
    beyond = await loyalty.award_purchase(ann.id, external_id="t-4", amount="50", now=THU + timedelta(days=3))
    assert beyond.bonuses == ()


async def test_a_refund_that_keeps_the_threshold_keeps_the_bonus(db, at_once):
    from loyalbot.loyalty import Loyalty
    loyalty = Loyalty(db, at_once)
    await loyalty.sync_programme()
    ann = await join(loyalty)
    await loyalty.award_purchase(ann.id, external_id="t-1", amount="1200", now=THU)
    refund = await loyalty.refund_purchase("t-1", refund_id="rf-1", amount="100", now=THU)
    assert refund.bonuses == () and refund.points_taken == 100
    assert await balanced(loyalty, ann.id) == 1100 + 200


async def test_a_pending_threshold_bonus_lost_to_a_refund_is_cancelled_not_taken_from_the_balance(loyalty):
    ann = await join(loyalty)
    await loyalty.award_purchase(ann.id, external_id="old", amount="50", now=THU - timedelta(days=60))
    await loyalty.ledger_upkeep(now=THU)
    await loyalty.award_purchase(ann.id, external_id="t-1", amount="1000", now=THU)
    refund = await loyalty.refund_purchase("t-1", refund_id="rf-1", amount="500", now=THU)
    assert [(b.code, b.points) for b in refund.bonuses] == [("spend-1000", 200)]
    assert (refund.pending_cancelled, refund.points_taken) == (500 + 200, 0)
    assert await balanced(loyalty, ann.id) == 50  # the spendable points were not touched
    assert await pending(loyalty, ann.id, THU) == [(500, THU + WINDOW, None)]


async def test_a_friends_first_purchase_with_a_pending_bonus_rewards_the_referral_once_it_clears(db):
    from loyalbot.loyalty import Loyalty
    from loyalbot.loyalty.programme import Referrals
    made = programme_with(window=14).model_copy(update={
        "referrals": Referrals(referrer_points=100, friend_points=50, min_purchase=10)})
    loyalty = Loyalty(db, made)
    await loyalty.sync_programme()
    ann = await join(loyalty, 1)
    code = await loyalty.referral_code(ann.id, now=WED)
    bob = await loyalty.register_member(telegram_id=2, terms_accepted=True, now=WED)
    await loyalty.link_referral(bob.id, code, now=WED)
    bought = await loyalty.award_purchase(bob.id, external_id="bob-1", amount="20", now=WED)  # + a member-day bonus
    assert [b.points for b in bought.bonuses] == [20]
    await loyalty.ledger_upkeep(now=WED + WINDOW - timedelta(minutes=1))
    assert (await loyalty.referral_stats(ann.id)).rewarded == 0
    await loyalty.ledger_upkeep(now=WED + WINDOW)
    await loyalty.ledger_upkeep(now=WED + WINDOW + timedelta(days=1))
    assert (await loyalty.referral_stats(ann.id)).rewarded == 1
    assert await balanced(loyalty, ann.id) == 100
    assert await balanced(loyalty, bob.id) == 20 + 20 + 50
