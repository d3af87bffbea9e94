"""Scoring: quintiles with ties, lifecycle stages at their thresholds, changes recorded once, and the
lifecycle_change messages planned from them."""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa

from loyalbot.loyalty.programme import Lifecycle, load_programme
from loyalbot.loyalty.service import Loyalty
from loyalbot.scheduler.planner import Planner
from loyalbot.scheduler.rfm import score_and_plan, score_members
from loyalbot.storage import Db
from loyalbot.storage.models import MemberScore, MemberStageChange, Outbox, Schedule
from tests.campaigns.conftest import NOW, World

RULES = load_programme().lifecycle


async def scores(db: Db) -> dict[int, MemberScore]:
    async with db.read() as s:
        return {row.member_id: row for row in (await s.execute(sa.select(MemberScore))).scalars()}


async def changes(db: Db) -> list[tuple[int, str, str]]:
    async with db.read() as s:
        rows = (await s.execute(sa.select(MemberStageChange).order_by(MemberStageChange.id))).scalars()
        return [(c.member_id, c.from_stage, c.to_stage) for c in rows]


async def test_quintiles_give_tied_members_the_same_score(db: Db, world: World) -> None:
    # ten members: spends 0, 0, 0, 0, 10, 20, 20, 30, 40, 50 over the window
    ids = []
    for spend in (0, 0, 0, 0, 10, 20, 20, 30, 40, 50):
        member = await world.member(last_purchase_days=5 if spend else None)
        if spend:
            await world.purchase(member, str(spend), days_ago=5)
        ids.append(member)
    run = await score_members(db, RULES, NOW)
    found = await scores(db)

    assert run.scored == 10
    m = [found[i].m for i in ids]
    assert m == [1, 1, 1, 1, 3, 3, 3, 4, 5, 5]  # rank 1,1,1,1,5,6,6,8,9,10 -> 1 + 5*(rank-1)//10
    f = [found[i].f for i in ids]
    assert f[:4] == [1, 1, 1, 1] and set(f[4:]) == {3}  # one purchase each: all tied above the non-buyers
    r = [found[i].r for i in ids]
    assert r[:4] == [1, 1, 1, 1] and set(r[4:]) == {3}  # never bought: the lowest recency
    assert found[ids[-1]].spend == 50 and found[ids[-1]].purchases == 1


async def test_recent_buyers_score_high_recency(db: Db, world: World) -> None:
    ids = []
    for days in (300, 200, 100, 50, 10):
        member = await world.member(last_purchase_days=days)
        await world.purchase(member, "5", days_ago=days)
        ids.append(member)
    await score_members(db, RULES, NOW)
    found = await scores(db)
    assert [found[i].r for i in ids] == [1, 2, 3, 4, 5]


async def test_stages_at_their_thresholds(db: Db, world: World) -> None:
    rules = Lifecycle()  # new 30, at_risk 45, dormant 90, churned 365, repeat 2 purchases
    new = await world.member(joined_days=29.9, last_purchase_days=20)
    active = await world.member(last_purchase_days=44.9)
    await world.purchase(active, "3", days_ago=44.9)
    repeat = await world.member(last_purchase_days=2)
    await world.purchase(repeat, "3", days_ago=2)
    await world.purchase(repeat, "3", days_ago=40)
    at_risk = await world.member(last_purchase_days=45)
    never_bought = await world.member(joined_days=31)
    dormant = await world.member(last_purchase_days=90)
    churned = await world.member(last_purchase_days=365)
    never_bought_long = await world.member(joined_days=400)
    erased = await world.member(status="erased")

    await score_members(db, rules, NOW)
    found = await scores(db)

    assert {i: found[i].lifecycle for i in found} == {
        new: "new", active: "active", repeat: "repeat", at_risk: "at_risk", never_bought: "at_risk",
        dormant: "dormant", churned: "churned", never_bought_long: "churned"}
    assert erased not in found


async def test_a_change_of_stage_is_recorded_once(db: Db, world: World) -> None:
    member = await world.member(last_purchase_days=80)
    steady = await world.member(last_purchase_days=1)
    await score_members(db, RULES, NOW)
    assert await changes(db) == []  # first scores: nobody moved

    later = NOW + timedelta(days=10)
    run = await score_members(db, RULES, later)
    again = await score_members(db, RULES, later)

    assert await changes(db) == [(member, "at_risk", "dormant")]
    assert run.moved_to == {"dormant": 1} and again.changes == 0
    assert (await scores(db))[steady].lifecycle == "active"


async def test_an_erased_member_loses_their_scores(db: Db, world: World) -> None:
    member = await world.member()
    await score_members(db, RULES, NOW)
    async with db.transaction() as tx:
        from loyalbot.storage.models import Member
        await tx.execute(sa.update(Member).where(Member.id == member).values(status="erased"))
    run = await score_members(db, RULES, NOW)
    assert run.scored == 0 and await scores(db) == {}


async def test_becoming_dormant_plans_the_lifecycle_message_once(db: Db, world: World, loyalty: Loyalty) -> None:
    consenting = await world.member(last_purchase_days=80, consent=True, language="zh_Hant")
    no_consent = await world.member(last_purchase_days=80)
    await world.member(last_purchase_days=1, consent=True)
    async with db.transaction() as tx:
        tx.add(Schedule(name="dormant-wake-up", kind="lifecycle_change", params={"to": "dormant"}))
        tx.add(Schedule(name="churned", kind="lifecycle_change", params={"to": "churned"}))
    planner = Planner(loyalty)
    await score_and_plan(planner, NOW)

    later = NOW + timedelta(days=10)
    run, planned = await score_and_plan(planner, later)
    await score_and_plan(planner, later)  # the same run again: nothing new

    assert run.moved_to == {"dormant": 2}
    by_name = {p.schedule: p for p in planned}
    assert by_name["dormant-wake-up"].planned == 1 and by_name["dormant-wake-up"].skipped == {"no_consent": 1}
    assert by_name["churned"].considered == 0
    async with db.read() as s:
        rows = list((await s.execute(sa.select(Outbox).order_by(Outbox.member_id))).scalars())
    assert [(r.member_id, r.status, r.period) for r in rows] == [
        (consenting, "pending", f"dormant:{later.date().isoformat()}"),
        (no_consent, "skipped", f"dormant:{later.date().isoformat()}")]
    assert "積分" in rows[0].text  # the shipped zh_Hant template


async def test_unchanged_scores_keep_when_they_were_computed_and_every_run_is_in_the_audit_log(db: Db,
                                                                                               world: World) -> None:
    from loyalbot.scheduler.rfm import last_scored

    steady = await world.member(last_purchase_days=100)
    moving = await world.member(last_purchase_days=80)
    assert await last_scored(db) is None
    await score_members(db, RULES, NOW)
    later = NOW + timedelta(days=10)
    await score_members(db, RULES, later, actor="cli")
    found = await scores(db)
    assert found[steady].computed_at == NOW  # still dormant, same figures: row left alone
    assert found[moving].computed_at == later and found[moving].lifecycle == "dormant"
    assert await last_scored(db) == later


async def test_the_nightly_job_scores_only_on_the_planner(db: Db, world: World, loyalty: Loyalty) -> None:
    from loyalbot.scheduler.service import SchedulerService

    await world.member()
    service = SchedulerService(db, loyalty, dispatch=False, clock=lambda: NOW)
    assert await service.score() is None and await scores(db) == {}  # not the lease holder: nothing
    service.leader = True
    run = await service.score()
    assert run is not None and run.scored == 1 and len(await scores(db)) == 1
