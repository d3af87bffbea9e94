"""Replicas starting together on an empty store each mirror the programme: none fails, nothing is doubled."""

from __future__ import annotations

import asyncio

import sqlalchemy as sa

from loyalbot.loyalty import Loyalty, load_programme
from loyalbot.storage import Db
from loyalbot.storage.models import Reward


async def test_four_processes_mirroring_the_programme_at_once_all_start_with_one_row_per_reward(store_url) -> None:
    stores = [Db(store_url) for _ in range(4)]  # one engine each, as separate processes have
    try:
        programme = load_programme()
        await asyncio.gather(*(Loyalty(db, programme).sync_programme() for db in stores))
        async with stores[0].read() as s:
            codes = (await s.execute(sa.select(Reward.code))).scalars().all()
    finally:
        for db in stores:
            await db.dispose()
    assert sorted(codes) == sorted(r.code for r in programme.rewards)
