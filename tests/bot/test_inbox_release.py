"""A drained worker gives its claims back: another worker takes them at once (not after the lease), an
update given back unstarted does not count as an attempt, and nobody else's claims are touched."""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa

from loyalbot.bot.runtime import received
from loyalbot.storage.inbox import MemoryInbox, SqlInbox
from loyalbot.storage.models import InboxUpdate
from tests.bot.test_inbox import message


async def test_released_claims_are_taken_by_another_worker_at_once_and_untouched_ones_cost_no_attempt(db) -> None:
    hour = timedelta(hours=1)
    one = SqlInbox(db, bot_id=1, worker="replica-1", lease=hour)
    two = SqlInbox(db, bot_id=1, worker="replica-2", lease=hour)
    three = SqlInbox(db, bot_id=1, worker="replica-3", lease=hour)
    await one.record(received([message(1, 10, "a"), message(2, 11, "b"), message(3, 12, "c")]))
    assert [c.update_id for c in await one.claim(limit=2)] == [1, 2]
    assert [c.update_id for c in await three.claim(limit=5)] == [3]
    assert await two.claim(limit=5) == [], "held under a lease of an hour"
    assert await one.release(untouched=[2]) == 2
    taken = await two.claim(limit=5)
    assert [(c.update_id, c.attempts) for c in taken] == [(1, 2), (2, 1)], "update 2 was never started"
    async with db.read() as s:
        holder = (await s.execute(sa.select(InboxUpdate.claimed_by).where(InboxUpdate.update_id == 3))).scalar_one()
    assert holder == "replica-3", "another worker's claim stays"


async def test_the_memory_inbox_gives_claims_back_too() -> None:
    inbox = MemoryInbox()
    await inbox.record(received([message(1, 10, "a")]))
    assert [c.update_id for c in await inbox.claim(limit=5)] == [1]
    assert await inbox.claim(limit=5) == []
    assert await inbox.release(untouched=[1]) == 1
    assert [(c.update_id, c.attempts) for c in await inbox.claim(limit=5)] == [(1, 1)]
