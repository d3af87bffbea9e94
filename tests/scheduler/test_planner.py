"""Planning: each kind reaches exactly the right members, at their local time, once; settings are respected."""

from __future__ import annotations

from datetime import date, timedelta

import sqlalchemy as sa

from loyalbot.chat.callbacks import survey_answer
from loyalbot.scheduler.planner import Planner
from loyalbot.scheduler.service import SchedulerService
from loyalbot.storage.models import Member, Schedule, Survey
from tests.scheduler.conftest import add_member, at, outbox_rows

JOINED = at("2023-03-01 12:00")


async def make_schedule(db, **fields) -> Schedule:
    fields.setdefault("created_at", at("2025-01-01 00:00"))
    fields.setdefault("updated_at", fields["created_at"])
    async with db.transaction() as tx:
        row = Schedule(**fields)
        tx.add(row)
    return row


async def planned_to(db, schedule_id: int) -> dict[int, str]:
    """member id -> status (pending, or the skip reason) for a schedule's rows."""
    return {r.member_id: r.skip_reason or r.status for r in await outbox_rows(db, schedule_id=schedule_id)}


async def test_birthday_at_ten_in_each_members_own_zone_once(loyalty, db):
    ams = await add_member(loyalty, now=JOINED, first_name="Anna", birthday=date(1990, 6, 10),
                           timezone="Europe/Amsterdam")
    sha = await add_member(loyalty, now=JOINED, first_name="伟", language="zh_Hans", birthday=date(1985, 6, 10),
                           timezone="Asia/Shanghai")
    other_day = await add_member(loyalty, now=JOINED, birthday=date(1990, 6, 11), timezone="Europe/Amsterdam")
    no_birthday = await add_member(loyalty, now=JOINED)
    schedule = await make_schedule(db, name="birthday", kind="birthday", daily_time="10:00", member_local_time=True)
    planner = Planner(loyalty)

    # 01:00 UTC: 09:00 in Shanghai, 03:00 in Amsterdam -> nobody yet.
    await planner.run(schedule, now=at("2025-06-10 01:00"), window_start=at("2025-06-10 00:45"))
    assert await planned_to(db, schedule.id) == {}
    # 02:00 UTC is 10:00 in Shanghai: only the Shanghai member.
    await planner.run(schedule, now=at("2025-06-10 02:00"), window_start=at("2025-06-10 01:45"))
    assert await planned_to(db, schedule.id) == {sha.id: "pending"}
    # 08:00 UTC is 10:00 in Amsterdam (summer time).
    await planner.run(schedule, now=at("2025-06-10 08:00"), window_start=at("2025-06-10 07:45"))
    # A catch-up over the whole day plans nothing new.
    again = await planner.run(schedule, now=at("2025-06-10 09:00"), window_start=at("2025-06-09 00:00"))
    assert again.planned == 0
    rows = await outbox_rows(db, schedule_id=schedule.id)
    assert {r.member_id: r.not_before for r in rows} == {sha.id: at("2025-06-10 02:00"),
                                                         ams.id: at("2025-06-10 08:00")}
    texts = {r.member_id: r.text for r in rows}
    assert "Anna" in texts[ams.id] and "2× points" in texts[ams.id]
    assert "伟" in texts[sha.id] and "生日快乐" in texts[sha.id] and "2 倍积分" in texts[sha.id]
    assert other_day.id not in texts and no_birthday.id not in texts


async def test_birthday_days_before_and_29_february(loyalty, db):
    leap = await add_member(loyalty, now=JOINED, birthday=date(2000, 2, 29))
    march = await add_member(loyalty, now=JOINED, birthday=date(1990, 3, 3))
    before = await make_schedule(db, name="bday-3-days-early", kind="birthday", daily_time="09:00",
                                 timezone="UTC", offset_days=3)
    planner = Planner(loyalty)
    await planner.run(before, now=at("2025-02-28 09:00"))  # 3 days before 3 March
    assert await planned_to(db, before.id) == {march.id: "pending"}
    on_day = await make_schedule(db, name="bday", kind="birthday", daily_time="09:00", timezone="UTC")
    await planner.run(on_day, now=at("2025-02-28 09:00"))  # 2025 is not a leap year: celebrate on the 28th
    assert await planned_to(db, on_day.id) == {leap.id: "pending"}


