"""Telegram's send limits, shared by every process that sends for one bot: Redis, PostgreSQL, or memory.

Two kinds of limit are kept, each as one number per key:

* **Rates** (the bot's global rate, a group's 20 a minute): a GCRA (generic cell rate algorithm) bucket.
  The number stored is the bucket's "theoretical arrival time" `at`; a send may go at `at - tolerance`
  or later, and moves `at` on by one interval. `reserve(key, want, ...)` grants up to `want` slots in
  *one* atomic call, each with the moment (seconds from now) it may go, but none further ahead than
  `horizon`: a dispatcher asks for a group's worth of slots at once and waits for each, so three
  dispatchers at 1,000/s make a few dozen calls a second, not 1,000 each, and their slots interleave
  without ever exceeding the rate.
* **Chat holds** (one message a second per chat, spaced from when the previous one was *answered*):
  `hold(keys, lease)` takes each free chat for one send (the stored number becomes now + `lease`), and
  says how long the others must wait; `release([(key, spacing)])` after Telegram answered sets the next
  allowed moment to now + `spacing` (one second, or a 429's retry_after). A chat is therefore held while
  its message is on the way, and the next one waits a full second from the answer, whichever process
  sends it. A process that dies holding a chat blocks it only until its lease ends.

`pause(key, seconds)` holds a rate key (the whole bot, a group) or a chat for a 429's retry_after, for
every process. Times are the backend's own clock (Redis `TIME`, PostgreSQL `clock_timestamp()`), so
replicas on machines whose clocks differ agree; every reply is "seconds from now".

`make_send_limits` picks Redis when a Redis URL is configured, else PostgreSQL's `rate_limits` table, else
(SQLite: one process) this process's memory. When Redis is configured and cannot be reached, calls raise
`LimitsUnavailable`; the dispatcher then sends nothing until it answers again (it never sends unlimited).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import sqlalchemy as sa

from loyalbot.storage.db import Db

# A key whose moment passed this long ago holds nothing any more: Redis lets it expire, the SQL store
# deletes it now and then.
IDLE_TTL = 600.0


class LimitsUnavailable(Exception):
    """The shared limits' backend (Redis, the database) did not answer: nothing may be sent meanwhile."""


@dataclass(frozen=True)
class Grant:
    """Slots granted by `reserve`: `delays[i]` is when slot i may be used, in seconds from the call's answer.

    No slots (`delays` empty): `wait` says how long before asking again makes sense."""

    delays: tuple[float, ...] = ()
    wait: float = 0.0
    now: float = 0.0  # the backend's clock when it granted (for tests: slot i went at now + delays[i])


@dataclass
class LimitStats:
    """What one process's limits did (the operable branch turns these into metrics)."""

    calls: int = 0
    slots_granted: int = 0
    holds_granted: int = 0
    holds_refused: int = 0
    pauses: dict[str, int] = field(default_factory=dict)
    unavailable: int = 0


class SendLimits(Protocol):
    """The limits every sender for one bot shares (see the module doc)."""

    stats: LimitStats

    async def reserve(self, key: str, want: int, *, interval: float, tolerance: float = 0.0,
                      horizon: float = 0.1) -> Grant:
        """Up to `want` slots of the rate key `key` (one send every `interval` seconds, `tolerance` of burst)."""
        ...

    async def hold(self, keys: Sequence[str], *, lease: float) -> dict[str, float]:
        """Take each free chat key for one send (0.0) or say how many seconds it is still taken."""
        ...

    async def release(self, spacings: Sequence[tuple[str, float]]) -> None:
        """Each chat key may be taken again `spacing` seconds from now (its message was answered)."""
        ...

    async def pause(self, key: str, seconds: float, *, tolerance: float = 0.0) -> None:
        """Nothing under `key` before `seconds` from now (a 429), for every process."""
        ...

    async def close(self) -> None:
        ...


def _gcra(now: float, at: float, want: int, interval: float, tolerance: float, horizon: float
          ) -> tuple[float, list[float], float]:
    """The one reservation rule (Redis's Lua script says the same): new `at`, slot delays, wait if none."""
    delays: list[float] = []
    while len(delays) < want:
        slot = max(now, at - tolerance)
        if slot > now + horizon:
            break
        delays.append(slot - now)
        at = max(at, slot) + interval
    wait = 0.0 if delays else max(0.0, at - tolerance - horizon - now)
    return at, delays, wait


