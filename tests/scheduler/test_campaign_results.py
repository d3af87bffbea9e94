"""Campaigns: a control group and A/B variants assigned per member, conversions counted in their window."""

from __future__ import annotations

import math
from collections import Counter
from datetime import timedelta
from decimal import Decimal

import pytest
import sqlalchemy as sa

from loyalbot.loyalty.programme import load_programme
from loyalbot.loyalty.service import Loyalty
from loyalbot.scheduler import editing
from loyalbot.scheduler.attribution import Rate, campaign_results, lift, wilson
from loyalbot.scheduler.experiments import Experiment, Variant, draw
from loyalbot.scheduler.planner import Planner
from loyalbot.scheduler.templates import TemplateBook
from loyalbot.storage import Db
from loyalbot.storage.models import CampaignHoldout, Coupon, Outbox, Reward, Schedule
from tests.scheduler.conftest import add_member, at, outbox_rows

JOINED = at("2025-01-01 12:00")
SENT = at("2025-06-10 10:00")
TWO_VARIANTS = [{"name": "A", "weight": 3, "templates": {"en": "Hello {{ name }}, variant A"}},
                {"name": "B", "weight": 1, "templates": {"en": "Hi {{ name }}, variant B"}}]


@pytest.fixture(params=["sqlite", "postgres"])
def campaign_url(request) -> str:
    """A migrated SQLite file, or a PostgreSQL database of the test's own."""
    return request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_url")


@pytest.fixture
async def store(campaign_url) -> Loyalty:
    """The programme's services on that store."""
    db = Db(campaign_url)
    service = Loyalty(db, load_programme())
    await service.sync_programme()
    yield service
    await db.dispose()


async def campaign(db: Db, **params) -> Schedule:
    async with db.transaction() as tx:
        row = Schedule(name="spring", kind="broadcast", one_off_at=SENT, params=params,
                       templates={"en": "Spring sale, {{ name }}"}, created_at=JOINED, updated_at=JOINED)
        tx.add(row)
    return row


async def members(loyalty: Loyalty, count: int) -> list[int]:
    return [(await add_member(loyalty, now=JOINED, first_name=f"M{i}")).id for i in range(count)]


async def mark_sent(db: Db, schedule_id: int, when=SENT) -> None:
    async with db.transaction() as tx:
        await tx.execute(sa.update(Outbox).where(Outbox.schedule_id == schedule_id, Outbox.status == "pending")
                         .values(status="sent", sent_at=when))


async def held_out(db: Db, schedule_id: int) -> dict[int, str]:
    async with db.read() as s:
        rows = (await s.execute(sa.select(CampaignHoldout.member_id, CampaignHoldout.period)
                                .where(CampaignHoldout.schedule_id == schedule_id))).all()
    return {member: period for member, period in rows}


# --- assignment -------------------------------------------------------------------------------------


def test_shares_follow_the_holdout_and_the_weights_on_ten_thousand_members():
    book = TemplateBook()
    compiled = book.compiled({"en": "x"}, kind="broadcast")
    experiment = Experiment(7, 20, [Variant("A", compiled), Variant("B", compiled), Variant("C", compiled)],
                            [2, 1, 1])
    n = 10_000
    control = [m for m in range(1, n + 1) if experiment.held_out(m)]
    shares = Counter(v.name for m in range(1, n + 1) if not experiment.held_out(m)
                     if (v := experiment.variant(m)) is not None)
    # Five standard deviations of a binomial count: a correct split fails this about once in 3 million runs.
    def within(count: int, trials: int, p: float) -> bool:
        return abs(count - trials * p) <= 5 * math.sqrt(trials * p * (1 - p))
    assert within(len(control), n, 0.20)
    treated = n - len(control)
    assert within(shares["A"], treated, 0.5) and within(shares["B"], treated, 0.25)
    assert within(shares["C"], treated, 0.25)


def test_a_members_draw_depends_only_on_the_schedule_and_the_member():
    assert draw(3, 41, "holdout") == draw(3, 41, "holdout")
    assert draw(3, 41, "holdout") != draw(4, 41, "holdout")  # another campaign draws again
    assert draw(3, 41, "holdout") != draw(3, 41, "variant")  # holdout and variant are independent
    assert all(0 <= draw(1, m, "variant") < 1 for m in range(1000))