async def test_opt_out_consent_unreachable_erased_are_recorded_as_skipped(loyalty, db):
    now = at("2025-06-10 12:00")
    ok = await add_member(loyalty, now=JOINED, first_name="Ok")
    opted_out = await add_member(loyalty, now=JOINED, notify={"care": True, "reminders": True, "surveys": True,
                                                             "offers": False})
    no_consent = await add_member(loyalty, now=JOINED, marketing_consent=False)
    unreachable = await add_member(loyalty, now=JOINED, status="unreachable")
    erased = await add_member(loyalty, now=JOINED)
    await loyalty.erase_member(erased.id, actor="test", now=now)
    schedule = await make_schedule(db, name="news", kind="broadcast", one_off_at=now)
    stats = await Planner(loyalty).run(schedule, now=now)
    assert await planned_to(db, schedule.id) == {
        ok.id: "pending", opted_out.id: "opted_out", no_consent.id: "no_consent",
        unreachable.id: "unreachable", erased.id: "erased"}
    assert stats.planned == 1 and sum(stats.skipped.values()) == 4
    rows = {r.member_id: r for r in await outbox_rows(db, schedule_id=schedule.id)}
    assert rows[opted_out.id].text == "" and "Ok" in rows[ok.id].text


async def test_care_messages_need_no_marketing_consent_but_respect_care_opt_out(loyalty, db):
    consentless = await add_member(loyalty, now=JOINED, marketing_consent=False, birthday=date(1990, 6, 10))
    no_care = await add_member(loyalty, now=JOINED, birthday=date(1990, 6, 10),
                               notify={"care": False, "reminders": True, "surveys": True, "offers": True})
    schedule = await make_schedule(db, name="bday", kind="birthday", daily_time="10:00")
    await Planner(loyalty).run(schedule, now=at("2025-06-10 10:00"))
    assert await planned_to(db, schedule.id) == {consentless.id: "pending", no_care.id: "opted_out"}


async def test_quiet_hours_hold_the_message_until_they_end(loyalty, db):
    # 22:00-07:00 quiet, in Amsterdam (UTC+2 in June); a broadcast at 21:30 UTC is 23:30 local.
    night_owl = await add_member(loyalty, now=JOINED, timezone="Europe/Amsterdam", quiet_start=22 * 60,
                                 quiet_end=7 * 60)
    awake = await add_member(loyalty, now=JOINED, timezone="Asia/Shanghai", quiet_start=22 * 60, quiet_end=7 * 60,
                             first_name="Early")
    now = at("2025-06-10 21:30")  # 05:30 in Shanghai: also quiet, until 07:00 local = 23:00 UTC
    schedule = await make_schedule(db, name="news", kind="broadcast", one_off_at=now)
    stats = await Planner(loyalty).run(schedule, now=now)
    rows = {r.member_id: r.not_before for r in await outbox_rows(db, schedule_id=schedule.id)}
    assert rows == {night_owl.id: at("2025-06-11 05:00"), awake.id: at("2025-06-10 23:00")}
    assert stats.delayed_for_quiet_hours == 2


async def test_anniversary_counts_whole_years(loyalty, db):
    two_years = await add_member(loyalty, now=at("2023-06-10 09:00"), first_name="Two")
    this_year = await add_member(loyalty, now=at("2025-06-10 07:00"))
    schedule = await make_schedule(db, name="anniv", kind="anniversary", daily_time="10:00")
    await Planner(loyalty).run(schedule, now=at("2025-06-10 10:00"))
    rows = await outbox_rows(db, schedule_id=schedule.id)
    assert [r.member_id for r in rows] == [two_years.id]
    assert "2 years" in rows[0].text and this_year.id not in {r.member_id for r in rows}


