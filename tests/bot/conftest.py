"""Fixtures for the runtime tests: one local Bot API server per module, a sender per framework."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from loyalbot.bot.local_api import LocalApiControl, LocalBotApi
from loyalbot.bot.senders import AiogramSender, PtbSender, make_aiogram_bot, make_ptb_bot

TOKEN = "424242:runtime-test-token"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def server() -> AsyncIterator[LocalBotApi]:
    api = LocalBotApi(serve_page=False, webhook_retry_delay=0.05)
    await api.start()
    yield api
    await api.stop()


@pytest_asyncio.fixture(loop_scope="module")
async def tg(server: LocalBotApi) -> AsyncIterator[LocalApiControl]:
    """The control client, on a server reset to nothing."""
    async with LocalApiControl(server.url) as control:
        await control.reset()
        yield control


@pytest_asyncio.fixture(params=["aiogram", "ptb"], loop_scope="module")
async def sender(request: pytest.FixtureRequest, server: LocalBotApi, tg: LocalApiControl
                 ) -> AsyncIterator[AiogramSender | PtbSender]:
    """A ChatSender of each framework, pointed at the local server."""
    if request.param == "aiogram":
        bot = make_aiogram_bot(TOKEN, server.url)
        yield AiogramSender(bot)
        await bot.session.close()
    else:
        ptb = make_ptb_bot(TOKEN, server.url)
        await ptb.initialize()
        yield PtbSender(ptb)
        await ptb.shutdown()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
