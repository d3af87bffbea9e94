"""The durable inbox: Telegram updates recorded before they are confirmed, then handled from the record.

An update is `record`ed (one transaction per batch, keyed by (bot, update_id)) before the runtime lets
Telegram forget it: in polling before the next getUpdates moves the offset past it, with a webhook
before the 200. Workers `claim` rows with a lease and mark each `done` once handled. Only the oldest
unfinished update of a lane (one member) can be claimed, so a member's updates keep their order also
when several processes share the inbox; on PostgreSQL claims use FOR UPDATE SKIP LOCKED, so two
processes never take the same row. After a crash a process `recover`s its own claims at once; another
process's claims become free when their lease runs out. A redelivered update (same id, same
fingerprint) is recognised and changes nothing. Done rows lose their payload at once (it holds what
the member wrote) and are pruned after `keep`.

`MemoryInbox` has the same contract in this process's memory, for a bot without a store (the echo
floor of the benchmark, runtime tests).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from loyalbot.storage.clock import utcnow
from loyalbot.storage.db import Db
from loyalbot.storage.models import InboxUpdate, UpdateEffect
from loyalbot.storage.rows import table_of

log = logging.getLogger(__name__)

TABLE = table_of(InboxUpdate)
EFFECTS = table_of(UpdateEffect)
MAX_ATTEMPTS = 5  # an update that took the process down this often is set aside, not tried forever
EFFECT_KEY_LENGTH = 96  # update_effects.key's column


@dataclass(frozen=True)
class Received:
    """An update as it arrived: its id, whose lane it joins, what it is (fingerprint), the raw JSON."""

    update_id: int
    lane: str
    fingerprint: str
    payload: dict[str, Any]


@dataclass(frozen=True)
class Claimed:
    """An update this process now holds (with a lease) and must handle, then mark done."""

    update_id: int
    lane: str
    fingerprint: str
    payload: dict[str, Any]
    attempts: int
    received_at: datetime | None = None  # when it was recorded (the start of its handling latency)


class Inbox(Protocol):
    """Where updates wait between being received and being handled."""

    async def record(self, updates: Sequence[Received]) -> list[int]:
        """Store the updates; returns the ids that were new (a redelivery is not). Raises if not stored."""
        ...

    async def recover(self) -> int:
        """Free what this worker had claimed before a crash; returns how many rows."""
        ...

    async def claim(self, *, limit: int, skip: Iterable[int] = (), finished: Iterable[int] = ()) -> list[Claimed]:
        """The oldest unfinished update of up to `limit` lanes that nobody holds, now held by this worker.
        First, in the same transaction, the updates `finished` (handled since the last claim) are marked
        done, so their lanes' next updates can be claimed at once and a busy worker pays one transaction
        a round instead of one per update."""
        ...

    async def extend(self, update_ids: Iterable[int]) -> None:
        """Renew the lease on updates still being handled, of those this worker still holds."""
        ...

    async def postpone(self, update_ids: Iterable[int], *, after: timedelta) -> None:
        """Give up this worker's claim on updates that could not be answered now (Telegram kept failing the
        replies): they stay unfinished, and nobody claims them again before `after`. The claim still counts
        as an attempt, so an update that can never be answered is set aside after `max_attempts`."""
        ...

    async def release(self, untouched: Iterable[int] = ()) -> int:
        """Give up every claim this worker still holds (a drain at shutdown), so another process takes
        those updates at once instead of after the lease; `untouched` were claimed but never started, so
        their claim does not count as an attempt. Returns how many rows were released."""
        ...

    async def done(self, update_id: int) -> None:
        """The update is handled: drop its payload, keep its key for a while to recognise redeliveries."""
        ...

    async def unfinished(self) -> int:
        """How many updates are recorded and not yet done."""
        ...

    async def prune(self) -> int:
        """Forget handled updates older than the inbox's `keep`; returns how many rows went."""
        ...


