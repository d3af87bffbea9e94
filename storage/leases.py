"""Leases: one replica at a time does a job (the planner), through a row every replica can see.

`try_take` is one atomic upsert on SQLite and PostgreSQL alike: it writes this holder into the row
when the row is missing, already ours, or expired, and returns who holds it afterwards. The holder
renews it (the same call) well before it expires; a holder that dies (SIGKILL, a lost machine) stops
renewing, and the first replica to ask after `expires_at` takes it over. Times are seconds since the
epoch from the replica's own clock, so replicas need clocks that agree to well within the lease
(NTP does).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from loyalbot.storage.db import Db
from loyalbot.storage.models import Lease
from loyalbot.storage.rows import table_of

PLANNER = "planner"


@dataclass(frozen=True)
class Holding:
    """Who holds a lease and until when (seconds since the epoch)."""

    holder: str
    acquired_at: float
    expires_at: float


class LeaseStore:
    """Take, renew, release and read leases in the `planner_leases` table."""

    def __init__(self, db: Db, *, clock: Callable[[], float] = time.time) -> None:
        self.db = db
        self.clock = clock
        self._table = table_of(Lease)

    async def try_take(self, name: str, holder: str, ttl: float) -> Holding:
        """Take or renew `name` for `holder` for `ttl` seconds when it is free, ours or expired; return who
        holds it now (compare `.holder` with yours)."""
        now = self.clock()
        t = self._table
        insert: postgresql.Insert | sqlite.Insert = postgresql.insert(t) if self.db.is_postgres else sqlite.insert(t)
        mine = t.c.holder == holder
        upsert = insert.values(name=name, holder=holder, acquired_at=now, expires_at=now + ttl).on_conflict_do_update(
            index_elements=[t.c.name],
            set_={"holder": holder, "expires_at": now + ttl,
                  # a renewal keeps the time it was first taken; a takeover starts it again
                  "acquired_at": sa.case((mine, t.c.acquired_at), else_=now)},
            where=sa.or_(mine, t.c.expires_at <= now),
        )
        async with self.db.connection() as conn:
            await conn.execute(upsert)
            row = (await conn.execute(sa.select(t.c.holder, t.c.acquired_at, t.c.expires_at)
                                      .where(t.c.name == name))).one()
        return Holding(str(row.holder), float(row.acquired_at), float(row.expires_at))

    async def release(self, name: str, holder: str) -> bool:
        """Give the lease up at once (a clean stop), so another replica need not wait for it to expire."""
        t = self._table
        async with self.db.connection() as conn:
            result = await conn.execute(sa.update(t).where(t.c.name == name, t.c.holder == holder)
                                        .values(expires_at=self.clock()))
        return bool(result.rowcount)

    async def holding(self, name: str) -> Holding | None:
        """Who holds `name` (an expired holding included: compare `expires_at` with the time), or None."""
        t = self._table
        async with self.db.read() as s:
            row = (await s.execute(sa.select(t.c.holder, t.c.acquired_at, t.c.expires_at)
                                   .where(t.c.name == name))).one_or_none()
        return None if row is None else Holding(str(row.holder), float(row.acquired_at), float(row.expires_at))
