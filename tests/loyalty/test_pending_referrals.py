"""Pending points, refunds inside the return window, and referrals, as members and shops would see them."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from loyalbot.loyalty import Loyalty, errors
from loyalbot.loyalty.programme import Pending, ReferralMilestone, Referrals
from tests.loyalty.helpers import snapshot

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
WINDOW = timedelta(days=14)


@pytest.fixture
def programme(programme):
    return programme.model_copy(update={
        "pending": Pending(return_window_days=14),
        "referrals": Referrals(referrer_points=100, friend_points=50, min_purchase=10,
                               milestones=(ReferralMilestone(friends=2, points=500),
                                           ReferralMilestone(friends=3, reward="tote"))),
    })


async def join(loyalty, telegram_id, *, at=NOW - timedelta(days=30)):
    return await loyalty.register_member(telegram_id=telegram_id, first_name="Ann", terms_accepted=True, now=at)


async def balanced(loyalty, member_id):
    balance, ledger, lots = await loyalty.ledger_check(member_id)
    assert balance == ledger == lots
    return balance


# --- pending points -------------------------------------------------------------------------------------


async def test_points_are_pending_until_the_window_passes_and_then_spendable_exactly_then(loyalty):
    ann = await join(loyalty, 1)
    await loyalty.award_purchase(ann.id, external_id="till-1", amount="200", now=NOW)
    summary = await loyalty.points_summary(ann.id, now=NOW)
    assert summary.balance == 0
    assert [(p.points, p.available_at) for p in summary.pending] == [(200, NOW + WINDOW)]

    await loyalty.ledger_upkeep(now=NOW + WINDOW - timedelta(seconds=1))
    assert await balanced(loyalty, ann.id) == 0

    await loyalty.ledger_upkeep(now=NOW + WINDOW)
    assert await balanced(loyalty, ann.id) == 200
    assert (await loyalty.points_summary(ann.id, now=NOW + WINDOW)).pending == []


async def test_pending_points_cannot_be_redeemed(loyalty, db):
    ann = await join(loyalty, 1)
    await loyalty.award_purchase(ann.id, external_id="till-1", amount="500", now=NOW)
    coffee = next(item for item in await loyalty.catalogue(ann.id, now=NOW) if item.reward.code == "coffee")
    before = await snapshot(db)
    with pytest.raises(errors.NotEnoughPoints):
        await loyalty.redeem_reward(ann.id, coffee.reward.id, request_id="r-1", now=NOW + timedelta(days=1))
    assert await snapshot(db) == before


async def test_clearing_twice_or_at_once_credits_once(loyalty, db, programme):
    ann = await join(loyalty, 1)
    await loyalty.award_purchase(ann.id, external_id="till-1", amount="80", now=NOW)
    other = Loyalty(db, programme)
    await asyncio.gather(loyalty.ledger_upkeep(now=NOW + WINDOW), other.ledger_upkeep(now=NOW + WINDOW))
    await loyalty.ledger_upkeep(now=NOW + WINDOW + timedelta(hours=1))
    assert await balanced(loyalty, ann.id) == 80


async def test_a_refund_inside_the_window_cancels_pending_points_first(loyalty):
    ann = await join(loyalty, 1)
    await loyalty.award_purchase(ann.id, external_id="old", amount="100", now=NOW - timedelta(days=60))
    await loyalty.ledger_upkeep(now=NOW)
    await loyalty.award_purchase(ann.id, external_id="new", amount="40", now=NOW)

    refund = await loyalty.refund_purchase("new", refund_id="rf-1", amount="30", now=NOW + timedelta(days=1))
    assert (refund.pending_cancelled, refund.points_taken, refund.shortfall) == (30, 0, 0)
    assert await balanced(loyalty, ann.id) == 100  # the spendable points were not touched
    assert [p.points for p in (await loyalty.points_summary(ann.id, now=NOW)).pending] == [10]

    again = await loyalty.refund_purchase("new", refund_id="rf-1", amount="30", now=NOW + timedelta(days=2))
    assert again.repeated and again.pending_cancelled == 30
    assert [p.points for p in (await loyalty.points_summary(ann.id, now=NOW)).pending] == [10]

    await loyalty.ledger_upkeep(now=NOW + WINDOW)
    assert await balanced(loyalty, ann.id) == 110


async def test_a_refund_after_clearing_takes_spendable_points_never_below_zero(loyalty):
    ann = await join(loyalty, 1)
    await loyalty.award_purchase(ann.id, external_id="till-1", amount="300", now=NOW)
    await loyalty.ledger_upkeep(now=NOW + WINDOW)
    coffee = next(item for item in await loyalty.catalogue(ann.id, now=NOW + WINDOW) if item.reward.code == "coffee")
    await loyalty.redeem_reward(ann.id, coffee.reward.id, request_id="r-1", now=NOW + WINDOW)  # 150 spent
    refund = await loyalty.refund_purchase("till-1", refund_id="rf-1", amount="300", now=NOW + WINDOW)
    # What is left (150) is taken; the other 150 are recorded as a shortfall, and the balance stays at 0.
    assert (refund.pending_cancelled, refund.points_taken, refund.shortfall) == (0, 150, 150)
    assert await balanced(loyalty, ann.id) == 0


async def test_a_full_refund_in_the_window_leaves_nothing_to_clear(loyalty):
    ann = await join(loyalty, 1)
    await loyalty.award_purchase(ann.id, external_id="till-1", amount="70", now=NOW)
    await loyalty.refund_purchase("till-1", refund_id="rf-1", amount="70", now=NOW + timedelta(days=3))
    await loyalty.ledger_upkeep(now=NOW + WINDOW)
    assert await balanced(loyalty, ann.id) == 0
    assert (await loyalty.points_summary(ann.id, now=NOW + WINDOW)).pending == []


async def test_tier_spend_waits_for_the_window_when_the_programme_says_so(db, programme):
    waiting = programme.model_copy(update={"pending": Pending(return_window_days=14, tier_spend_waits=True)})
    loyalty = Loyalty(db, waiting)
    await loyalty.sync_programme()
    ann = await join(loyalty, 1)
    result = await loyalty.award_purchase(ann.id, external_id="till-1", amount="400", now=NOW)
    assert result.tier_change is None and (await loyalty.member(ann.id)).tier == "green"
    assert (await loyalty.tier_progress(ann.id, now=NOW)).spend == 0
    await loyalty.ledger_upkeep(now=NOW + WINDOW)
    assert (await loyalty.member(ann.id)).tier == "silver"


async def test_tier_spend_counts_at_once_by_default(loyalty):
    ann = await join(loyalty, 1)
    result = await loyalty.award_purchase(ann.id, external_id="till-1", amount="400", now=NOW)
    assert result.tier_change is not None and result.tier_change.to_tier == "silver"


# --- referrals -----------------------------------------------------------------------------------------


async def test_a_referral_code_is_stable_unguessable_and_fits_a_start_payload(loyalty):
    ann = await join(loyalty, 1)
    bob = await join(loyalty, 2)
    code = await loyalty.referral_code(ann.id)
    assert code == await loyalty.referral_code(ann.id)
    assert code != await loyalty.referral_code(bob.id)
    assert len(code) <= 64 and all(c.isalnum() or c in "_-" for c in code)
    assert str(ann.id) != code[1:] and ann.member_no not in code


async def newcomer_via(loyalty, referrer, telegram_id):
    friend = await join(loyalty, telegram_id, at=NOW)
    await loyalty.link_referral(friend.id, await loyalty.referral_code(referrer.id), now=NOW)
    return friend


async def test_both_are_rewarded_once_the_first_purchase_has_cleared(loyalty, db, programme):
    ann = await join(loyalty, 1)
    bob = await newcomer_via(loyalty, ann, 2)
    await loyalty.award_purchase(bob.id, external_id="bob-1", amount="20", now=NOW)
    await loyalty.ledger_upkeep(now=NOW + WINDOW - timedelta(minutes=1))
    assert (await loyalty.referral_stats(ann.id)).rewarded == 0
    assert await balanced(loyalty, ann.id) == 0

    other = Loyalty(db, programme)  # a second planner overlapping the first
    await asyncio.gather(loyalty.ledger_upkeep(now=NOW + WINDOW), other.ledger_upkeep(now=NOW + WINDOW))
    await loyalty.ledger_upkeep(now=NOW + WINDOW + timedelta(days=1))
    assert await balanced(loyalty, ann.id) == 100
    assert await balanced(loyalty, bob.id) == 20 + 50
    stats = await loyalty.referral_stats(ann.id)
    assert (stats.joined, stats.rewarded, stats.next_milestone) == (1, 1, 2)


async def test_a_refunded_first_purchase_earns_nothing_ever(loyalty):
    ann = await join(loyalty, 1)
    bob = await newcomer_via(loyalty, ann, 2)
    await loyalty.award_purchase(bob.id, external_id="bob-1", amount="20", now=NOW)
    await loyalty.refund_purchase("bob-1", refund_id="rf", amount="20", now=NOW + timedelta(days=2))
    await loyalty.award_purchase(bob.id, external_id="bob-2", amount="30", now=NOW + timedelta(days=3))
    await loyalty.ledger_upkeep(now=NOW + timedelta(days=40))
    assert await balanced(loyalty, ann.id) == 0
    assert await balanced(loyalty, bob.id) == 30
    assert (await loyalty.referral_stats(ann.id)).rewarded == 0


async def test_a_small_first_purchase_does_not_qualify_a_later_one_does(loyalty):
    ann = await join(loyalty, 1)
    bob = await newcomer_via(loyalty, ann, 2)
    await loyalty.award_purchase(bob.id, external_id="bob-1", amount="5", now=NOW)
    await loyalty.award_purchase(bob.id, external_id="bob-2", amount="15", now=NOW + timedelta(days=1))
    await loyalty.ledger_upkeep(now=NOW + WINDOW)
    assert await balanced(loyalty, ann.id) == 0
    await loyalty.ledger_upkeep(now=NOW + WINDOW + timedelta(days=1))
    assert await balanced(loyalty, ann.id) == 100


async def test_referral_refusals_change_nothing(loyalty, db):
    ann = await join(loyalty, 1)
    code = await loyalty.referral_code(ann.id)
    old = await join(loyalty, 2, at=NOW - timedelta(days=5))
    bob = await newcomer_via(loyalty, ann, 3)
    carol = await join(loyalty, 4, at=NOW)
    carol_code = await loyalty.referral_code(carol.id)
    before = await snapshot(db)
    with pytest.raises(errors.SelfReferral):
        await loyalty.link_referral(ann.id, code, now=NOW)
    with pytest.raises(errors.NotANewcomer):
        await loyalty.link_referral(old.id, code, now=NOW)
    with pytest.raises(errors.AlreadyReferred):
        await loyalty.link_referral(bob.id, carol_code, now=NOW)
    for forged in ("r" + "A" * 12, "1", "../etc", "r" * 65, ""):
        with pytest.raises(errors.UnknownReferralCode):
            await loyalty.link_referral(carol.id, forged, now=NOW)
    assert await snapshot(db) == before


async def test_a_newcomer_who_already_bought_is_no_newcomer(loyalty, db):
    ann = await join(loyalty, 1)
    code = await loyalty.referral_code(ann.id)
    bob = await join(loyalty, 2, at=NOW)
    await loyalty.award_purchase(bob.id, external_id="bob-1", amount="20", now=NOW)
    with pytest.raises(errors.NotANewcomer):
        await loyalty.link_referral(bob.id, code, now=NOW)


async def test_milestones_are_given_once(loyalty):
    ann = await join(loyalty, 1)
    friends = [await newcomer_via(loyalty, ann, 10 + n) for n in range(3)]
    for n, friend in enumerate(friends):
        await loyalty.award_purchase(friend.id, external_id=f"f-{n}", amount="20", now=NOW)
    await loyalty.ledger_upkeep(now=NOW + WINDOW)
    await loyalty.ledger_upkeep(now=NOW + WINDOW + timedelta(days=1))
    assert await balanced(loyalty, ann.id) == 3 * 100 + 500
    coupons = await loyalty.coupons_of(ann.id, now=NOW + WINDOW)
    assert len(coupons) == 1
    stats = await loyalty.referral_stats(ann.id)
    assert (stats.joined, stats.rewarded, stats.next_milestone) == (3, 3, None)


async def test_erasure_cancels_pending_points_and_the_link(loyalty):
    ann = await join(loyalty, 1)
    code = await loyalty.referral_code(ann.id)
    await loyalty.award_purchase(ann.id, external_id="till-1", amount="40", now=NOW)
    exported = await loyalty.export_member_data(ann.id)
    assert [p["points"] for p in exported["pending_points"]] == [40] and exported["referral_code"] == code
    await loyalty.erase_member(ann.id, actor="test", now=NOW + timedelta(days=1))
    assert (await loyalty.ledger_upkeep(now=NOW + WINDOW))["cleared"] == 0
    bob = await join(loyalty, 2, at=NOW + WINDOW)
    with pytest.raises(errors.UnknownReferralCode):
        await loyalty.link_referral(bob.id, code, now=NOW + WINDOW)


async def test_a_referral_whose_referrer_was_erased_earns_nothing(loyalty):
    ann = await join(loyalty, 1)
    bob = await newcomer_via(loyalty, ann, 2)
    await loyalty.award_purchase(bob.id, external_id="bob-1", amount="20", now=NOW)
    await loyalty.erase_member(ann.id, actor="test", now=NOW + timedelta(days=1))
    await loyalty.ledger_upkeep(now=NOW + WINDOW)
    assert await balanced(loyalty, bob.id) == 20


async def test_a_counter_award_undone_in_the_window_cancels_its_pending_points(loyalty):
    await loyalty.add_staff(90, "agent")
    ann = await join(loyalty, 1)
    bought = await loyalty.award_purchase(ann.id, external_id="counter:90:1", amount="25", source="counter",
                                          recorded_by=90, now=NOW)
    undone = await loyalty.undo_counter_purchase(bought.purchase.id, staff_id=90, now=NOW + timedelta(minutes=2))
    assert (undone.refund.pending_cancelled, undone.refund.points_taken) == (25, 0)
    await loyalty.ledger_upkeep(now=NOW + WINDOW)
    assert await balanced(loyalty, ann.id) == 0