async def test_control_members_get_nothing_and_the_rest_get_their_variant(store):
    db = store.db
    ids = await members(store, 40)
    schedule = await campaign(db, holdout_pct=30, variants=TWO_VARIANTS)
    stats = await Planner(store).run(schedule, now=SENT)
    control = await held_out(db, schedule.id)
    rows = await outbox_rows(db, schedule_id=schedule.id)
    assert control and rows  # 40 members at 30%: both sides get someone (a fixed draw, not luck)
    assert stats.held_out == len(control) and stats.planned == len(rows) == 40 - len(control)
    assert not set(control) & {r.member_id for r in rows}
    for row in rows:
        assert row.variant in ("A", "B") and f"variant {row.variant}" in row.text
    # Planning the same run again records nobody twice and changes nobody's side.
    again = await Planner(store).run(schedule, now=SENT)
    assert again.held_out == 0 and again.planned == 0
    assert await held_out(db, schedule.id) == control
    assert set(ids) == set(control) | {r.member_id for r in rows}


async def test_a_recurring_campaign_keeps_each_members_side_when_the_audience_changes(store):
    db = store.db
    first = await members(store, 30)
    async with db.transaction() as tx:
        schedule = Schedule(name="daily", kind="broadcast", daily_time="10:00", params={
            "holdout_pct": 30, "variants": TWO_VARIANTS}, templates={"en": "Hi {{ name }}"},
            created_at=JOINED, updated_at=JOINED)
        tx.add(schedule)
    planner = Planner(store)
    await planner.run(schedule, now=SENT)
    await members(store, 15)  # the audience grows
    await planner.run(schedule, now=SENT + timedelta(days=1))

    async def sides(day: str) -> dict[int, str]:
        async with db.read() as s:
            rows = (await s.execute(sa.select(CampaignHoldout.member_id).where(
                CampaignHoldout.schedule_id == schedule.id, CampaignHoldout.period == day))).scalars().all()
        found = dict.fromkeys(rows, "control")
        found.update({r.member_id: r.variant for r in await outbox_rows(db, schedule_id=schedule.id, period=day)})
        return found

    day1, day2 = await sides("2025-06-10"), await sides("2025-06-11")
    assert set(day1) == set(first) and len(day2) == 45  # the control group is per run
    assert {m: day2[m] for m in first} == day1  # nobody who was there already changed side or variant
    assert "control" in day1.values() and {"A", "B"} <= set(day1.values())


async def test_variant_templates_are_checked_like_the_schedules_own(store):
    schedule = Schedule(name="bad", kind="broadcast", one_off_at=SENT, templates={"en": "Hi"},
                        params={"variants": [TWO_VARIANTS[0], {"name": "B", "templates": {"en": "{{ password }}"}}]})
    with pytest.raises(editing.ScheduleProblem, match="variant B: en: unknown variable 'password'"):
        await editing.validate(store, schedule, SENT)
    schedule.params = {"holdout_pct": 60}
    with pytest.raises(editing.ScheduleProblem, match="holdout_pct is a number from 0 to 50"):
        await editing.validate(store, schedule, SENT)
    schedule.params = {"variants": TWO_VARIANTS[:1]}
    with pytest.raises(editing.ScheduleProblem, match="2 to 4 variants"):
        await editing.validate(store, schedule, SENT)


async def test_a_broadcast_asks_only_the_csat_and_then_takes_no_experiment_or_offer(store):
    schedule = Schedule(name="thanks", kind="broadcast", one_off_at=SENT, templates={"en": "Thanks, {{ name }}"},
                        params={"survey": "nps"})
    with pytest.raises(editing.ScheduleProblem, match="survey is one of csat"):
        await editing.validate(store, schedule, SENT)
    schedule.params = {"survey": "csat", "holdout_pct": 20}
    with pytest.raises(editing.ScheduleProblem, match="surveys take no holdout"):
        await editing.validate(store, schedule, SENT)
    schedule.params = {"survey": "csat", "offer": {"reward": "coffee", "valid_days": 7}}
    with pytest.raises(editing.ScheduleProblem, match="asks a survey cannot carry an offer"):
        await editing.validate(store, schedule, SENT)
    with pytest.raises(editing.ScheduleProblem, match="a winback schedule takes"):
        editing.parse_params("winback", {"survey": "csat"})  # only a broadcast carries one
    assert editing.parse_params("broadcast", {"survey": "csat"}) == {"survey": "csat"}
    schedule.params = {"survey": "csat"}
    await editing.validate(store, schedule, SENT)  # the thank-you play's form


# --- attribution -------------------------------------------------------------------------------------