async def test_winback_reaches_the_inactive_once_per_cap(loyalty, db):
    now = at("2025-06-10 10:00")
    gone = await add_member(loyalty, now=at("2025-01-01 10:00"), first_name="Gone")
    await loyalty.award_purchase(gone.id, external_id="p-gone", amount="20", now=at("2025-02-01 10:00"))
    recent = await add_member(loyalty, now=at("2025-01-01 10:00"))
    await loyalty.award_purchase(recent.id, external_id="p-recent", amount="20", now=at("2025-06-01 10:00"))
    schedule = await make_schedule(db, name="winback", kind="winback", daily_time="10:00",
                                   params={"inactive_days": 60}, frequency_cap_days=30)
    planner = Planner(loyalty)
    await planner.run(schedule, now=now)
    assert await planned_to(db, schedule.id) == {gone.id: "pending"}
    await planner.run(schedule, now=now + timedelta(days=1))  # next day: within the 30-day cap
    await planner.run(schedule, now=now + timedelta(days=29))
    assert len(await outbox_rows(db, schedule_id=schedule.id)) == 1
    await planner.run(schedule, now=now + timedelta(days=31))
    assert len(await outbox_rows(db, schedule_id=schedule.id, member_id=gone.id)) == 2


async def test_points_expiry_names_amount_and_date(loyalty, db):
    member = await add_member(loyalty, now=at("2024-05-01 10:00"), language="zh_Hant")
    await loyalty.award_purchase(member.id, external_id="p1", amount="75", now=at("2024-05-10 10:00"))
    fresh = await add_member(loyalty, now=at("2025-05-01 10:00"))
    await loyalty.award_purchase(fresh.id, external_id="p2", amount="75", now=at("2025-05-10 10:00"))
    schedule = await make_schedule(db, name="expiry", kind="points_expiry", daily_time="10:00", offset_days=14)
    planner = Planner(loyalty)
    await planner.run(schedule, now=at("2025-05-10 10:00"))  # lots of May 2024 expire end of May 2025: 21 days
    assert await planned_to(db, schedule.id) == {}
    await planner.run(schedule, now=at("2025-05-20 10:00"))  # now 11 days before
    await planner.run(schedule, now=at("2025-05-21 10:00"))  # same expiry date: nothing new
    rows = await outbox_rows(db, schedule_id=schedule.id)
    assert [r.member_id for r in rows] == [member.id]
    assert "75" in rows[0].text and "2025年5月31日" in rows[0].text and "積分" in rows[0].text


async def test_coupon_expiry_reminds_once_per_coupon(loyalty, db, programme):
    member = await add_member(loyalty, now=at("2025-01-01 10:00"))
    await loyalty.adjust_points(member.id, 500, reason="test", actor="test", now=at("2025-05-01 10:00"))
    rewards = {r.reward.code: r.reward for r in await loyalty.catalogue(member.id, now=at("2025-05-01 10:00"))}
    redeemed = await loyalty.redeem_reward(member.id, rewards["coffee"].id, request_id="r1",
                                           now=at("2025-05-01 10:00"))  # valid 30 days: to 31 May
    schedule = await make_schedule(db, name="coupons", kind="coupon_expiry", daily_time="10:00", offset_days=3)
    planner = Planner(loyalty)
    await planner.run(schedule, now=at("2025-05-27 10:00"))
    assert await planned_to(db, schedule.id) == {}
    await planner.run(schedule, now=at("2025-05-28 11:00"))
    await planner.run(schedule, now=at("2025-05-29 11:00"))
    rows = await outbox_rows(db, schedule_id=schedule.id)
    assert len(rows) == 1
    assert redeemed.coupon.code in rows[0].text and "A coffee of your choice" in rows[0].text


