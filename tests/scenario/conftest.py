"""The end-to-end fixtures: a local Bot API server per module, a fresh SQLite store and the whole app per test.

`chat` is parametrized over both runtimes; each runs its framework's real dispatcher, long-polling
the local server over HTTP, exactly as `loyalbot run` would poll Telegram.
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from loyalbot.bot.app import App
from loyalbot.bot.local_api import LocalApiControl, LocalBotApi
from loyalbot.bot.runtime import Connection
from loyalbot.bot.settings import Settings, load_settings
from loyalbot.handlers.context import Services
from tests.scenario.driver import Chat, TestClock

TOKEN = "777000:scenario-token"
FRAMEWORKS = ["aiogram", "ptb"]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def server() -> AsyncIterator[LocalBotApi]:
    api = LocalBotApi(serve_page=False)
    await api.start()
    yield api
    await api.stop()


@pytest_asyncio.fixture(loop_scope="module")
async def tg(server: LocalBotApi) -> AsyncIterator[LocalApiControl]:
    async with LocalApiControl(server.url) as control:
        await control.reset()
        yield control


@pytest.fixture
def store_file(sqlite_template: Path, tmp_path: Path) -> Path:
    path = tmp_path / "loyalbot.db"
    shutil.copy(sqlite_template, path)
    return path


# A scenario's members answer within milliseconds, so Telegram's second between two messages into one chat
# (chat.limits.CHAT_SPACING) would only add a second to nearly every step. The spacing still applies, shorter;
# tests/bot/test_reply_pacing.py holds it to the second, and the bot run from the command line always keeps it.
SCENARIO_CHAT_SPACING = 0.05


def scenario_settings(server: LocalBotApi, store: Path, staff_group: int | None = None) -> Settings:
    return load_settings(database_url=f"sqlite+aiosqlite:///{store}", bot_token=TOKEN,
                         telegram_api_url=server.url, staff_group_id=staff_group, redis_url=None,
                         webhook_url=None)


async def start_app(server: LocalBotApi, store: Path, framework: str, staff_group: int | None,
                    clock: TestClock | None = None, services: Services | None = None) -> App:
    settings = scenario_settings(server, store, staff_group)
    app = App(settings, framework=framework, clock=clock or TestClock(),
              connection=Connection(token=TOKEN, api_url=server.url, polling_timeout=1), services=services,
              chat_spacing=SCENARIO_CHAT_SPACING)
    await app.start()
    return app


@pytest_asyncio.fixture(params=FRAMEWORKS, loop_scope="module")
async def chat(request: pytest.FixtureRequest, server: LocalBotApi, tg: LocalApiControl, store_file: Path
               ) -> AsyncIterator[Chat]:
    group = await tg.create_group("Staff", is_forum=True)
    clock = TestClock()
    app = await start_app(server, store_file, request.param, group["id"], clock)
    try:
        yield Chat(tg, app, group["id"], clock)
    finally:
        await app.stop()