async def buy(loyalty: Loyalty, member_id: int, when, amount: str = "10.00") -> None:
    await loyalty.award_purchase(member_id, external_id=f"p-{member_id}-{when.isoformat()}", amount=amount,
                                 occurred_at=when, now=when)


async def test_a_purchase_counts_in_the_window_after_the_message_and_not_at_its_edges(store):
    db = store.db
    await members(store, 6)
    schedule = await campaign(db, window_days=7)
    await Planner(store).run(schedule, now=SENT)
    await mark_sent(db, schedule.id, SENT + timedelta(microseconds=123456))
    sent = SENT + timedelta(microseconds=123456)
    rows = [r.member_id for r in await outbox_rows(db, schedule_id=schedule.id)]
    at_send, at_end, before, after, inside, nothing = rows
    await buy(store, at_send, sent)                                          # at exactly t: not caused by it
    await buy(store, at_end, sent + timedelta(days=7), "25.50")               # at exactly t + window: counts
    await buy(store, before, sent - timedelta(seconds=1))
    await buy(store, after, sent + timedelta(days=7, microseconds=1))
    await buy(store, inside, sent + timedelta(hours=3), "40.00")
    await buy(store, inside, sent + timedelta(days=2), "5.00")
    results = await campaign_results(db, schedule)
    [arm] = results.variants
    assert (arm.name, arm.units, arm.converted) == ("all", 6, 2)
    assert arm.revenue == Decimal("70.50")
    assert arm.points == sum([25, 40, 5])  # the default programme: a point per whole unit spent
    assert results.control is None and arm.lift is None and arm.redemption is None