class MemoryLimits:
    """The limits in this process's memory: for one process (SQLite, tests)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.stats = LimitStats()
        self._at: dict[str, float] = {}

    async def reserve(self, key: str, want: int, *, interval: float, tolerance: float = 0.0,
                      horizon: float = 0.1) -> Grant:
        now = self.clock()
        self.stats.calls += 1
        at, delays, wait = _gcra(now, self._at.get(key, 0.0), want, interval, tolerance, horizon)
        self._at[key] = at
        self.stats.slots_granted += len(delays)
        return Grant(tuple(delays), wait, now)

    async def hold(self, keys: Sequence[str], *, lease: float) -> dict[str, float]:
        keys = list(dict.fromkeys(keys))  # a key named twice is one hold
        now = self.clock()
        self.stats.calls += 1
        answer: dict[str, float] = {}
        for key in keys:
            at = self._at.get(key, 0.0)
            if at <= now:
                self._at[key] = now + lease
                answer[key] = 0.0
            else:
                answer[key] = at - now
        self._count_holds(answer)
        self._prune(now)
        return answer

    async def release(self, spacings: Sequence[tuple[str, float]]) -> None:
        now = self.clock()
        self.stats.calls += 1
        for key, spacing in spacings:
            self._at[key] = now + spacing

    async def pause(self, key: str, seconds: float, *, tolerance: float = 0.0) -> None:
        now = self.clock()
        self._count_pause(key)
        self._at[key] = max(self._at.get(key, 0.0), now + seconds + tolerance)

    async def close(self) -> None:
        return None

    def _count_holds(self, answer: dict[str, float]) -> None:
        granted = sum(1 for wait in answer.values() if wait == 0.0)
        self.stats.holds_granted += granted
        self.stats.holds_refused += len(answer) - granted

    def _count_pause(self, key: str) -> None:
        kind = key.split(":", 1)[0]
        self.stats.pauses[kind] = self.stats.pauses.get(kind, 0) + 1

    def _prune(self, now: float) -> None:
        if len(self._at) > 100_000:
            self._at = {k: at for k, at in self._at.items() if at > now - IDLE_TTL}


# KEYS[1] the rate key; ARGV want, interval, tolerance, horizon, idle ttl (ms). Returns the slots' delays
# as strings (Redis turns Lua numbers into integers), after the server's now and the wait (0 unless none).
_RESERVE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local at = tonumber(redis.call('GET', KEYS[1]) or '0')
local want, iv, tol, hor = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local out = {}
while #out < want do
  local slot = math.max(now, at - tol)
  if slot > now + hor then break end
  out[#out + 1] = string.format('%.6f', slot - now)
  at = math.max(at, slot) + iv
end
redis.call('SET', KEYS[1], string.format('%.6f', at), 'PX', math.ceil((math.max(at - now, 0) * 1000)) + tonumber(ARGV[5]))
local wait = 0
if #out == 0 then wait = math.max(0, at - tol - hor - now) end
table.insert(out, 1, string.format('%.6f', wait))
table.insert(out, 1, string.format('%.6f', now))
return out
"""

# KEYS the chat keys; ARGV[1] the lease, ARGV[2] idle ttl (ms). Returns per key '0' (taken) or the wait.
_HOLD = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local lease = tonumber(ARGV[1])
local out = {}
for i, key in ipairs(KEYS) do
  local at = tonumber(redis.call('GET', key) or '0')
  if at <= now then
    redis.call('SET', key, string.format('%.6f', now + lease), 'PX', math.ceil(lease * 1000) + tonumber(ARGV[2]))
    out[i] = '0'
  else
    out[i] = string.format('%.6f', at - now)
  end
end
return out
"""

# KEYS the chat keys; ARGV their spacings, then the idle ttl (ms) last.
_RELEASE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local ttl = tonumber(ARGV[#ARGV])
for i, key in ipairs(KEYS) do
  local spacing = tonumber(ARGV[i])
  redis.call('SET', key, string.format('%.6f', now + spacing), 'PX', math.ceil(spacing * 1000) + ttl)
end
return #KEYS
"""

# KEYS[1]; ARGV seconds (with the key's tolerance added), idle ttl (ms). Only ever moves the moment later.
_PAUSE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local until_ = now + tonumber(ARGV[1])
local at = tonumber(redis.call('GET', KEYS[1]) or '0')
if until_ > at then
  redis.call('SET', KEYS[1], string.format('%.6f', until_), 'PX', math.ceil((until_ - now) * 1000) + tonumber(ARGV[2]))
