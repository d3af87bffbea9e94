"""Support scenarios: the whole app on both runtimes against the local Bot API server, with support wired in.

Builds on the scenario harness (tests/scenario): its `server`, `tg` and `store_file` fixtures and
`Chat` driver. `support_chat` adds the support room with a configuration the test chooses
(business hours, relay budget), so nothing waits for real minutes.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from loyalbot.bot.local_api import LocalApiControl, LocalBotApi
from loyalbot.handlers.context import Services
from loyalbot.handlers.support.config import SupportConfig
from loyalbot.handlers.support.service import SupportService
from loyalbot.loyalty.handoff import HandoffStore
from tests.scenario.conftest import FRAMEWORKS, server, start_app, store_file, tg  # noqa: F401 - fixtures
from tests.scenario.driver import Chat, Person, TestClock

ALWAYS_OPEN = dict(hours="00:00-24:00", days="mon-sun", timezone="UTC")


@dataclass
class SupportWorld:
    """A scenario with support: the chat driver, the service, and shortcuts for the staff group."""

    chat: Chat
    service: SupportService

    @property
    def tg(self) -> LocalApiControl:
        return self.chat.tg

    @property
    def group(self) -> int:
        return self.chat.staff_group

    @property
    def store(self) -> HandoffStore:
        return self.service.store

    async def settle(self) -> None:
        """Let the staff relay post everything queued."""
        if self.service.relay is not None:  # made on first use
            assert await self.service.relay.drain(30)
        await asyncio.sleep(0)

    async def wait_for(self, check: Callable[[], Any], within: float = 10.0) -> None:
        """Poll `check` (a coroutine function) until it is true: for real I/O that finishes a little later."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while not await check():
            if loop.time() > deadline:
                raise TimeoutError(f"not true within {within}s")
            await asyncio.sleep(0.02)

    async def conversation(self, person: Person) -> Any:
        member = await person.record()
        return await self.store.latest_of(member.id)

    async def topic_messages(self, thread_id: int) -> list[dict[str, Any]]:
        """The topic's messages, without deleted ones and service notes (topic created/closed...)."""
        return [m for m in await self.tg.transcript(self.group, thread_id)
                if not m["deleted"] and (m.get("text") is not None or m.get("caption") is not None
                                         or m["kind"] in ("photo", "document", "voice", "sticker"))]

    async def topic_texts(self, thread_id: int) -> list[str]:
        return [str(m.get("text") or m.get("caption") or "") for m in await self.topic_messages(thread_id)
                if m["direction"] == "bot"]

    async def in_topic(self, staff: Person, text: str, thread_id: int) -> None:
        await staff.send(text, chat_id=self.group, thread_id=thread_id)

    async def act(self, person: Person, action: Callable[[], Any], chat_id: int | None = None) -> Any:
        """Do something through the control API and wait until the bot has handled it."""
        return await person._act(action, chat_id)  # noqa: SLF001 - the driver's own waiting


async def make_world(request: pytest.FixtureRequest, server: LocalBotApi, tg: LocalApiControl,  # noqa: F811
                     store_file: Path, **config: Any) -> AsyncIterator[SupportWorld]:  # noqa: F811
    group = await tg.create_group("Staff", is_forum=True)
    clock = TestClock()
    settings = {**ALWAYS_OPEN, "relay_per_minute": 600.0, "relay_burst": 10, **config}
    support = SupportConfig(staff_group_id=group["id"], **settings)
    app = await start_app(server, store_file, request.param, group["id"], clock,
                          services=Services(support_config=support))
    chat = Chat(tg, app, group["id"], clock)
    try:
        yield SupportWorld(chat, app.context.services.handoff)
    finally:
        await app.stop()


@pytest_asyncio.fixture(params=FRAMEWORKS, loop_scope="module")
async def world(request: pytest.FixtureRequest, server: LocalBotApi, tg: LocalApiControl,  # noqa: F811
                store_file: Path) -> AsyncIterator[SupportWorld]:  # noqa: F811
    async for value in make_world(request, server, tg, store_file):
        yield value


def closed_today_and_tomorrow() -> str:
    """Support days that leave out today and tomorrow (UTC), so the team is away for a while yet."""
    from datetime import UTC, datetime

    from loyalbot.handlers.support.config import DAY_NAMES

    today = datetime.now(UTC).weekday()
    return ",".join(DAY_NAMES[d] for d in range(7) if d not in (today, (today + 1) % 7))


@pytest_asyncio.fixture(params=FRAMEWORKS, loop_scope="module")
async def closed_world(request: pytest.FixtureRequest, server: LocalBotApi, tg: LocalApiControl,  # noqa: F811
                       store_file: Path) -> AsyncIterator[SupportWorld]:  # noqa: F811
    async for value in make_world(request, server, tg, store_file, days=closed_today_and_tomorrow()):
        yield value
