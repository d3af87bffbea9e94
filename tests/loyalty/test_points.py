"""Earning, refunding, adjusting and expiring points, as a member or a shop would see them."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from loyalbot.loyalty import errors
from tests.loyalty.helpers import snapshot

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


async def join(loyalty, telegram_id=1, **kw):
    return await loyalty.register_member(telegram_id=telegram_id, first_name="Ann", terms_accepted=True,
                                         now=NOW - timedelta(days=30), **kw)


async def test_purchase_earns_one_point_per_euro_rounded_down(loyalty):
    ann = await join(loyalty)
    result = await loyalty.award_purchase(ann.id, external_id="till-1", amount="12.80", now=NOW)
    assert result.points == 12
    assert (await loyalty.member(ann.id)).balance == 12


async def test_repeated_purchase_awards_nothing_and_returns_the_first_result(loyalty):
    ann = await join(loyalty)
    first = await loyalty.award_purchase(ann.id, external_id="till-1", amount="50", now=NOW)
    again = await loyalty.award_purchase(ann.id, external_id="till-1", amount="50.00", now=NOW)
    assert again.repeated and again.points == first.points == 50
    assert again.purchase.id == first.purchase.id
    assert (await loyalty.member(ann.id)).balance == 50


async def test_purchase_repeated_with_a_different_amount_is_refused_and_changes_nothing(loyalty, db):
    ann = await join(loyalty)
    await loyalty.award_purchase(ann.id, external_id="till-1", amount="50", now=NOW)
    before = await snapshot(db)
    with pytest.raises(errors.PurchaseConflict):
        await loyalty.award_purchase(ann.id, external_id="till-1", amount="60", now=NOW)
    assert await snapshot(db) == before


@pytest.mark.parametrize("amount", ["-5", "0", "abc", "NaN", "Infinity", "1.234", None, "", "99999999", True])
async def test_bad_amounts_are_refused_and_change_nothing(loyalty, db, amount):
    ann = await join(loyalty)
    before = await snapshot(db)
    with pytest.raises(errors.InvalidAmount):
        await loyalty.award_purchase(ann.id, external_id="x", amount=amount, now=NOW)
    assert await snapshot(db) == before


async def test_unknown_member_and_foreign_currency_are_refused(loyalty, db):
    ann = await join(loyalty)
    before = await snapshot(db)
    with pytest.raises(errors.UnknownMember):
        await loyalty.award_purchase(9999, external_id="x", amount="5", now=NOW)
    with pytest.raises(errors.InvalidAmount):
        await loyalty.award_purchase(ann.id, external_id="x", amount="5", currency="USD", now=NOW)
    assert await snapshot(db) == before


async def test_birthday_month_doubles_points(loyalty):
    ann = await join(loyalty, birthday=date(1990, 3, 2), timezone="UTC")
    result = await loyalty.award_purchase(ann.id, external_id="b", amount="20", now=NOW)
    assert result.points == 40


async def test_tier_upgrade_is_immediate_and_multiplies_later_purchases(loyalty):
    ann = await join(loyalty)
    upgrade = await loyalty.award_purchase(ann.id, external_id="big", amount="350", now=NOW)
    assert upgrade.tier_change is not None and upgrade.tier_change.to_tier == "silver"
    assert (await loyalty.member(ann.id)).tier == "silver"
    later = await loyalty.award_purchase(ann.id, external_id="next", amount="100", now=NOW)
    assert later.points == 125  # silver earns x1.25
    history = await loyalty.tier_history(ann.id)
    assert [(h.from_tier, h.to_tier) for h in history] == [("green", "silver")]
    assert "350" in history[0].reason


async def test_downgrade_waits_for_the_scheduled_evaluation(loyalty):
    ann = await join(loyalty)
    await loyalty.award_purchase(ann.id, external_id="big", amount="350", now=NOW)
    await loyalty.refund_purchase("big", refund_id="r1", amount="350", now=NOW + timedelta(days=1))
    assert (await loyalty.member(ann.id)).tier == "silver"  # refunds never downgrade on the spot
    changes = await loyalty.evaluate_tiers(now=NOW + timedelta(days=2))
    assert [(c.member_id, c.to_tier, c.upgrade) for c in changes] == [(ann.id, "green", False)]
    assert "scheduled evaluation" in (await loyalty.tier_history(ann.id))[-1].reason


async def test_spend_outside_the_rolling_window_does_not_count(loyalty):
    ann = await join(loyalty)
    await loyalty.award_purchase(ann.id, external_id="old", amount="350", occurred_at=NOW - timedelta(days=400),
                                 now=NOW)
    assert (await loyalty.member(ann.id)).tier == "green"


async def test_partial_refund_takes_back_proportional_points(loyalty):
    ann = await join(loyalty)
    await loyalty.award_purchase(ann.id, external_id="p", amount="100", now=NOW)
    result = await loyalty.refund_purchase("p", refund_id="r1", amount="25", now=NOW)
    assert (result.points_taken, result.shortfall) == (25, 0)
    again = await loyalty.refund_purchase("p", refund_id="r1", amount="25", now=NOW)
    assert again.repeated and (await loyalty.member(ann.id)).balance == 75


async def test_refund_after_points_were_spent_never_goes_below_zero_and_records_the_shortfall(loyalty):
    ann = await join(loyalty)
    await loyalty.award_purchase(ann.id, external_id="p", amount="200", now=NOW)
    coffee = next(i.reward for i in await loyalty.catalogue(ann.id, now=NOW) if i.reward.code == "coffee")
    await loyalty.redeem_reward(ann.id, coffee.id, request_id="q1", now=NOW)
    result = await loyalty.refund_purchase("p", refund_id="r1", amount="200", now=NOW)
    assert (result.points_taken, result.shortfall) == (50, 150)
    assert await loyalty.ledger_check(ann.id) == (0, 0, 0)


async def test_refund_larger_than_the_purchase_is_refused(loyalty, db):
    ann = await join(loyalty)
    await loyalty.award_purchase(ann.id, external_id="p", amount="10", now=NOW)
    await loyalty.refund_purchase("p", refund_id="r1", amount="6", now=NOW)
    before = await snapshot(db)
    with pytest.raises(errors.RefundTooLarge):
        await loyalty.refund_purchase("p", refund_id="r2", amount="5", now=NOW)
    with pytest.raises(errors.UnknownPurchase):
        await loyalty.refund_purchase("nope", refund_id="r3", amount="1", now=NOW)
    assert await snapshot(db) == before


async def test_points_expire_at_the_end_of_the_twelfth_month(loyalty, programme):
    ann = await join(loyalty)
    await loyalty.award_purchase(ann.id, external_id="p", amount="120", now=NOW)
    expiring = await loyalty.points_expiring(ann.id, now=NOW)
    local_expiry = expiring[0].expires_at.astimezone(programme.zone)
    assert (expiring[0].points, local_expiry.date()) == (120, date(2027, 3, 31))
    assert await loyalty.points_expiring(ann.id, within_days=30, now=NOW) == []
    assert await loyalty.expire_points(now=NOW + timedelta(days=365)) == 0
    assert await loyalty.expire_points(now=expiring[0].expires_at + timedelta(seconds=1)) == 120
    assert await loyalty.ledger_check(ann.id) == (0, 0, 0)
    assert await loyalty.expire_points(now=expiring[0].expires_at + timedelta(days=1)) == 0


async def test_spending_consumes_the_lots_that_expire_first(loyalty):
    ann = await join(loyalty)
    await loyalty.award_purchase(ann.id, external_id="old", amount="100", occurred_at=NOW - timedelta(days=200),
                                 now=NOW)
    await loyalty.award_purchase(ann.id, external_id="new", amount="100", now=NOW)
    coffee = next(i.reward for i in await loyalty.catalogue(ann.id, now=NOW) if i.reward.code == "coffee")
    await loyalty.redeem_reward(ann.id, coffee.id, request_id="q", now=NOW)
    expiring = await loyalty.points_expiring(ann.id, now=NOW)
    assert [e.points for e in expiring] == [50]  # the old lot went first; 100 - 50 left of the new one
    summary = await loyalty.points_summary(ann.id, now=NOW)
    assert summary.balance == 50 and summary.next_expiry.points == 50
    assert [e.kind for e in summary.recent][:1] == ["redeem"]


async def test_adjustment_needs_a_reason_and_is_audited(loyalty, db):
    ann = await join(loyalty)
    before = await snapshot(db)
    with pytest.raises(errors.ReasonRequired):
        await loyalty.adjust_points(ann.id, 50, reason="  ", actor="staff:1")
    for bad in (0, 1.5, "10", True):
        with pytest.raises(errors.InvalidAdjustment):
            await loyalty.adjust_points(ann.id, bad, reason="x", actor="staff:1")
    with pytest.raises(errors.NotEnoughPoints):
        await loyalty.adjust_points(ann.id, -5, reason="typo", actor="staff:1")
    assert await snapshot(db) == before
    await loyalty.adjust_points(ann.id, 30, reason="spilled coffee", actor="staff:1", now=NOW)
    await loyalty.adjust_points(ann.id, -10, reason="double entry", actor="staff:1", now=NOW)
    assert await loyalty.ledger_check(ann.id) == (20, 20, 20)
    after = await snapshot(db)
    assert sum("adjust_points" in row for row in after["audit_log"]) == 2
