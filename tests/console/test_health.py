"""/healthz says the process serves; /readyz says whether what it depends on answers, naming what does not."""

from __future__ import annotations

import asyncio

import httpx

from loyalbot.console.api import create_app
from loyalbot.console.health import Readiness
from loyalbot.loyalty import Loyalty, load_programme
from loyalbot.storage import Db
from tests.bot.conftest import free_port


def client_of(app) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


async def test_with_the_database_stopped_healthz_is_alive_and_readyz_names_the_database() -> None:
    db = Db(f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/nowhere")  # nothing listens there
    try:
        async with client_of(create_app(db, Loyalty(db, load_programme()))) as web:
            health = await web.get("/healthz")
            ready = await web.get("/readyz")
    finally:
        await db.dispose()
    assert (health.status_code, health.json()) == (200, {"status": "ok"})
    assert ready.status_code == 503
    body = ready.json()
    assert body["error"] == "not_ready" and body["detail"].startswith("database unreachable"), body
    assert body["checks"]["database"] != "ok" and "127.0.0.1" not in ready.text


async def test_readyz_is_200_with_each_check_named_when_the_store_answers(db, loyalty) -> None:
    async with client_of(create_app(db, loyalty)) as web:
        ready = await web.get("/readyz")
    assert (ready.status_code, ready.json()) == (200, {"status": "ready", "checks": {"database": "ok"}})


async def test_checks_run_once_per_cache_period_and_a_hanging_one_is_reported_as_timeout() -> None:
    now = [0.0]
    calls = {"fast": 0, "slow": 0}

    async def fast() -> None:
        calls["fast"] += 1

    async def slow() -> None:
        calls["slow"] += 1
        await asyncio.Event().wait()  # never answers

    readiness = Readiness({"database": fast, "bot_api": slow}, cache_seconds=3, timeout=0.05, clock=lambda: now[0])
    first = await readiness.report()
    again = await asyncio.gather(*(readiness.report() for _ in range(5)))
    now[0] = 3.5
    later = await readiness.report()
    assert first == {"database": "ok", "bot_api": "timeout"} and all(r == first for r in again)
    assert later == first and calls == {"fast": 2, "slow": 2}, "one round per period, however many probes"


async def test_readyz_answers_503_while_starting_and_draining(db, loyalty) -> None:
    readiness = Readiness({"database": db.ping})
    async with client_of(create_app(db, loyalty, readiness=readiness)) as web:
        answers = []
        for phase in ("starting", "serving", "draining"):
            readiness.phase = phase
            response = await web.get("/readyz")
            answers.append((response.status_code, response.json().get("error", response.json().get("status"))))
    assert answers == [(503, "starting"), (200, "ready"), (503, "draining")]
