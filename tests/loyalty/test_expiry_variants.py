"""The expiry policy's variants: a yearly reset with partial carry-over, and expiry extended by purchases."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from loyalbot.loyalty import Loyalty, errors
from loyalbot.loyalty.programme import Expiry

AMSTERDAM_NEW_YEAR_2027 = datetime(2026, 12, 31, 23, 0, tzinfo=UTC)  # 1 January 2027, 00:00 in Amsterdam


async def loyalty_with(db, programme, **expiry):
    service = Loyalty(db, programme.model_copy(update={"expiry": Expiry(**expiry)}))
    await service.sync_programme()
    return service


async def join(loyalty, telegram_id=1, at=datetime(2026, 1, 5, tzinfo=UTC)):
    return await loyalty.register_member(telegram_id=telegram_id, first_name="Ann", terms_accepted=True, now=at)


async def balanced(loyalty, member_id):
    balance, ledger, lots = await loyalty.ledger_check(member_id)
    assert balance == ledger == lots
    return balance


async def test_yearly_reset_keeps_the_carry_over_share_until_the_next_reset(db, programme):
    loyalty = await loyalty_with(db, programme, mode="yearly_reset", carry_over_pct=25, reset_month_day="01-01")
    ann = await join(loyalty)
    await loyalty.award_purchase(ann.id, external_id="a", amount="200", now=datetime(2026, 3, 1, tzinfo=UTC))
    await loyalty.award_purchase(ann.id, external_id="b", amount="103", now=datetime(2026, 11, 1, tzinfo=UTC))
    expiring = await loyalty.points_expiring(ann.id, now=datetime(2026, 11, 2, tzinfo=UTC))
    assert [(e.expires_at, e.points) for e in expiring] == [(AMSTERDAM_NEW_YEAR_2027, 303)]

    await loyalty.ledger_upkeep(now=AMSTERDAM_NEW_YEAR_2027 - timedelta(seconds=1))
    assert await balanced(loyalty, ann.id) == 303
    after = AMSTERDAM_NEW_YEAR_2027 + timedelta(hours=1)
    other = Loyalty(db, loyalty.programme)  # two planners overlapping carry once
    await asyncio.gather(loyalty.ledger_upkeep(now=after), other.ledger_upkeep(now=after))
    await loyalty.ledger_upkeep(now=after + timedelta(days=1))
    assert await balanced(loyalty, ann.id) == 75  # 25 % of 303, rounded down

    next_reset = datetime(2027, 12, 31, 23, 0, tzinfo=UTC)
    assert [(e.expires_at, e.points) for e in await loyalty.points_expiring(ann.id, now=after)] == [(next_reset, 75)]
    await loyalty.ledger_upkeep(now=next_reset + timedelta(minutes=1))
    assert await balanced(loyalty, ann.id) == 0  # carried points are not carried again


async def test_a_redemption_after_the_reset_does_not_lose_the_carry_over(db, programme):
    loyalty = await loyalty_with(db, programme, mode="yearly_reset", carry_over_pct=50)
    ann = await join(loyalty)
    await loyalty.award_purchase(ann.id, external_id="a", amount="400", now=datetime(2026, 6, 1, tzinfo=UTC))
    coffee = next(i for i in await loyalty.catalogue(ann.id, now=datetime(2026, 6, 1, tzinfo=UTC))
                  if i.reward.code == "coffee")
    after = AMSTERDAM_NEW_YEAR_2027 + timedelta(hours=1)
    with pytest.raises(errors.NotEnoughPoints):  # the redemption expires the lots itself, before the job runs
        await loyalty.redeem_reward(ann.id, coffee.reward.id, request_id="r", now=after)
    await loyalty.ledger_upkeep(now=after)
    assert await balanced(loyalty, ann.id) == 200


async def test_without_carry_over_the_reset_takes_everything(db, programme):
    loyalty = await loyalty_with(db, programme, mode="yearly_reset", carry_over_pct=0, reset_month_day="04-01")
    ann = await join(loyalty)
    await loyalty.award_purchase(ann.id, external_id="a", amount="50", now=datetime(2026, 3, 1, tzinfo=UTC))
    await loyalty.ledger_upkeep(now=datetime(2026, 4, 2, tzinfo=UTC))
    assert await balanced(loyalty, ann.id) == 0


async def test_each_purchase_extends_every_open_lot(db, programme):
    loyalty = await loyalty_with(db, programme, mode="activity_extends", months=3, extend_months=6)
    ann = await join(loyalty)
    await loyalty.award_purchase(ann.id, external_id="a", amount="100", now=datetime(2026, 1, 10, tzinfo=UTC))
    first = await loyalty.points_expiring(ann.id, now=datetime(2026, 1, 11, tzinfo=UTC))
    # the purchase's own lot too: six months after it, not the three a lot lasts by itself
    assert [e.expires_at.astimezone(loyalty.programme.zone).date().isoformat() for e in first] == ["2026-07-31"]

    await loyalty.award_purchase(ann.id, external_id="b", amount="10", now=datetime(2026, 4, 1, tzinfo=UTC))
    lots = await loyalty.points_expiring(ann.id, now=datetime(2026, 4, 2, tzinfo=UTC))
    assert [(e.expires_at.astimezone(loyalty.programme.zone).date().isoformat(), e.points) for e in lots] == [
        ("2026-10-31", 110)]  # both lots now last until six months after the second purchase
    await loyalty.ledger_upkeep(now=datetime(2026, 8, 15, tzinfo=UTC))
    assert await balanced(loyalty, ann.id) == 110  # the first lot would have expired at the end of July
    await loyalty.ledger_upkeep(now=datetime(2026, 11, 1, tzinfo=UTC))
    assert await balanced(loyalty, ann.id) == 0


async def test_rolling_expiry_is_unchanged_by_purchases(db, programme):
    loyalty = await loyalty_with(db, programme, mode="rolling", months=3)
    ann = await join(loyalty)
    await loyalty.award_purchase(ann.id, external_id="a", amount="100", now=datetime(2026, 1, 10, tzinfo=UTC))
    await loyalty.award_purchase(ann.id, external_id="b", amount="10", now=datetime(2026, 4, 1, tzinfo=UTC))
    await loyalty.ledger_upkeep(now=datetime(2026, 5, 15, tzinfo=UTC))
    assert await balanced(loyalty, ann.id) == 10


@pytest.mark.parametrize(("section", "problem"), [
    ('[expiry]\nmode = "yearly_reset"\nreset_month_day = "02-30"\n', "expiry.reset_month_day"),
    ('[expiry]\nmode = "monthly"\n', "expiry.mode"),
    ("[expiry]\ncarry_over_pct = 120\n", "expiry.carry_over_pct"),
    ("[pending]\nreturn_window_days = -1\n", "pending.return_window_days"),
    ("[referrals]\nmilestones = [{ friends = 3, points = 10, reward = \"coffee\" }]\n", "referrals.milestones"),
    ("[referrals]\nmilestones = [{ friends = 3, reward = \"yacht\" }]\n", "unknown reward yacht"),
])
def test_bad_programme_settings_are_refused_with_where(section, problem):
    from loyalbot.loyalty.programme import DEFAULT_PROGRAMME, ProgrammeError, parse_programme

    text = DEFAULT_PROGRAMME.read_text(encoding="utf-8")
    head, _, _ = section.partition("\n")
    start = text.index(head + "\n")
    end = text.find("\n[", start + 1)
    with pytest.raises(ProgrammeError, match=problem.replace(".", r"\.")):
        parse_programme(text[:start] + section + text[end:])


def test_the_new_settings_survive_export_and_import():
    from loyalbot.loyalty.programme import (
        Pending,
        ReferralMilestone,
        Referrals,
        load_programme,
        parse_programme,
        programme_toml,
    )

    programme = load_programme().model_copy(update={
        "pending": Pending(return_window_days=14, tier_spend_waits=True),
        "referrals": Referrals(milestones=(ReferralMilestone(friends=3, points=300),
                                           ReferralMilestone(friends=5, reward="tote"))),
        "expiry": Expiry(mode="yearly_reset", carry_over_pct=25, reset_month_day="04-01")})
    assert parse_programme(programme_toml(programme)) == programme
