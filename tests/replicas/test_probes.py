"""/healthz and /readyz of a real `loyalbot run`: alive whatever its dependencies do; ready only while the
database, Redis (when configured) and the Bot API (getMe) answer, with a JSON body naming what failed."""

from __future__ import annotations

import signal

import httpx
import pytest

from tests.bot.conftest import free_port
from tests.replicas.conftest import Replica, replica_env, tail, until


@pytest.mark.parametrize("framework", ["aiogram", "ptb"])
async def test_readyz_names_the_dependency_that_does_not_answer_and_healthz_stays_alive(
        pg_url, telegram, tmp_path, framework: str) -> None:
    api, _ = telegram
    closed = free_port()  # nothing listens here: Redis is "stopped"
    env = replica_env("probe", framework, store_url=pg_url, api_url=api.url, hook_url="", webhook_port=free_port(),
                      console_port=free_port(), redis_url=f"redis://127.0.0.1:{closed}/0")
    del env["LOYALBOT_WEBHOOK_URL"], env["LOYALBOT_WEBHOOK_SECRET"]  # polling
    replica = Replica("probe", framework, 0, int(env["LOYALBOT_CONSOLE_PORT"]), env, tmp_path / "probe.log")
    replica.start()
    try:
        async with httpx.AsyncClient(base_url=replica.console, timeout=15) as client:
            async def readyz() -> dict:
                try:
                    response = await client.get("/readyz")
                except httpx.TransportError:
                    return {}
                return {"status": response.status_code, **response.json()}

            async def names(dependency: str) -> bool:
                body = await readyz()
                return body.get("status") == 503 and body.get("checks", {}).get(dependency, "ok") != "ok"

            await until(lambda: names("redis"), what="/readyz naming Redis", alive=replica.died)
            body = await readyz()
            assert body["error"] == "not_ready" and "redis" in body["detail"], body
            assert body["checks"]["database"] == "ok" and body["checks"]["bot_api"] == "ok", body
            assert str(closed) not in str(body), "no addresses in the answer"
            health = await client.get("/healthz")
            assert (health.status_code, health.json()) == (200, {"status": "ok"})

            await api.stop()  # the Bot API server goes away too
            await until(lambda: names("bot_api"), what="/readyz naming the Bot API", alive=replica.died)
            body = await readyz()
            assert body["checks"]["redis"] != "ok" and body["checks"]["database"] == "ok", body
            assert (await client.get("/healthz")).status_code == 200
        replica.signal(signal.SIGTERM)
        assert await replica.wait() == 0, tail(replica.log)
    finally:
        replica.kill()