class SqlInbox:
    """The inbox in the SQL store (`inbox_updates`), shared by every process of one bot."""

    def __init__(self, db: Db, *, bot_id: int, worker: str, lease: timedelta = timedelta(seconds=30),
                 keep: timedelta = timedelta(days=2), clock: Callable[[], datetime] = utcnow,
                 max_attempts: int = MAX_ATTEMPTS) -> None:
        self.db = db
        self.bot_id = bot_id
        self.worker = worker[:64]
        self.lease = lease
        self.keep = keep
        self.clock = clock
        self.max_attempts = max_attempts

    async def record(self, updates: Sequence[Received]) -> list[int]:
        if not updates:
            return []
        now = self.clock()
        unique = {u.update_id: u for u in updates}  # a batch never repeats an id, but be sure
        rows = [dict(bot_id=self.bot_id, update_id=u.update_id, lane=u.lane[:64], fingerprint=u.fingerprint[:32],
                     payload=u.payload, status="pending", attempts=0, received_at=now)
                for u in unique.values()]
        insert = pg_insert(TABLE) if self.db.is_postgres else sqlite_insert(TABLE)
        stmt = insert.values(rows).on_conflict_do_nothing().returning(TABLE.c.update_id)
        async with self.db.connection() as conn:
            new = set((await conn.execute(stmt)).scalars())
            seen = [u for u in unique.values() if u.update_id not in new]
            if seen:
                new |= await self._reused(conn, seen, now)
        return sorted(new)

    async def _reused(self, conn: Any, seen: list[Received], now: datetime) -> set[int]:
        """Ids already in the inbox: a redelivery (same fingerprint) is ignored; a reused id is a new update."""
        known = dict((await conn.execute(
            sa.select(TABLE.c.update_id, TABLE.c.fingerprint).where(
                TABLE.c.bot_id == self.bot_id, TABLE.c.update_id.in_([u.update_id for u in seen]),
                TABLE.c.status != "pending"))).all())
        fresh = set()
        for u in seen:
            if u.update_id in known and known[u.update_id] != u.fingerprint:
                # Telegram numbers updates afresh after a week without any (and a local server after a
                # restart): a different update under a handled id. It replaces the old key row.
                await conn.execute(TABLE.update().where(
                    TABLE.c.bot_id == self.bot_id, TABLE.c.update_id == u.update_id).values(
                    lane=u.lane[:64], fingerprint=u.fingerprint[:32], payload=u.payload, status="pending",
                    attempts=0, claimed_by=None, lease_until=None, received_at=now, done_at=None))
                fresh.add(u.update_id)
        return fresh

    async def recover(self) -> int:
        async with self.db.connection() as conn:
            result = await conn.execute(TABLE.update().where(
                TABLE.c.bot_id == self.bot_id, TABLE.c.status == "pending", TABLE.c.claimed_by == self.worker
            ).values(claimed_by=None, lease_until=None))
        return int(result.rowcount or 0)

    async def claim(self, *, limit: int, skip: Iterable[int] = (), finished: Iterable[int] = ()) -> list[Claimed]:
        done_ids = list(finished)
        if limit <= 0 and not done_ids:
            return []
        now = self.clock()
        cand, earlier = TABLE.alias("cand"), TABLE.alias("earlier")
        head = sa.select(cand.c.update_id).where(
            cand.c.bot_id == self.bot_id, cand.c.status == "pending",
            sa.or_(cand.c.lease_until.is_(None), cand.c.lease_until < now),
            ~sa.exists().where(earlier.c.bot_id == cand.c.bot_id, earlier.c.lane == cand.c.lane,
                               earlier.c.status == "pending", earlier.c.update_id < cand.c.update_id),
        ).order_by(cand.c.update_id).limit(limit)
        skipped = list(skip)
        if skipped:
            head = head.where(cand.c.update_id.not_in(skipped))
        if self.db.is_postgres:
            head = head.with_for_update(of=cand, skip_locked=True)
        # One statement takes the heads (on PostgreSQL skipping rows another worker is taking right now).
        # The heads are a CTE, not an IN (subquery): PostgreSQL may run such a subquery again for each row
        # it updates, and with SKIP LOCKED each run finds new rows (it took all six of six with LIMIT 3);
        # a CTE with a locking clause is run once.
        heads = head.cte("heads")
        take = TABLE.update().where(TABLE.c.bot_id == self.bot_id,
                                    TABLE.c.update_id.in_(sa.select(heads.c.update_id))).values(claimed_by=self.worker, lease_until=now + self.lease,
                                             attempts=TABLE.c.attempts + 1).returning(
            TABLE.c.update_id, TABLE.c.lane, TABLE.c.fingerprint, TABLE.c.payload, TABLE.c.attempts,
            TABLE.c.received_at)
        async with self.db.connection() as conn:
            if done_ids:
                await conn.execute(self._mark_done(done_ids, now))
            if limit <= 0:
                return []
            rows = (await conn.execute(take)).all()
            if not rows:
                return []
            given_up = [r.update_id for r in rows if r.attempts > self.max_attempts]
            if given_up:
                log.error("%d update(s) set aside after %d attempts each", len(given_up), self.max_attempts)
                await conn.execute(TABLE.update().where(
                    TABLE.c.bot_id == self.bot_id, TABLE.c.update_id.in_(given_up)).values(
                    status="failed", payload=None, done_at=now, claimed_by=None, lease_until=None))
        claimed = [Claimed(r.update_id, r.lane, r.fingerprint, dict(r.payload or {}), r.attempts, r.received_at)
                   for r in rows if r.update_id not in given_up]
        if given_up and not claimed:
            return await self.claim(limit=limit, skip=skip)  # the lanes behind them may go on now
        return sorted(claimed, key=lambda c: c.update_id)

    def _mark_done(self, update_ids: list[int], now: datetime) -> Any:
        return TABLE.update().where(TABLE.c.bot_id == self.bot_id, TABLE.c.update_id.in_(update_ids)).values(
            status="done", payload=None, done_at=now, claimed_by=None, lease_until=None)

    async def extend(self, update_ids: Iterable[int]) -> None:
        ids = list(update_ids)
        if not ids:
            return
        async with self.db.connection() as conn:
            # Only rows this worker still holds: one whose lease lapsed may have been taken by another worker
            # meanwhile, and renewing it here would hand it back to this one while the other handles it.
            await conn.execute(TABLE.update().where(
                TABLE.c.bot_id == self.bot_id, TABLE.c.update_id.in_(ids), TABLE.c.status == "pending",
                TABLE.c.claimed_by == self.worker).values(lease_until=self.clock() + self.lease))

    async def postpone(self, update_ids: Iterable[int], *, after: timedelta) -> None:
        ids = list(update_ids)
        if not ids:
            return
        async with self.db.connection() as conn:
            # Unclaimed with a lease in the future: the claim's "lease ended" test keeps everyone off until then.
            await conn.execute(TABLE.update().where(
                TABLE.c.bot_id == self.bot_id, TABLE.c.update_id.in_(ids), TABLE.c.status == "pending",
                TABLE.c.claimed_by == self.worker).values(claimed_by=None, lease_until=self.clock() + after))

    async def release(self, untouched: Iterable[int] = ()) -> int:
        never_started = list(untouched)
        mine = (TABLE.c.bot_id == self.bot_id, TABLE.c.status == "pending", TABLE.c.claimed_by == self.worker)
        async with self.db.connection() as conn:
            if never_started:
                await conn.execute(TABLE.update().where(*mine, TABLE.c.update_id.in_(never_started),
                                                        TABLE.c.attempts > 0).values(attempts=TABLE.c.attempts - 1))
            result = await conn.execute(TABLE.update().where(*mine).values(claimed_by=None, lease_until=None))
        return int(result.rowcount or 0)

    async def done(self, update_id: int) -> None:
        async with self.db.connection() as conn:
            await conn.execute(self._mark_done([update_id], self.clock()))

    async def unfinished(self) -> int:
        async with self.db.read() as s:
            return int((await s.execute(sa.select(sa.func.count()).select_from(TABLE).where(
                TABLE.c.bot_id == self.bot_id, TABLE.c.status == "pending"))).scalar_one())

    async def prune(self) -> int:
        before = self.clock() - self.keep
        async with self.db.connection() as conn:
            gone = await conn.execute(TABLE.delete().where(
                TABLE.c.bot_id == self.bot_id, TABLE.c.status != "pending", TABLE.c.done_at < before))
            await conn.execute(EFFECTS.delete().where(EFFECTS.c.created_at < before))
        return int(gone.rowcount or 0)


