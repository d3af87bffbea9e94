"""Counters that limit how often something may be tried: sign-ins, API keys, look-ups at the counter.

A `Throttle` counts attempts per (scope, key) in a fixed window and says how long to wait once the
limit is reached. The in-process one serves a single process; the SQL and Redis ones (same contract)
hold across replicas. `make_throttle` picks Redis when a Redis URL is configured, else the SQL store.

Keys are hashed before the SQL and Redis throttles store them: a client address is not kept at rest.
Besides `hit`, each implementation has `peek` (how long to wait, without counting an attempt), so a
caller can refuse a locked-out client *before* checking a password: otherwise a guess made while
locked out would still tell right from wrong.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from loyalbot.storage.db import Db
from loyalbot.storage.models import ThrottleCounter
from loyalbot.storage.rows import table_of


class Throttle(Protocol):
    """Limits attempts per (scope, key): `hit` counts one and returns 0.0, or the seconds to wait."""

    async def hit(self, scope: str, key: str, *, limit: int, per: float) -> float:
        """Count one attempt at `scope` by `key`; 0.0 when allowed, else seconds until the window resets."""
        ...


class MemoryThrottle:
    """A fixed-window counter in this process's memory."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._windows: dict[tuple[str, str], tuple[float, int]] = {}

    async def hit(self, scope: str, key: str, *, limit: int, per: float) -> float:
        now = self._clock()
        start, count = self._windows.get((scope, key), (now, 0))
        if now - start >= per:
            start, count = now, 0
        count += 1
        self._windows[(scope, key)] = (start, count)
        if len(self._windows) > 100_000:  # forget finished windows so guessing cannot grow memory
            self._windows = {k: v for k, v in self._windows.items() if now - v[0] < per}
        return 0.0 if count <= limit else max(0.001, per - (now - start))

    async def peek(self, scope: str, key: str, *, limit: int, per: float) -> float:
        """Seconds to wait before the next attempt would be allowed (0.0: now), counting nothing."""
        now = self._clock()
        start, count = self._windows.get((scope, key), (now, 0))
        if now - start >= per or count < limit:
            return 0.0
        return max(0.001, per - (now - start))


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


class SqlThrottle:
    """A fixed-window counter in the SQL store (table throttle_counters): one upsert per attempt.

    The upsert is atomic on SQLite and PostgreSQL, so replicas sharing the store share the limits.
    Finished windows are deleted now and then by whoever counts.
    """

    SWEEP_EVERY = 500

    def __init__(self, db: Db, clock: Callable[[], float] = time.time) -> None:
        self.db = db
        self._clock = clock
        self._hits = 0
        self._table = table_of(ThrottleCounter)

    async def hit(self, scope: str, key: str, *, limit: int, per: float) -> float:
        now = self._clock()
        t = self._table
        insert: postgresql.Insert | sqlite.Insert = postgresql.insert(t) if self.db.is_postgres else sqlite.insert(t)
        over = t.c.expires_at <= now  # the stored window has finished: start a new one
        upsert = insert.values(
            scope=scope[:32], key=_digest(key), window_start=now, count=1, expires_at=now + per
        ).on_conflict_do_update(
            index_elements=[t.c.scope, t.c.key],
            set_={
                "count": sa.case((over, 1), else_=t.c.count + 1),
                "window_start": sa.case((over, now), else_=t.c.window_start),
                "expires_at": sa.case((over, now + per), else_=t.c.expires_at),
            },
        ).returning(t.c.count, t.c.expires_at)
        async with self.db.connection() as conn:
            count, expires_at = (await conn.execute(upsert)).one()
            self._hits += 1
            if self._hits % self.SWEEP_EVERY == 0:
                await conn.execute(sa.delete(t).where(t.c.expires_at <= now))
        return 0.0 if int(count) <= limit else max(0.001, float(expires_at) - now)

    async def peek(self, scope: str, key: str, *, limit: int, per: float) -> float:
        now = self._clock()
        t = self._table
        async with self.db.read() as s:
            row = (await s.execute(sa.select(ThrottleCounter.count, ThrottleCounter.expires_at)
                                   .where(t.c.scope == scope[:32], t.c.key == _digest(key)))).first()
        if row is None:
            return 0.0
        count, expires_at = row  # by position: a Row's `count` is also tuple.count to a type checker
        if expires_at <= now or count < limit:
            return 0.0
        return max(0.001, expires_at - now)


# INCR and PEXPIRE in one atomic step: a key never lives on without its expiry.
_HIT = """
local n = redis.call('INCR', KEYS[1])
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  ttl = tonumber(ARGV[1])
end
return {n, ttl}
"""


class RedisThrottle:
    """A fixed-window counter in Redis (INCR + PEXPIRE in one Lua script), shared by every replica."""

    def __init__(self, url: str, *, prefix: str = "loyalbot:throttle:") -> None:
        import redis.asyncio as redis

        self.redis = redis.Redis.from_url(url)
        self.prefix = prefix
        self._script = self.redis.register_script(_HIT)

    def _key(self, scope: str, key: str) -> str:
        return f"{self.prefix}{scope}:{_digest(key)[:32]}"

    async def hit(self, scope: str, key: str, *, limit: int, per: float) -> float:
        count, ttl_ms = await self._script(keys=[self._key(scope, key)], args=[max(1, int(per * 1000))])
        return 0.0 if int(count) <= limit else max(0.001, int(ttl_ms) / 1000)

    async def peek(self, scope: str, key: str, *, limit: int, per: float) -> float:
        name = self._key(scope, key)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.get(name)
            pipe.pttl(name)
            count, ttl_ms = await pipe.execute()
        if count is None or int(count) < limit or int(ttl_ms) <= 0:
            return 0.0
        return max(0.001, int(ttl_ms) / 1000)

    async def close(self) -> None:
        await self.redis.aclose()


def make_throttle(db: Db | None, redis_url: str | None = None) -> Throttle:
    """The throttle every replica shares: Redis when `redis_url` is set, else the SQL store, else memory."""
    if redis_url:
        return RedisThrottle(redis_url)
    if db is not None:
        return SqlThrottle(db)
    return MemoryThrottle()


async def wait_before(throttle: Throttle, scope: str, key: str, *, limit: int, per: float) -> float:
    """`peek` when the throttle has it (all of ours do), else 0.0: how long `key` is locked out of `scope`."""
    peek = getattr(throttle, "peek", None)
    return await peek(scope, key, limit=limit, per=per) if peek is not None else 0.0


@dataclass(frozen=True)
class FailureLimit:
    """At most `limit` failures (wrong passwords, keys, secrets) per client in `per` seconds, then a lock-out.

    Call `locked(client)` before checking the secret (refuse while it is > 0), and `failed(client)` after
    a wrong one; a right one counts nothing.
    """

    throttle: Throttle
    scope: str
    limit: int = 10
    per: float = 300.0

    async def locked(self, client: str) -> float:
        return await wait_before(self.throttle, self.scope, client, limit=self.limit, per=self.per)

    async def failed(self, client: str) -> float:
        return await self.throttle.hit(self.scope, client, limit=self.limit, per=self.per)


__all__ = ["FailureLimit", "MemoryThrottle", "RedisThrottle", "SqlThrottle", "Throttle", "make_throttle",
           "wait_before"]
