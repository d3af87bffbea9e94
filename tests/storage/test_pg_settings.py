"""loyalbot's PostgreSQL connections hash a segment's member sets: a compound audience count over a large store
must not fall back to re-scanning a subquery for every member (it ran for hours at 1,000,000 members)."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from loyalbot.storage.db import PG_WORK_MEM


@pytest.mark.parametrize("store_url", ["postgres"], indirect=True)
async def test_reads_and_writes_run_with_the_work_mem_that_hashes_member_sets(db) -> None:
    async with db.read() as s:
        assert (await s.execute(sa.text("SHOW work_mem"))).scalar_one() == PG_WORK_MEM
    async with db.transaction() as s:
        assert (await s.execute(sa.text("SHOW work_mem"))).scalar_one() == PG_WORK_MEM
