"""After the store or the Bot API is back from an outage, polling picks up within seconds: failed polls are
retried at most POLL_RETRY_MAX apart, however long the outage lasted (a backoff grown to 30 s kept members
waiting half a minute after PostgreSQL had restarted)."""

from __future__ import annotations

import asyncio
from typing import Any

from loyalbot.bot import runtime
from loyalbot.bot.runtime import POLL_RETRY_MAX, Poller


class Clock:
    """Simulated time: asyncio.sleep in the runtime advances it instead of waiting."""

    def __init__(self) -> None:
        self.now = 0.0
        self.real_sleep = asyncio.sleep

    async def sleep(self, seconds: float, *args: Any) -> None:
        self.now += seconds
        await self.real_sleep(0)


class Inbox:
    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.received: list[tuple[float, list[dict[str, Any]]]] = []

    async def receive(self, updates: list[dict[str, Any]]) -> None:
        self.received.append((self.clock.now, updates))


async def test_polling_resumes_within_seconds_of_the_store_coming_back(monkeypatch) -> None:
    clock = Clock()
    monkeypatch.setattr(runtime.asyncio, "sleep", clock.sleep)
    back_at = 35.0  # the store is unreachable for 35 s (a PostgreSQL restart)
    inbox = Inbox(clock)

    async def fetch(offset: int | None, wait: int) -> list[dict[str, Any]]:
        if clock.now < back_at:
            raise ConnectionError("store unreachable")
        if offset is None:
            return [{"update_id": 7, "message": {"text": "hello"}}]
        if wait:
            await clock.real_sleep(3600)  # a long poll with nothing new (cancelled by stop)
        return []

    poller = Poller(fetch, inbox, timeout=30)  # type: ignore[arg-type]
    poller.start()
    try:
        for _ in range(1000):
            if inbox.received:
                break
            await clock.real_sleep(0)
    finally:
        await poller.stop()
    assert inbox.received, "the update was never received"
    at, updates = inbox.received[0]
    assert updates[0]["update_id"] == 7
    assert back_at <= at <= back_at + POLL_RETRY_MAX
    assert poller.offset == 8
