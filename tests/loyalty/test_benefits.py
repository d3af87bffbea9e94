"""Tier benefits on both stores: the support queue serves higher tiers first, then the longest waiting."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from loyalbot.loyalty.handoff import HandoffStore
from loyalbot.storage.models import Member

NOW = datetime(2026, 12, 8, 9, tzinfo=UTC)


async def test_the_support_queue_serves_higher_tiers_first_then_the_longest_waiting(loyalty, db):
    store = HandoffStore(db)
    people = {}
    for n, (name, tier, waited) in enumerate([("Ann", "green", 30), ("Bob", "gold", 5), ("Cai", "silver", 20),
                                              ("Dee", "green", 40), ("Eve", "gold", 10)], 1):
        member = await loyalty.register_member(telegram_id=n, first_name=name, terms_accepted=True,
                                               now=NOW - timedelta(days=1))
        async with db.transaction() as tx:
            await tx.execute(sa.update(Member).where(Member.id == member.id).values(tier=tier))
        await store.request(member.id, now=NOW - timedelta(minutes=waited))
        people[name] = member
    taken = await store.request(people["Dee"].id, now=NOW)  # already waiting: unchanged, keeps its place
    assert taken is not None
    queue = await loyalty.support_queue()
    assert [q.first_name for q in queue] == ["Eve", "Bob", "Cai", "Dee", "Ann"]
    assert [q.rank for q in queue] == [2, 2, 1, 0, 0]