async def test_control_purchases_are_counted_for_the_lift(store):
    db = store.db
    await members(store, 30)
    schedule = await campaign(db, holdout_pct=40)
    await Planner(store).run(schedule, now=SENT)
    await mark_sent(db, schedule.id)
    control = list(await held_out(db, schedule.id))
    treated = [r.member_id for r in await outbox_rows(db, schedule_id=schedule.id)]
    for member in treated[:len(treated) // 2]:
        await buy(store, member, SENT + timedelta(days=1))
    await buy(store, control[0], SENT + timedelta(days=1), "12.00")
    results = await campaign_results(db, schedule)
    assert results.control is not None
    assert (results.control.units, results.control.converted) == (len(control), 1)
    assert results.control.revenue == Decimal("12.00")
    expected = lift(Rate(len(treated) // 2, len(treated)), Rate(1, len(control)))
    assert results.treated.lift == expected and expected is not None
    assert expected.difference == pytest.approx((len(treated) // 2) / len(treated) - 1 / len(control))


async def test_coupon_redemption_is_counted_when_messages_are_linked_to_offer_coupons(store):
    db = store.db
    ids = await members(store, 3)
    schedule = await campaign(db)
    await Planner(store).run(schedule, now=SENT)
    await mark_sent(db, schedule.id)
    async with db.read() as s:
        reward_id = (await s.execute(sa.select(Reward.id).limit(1))).scalar_one()
    used = [SENT + timedelta(days=1), SENT + timedelta(days=9), None]  # in the window, after it, never
    async with db.transaction() as tx:  # each message linked to its offer coupon, as the hand-over links it
        for member, used_at in zip(ids, used, strict=True):
            coupon = Coupon(code=f"C{member}", request_id=f"r-{member}", reward_id=reward_id, member_id=member,
                            points_spent=0, status="used" if used_at else "active", issued_at=SENT,
                            expires_at=SENT + timedelta(days=30), used_at=used_at)
            tx.add(coupon)
            await tx.flush()
            await tx.execute(sa.update(Outbox).where(Outbox.schedule_id == schedule.id, Outbox.member_id == member)
                             .values(coupon_id=coupon.id))
    results = await campaign_results(db, schedule)
    assert results.treated.redemption == Rate(1, 3)


# --- the statistics ------------------------------------------------------------------------------------


def test_wilson_interval_and_lift_match_a_hand_worked_example():
    # 30 of 200 treated converted (15%), 10 of 100 in the control group (10%).
    # Wilson: (0.15 + 1.96²/400 ± 1.96·sqrt(0.15·0.85/200 + 1.96²/160000)) / (1 + 1.96²/200)
    #       = (0.159604 ± 0.050411) / 1.019208 = 0.10713 .. 0.20606
    low, high = wilson(30, 200)  # type: ignore[misc]
    assert low == pytest.approx(0.10713, abs=5e-5) and high == pytest.approx(0.20606, abs=5e-5)
    # Lift: 0.05 ± 1.96·sqrt(0.15·0.85/200 + 0.1·0.9/100) = 0.05 ± 1.96·0.039211 = -0.02685 .. 0.12685
    found = lift(Rate(30, 200), Rate(10, 100))
    assert found is not None
    assert found.difference == pytest.approx(0.05)
    assert found.low == pytest.approx(-0.02685, abs=5e-5) and found.high == pytest.approx(0.12685, abs=5e-5)
    assert wilson(0, 0) is None and wilson(0, 10)[0] == 0.0  # type: ignore[index]


@pytest.mark.parametrize(("treated", "control"), [(Rate(0, 3), Rate(0, 2)), (Rate(4, 4), Rate(0, 2)),
                                                  (Rate(5, 5), Rate(3, 3))])
def test_a_lift_between_rates_of_0_or_100_percent_claims_no_interval(treated, control):
    # The normal approximation has no spread there: "0.0 (0.0 – 0.0)" would read as a certain zero.
    found = lift(treated, control)
    assert found is not None and (found.low, found.high) == (None, None)
    assert found.difference == pytest.approx(treated.k / treated.n - control.k / control.n)
    assert lift(Rate(1, 4), Rate(0, 2)).low is not None  # type: ignore[union-attr]  # one rate inside: an interval


# --- stop-loss -----------------------------------------------------------------------------------------

STAFF_GROUP = -100_777


async def staff_notices(db: Db) -> list[Outbox]:
    return await outbox_rows(db, kind="staff_stop_loss")


async def test_stop_loss_pauses_once_after_n_sends_and_tells_the_staff_once(store):
    from loyalbot.scheduler.dispatcher import Dispatcher
    from loyalbot.scheduler.stoploss import check_stop_losses
    from loyalbot.storage.models import AuditLog
    from tests.scheduler.conftest import FakeChat

    db = store.db
    await members(store, 8)
    schedule = await campaign(db, stop_loss={"after_sends": 5, "metric": "conversion", "below_pct": 30})
    await Planner(store).run(schedule, now=SENT)
    rows = await outbox_rows(db, schedule_id=schedule.id)
    async with db.transaction() as tx:  # four of six sent so far, nobody bought: below 30%, but before N
        await tx.execute(sa.update(Outbox).where(Outbox.id.in_([r.id for r in rows[:4]]))
                         .values(status="sent", sent_at=SENT))
    later = SENT + timedelta(days=1)
    assert await check_stop_losses(store, staff_group_id=STAFF_GROUP, now=later) == []
    assert (await editing.get(store, "spring")).enabled and await staff_notices(db) == []
    await buy(store, rows[0].member_id, SENT + timedelta(hours=1))
    async with db.transaction() as tx:  # six sent, one converted: 16.7% < 30%; two not sent yet
        await tx.execute(sa.update(Outbox).where(Outbox.id.in_([r.id for r in rows[4:6]]))
                         .values(status="sent", sent_at=SENT))
    assert await check_stop_losses(store, staff_group_id=STAFF_GROUP, now=later) == ["spring"]
    assert not (await editing.get(store, "spring")).enabled
    [notice] = await staff_notices(db)
    assert notice.chat_id == STAFF_GROUP and notice.member_id is None and notice.schedule_id is None
    assert "spring" in notice.text and "16.7%" in notice.text and "30%" in notice.text
    async with db.read() as s:
        audit = (await s.execute(sa.select(AuditLog).where(AuditLog.action == "schedule_pause"))).scalars().all()
    assert [(a.actor, a.details["reason"]) for a in audit] == [("stop-loss", "stop_loss")]
    # The messages not sent yet are not sent at all: recorded as skipped by the stop-loss.
    assert {r.skip_reason for r in await outbox_rows(db, schedule_id=schedule.id, status="skipped")} == {"stop_loss"}
    assert len(await outbox_rows(db, schedule_id=schedule.id, status="skipped")) == 2
    # An operator resumes it: the rule that fired is overruled, nothing is paused or told again.
    await editing.set_enabled(store, schedule.id, True, actor="cli")
    assert await check_stop_losses(store, staff_group_id=STAFF_GROUP, now=later) == []
    assert (await editing.get(store, "spring")).enabled and len(await staff_notices(db)) == 1
    # The dispatcher delivers the notice to the staff group like any other outbox row.
    chat = FakeChat()
    await Dispatcher(db, chat, rate=100).drain(limit_seconds=5)
    assert chat.texts(STAFF_GROUP) == [notice.text]


async def test_stop_loss_leaves_a_campaign_above_its_threshold_alone(store):
    from loyalbot.scheduler.stoploss import check_stop_losses

    db = store.db
    await members(store, 4)
    schedule = await campaign(db, stop_loss={"after_sends": 4, "metric": "conversion", "below_pct": 30})
    await Planner(store).run(schedule, now=SENT)
    await mark_sent(db, schedule.id)
    for row in (await outbox_rows(db, schedule_id=schedule.id))[:2]:
        await buy(store, row.member_id, SENT + timedelta(days=2))
    assert await check_stop_losses(store, staff_group_id=STAFF_GROUP, now=SENT + timedelta(days=3)) == []
    assert (await editing.get(store, "spring")).enabled and await staff_notices(db) == []


def test_the_stop_loss_notice_is_translated_in_every_language():
    from loyalbot.chat.i18n import LANGUAGES, Translator

    for lang in LANGUAGES:
        t = Translator(lang)
        for key in ("campaign.stop_loss", "campaign.metric.conversion", "campaign.metric.redemption"):
            assert t._tr.gettext(key) != key, (lang, key)


# --- the command line -----------------------------------------------------------------------------------


async def test_campaign_results_command_prints_each_variant_and_the_control_group(store, campaign_url):
    import asyncio
    import json

    from typer.testing import CliRunner

    from loyalbot.scheduler.campaign_cli import campaign_app

    db = store.db
    await members(store, 30)
    schedule = await campaign(db, holdout_pct=30, variants=TWO_VARIANTS)
    await Planner(store).run(schedule, now=SENT)
    await mark_sent(db, schedule.id)
    for row in (await outbox_rows(db, schedule_id=schedule.id))[:3]:
        await buy(store, row.member_id, SENT + timedelta(days=1), "20.00")

    def run(*args: str):
        return CliRunner().invoke(campaign_app, ["results", *args, "--database-url", campaign_url])

    table = await asyncio.to_thread(run, "spring")
    assert table.exit_code == 0, table.output
    lines = [line.split("│")[1].strip() for line in table.output.splitlines() if line.startswith("│")]
    assert [name for name in lines if name] == ["A", "B", "treated", "control"]
    assert "within 7 days" in table.output
    as_json = await asyncio.to_thread(run, "spring", "--json")
    figures = json.loads(as_json.output)
    assert [v["name"] for v in figures["variants"]] == ["A", "B"]
    assert figures["treated"]["converted"] == 3 and figures["treated"]["revenue"] == "60.00"
    assert figures["control"]["units"] == len(await held_out(db, schedule.id))
    assert figures["treated"]["lift"]["low"] < figures["treated"]["lift"]["difference"]
    missing = await asyncio.to_thread(run, "nope")
    assert missing.exit_code == 2 and "no schedule called 'nope'" in missing.output


async def test_a_campaign_that_only_held_members_out_is_archived_not_deleted(store):
    db = store.db
    [member] = await members(store, 1)
    schedule = await campaign(db, holdout_pct=50)
    async with db.transaction() as tx:  # the one member is held out: no outbox row, one holdout row
        tx.add(CampaignHoldout(schedule_id=schedule.id, member_id=member, period="once", assigned_at=SENT))
    assert await editing.delete(store, schedule.id, actor="cli") == "archived"
    assert len(await held_out(db, schedule.id)) == 1


async def test_a_frequency_cap_holds_for_the_control_group_as_for_the_members_who_got_it(store):
    db = store.db
    await members(store, 20)
    async with db.transaction() as tx:
        schedule = Schedule(name="capped", kind="broadcast", daily_time="10:00", frequency_cap_days=30,
                            params={"holdout_pct": 40}, templates={"en": "Hi {{ name }}"},
                            created_at=JOINED, updated_at=JOINED)
        tx.add(schedule)
    first = await Planner(store).run(schedule, now=SENT)
    assert first.held_out and first.planned
    again = await Planner(store).run(schedule, now=SENT + timedelta(days=1))
    assert (again.held_out, again.planned) == (0, 0)  # within the cap nobody is planned or held out again
    after_cap = await Planner(store).run(schedule, now=SENT + timedelta(days=31))
    assert (after_cap.held_out, after_cap.planned) == (first.held_out, first.planned)
