"""Redeeming rewards and using coupons at the counter."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest

from loyalbot.loyalty import errors
from loyalbot.loyalty.codes import ALPHABET, normalise_coupon_code
from tests.loyalty.helpers import snapshot

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
STAFF = 4242


async def member_with(loyalty, points, telegram_id=1, spend=None):
    member = await loyalty.register_member(telegram_id=telegram_id, first_name="Ann", terms_accepted=True,
                                           now=NOW - timedelta(days=30))
    if points:
        await loyalty.adjust_points(member.id, points, reason="test", actor="test", now=NOW)
    if spend:
        await loyalty.award_purchase(member.id, external_id=f"spend-{telegram_id}", amount=spend, now=NOW)
    return await loyalty.member(member.id)


async def reward(loyalty, member, code):
    return next(i.reward for i in await loyalty.catalogue(member.id, now=NOW) if i.reward.code == code)


async def test_redeem_issues_an_unguessable_readable_coupon(loyalty):
    ann = await member_with(loyalty, 200)
    coffee = await reward(loyalty, ann, "coffee")
    result = await loyalty.redeem_reward(ann.id, coffee.id, request_id="r1", now=NOW)
    assert re.fullmatch(r"[0-9A-Z]{4}(-[0-9A-Z]{4}){3}", result.coupon.code)
    assert set(result.coupon.code.replace("-", "")) <= set(ALPHABET)  # no I, L, O, U
    assert result.coupon.expires_at == NOW + timedelta(days=30)
    assert await loyalty.ledger_check(ann.id) == (50, 50, 50)


async def test_same_request_twice_gives_one_coupon(loyalty):
    ann = await member_with(loyalty, 400)
    coffee = await reward(loyalty, ann, "coffee")
    first = await loyalty.redeem_reward(ann.id, coffee.id, request_id="tap", now=NOW)
    second = await loyalty.redeem_reward(ann.id, coffee.id, request_id="tap", now=NOW)
    assert second.repeated and second.coupon.code == first.coupon.code
    assert len(await loyalty.coupons_of(ann.id, now=NOW)) == 1
    assert (await loyalty.member(ann.id)).balance == 250


@pytest.mark.parametrize(
    ("code", "points", "spend", "refusal"),
    [
        ("coffee", 100, None, errors.NotEnoughPoints),
        ("brunch", 5000, None, errors.TierTooLow),
        ("beans", 5000, None, errors.TierTooLow),
    ],
)
async def test_refusals_change_nothing(loyalty, db, code, points, spend, refusal):
    ann = await member_with(loyalty, points, spend=spend)
    item = await reward(loyalty, ann, code)
    before = await snapshot(db)
    with pytest.raises(refusal):
        await loyalty.redeem_reward(ann.id, item.id, request_id="x", now=NOW)
    assert await snapshot(db) == before


async def test_out_of_stock_and_per_member_limit(loyalty, db):
    ann = await member_with(loyalty, 5000)
    tote = await reward(loyalty, ann, "tote")
    await loyalty.redeem_reward(ann.id, tote.id, request_id="t1", now=NOW)
    with pytest.raises(errors.LimitReached):
        await loyalty.redeem_reward(ann.id, tote.id, request_id="t2", now=NOW)
    await loyalty.set_reward_stock(tote.id, 0)
    ben = await member_with(loyalty, 5000, telegram_id=2)
    before = await snapshot(db)
    with pytest.raises(errors.OutOfStock):
        await loyalty.redeem_reward(ben.id, tote.id, request_id="t3", now=NOW)
    assert await snapshot(db) == before
    catalogue = {i.reward.code: i for i in await loyalty.catalogue(ben.id, now=NOW)}
    assert catalogue["tote"].reason == "out_of_stock" and catalogue["coffee"].available


async def test_unknown_reward_and_bad_request_id(loyalty, db):
    ann = await member_with(loyalty, 500)
    before = await snapshot(db)
    with pytest.raises(errors.UnknownReward):
        await loyalty.redeem_reward(ann.id, 9999, request_id="x", now=NOW)
    with pytest.raises(errors.InvalidSetting):
        await loyalty.redeem_reward(ann.id, 1, request_id="", now=NOW)
    assert await snapshot(db) == before


async def test_staff_use_a_coupon_exactly_once(loyalty, db):
    ann = await member_with(loyalty, 200)
    await loyalty.add_staff(STAFF, "agent")
    coupon = (await loyalty.redeem_reward(ann.id, (await reward(loyalty, ann, "coffee")).id, request_id="r",
                                          now=NOW)).coupon
    typed = coupon.code.replace("-", " ").lower()  # read aloud, typed loosely
    view = await loyalty.coupon_for_counter(typed, staff_id=STAFF, now=NOW)
    assert view.member.id == ann.id and view.reward.code == "coffee"
    used = await loyalty.use_coupon(typed, staff_id=STAFF, now=NOW)
    assert used.coupon.status == "used" and used.coupon.used_by == STAFF
    with pytest.raises(errors.CouponAlreadyUsed):
        await loyalty.use_coupon(coupon.code, staff_id=STAFF, now=NOW)


async def test_coupon_refusals_are_distinct(loyalty, db):
    ann = await member_with(loyalty, 1000)
    await loyalty.add_staff(STAFF, "agent")
    coffee = await reward(loyalty, ann, "coffee")
    expiring = (await loyalty.redeem_reward(ann.id, coffee.id, request_id="a", now=NOW)).coupon
    ok = (await loyalty.redeem_reward(ann.id, coffee.id, request_id="b", now=NOW)).coupon
    before = await snapshot(db)
    with pytest.raises(errors.CouponExpired):
        await loyalty.use_coupon(expiring.code, staff_id=STAFF, now=NOW + timedelta(days=31))
    with pytest.raises(errors.UnknownCoupon):
        await loyalty.use_coupon("AAAA-BBBB-CCCC-DDDD", staff_id=STAFF, now=NOW)
    with pytest.raises(errors.UnknownCoupon):
        await loyalty.use_coupon("not a code", staff_id=STAFF, now=NOW)
    with pytest.raises(errors.NotPermitted):
        await loyalty.use_coupon(ok.code, staff_id=ann.telegram_id, now=NOW)
    assert await snapshot(db) == before
    await loyalty.erase_member(ann.id, actor="test", now=NOW)
    with pytest.raises(errors.CouponVoid):
        await loyalty.use_coupon(ok.code, staff_id=STAFF, now=NOW)


async def test_expire_coupons_marks_only_past_ones(loyalty):
    ann = await member_with(loyalty, 1000)
    coffee = await reward(loyalty, ann, "coffee")
    await loyalty.redeem_reward(ann.id, coffee.id, request_id="a", now=NOW)
    assert await loyalty.expire_coupons(now=NOW + timedelta(days=29)) == 0
    assert await loyalty.expire_coupons(now=NOW + timedelta(days=31)) == 1
    assert await loyalty.coupons_of(ann.id, now=NOW) == []


def test_coupon_codes_normalise_what_people_type():
    assert normalise_coupon_code("abcd-efgh-jkmn-pqrs") == "ABCD-EFGH-JKMN-PQRS"
    assert normalise_coupon_code("LBC:ABCDEFGHJKMNPQRS") == "ABCD-EFGH-JKMN-PQRS"
    assert normalise_coupon_code("o1l0-0000-0000-0000") == "0110-0000-0000-0000"
    for bad in ("", "ABC", "ABCD-EFGH-JKMN-PQR!", "x" * 100):
        assert normalise_coupon_code(bad) is None
