"""Throttling that holds across replicas: the SQL and Redis counters keep the Throttle contract, and the
HTTP side answers guesses and look-up floods with 429 + Retry-After, logging the address and never the secret."""

from __future__ import annotations

import asyncio
import logging
import os
import uuid

import httpx
import pytest
import sqlalchemy as sa
from aiohttp import web

from loyalbot.bot.webhook import SECRET_HEADER, WEBHOOK_GUARD, webhook_app
from loyalbot.console.api import HttpLimits, create_api_key, create_app
from loyalbot.storage import Db
from loyalbot.storage.throttle import FailureLimit, MemoryThrottle, RedisThrottle, SqlThrottle, make_throttle

REDIS_ENV = "LOYALBOT_TEST_REDIS_URL"


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["memory", "sql"])
def counters(request, db):
    """A throttle with a hand-moved clock, and a second one sharing its counters (a second replica)."""
    clock = Clock()
    if request.param == "memory":
        one = MemoryThrottle(clock)
        return one, one, clock
    return SqlThrottle(db, clock), SqlThrottle(db, clock), clock


async def test_a_throttle_allows_the_limit_then_says_how_long_to_wait(counters):
    one, other, clock = counters
    assert [await one.hit("signin", "10.0.0.1", limit=3, per=60) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert await one.peek("signin", "10.0.0.1", limit=3, per=60) == pytest.approx(60)
    clock.now += 20
    assert await other.hit("signin", "10.0.0.1", limit=3, per=60) == pytest.approx(40)  # shared, same window
    assert await other.hit("signin", "10.0.0.2", limit=3, per=60) == 0.0                # per key
    assert await other.hit("lookup", "10.0.0.1", limit=3, per=60) == 0.0                # per scope
    clock.now += 41
    assert await one.peek("signin", "10.0.0.1", limit=3, per=60) == 0.0
    assert await one.hit("signin", "10.0.0.1", limit=3, per=60) == 0.0                  # a new window


async def test_the_sql_throttle_counts_exactly_under_concurrency_and_stores_no_address(db):
    # Two "replicas" with small pools (the PostgreSQL server is shared): 40 hits, at most 8 at a time each.
    replicas = [Db(db.url, pool_size=4) for _ in range(2)]
    try:
        throttles = [SqlThrottle(replicas[i % 2]) for i in range(4)]
        waits = await asyncio.gather(*(throttles[i % 4].hit("api_key", "198.51.100.9", limit=10, per=300)
                                       for i in range(40)))
    finally:
        for replica in replicas:
            await replica.dispose()
    assert sum(1 for w in waits if w == 0.0) == 10
    async with db.read() as s:
        rows = (await s.execute(sa.text("SELECT scope, key, count FROM throttle_counters"))).all()
    assert [(r.scope, r.count) for r in rows] == [("api_key", 40)]
    assert "198.51.100.9" not in rows[0].key


@pytest.fixture
async def redis_throttle():
    url = os.environ.get(REDIS_ENV)
    if not url:
        pytest.skip(f"Redis run skipped: set {REDIS_ENV} (e.g. redis://127.0.0.1:6379/15) to run it")
    prefix = f"loyalbot:test:{uuid.uuid4().hex[:8]}:"
    one, other = RedisThrottle(url, prefix=prefix), RedisThrottle(url, prefix=prefix)
    yield one, other
    keys = [k async for k in one.redis.scan_iter(f"{prefix}*")]
    if keys:
        await one.redis.delete(*keys)
    await one.close()
    await other.close()


async def test_the_redis_throttle_is_shared_atomic_and_expires(redis_throttle):
    one, other = redis_throttle
    waits = await asyncio.gather(*((one if i % 2 else other).hit("api_key", "198.51.100.9", limit=10, per=300)
                                   for i in range(40)))
    assert sum(1 for w in waits if w == 0.0) == 10
    assert 299 < await one.peek("api_key", "198.51.100.9", limit=10, per=300) <= 300
    assert await other.hit("api_key", "198.51.100.10", limit=10, per=300) == 0.0
    keys = [k async for k in one.redis.scan_iter(f"{one.prefix}*")]
    assert len(keys) == 2 and all(b"198.51.100" not in k for k in keys)
    ttls = [await one.redis.pttl(k) for k in keys]
    assert all(0 < ttl <= 300_000 for ttl in ttls)  # every counter dies with its window


def test_the_factory_picks_redis_when_configured(db):
    assert isinstance(make_throttle(db, None), SqlThrottle)
    assert isinstance(make_throttle(db, "redis://127.0.0.1:6379/15"), RedisThrottle)
    assert isinstance(make_throttle(None, None), MemoryThrottle)


# --- the HTTP side ----------------------------------------------------------------------------------


async def test_console_password_guesses_are_locked_out_per_address(web, caplog):
    def attempt(client, password):
        return client.post("/console/signin", data={"name": "operator", "password": password})

    with caplog.at_level(logging.WARNING, logger="loyalbot.console.pages.auth"):
        guesses = [await attempt(web, f"guess-{i}") for i in range(3)]
        locked = await attempt(web, "guess-3")
        right_but_locked = await attempt(web, "s3cret-pass")
    assert [g.status_code for g in guesses] == [401, 401, 401]
    assert locked.status_code == 429 and int(locked.headers["Retry-After"]) > 0
    assert "Too many wrong passwords" in locked.text
    assert right_but_locked.status_code == 429  # a right guess while locked out tells nothing
    elsewhere = httpx.ASGITransport(app=web.app, client=("192.0.2.50", 4000))
    async with httpx.AsyncClient(transport=elsewhere, base_url="http://shop") as other:
        assert (await attempt(other, "s3cret-pass")).status_code == 303
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert logged.count("refused a sign-in from 203.0.113.7") == 5
    assert "guess" not in logged and "s3cret" not in logged


async def test_api_key_guesses_are_locked_out_per_address(web, ann, caplog):
    with caplog.at_level(logging.WARNING, logger="loyalbot.console.api"):
        guesses = [await web.get(f"/api/v1/members/{ann.member_no}", headers={"Authorization": f"Bearer lb_{i}"})
                   for i in range(4)]
        right_but_locked = await web.get(f"/api/v1/members/{ann.member_no}")
    assert [g.status_code for g in guesses] == [401, 401, 401, 429]
    assert right_but_locked.status_code == 429 and "Retry-After" in right_but_locked.headers
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "203.0.113.7" in logged and "lb_0" not in logged and web.key not in logged


async def test_member_look_ups_are_limited_per_key_and_per_address(web, db, loyalty, ann, limits):
    answers = [await web.get(f"/api/v1/members/{ann.member_no}") for _ in range(limits.lookups + 1)]
    assert [a.status_code for a in answers] == [200] * limits.lookups + [429]
    assert int(answers[-1].headers["Retry-After"]) <= limits.lookup_window
    # A second key from the same address is held by the per-address limit ...
    second = await create_api_key(db, "webshop")
    assert (await web.get(f"/api/v1/members/{ann.member_no}",
                          headers={"Authorization": f"Bearer {second}"})).status_code == 429
    # ... and the first key from another address by the per-key one; purchases are not look-ups.
    elsewhere = httpx.ASGITransport(app=web.app, client=("192.0.2.50", 4000))
    async with httpx.AsyncClient(transport=elsewhere, base_url="http://shop",
                                 headers={"Authorization": f"Bearer {web.key}"}) as other:
        assert (await other.get(f"/api/v1/members/{ann.member_no}")).status_code == 429
        body = {"member_no": ann.member_no, "external_id": "p-1", "amount": "5"}
        assert (await other.post("/api/v1/purchases", json=body)).status_code == 201


async def test_two_replicas_on_one_store_share_the_limit(db, loyalty, ann):
    key = await create_api_key(db, "till")
    limits = HttpLimits(lookups=4)
    apps = [create_app(db, loyalty, throttle=SqlThrottle(db), limits=limits) for _ in range(2)]
    codes = []
    for i in range(5):
        transport = httpx.ASGITransport(app=apps[i % 2], client=("203.0.113.7", 5000))
        async with httpx.AsyncClient(transport=transport, base_url="http://shop",
                                     headers={"Authorization": f"Bearer {key}"}) as client:
            codes.append((await client.get(f"/api/v1/members/{ann.member_no}")).status_code)
    assert codes == [200, 200, 200, 200, 429]


async def test_webhook_secret_guesses_are_locked_out_per_address(db, unused_tcp_port, caplog):
    fed: list[dict] = []

    async def feed(update: dict) -> None:
        fed.append(update)

    app = webhook_app("/hook", "right-Secret_1", feed)
    app[WEBHOOK_GUARD] = FailureLimit(SqlThrottle(db), "webhook_secret", limit=3, per=300)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", unused_tcp_port).start()
    url = f"http://127.0.0.1:{unused_tcp_port}/hook"
    update = {"update_id": 7}
    try:
        async with httpx.AsyncClient() as client:
            with caplog.at_level(logging.WARNING, logger="loyalbot.webhook"):
                guesses = [await client.post(url, json=update, headers={SECRET_HEADER: f"guess{i}"})
                           for i in range(3)]
                missing = await client.post(url, json=update)
                right_but_locked = await client.post(url, json=update, headers={SECRET_HEADER: "right-Secret_1"})
    finally:
        await runner.cleanup()
    assert [g.status_code for g in guesses] == [403, 403, 403]
    assert missing.status_code == 429 and right_but_locked.status_code == 429
    assert int(right_but_locked.headers["Retry-After"]) > 0 and fed == []
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "127.0.0.1" in logged and "guess" not in logged and "right-Secret" not in logged
