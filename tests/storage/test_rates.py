"""The shared send limits on Redis, PostgreSQL and in memory: several limiters (separate connections, as
separate replicas would have) contending never get more than the limit, chats are spaced from the answer,
a 429's pause is seen by every limiter and holds only what it concerns, and a lost backend says so."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator

import pytest

from loyalbot.storage import Db
from loyalbot.storage.rates import (
    LimitsUnavailable,
    MemoryLimits,
    RedisLimits,
    SendLimits,
    SqlLimits,
    make_send_limits,
)
from tests.conftest import NO_PG

REDIS_URL = os.environ.get("LOYALBOT_TEST_REDIS_URL")
NO_REDIS = "Redis run skipped: set LOYALBOT_TEST_REDIS_URL (e.g. redis://127.0.0.1:6379/15) to run it"


@pytest.fixture(params=["memory", "redis", "postgres"])
def backend(request: pytest.FixtureRequest) -> tuple[str, str | None]:
    if request.param == "redis" and not REDIS_URL:
        pytest.skip(NO_REDIS)
    if request.param == "postgres":
        url = request.getfixturevalue("pg_database")
        if url is None:
            pytest.skip(NO_PG)
        return "postgres", url
    return request.param, REDIS_URL


@pytest.fixture
async def limiters(backend: tuple[str, str | None]) -> AsyncIterator[list[SendLimits]]:
    """Three limiters over one backend, each with its own connections (one shared object in memory)."""
    kind, url = backend
    scope = f"test-{uuid.uuid4().hex[:8]}"  # keys of this test only: nothing to flush
    made: list[SendLimits] = []
    dbs: list[Db] = []
    if kind == "memory":
        one = MemoryLimits()
        made = [one, one, one]
    elif kind == "redis":
        assert url is not None
        made = [RedisLimits(url, prefix=f"loyalbot:rates:{scope}:") for _ in range(3)]
    else:
        assert url is not None
        dbs = [Db(url, pool_size=2) for _ in range(3)]
        made = [SqlLimits(db, prefix=f"{scope}:") for db in dbs]
    yield made
    for limiter in {id(x): x for x in made}.values():
        await limiter.close()
    for db in dbs:
        await db.dispose()


def most_in_window(times: list[float], window: float) -> int:
    times = sorted(times)
    most, first = 0, 0
    for last, moment in enumerate(times):
        while moment - times[first] >= window - 1e-9:
            first += 1
        most = max(most, last - first + 1)
    return most


async def test_contending_limiters_never_grant_more_than_the_rate_in_any_window(limiters):
    interval, tolerance, wanted = 0.005, 0.02, 300  # 200/s with 20 ms of slack, three takers
    slots: list[float] = []

    async def taker(limiter: SendLimits) -> None:
        while len(slots) < wanted:
            grant = await limiter.reserve("bot", 7, interval=interval, tolerance=tolerance, horizon=0.05)
            slots.extend(grant.now + delay for delay in grant.delays)  # when the backend says each may go
            await asyncio.sleep(grant.delays[-1] if grant.delays else grant.wait)

    await asyncio.gather(*(taker(limiter) for limiter in limiters))
    # The backend's own clock: no slot ever closer to the one before than the rate allows, beyond the slack.
    extra = round(tolerance / interval) + 1
    assert most_in_window(slots, 0.1) <= 0.1 / interval + extra
    assert most_in_window(slots, 0.5) <= 0.5 / interval + extra
    assert most_in_window(slots, interval) <= extra  # the slack's worth at once, never more
    assert len(slots) >= wanted


async def test_a_chat_is_held_by_one_limiter_and_spaced_from_the_answer(limiters):
    first, second, third = limiters
    chats = [f"chat:{n}" for n in range(20)]
    answers = await asyncio.gather(*(limiter.hold(chats, lease=30.0) for limiter in limiters))
    for chat in chats:  # each chat taken by exactly one of the three, however the calls interleave
        assert sum(1 for answer in answers if answer[chat] == 0.0) == 1
        assert all(answer[chat] > 20.0 for answer in answers if answer[chat] != 0.0)
    holder = next(limiter for limiter, answer in zip(limiters, answers, strict=True) if answer["chat:0"] == 0.0)
    other = next(limiter for limiter in limiters if limiter is not holder) if len({id(x) for x in limiters}) > 1 \
        else holder
    assert (await other.hold(["chat:0"], lease=30.0))["chat:0"] > 20.0  # on its way: nobody else may send
    await holder.release([("chat:0", 30.0)])  # answered: the next one waits the spacing from now
    wait = (await other.hold(["chat:0"], lease=30.0))["chat:0"]
    assert 0.0 < wait <= 30.0
    await holder.release([("chat:0", 0.0)])
    assert (await other.hold(["chat:0"], lease=30.0))["chat:0"] == 0.0
    assert (await third.hold(["chat:fresh", "chat:fresh"], lease=1.0)) == {"chat:fresh": 0.0}


async def test_a_429_pauses_only_what_it_concerns_and_every_limiter_sees_it(limiters):
    first, second, _ = limiters
    await first.pause("chat:5", 30.0)
    held = await second.hold(["chat:5", "chat:6"], lease=5.0)
    assert held["chat:5"] > 20.0 and held["chat:6"] == 0.0  # the other chat goes on
    assert (await second.reserve("bot", 3, interval=0.01, horizon=0.1)).delays  # so does the bot's rate
    await first.pause("bot", 30.0, tolerance=0.02)  # Telegram asked the whole bot to wait
    grant = await second.reserve("bot", 3, interval=0.01, tolerance=0.02, horizon=0.1)
    assert grant.delays == () and grant.wait > 20.0
    # A later, shorter pause never shortens one in force.
    await second.pause("bot", 1.0)
    assert (await first.reserve("bot", 1, interval=0.01, horizon=0.1)).wait > 20.0


async def test_a_group_gets_its_burst_then_one_every_three_seconds(limiters):
    first, second, _ = limiters
    interval, tolerance = 3.0, 4 * 3.0  # 20 a minute, a burst of 5
    grants = [await limiter.reserve("group:-100", 5, interval=interval, tolerance=tolerance, horizon=0.0)
              for limiter in (first, second)]
    assert len(grants[0].delays) == 5 and grants[1].delays == ()
    assert 2.0 < grants[1].wait <= 3.0


async def test_redis_that_cannot_be_reached_is_a_clear_error_not_unlimited_sending():
    limiter = RedisLimits("redis://127.0.0.1:1/0", socket_timeout=0.5)
    try:
        with pytest.raises(LimitsUnavailable, match="Redis did not answer"):
            await limiter.reserve("bot", 1, interval=0.03)
        with pytest.raises(LimitsUnavailable):
            await limiter.hold(["chat:1"], lease=1.0)
        assert limiter.stats.unavailable == 2
    finally:
        await limiter.close()


async def test_the_backend_follows_the_settings(tmp_path):
    sqlite = Db(f"sqlite+aiosqlite:///{tmp_path / 'one.db'}")
    try:
        assert isinstance(make_send_limits(sqlite), MemoryLimits)  # one process on SQLite
        assert isinstance(make_send_limits(None), MemoryLimits)
        redis_limits = make_send_limits(sqlite, "redis://127.0.0.1:6379/15", scope="42")
        assert isinstance(redis_limits, RedisLimits) and redis_limits.prefix == "loyalbot:rates:42:"
        await redis_limits.close()
    finally:
        await sqlite.dispose()
    with pytest.raises(ValueError, match="PostgreSQL"):
        SqlLimits(Db(f"sqlite+aiosqlite:///{tmp_path / 'two.db'}"))
