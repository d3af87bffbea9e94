"""A schedule whose segment has a purchase window plans exactly its members, batch after batch (the audience is
worked out once per run), and the window's edge is the same as in a count."""

from __future__ import annotations

import sqlalchemy as sa

from loyalbot.loyalty.service import Loyalty
from loyalbot.scheduler.planner import Planner
from loyalbot.scheduler.saved_segments import save_segment
from loyalbot.scheduler.segments import segment_size
from loyalbot.storage import Db
from loyalbot.storage.models import Outbox, Schedule
from tests.campaigns.conftest import NOW, World


async def test_a_broadcast_to_big_spenders_reaches_them_over_several_batches(db: Db, world: World,
                                                                            loyalty: Loyalty) -> None:
    spenders = []
    for _ in range(5):
        member = await world.member(consent=True)
        await world.purchase(member, "100", days_ago=29.9)
        spenders.append(member)
    edge = await world.member(consent=True)
    await world.purchase(edge, "100", days_ago=30)  # just outside the window
    for _ in range(3):
        await world.member(consent=True)
    await save_segment(db, "big", {"spend": {"days": 30, "min": 100}}, actor="test", now=NOW)
    segment = {"segment": "big", "marketing_consent": True}
    async with db.transaction() as tx:
        schedule = Schedule(name="thanks", kind="broadcast", daily_time="10:00", segment=segment,
                            templates={"en": "Thank you, {{ name }}!"})
        tx.add(schedule)
        await tx.flush()
    stats = await Planner(loyalty, batch_size=2).run(schedule, now=NOW)

    async with db.read() as s:
        planned = set((await s.execute(sa.select(Outbox.member_id).where(Outbox.status == "pending"))).scalars())
    assert planned == set(spenders) and stats.planned == 5
    assert await segment_size(db, segment, NOW) == 5