class MemoryInbox:
    """The inbox contract in this process's memory: ordered lanes and de-duplication, no durability."""

    def __init__(self, *, keep: int = 100_000) -> None:
        self._rows: dict[int, dict[str, Any]] = {}
        self._done: dict[int, str] = {}  # update id -> fingerprint, the newest `keep`
        self._keep = keep
        self._lock = asyncio.Lock()

    async def record(self, updates: Sequence[Received]) -> list[int]:
        new = []
        for u in updates:
            if u.update_id in self._rows or self._done.get(u.update_id) == u.fingerprint:
                continue
            self._done.pop(u.update_id, None)
            self._rows[u.update_id] = dict(update=u, held=False, attempts=0, received_at=utcnow(), not_before=None)
            new.append(u.update_id)
        return sorted(new)

    async def recover(self) -> int:
        return 0

    async def claim(self, *, limit: int, skip: Iterable[int] = (), finished: Iterable[int] = ()) -> list[Claimed]:
        for update_id in finished:
            await self.done(update_id)
        if limit <= 0:
            return []
        skipped = set(skip)
        now = utcnow()
        busy: set[str] = set()
        claimed: list[Claimed] = []
        for update_id in sorted(self._rows):
            row = self._rows[update_id]
            u: Received = row["update"]
            if u.lane in busy:
                continue
            busy.add(u.lane)  # later updates of the lane wait for this one
            if row["held"] or update_id in skipped or (row["not_before"] is not None and row["not_before"] > now):
                continue
            row["held"] = True
            row["attempts"] += 1
            claimed.append(Claimed(u.update_id, u.lane, u.fingerprint, u.payload, row["attempts"], row["received_at"]))
            if len(claimed) >= limit:
                break
        return claimed

    async def extend(self, update_ids: Iterable[int]) -> None:
        return None

    async def postpone(self, update_ids: Iterable[int], *, after: timedelta) -> None:
        until = utcnow() + after
        for update_id in update_ids:
            if (row := self._rows.get(update_id)) is not None:
                row["held"], row["not_before"] = False, until

    async def release(self, untouched: Iterable[int] = ()) -> int:
        never_started = set(untouched)
        released = 0
        for update_id, row in self._rows.items():
            if row["held"]:
                row["held"] = False
                row["attempts"] -= 1 if update_id in never_started else 0
                released += 1
        return released

    async def done(self, update_id: int) -> None:
        row = self._rows.pop(update_id, None)
        if row is not None:
            self._done[update_id] = row["update"].fingerprint
            while len(self._done) > self._keep:
                self._done.pop(next(iter(self._done)))

    async def unfinished(self) -> int:
        return len(self._rows)

    async def prune(self) -> int:
        return 0