async def test_nps_opens_a_survey_with_eleven_buttons_and_respects_cooldown(loyalty, db):
    now = at("2025-06-10 10:00")
    member = await add_member(loyalty, now=at("2025-01-01 10:00"))
    newbie = await add_member(loyalty, now=at("2025-06-05 10:00"))
    schedule = await make_schedule(db, name="nps", kind="nps", daily_time="10:00", frequency_cap_days=90)
    planner = Planner(loyalty)
    await planner.run(schedule, now=now)
    rows = await outbox_rows(db, schedule_id=schedule.id)
    assert [r.member_id for r in rows] == [member.id]
    buttons = rows[0].buttons
    assert [len(line) for line in buttons] == [6, 5]
    assert [b["text"] for line in buttons for b in line] == [str(n) for n in range(11)]
    assert buttons[1][4]["data"] == survey_answer(rows[0].survey_id, 10)
    async with db.read() as s:
        survey = await s.get(Survey, rows[0].survey_id)
    assert survey.kind == "nps" and survey.status == "open" and survey.member_id == member.id
    await loyalty.record_survey_answer(member.id, survey.id, 9, now=now + timedelta(hours=1))
    await planner.run(schedule, now=now + timedelta(days=30))
    assert len(await outbox_rows(db, schedule_id=schedule.id, member_id=member.id)) == 1
    await planner.run(schedule, now=now + timedelta(days=91))
    assert len(await outbox_rows(db, schedule_id=schedule.id, member_id=member.id)) == 2
    assert newbie.id in {r.member_id for r in await outbox_rows(db, schedule_id=schedule.id)}


async def test_csat_after_a_used_coupon_is_delayed_and_asked_once(loyalty, db):
    now = at("2025-06-10 10:00")
    member = await add_member(loyalty, now=JOINED)
    await loyalty.add_staff(555, "agent")
    await loyalty.adjust_points(member.id, 300, reason="test", actor="test", now=now)
    coffee = next(i.reward for i in await loyalty.catalogue(member.id, now=now) if i.reward.code == "coffee")
    coupon = (await loyalty.redeem_reward(member.id, coffee.id, request_id="r1", now=now)).coupon
    service = SchedulerService(db, loyalty, dispatch=False, clock=lambda: now)
    await service.start()
    try:
        await loyalty.use_coupon(coupon.code, staff_id=555, now=now)  # emits CouponUsed
        await service.schedule_csat(member.id, "coupon", f"coupon:{coupon.id}", staff_id=555)  # a repeat
        second = await service.schedule_csat(member.id, "support", "conversation:7", conversation_id=None,
                                             delay=timedelta(minutes=5))
    finally:
        await service.stop()
    rows = [r for r in await outbox_rows(db, member_id=member.id) if r.kind == "csat"]
    assert [(r.status, r.not_before) for r in rows] == [("pending", now + timedelta(minutes=30)),
                                                        ("skipped", now + timedelta(minutes=5))]
    assert rows[1].skip_reason == "survey_open" and second is not None  # one open survey at a time
    assert [b["text"] for b in rows[0].buttons[0]] == ["1", "2", "3", "4", "5"]
    async with db.read() as s:
        surveys = list((await s.execute(sa.select(Survey).where(Survey.member_id == member.id))).scalars())
    assert [(s.kind, s.trigger, s.staff_id) for s in surveys] == [("csat", "coupon", 555)]


async def test_tier_upgrade_congratulates_in_the_new_tier(loyalty, db):
    now = at("2025-06-10 10:00")
    member = await add_member(loyalty, now=JOINED, language="zh_Hans")
    schedule = await make_schedule(db, name="tiers", kind="tier_change")
    service = SchedulerService(db, loyalty, dispatch=False, clock=lambda: now)
    await service.start()
    try:
        await loyalty.award_purchase(member.id, external_id="big", amount="350", now=now)
        await loyalty.award_purchase(member.id, external_id="small", amount="5", now=now)
    finally:
        await service.stop()
    rows = await outbox_rows(db, schedule_id=schedule.id)
    assert len(rows) == 1 and "银卡" in rows[0].text


async def test_preview_counts_without_saving(loyalty, db):
    await add_member(loyalty, now=JOINED, language="zh_Hant")
    await add_member(loyalty, now=JOINED, marketing_consent=False)
    schedule = await make_schedule(db, name="news", kind="broadcast", daily_time="10:00")
    stats = await Planner(loyalty).run(schedule, now=at("2025-06-10 10:00"), dry_run=True)
    assert stats.planned == 1 and dict(stats.skipped) == {"no_consent": 1}
    assert dict(stats.languages) == {"zh_Hant": 1} and "積分" in stats.samples[0][1]
    assert await outbox_rows(db) == []
    async with db.read() as s:
        assert (await s.execute(sa.select(sa.func.count()).select_from(Member))).scalar_one() == 2