end
return 1
"""


class RedisLimits(MemoryLimits):
    """The limits in Redis, each change one atomic Lua script: shared by every replica and dispatcher."""

    def __init__(self, url: str, *, prefix: str = "loyalbot:rates:", socket_timeout: float = 2.0) -> None:
        import redis.asyncio as redis

        super().__init__()
        self.redis = redis.Redis.from_url(url, socket_timeout=socket_timeout, socket_connect_timeout=socket_timeout)
        self.prefix = prefix
        self._reserve = self.redis.register_script(_RESERVE)
        self._hold = self.redis.register_script(_HOLD)
        self._release = self.redis.register_script(_RELEASE)
        self._pause = self.redis.register_script(_PAUSE)
        self._ttl = int(IDLE_TTL * 1000)

    async def _run(self, script: Any, keys: list[str], args: list[Any]) -> Any:
        from redis.exceptions import RedisError

        self.stats.calls += 1
        try:
            return await script(keys=keys, args=args)
        except (RedisError, OSError) as exc:
            self.stats.unavailable += 1
            raise LimitsUnavailable(f"Redis did not answer: {type(exc).__name__}") from None

    async def reserve(self, key: str, want: int, *, interval: float, tolerance: float = 0.0,
                      horizon: float = 0.1) -> Grant:
        reply = await self._run(self._reserve, [self.prefix + key], [want, repr(interval), repr(tolerance),
                                                                     repr(horizon), self._ttl])
        now, wait, *delays = (float(v) for v in reply)
        self.stats.slots_granted += len(delays)
        return Grant(tuple(delays), wait, now)

    async def hold(self, keys: Sequence[str], *, lease: float) -> dict[str, float]:
        keys = list(dict.fromkeys(keys))
        if not keys:
            return {}
        reply = await self._run(self._hold, [self.prefix + k for k in keys], [repr(lease), self._ttl])
        answer = {key: float(v) for key, v in zip(keys, reply, strict=True)}
        self._count_holds(answer)
        return answer

    async def release(self, spacings: Sequence[tuple[str, float]]) -> None:
        if spacings:
            await self._run(self._release, [self.prefix + k for k, _ in spacings],
                            [repr(s) for _, s in spacings] + [self._ttl])

    async def pause(self, key: str, seconds: float, *, tolerance: float = 0.0) -> None:
        self._count_pause(key)
        await self._run(self._pause, [self.prefix + key], [repr(seconds + tolerance), self._ttl])

    async def close(self) -> None:
        await self.redis.aclose()


_NOW = "extract(epoch from clock_timestamp())::float8"

# The GCRA reservation of `_gcra` in one statement: with b = max(at, now), slot i may go at
# max(now, b + i * interval - tolerance); k slots fit within the horizon; the new moment is b + k * interval.
# Returns (now, b, k, the moment before). $1 key, $2 want, $3 interval, $4 tolerance, $5 horizon.
_RESERVE_SQL = f"""
WITH n AS (SELECT {_NOW} AS t),
cur AS (SELECT r.key, r.at, greatest(r.at, n.t) AS b, n.t FROM rate_limits r, n WHERE r.key = $1 FOR UPDATE OF r),
g AS (SELECT key, at, b, t,
             greatest(0, least($2::int, floor((t + $5::float8 + $4::float8 - b) / $3::float8)::int + 1)) AS k FROM cur)