def effect_key(key: str) -> str:
    """`key` as update_effects stores it: unchanged when it fits the column, else its head and a hash of the
    whole. Every writer and reader of the table goes through this one function, so a key that is remembered
    is also found (a plain cut would make two long keys with one head collide, and a look-up by the full
    key miss the row)."""
    if len(key) <= EFFECT_KEY_LENGTH:
        return key
    digest = hashlib.blake2b(key.encode(), digest_size=16).hexdigest()
    return f"{key[:EFFECT_KEY_LENGTH - len(digest) - 1]}#{digest}"


async def effect_of(conn: Any, key: str) -> dict[str, Any] | None:
    """What the update `key` already wrote (inside the caller's transaction), or None."""
    row = (await conn.execute(sa.select(EFFECTS.c.result).where(EFFECTS.c.key == effect_key(key)))).first()
    return dict(row.result) if row is not None else None


async def remember_effect(conn: Any, key: str, result: dict[str, Any], *, now: datetime | None = None) -> None:
    """Record, in the same transaction as the write itself, what update `key` wrote."""
    await conn.execute(EFFECTS.insert().values(key=effect_key(key), result=result, created_at=now or utcnow()))


__all__ = ["Claimed", "Inbox", "MemoryInbox", "Received", "SqlInbox", "effect_key", "effect_of",
           "remember_effect"]
