"""Lifecycle stages: where a member stands (new, active, repeat, at_risk, dormant, churned), as one SQL CASE, and the
lifecycle_change messages planned when a scoring run (scheduler/rfm.py) finds members who moved.

The thresholds are the programme's `[lifecycle]` section (loyalty/programme.py says what each means). Days count
from the last purchase, or from joining for a member who never bought; "at least N days" is inclusive, so a member
whose last purchase was exactly `dormant_days` ago is dormant.

A lifecycle_change schedule (params ``{"to": "dormant"}``, optionally ``"from"``) is event-driven: after a run,
`plan_stage_changes` plans it for every member who moved to that stage in that run, with period
``<to>:<run date>``, so re-planning the same run plans nothing new.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from loyalbot.loyalty.programme import Lifecycle
from loyalbot.scheduler.kinds import LIFECYCLE_STAGES, param
from loyalbot.scheduler.planner import Planner, PlanStats
from loyalbot.scheduler.segments import named_segments, segment_conditions
from loyalbot.scheduler.selection import MEMBER_COLUMNS, Target
from loyalbot.storage import as_utc
from loyalbot.storage.models import Member, MemberStageChange, Schedule

__all__ = ["LIFECYCLE_STAGES", "plan_stage_changes", "stage_case"]


def stage_case(rules: Lifecycle, now: datetime, *, joined_at: Any, last_purchase_at: Any, purchases: Any) -> Any:
    """The stage of a member as a SQL CASE over their join date, last purchase and purchases in the window."""
    def cut(days: int) -> datetime:
        return now - timedelta(days=days)

    since = sa.func.coalesce(last_purchase_at, joined_at)
    return sa.case(
        (joined_at > cut(rules.new_days), "new"),
        (since <= cut(rules.churned_days), "churned"),
        (since <= cut(rules.dormant_days), "dormant"),
        (sa.or_(last_purchase_at.is_(None), last_purchase_at <= cut(rules.at_risk_days)), "at_risk"),
        (purchases >= rules.repeat_purchases, "repeat"),
        else_="active")


async def plan_stage_changes(planner: Planner, at: datetime, *, now: datetime, batch_size: int = 2000
                             ) -> list[PlanStats]:
    """Plan every enabled lifecycle_change schedule for the members whose stage changed in the run at `at`."""
    at, now = as_utc(at), as_utc(now)
    async with planner.db.read() as s:
        schedules = list((await s.execute(sa.select(Schedule).where(
            Schedule.kind == "lifecycle_change", Schedule.enabled, Schedule.archived_at.is_(None))
            .order_by(Schedule.id))).scalars())
    results = []
    for schedule in schedules:
        stats = PlanStats(schedule=schedule.name, kind=schedule.kind)
        async for targets in _moved(planner, schedule, at, now, batch_size):
            await planner.plan_targets(schedule, targets, now=now, stats=stats)
        results.append(stats)
    return results


async def _moved(planner: Planner, schedule: Schedule, at: datetime, now: datetime, batch_size: int
                 ) -> AsyncIterator[list[Target]]:
    """Batches of the members of the schedule's segment who moved to its stage in the run at `at`."""
    to, source = param(schedule, "to"), param(schedule, "from")
    segment = schedule.segment or {}
    conditions = segment_conditions(segment, now, named=await named_segments(planner.db, segment))
    moved = [MemberStageChange.member_id == Member.id, MemberStageChange.at == at, MemberStageChange.to_stage == to]
    if source:
        moved.append(MemberStageChange.from_stage == source)
    period = f"{to}:{at.date().isoformat()}"
    last = 0
    while True:
        query = (sa.select(*MEMBER_COLUMNS).where(Member.id > last, sa.exists().where(*moved), *conditions)
                 .order_by(Member.id).limit(batch_size))
        async with planner.db.read() as s:
            rows = (await s.execute(query)).all()
        if not rows:
            return
        last = rows[-1].id
        yield [Target(row, period, now) for row in rows]