UPDATE rate_limits r SET at = CASE WHEN g.k > 0 THEN g.b + g.k * $3::float8 ELSE g.at END
FROM g WHERE r.key = g.key
RETURNING g.t, g.b, g.k, g.at
"""


class SqlLimits(MemoryLimits):
    """The limits in PostgreSQL's `rate_limits` table (no Redis configured): one row per key.

    A reservation locks its key's row (`SELECT ... FOR UPDATE`) for the length of one short transaction;
    chat holds are one upsert for the whole batch (`ON CONFLICT ... DO UPDATE ... WHERE` the chat is free,
    `RETURNING` those taken), releases one statement for a whole group."""

    SWEEP_EVERY = 2000

    def __init__(self, db: Db, *, prefix: str = "") -> None:
        if not db.is_postgres:
            raise ValueError("SqlLimits needs PostgreSQL; on SQLite (one process) use MemoryLimits")
        super().__init__()
        self.db = db
        self.prefix = prefix
        self._known: set[str] = set()
        self._holds = 0

    async def _guarded(self, work: Callable[[Any], Any]) -> Any:
        self.stats.calls += 1
        try:
            async with self.db.connection() as conn:
                return await work(conn)
        except (sa.exc.DBAPIError, OSError) as exc:
            self.stats.unavailable += 1
            raise LimitsUnavailable(f"the database did not answer: {type(exc).__name__}") from None

    async def reserve(self, key: str, want: int, *, interval: float, tolerance: float = 0.0,
                      horizon: float = 0.1) -> Grant:
        name = self.prefix + key
        if name not in self._known:
            await self._guarded(lambda conn: conn.execute(sa.text(
                "INSERT INTO rate_limits (key, at) VALUES (:k, 0) ON CONFLICT (key) DO NOTHING"), {"k": name}))
            self._known.add(name)
        self.stats.calls += 1
        try:
            row = await self._one_statement(_RESERVE_SQL, name, want, interval, tolerance, horizon)
        except (sa.exc.DBAPIError, OSError) as exc:
            self.stats.unavailable += 1
            raise LimitsUnavailable(f"the database did not answer: {type(exc).__name__}") from None
        now, start, granted, before = (float(row[0]), float(row[1]), int(row[2]), float(row[3]))
        delays = tuple(max(now, start + i * interval - tolerance) - now for i in range(granted))
        wait = 0.0 if granted else max(0.0, before - tolerance - horizon - now)
        self.stats.slots_granted += granted
        return Grant(delays, wait, now)

    async def _one_statement(self, sql: str, *args: Any) -> Any:
        """One statement outside any transaction on the pool's asyncpg connection: one round trip, the row
        locked only while the statement runs (the three processes' reservations queue for microseconds)."""
        import asyncpg
        from sqlalchemy.util import greenlet_spawn

        pooled = await self.db.engine.raw_connection()
        driver = pooled.driver_connection
        assert driver is not None
        try:
            return await driver.fetchrow(sql, *args)
        except asyncpg.PostgresError as exc:
            raise sa.exc.DBAPIError(None, None, exc) from exc
        finally:
            await greenlet_spawn(pooled.close)

    async def hold(self, keys: Sequence[str], *, lease: float) -> dict[str, float]:
        keys = list(dict.fromkeys(keys))  # one upsert may not touch a row twice
        if not keys:
            return {}
        names = [self.prefix + k for k in keys]

        async def work(conn: Any) -> dict[str, float]:
            taken = {r[0] for r in (await conn.execute(sa.text(
                f"INSERT INTO rate_limits AS r (key, at) SELECT k, {_NOW} + :lease FROM unnest(CAST(:keys AS text[])) AS k "
                f"ON CONFLICT (key) DO UPDATE SET at = excluded.at WHERE r.at <= {_NOW} RETURNING r.key"),
                {"keys": names, "lease": lease})).all()}
            answer = {key: 0.0 for key, name in zip(keys, names, strict=True) if name in taken}
            if len(answer) < len(keys):
                rest = [name for name in names if name not in taken]
                waits = dict((await conn.execute(sa.text(
                    f"SELECT key, at - {_NOW} FROM rate_limits WHERE key = ANY(CAST(:keys AS text[]))"),
                    {"keys": rest})).all())
                for key, name in zip(keys, names, strict=True):
                    if name not in taken:
                        answer[key] = max(0.001, float(waits.get(name, 0.001)))
            self._holds += 1
            if self._holds % self.SWEEP_EVERY == 0:
                await conn.execute(sa.text(f"DELETE FROM rate_limits WHERE at < {_NOW} - :idle AND key LIKE :chats"),
                                   {"idle": IDLE_TTL, "chats": self.prefix + "%chat:%"})
            return answer

        answer: dict[str, float] = await self._guarded(work)
        self._count_holds(answer)
        return answer

    async def release(self, spacings: Sequence[tuple[str, float]]) -> None:
        if not spacings:
            return

        async def work(conn: Any) -> None:
            await conn.execute(sa.text(
                f"UPDATE rate_limits AS r SET at = {_NOW} + s.spacing FROM "
                "unnest(CAST(:keys AS text[]), CAST(:spacings AS float8[])) AS s(key, spacing) WHERE r.key = s.key"),
                {"keys": [self.prefix + k for k, _ in spacings], "spacings": [float(s) for _, s in spacings]})

        await self._guarded(work)

    async def pause(self, key: str, seconds: float, *, tolerance: float = 0.0) -> None:
        self._count_pause(key)

        async def work(conn: Any) -> None:
            await conn.execute(sa.text(
                f"INSERT INTO rate_limits AS r (key, at) VALUES (:k, {_NOW} + :s) "
                "ON CONFLICT (key) DO UPDATE SET at = greatest(r.at, excluded.at)"),
                {"k": self.prefix + key, "s": seconds + tolerance})

        await self._guarded(work)


def make_send_limits(db: Db | None, redis_url: str | None = None, *, scope: str = "") -> SendLimits:
    """The limits every sender of one bot shares: Redis when `redis_url` is set, else PostgreSQL, else memory.

    `scope` (the bot's numeric id) keeps two bots on one Redis or database apart."""
    prefix = f"{scope}:" if scope else ""
    if redis_url:
        return RedisLimits(redis_url, prefix=f"loyalbot:rates:{prefix}")
    if db is not None and db.is_postgres:
        return SqlLimits(db, prefix=prefix)
    return MemoryLimits()


__all__ = ["IDLE_TTL", "Grant", "LimitStats", "LimitsUnavailable", "MemoryLimits", "RedisLimits", "SendLimits",
           "SqlLimits", "make_send_limits"]
