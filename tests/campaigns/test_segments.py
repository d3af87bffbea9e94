"""The segment language: every key's edges, compounds, saved segments, and refusals that say what is wrong."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import pytest

from loyalbot.loyalty.programme import load_programme
from loyalbot.scheduler.rfm import score_members
from loyalbot.scheduler.segments import SegmentProblem, check_segment, segment_conditions, segment_size
from loyalbot.storage import Db
from loyalbot.storage.models import Coupon, LedgerEntry, Reward
from loyalbot.storage.models import Segment as SavedSegment
from tests.campaigns.conftest import NOW, World


async def matched(db: Db, segment: dict[str, Any]) -> set[int]:
    """The ids of the members a segment reaches (through the same conditions the planner uses)."""
    import sqlalchemy as sa

    from loyalbot.scheduler.segments import named_segments
    from loyalbot.storage.models import Member

    conditions = segment_conditions(segment, NOW, named=await named_segments(db, segment))
    async with db.read() as s:
        return set((await s.execute(sa.select(Member.id).where(Member.status != "erased", *conditions))).scalars())


async def save(db: Db, name: str, definition: dict[str, Any]) -> None:
    async with db.transaction() as tx:
        tx.add(SavedSegment(name=name, definition=definition, created_by="test"))


async def test_days_since_purchase_counts_whole_days_both_bounds_inclusive(db: Db, world: World) -> None:
    exactly_90 = await world.member(last_purchase_days=90)
    almost_90 = await world.member(last_purchase_days=89.9)  # 89 whole days
    day_30_late = await world.member(last_purchase_days=30.9)  # still 30 whole days
    day_31 = await world.member(last_purchase_days=31)
    never_bought_old = await world.member(joined_days=200)  # counted from joining
    never_bought_new = await world.member(joined_days=3)

    assert await matched(db, {"days_since_purchase": {"min": 90}}) == {exactly_90, never_bought_old}
    assert await matched(db, {"days_since_purchase": {"max": 30}}) == {day_30_late, never_bought_new}
    assert await matched(db, {"days_since_purchase": {"min": 31, "max": 89}}) == {almost_90, day_31}


async def test_days_since_visit(db: Db, world: World) -> None:
    seen_today = await world.member(last_visit_days=0.1)
    away = await world.member(last_visit_days=40)
    assert await matched(db, {"days_since_visit": {"min": 30}}) == {away}
    assert await matched(db, {"days_since_visit": {"max": 0}}) == {seen_today}


async def test_spend_window_is_net_of_refunds_and_no_purchases_is_zero(db: Db, world: World) -> None:
    big = await world.member()
    await world.purchase(big, "60", days_ago=10)
    await world.purchase(big, "40", days_ago=29.9)
    outside = await world.member()
    await world.purchase(outside, "500", days_ago=30)  # exactly 30 days ago: outside a 30-day window
    refunded = await world.member()
    await world.purchase(refunded, "100", days_ago=2, refunded="100")
    nothing = await world.member()

    assert await matched(db, {"spend": {"days": 30, "min": 100}}) == {big}
    assert await matched(db, {"spend": {"days": 30, "min": "100.01"}}) == set()
    assert await matched(db, {"spend": {"days": 30, "max": 0}}) == {outside, refunded, nothing}
    assert await matched(db, {"spend": {"days": 31, "min": 1}}) == {big, outside}


async def test_purchase_count_window_leaves_out_fully_refunded(db: Db, world: World) -> None:
    twice = await world.member()
    await world.purchase(twice, "5", days_ago=1)
    await world.purchase(twice, "5", days_ago=6.9)
    once_and_refund = await world.member()
    await world.purchase(once_and_refund, "5", days_ago=1)
    await world.purchase(once_and_refund, "5", days_ago=2, refunded="5")
    nothing = await world.member()

    assert await matched(db, {"purchases": {"days": 7, "min": 2}}) == {twice}
    assert await matched(db, {"purchases": {"days": 7, "min": 1, "max": 1}}) == {once_and_refund}
    assert await matched(db, {"purchases": {"days": 7, "max": 0}}) == {nothing}


async def test_birthday_month_joined_within_consent_tiers_languages(db: Db, world: World) -> None:
    june = await world.member(birthday=date(1990, 6, 30), consent=True, tier="gold", language="zh_Hans")
    december = await world.member(birthday=date(1985, 12, 1), joined_days=6.9)
    no_birthday = await world.member(joined_days=7)

    assert await matched(db, {"birthday_month": "current"}) == {june}  # NOW is in June
    assert await matched(db, {"birthday_month": [12, 1]}) == {december}
    assert await matched(db, {"joined_within_days": 7}) == {december}
    assert await matched(db, {"marketing_consent": True}) == {june}
    assert await matched(db, {"marketing_consent": False}) == {december, no_birthday}
    assert await matched(db, {"tiers": ["gold"], "languages": ["zh_Hans"]}) == {june}
    assert await matched(db, {"not": {"birthday_month": [6]}}) == {december, no_birthday}


async def test_holds_coupon_and_expiring_points(db: Db, world: World, loyalty) -> None:
    holder = await world.member()
    expired_holder = await world.member()
    points = await world.member(balance=50)
    nobody = await world.member()
    async with db.read() as s:
        import sqlalchemy as sa
        reward_id = (await s.execute(sa.select(Reward.id))).scalars().first()
    async with db.transaction() as tx:
        tx.add(Coupon(code="C1", request_id="r1", reward_id=reward_id, member_id=holder, points_spent=0,
                      expires_at=NOW + timedelta(days=1)))
        tx.add(Coupon(code="C2", request_id="r2", reward_id=reward_id, member_id=expired_holder, points_spent=0,
                      expires_at=NOW - timedelta(minutes=1)))
        tx.add(LedgerEntry(member_id=points, kind="earn", delta=50, remaining=50, expires_at=NOW + timedelta(days=14)))

    assert await matched(db, {"holds_coupon": True}) == {holder}
    assert await matched(db, {"holds_coupon": False}) == {expired_holder, points, nobody}
    assert await matched(db, {"expiring_points_days": 14}) == {points}
    assert await matched(db, {"expiring_points_days": 13}) == set()


async def test_rfm_and_lifecycle_read_the_last_scoring_run(db: Db, world: World) -> None:
    recent = await world.member(last_purchase_days=1)
    await world.purchase(recent, "200", days_ago=1)
    await world.purchase(recent, "200", days_ago=3)
    dormant = await world.member(last_purchase_days=100)
    await world.purchase(dormant, "5", days_ago=100)
    not_scored_yet = await world.member(joined_days=1)
    for days in (20, 30):  # five members, so that scores spread over 1-5
        await world.purchase(await world.member(last_purchase_days=days), "1", days_ago=days)

    assert await matched(db, {"lifecycle": ["dormant"]}) == set()  # no run yet: nobody has a stage
    await score_members(db, load_programme().lifecycle, NOW)
    later = await world.member(joined_days=1)

    assert await matched(db, {"lifecycle": ["dormant"]}) == {dormant}
    assert await matched(db, {"lifecycle": ["repeat", "new"]}) == {recent, not_scored_yet}
    assert await matched(db, {"rfm": {"r": [5], "m": [5]}}) == {recent}
    assert later not in await matched(db, {"rfm": {"r": [1, 2, 3, 4, 5]}})


async def test_any_and_not_compose(db: Db, world: World) -> None:
    gold = await world.member(tier="gold")
    consenting = await world.member(consent=True)
    other = await world.member()
    either = {"any": [{"tiers": ["gold"]}, {"marketing_consent": True}]}
    assert await matched(db, either) == {gold, consenting}
    assert await matched(db, {"not": either}) == {other}
    # never-null conditions: a member without a purchase is still in the complement of a days-since test
    assert await matched(db, {"not": {"days_since_purchase": {"max": 10}}}) == {gold, consenting, other}


async def test_saved_segments_are_used_by_name_nested_and_counted(db: Db, world: World) -> None:
    gold = await world.member(tier="gold", consent=True)
    silver = await world.member(tier="silver")
    await world.member()
    await save(db, "gold", {"tiers": ["gold"]})
    await save(db, "top", {"any": [{"segment": "gold"}, {"tiers": ["silver"]}]})

    assert await matched(db, {"segment": "top"}) == {gold, silver}
    assert await matched(db, {"segment": "top", "not": {"segment": "gold"}}) == {silver}
    assert await segment_size(db, {"segment": "top"}, NOW) == 2
    assert await segment_size(db, {}, NOW) == 3


async def test_unknown_and_circular_saved_segments_are_refused(db: Db, world: World) -> None:
    await save(db, "a", {"segment": "b"})
    await save(db, "b", {"any": [{"segment": "a"}]})
    await save(db, "broken", {"tiers": "gold"})
    with pytest.raises(SegmentProblem, match="no saved segment called 'nope'"):
        await segment_size(db, {"not": {"segment": "nope"}}, NOW)
    with pytest.raises(SegmentProblem, match=r"'a' uses itself \(a -> b -> a\)"):
        await segment_size(db, {"segment": "a"}, NOW)
    with pytest.raises(SegmentProblem, match="saved segment 'broken': 'tiers' must be a non-empty list"):
        await segment_size(db, {"segment": "broken"}, NOW)


@pytest.mark.parametrize(("segment", "message"), [
    ([], "a segment is a JSON object"),
    ({"colour": "red"}, "unknown segment key 'colour'"),
    ({"rfm": {"r": [0]}}, "'rfm.r': 0 is not one of 1, 2, 3, 4, 5"),
    ({"rfm": {"x": [1]}}, "'rfm' must be an object"),
    ({"rfm": {}}, "'rfm' must be an object"),
    ({"rfm": {"r": []}}, "'rfm.r' must be a non-empty list"),
    ({"rfm": {"f": [True]}}, "True is not one of"),
    ({"lifecycle": ["sleepy"]}, "'sleepy' is not one of new, active"),
    ({"lifecycle": "dormant"}, "'lifecycle' must be a non-empty list"),
    ({"days_since_purchase": 30}, "must be an object like"),
    ({"days_since_purchase": {}}, "needs \"min\" or \"max\""),
    ({"days_since_purchase": {"min": -1}}, "'min' must be a whole number, 0 or more"),
    ({"days_since_visit": {"min": 9, "max": 3}}, "\"min\" is above \"max\""),
    ({"days_since_visit": {"least": 3}}, "unknown key 'least'"),
    ({"spend": {"min": 10}}, "needs \"days\""),
    ({"spend": {"days": 0, "min": 10}}, "needs \"days\""),
    ({"spend": {"days": 30, "min": "lots"}}, "'min' must be an amount"),
    ({"spend": {"days": 30, "min": True}}, "'min' must be an amount"),
    ({"purchases": {"days": 30, "min": 1.5}}, "'min' must be a whole number"),
    ({"birthday_month": [13]}, "13 is not one of"),
    ({"birthday_month": "june"}, "list of months 1-12 or \"current\""),
    ({"joined_within_days": 0}, "'joined_within_days' must be a whole number of days, 1 or more"),
    ({"expiring_points_days": "7"}, "'expiring_points_days' must be a whole number"),
    ({"holds_coupon": "yes"}, "'holds_coupon' must be true or false"),
    ({"marketing_consent": 1}, "'marketing_consent' must be true or false"),
    ({"segment": ""}, "'segment' must be the name of a saved segment"),
    ({"any": []}, "'any' must be a non-empty list"),
    ({"any": [{"tiers": ["gold"]}, {"tier": ["x"]}]}, r"in any\[1\]: unknown segment key 'tier'"),
    ({"not": {"not": {"lifecycle": []}}}, "in not: in not: 'lifecycle' must be a non-empty list"),
])
def test_bad_segments_are_refused_with_what_is_wrong(segment: Any, message: str) -> None:
    with pytest.raises(SegmentProblem, match=message):
        check_segment(segment)


def test_every_documented_key_is_accepted() -> None:
    check_segment({"rfm": {"r": [1], "f": [2, 3], "m": [5]}, "lifecycle": ["dormant"],
                   "days_since_purchase": {"min": 0, "max": 0}, "days_since_visit": {"max": 5},
                   "spend": {"days": 1, "min": 0, "max": "12.50"}, "purchases": {"days": 30, "min": 0},
                   "birthday_month": [1, 12], "joined_within_days": 1, "holds_coupon": False,
                   "expiring_points_days": 1, "marketing_consent": True, "segment": "vip",
                   "any": [{"tiers": ["gold"]}], "not": {"languages": ["en"]}})
