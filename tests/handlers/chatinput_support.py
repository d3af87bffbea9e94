"""The handler-test chat (tests/handlers/conftest.py) on either store: SQLite and PostgreSQL.

The defects of chat input that this round fixes show on PostgreSQL first (NUL in a text column,
an id beyond 32 bits), so these tests run the same conversation on both stores: a test module
defines ``store_chat = store_chat_fixture()`` and takes `store_chat`.
"""

from __future__ import annotations

from typing import Any

import pytest

from loyalbot.handlers.config import ChatConfig
from loyalbot.handlers.context import Context
from loyalbot.handlers.router import build_router
from loyalbot.handlers.state import SqlStateStore
from loyalbot.loyalty.programme import Programme, load_programme
from loyalbot.loyalty.service import Loyalty
from loyalbot.storage import Db
from tests.handlers.conftest import START, Chat, Clock


async def make_chat(store_url: str, *, config: ChatConfig | None = None, programme: Programme | None = None
                    ) -> Chat:
    """The bot's router on the store at `store_url` (call `chat.db.dispose()` when done)."""
    db = Db(store_url)
    loyalty = Loyalty(db, programme or load_programme())
    await loyalty.sync_programme()
    clock = Clock(START)
    ctx = Context(loyalty=loyalty, states=SqlStateStore(db), config=config or ChatConfig(), clock=clock)
    return Chat(db=db, loyalty=loyalty, clock=clock, ctx=ctx, router=build_router(ctx))


def store_chat_fixture() -> Any:
    """A `store_chat` fixture: the chat on a fresh, migrated store of either kind (see `store_url`)."""

    @pytest.fixture
    async def store_chat(store_url: str) -> Any:
        chat = await make_chat(store_url)
        yield chat
        await chat.db.dispose()

    return store_chat
