"""Both runtimes: members are served side by side, one member's updates stay in order, failures are contained."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from loyalbot.bot.aiogram_runtime import AiogramRuntime
from loyalbot.bot.local_api import LocalApiControl, LocalBotApi
from loyalbot.bot.logs import json_formatter
from loyalbot.bot.ptb_runtime import PtbRuntime
from loyalbot.bot.runtime import Connection
from loyalbot.chat.port import Incoming, Reply
from tests.bot.conftest import TOKEN

pytestmark = pytest.mark.asyncio(loop_scope="module")

ANN, BEN = 1001, 1002


class Scripted:
    """A stand-in router: 'wait' blocks until released, 'boom' raises, anything else is echoed."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.waiting = asyncio.Event()

    async def handle(self, incoming: Incoming) -> list[Reply]:
        if incoming.text == "wait":
            self.waiting.set()
            await self.release.wait()
        if incoming.text and incoming.text.startswith("boom"):
            raise ValueError(f"cannot handle {incoming.text!r} from {incoming.first_name}")
        return [Reply(text=f"echo: {incoming.text}")]


@pytest_asyncio.fixture(params=["aiogram", "ptb"], loop_scope="module")
async def running(request: pytest.FixtureRequest, server: LocalBotApi, tg: LocalApiControl
                  ) -> AsyncIterator[tuple[Scripted, LocalApiControl]]:
    router = Scripted()
    kind = AiogramRuntime if request.param == "aiogram" else PtbRuntime
    runtime = kind(Connection(token=TOKEN, api_url=server.url, polling_timeout=1), router)
    await tg.create_user(ANN, "Ann")
    await tg.create_user(BEN, "Ben")
    await runtime.open()
    await runtime.start()
    yield router, tg
    router.release.set()
    await runtime.stop()


async def test_a_slow_member_does_not_hold_up_another(running) -> None:
    router, tg = running
    await tg.send_text(ANN, "wait")
    await tg.send_text(ANN, "second")
    await asyncio.wait_for(router.waiting.wait(), 10)
    ben = await tg.send_text(BEN, "hello")
    reply = await tg.wait_for_bot_message(BEN, after_id=ben["message_id"])
    assert reply["text"] == "echo: hello"
    assert await tg.bot_messages(ANN) == []  # Ann's second message waits behind her first
    router.release.set()
    await tg.wait_for_bot_message(ANN, contains="second")
    assert [m["text"] for m in await tg.bot_messages(ANN)] == ["echo: wait", "echo: second"]


async def test_one_members_messages_are_answered_in_order(running) -> None:
    _, tg = running
    router_texts = [f"m{i}" for i in range(15)]
    for text in router_texts:
        await tg.send_text(ANN, text)
    await tg.wait_for_bot_message(ANN, contains="m14")
    assert [m["text"] for m in await tg.bot_messages(ANN)] == [f"echo: {t}" for t in router_texts]


async def test_a_failing_update_is_logged_without_personal_data_and_the_bot_goes_on(
        running, caplog: pytest.LogCaptureFixture) -> None:
    _, tg = running
    with caplog.at_level(logging.INFO):
        await tg.send_text(ANN, "boom secret-words")
        after = await tg.send_text(ANN, "still there?")
        reply = await tg.wait_for_bot_message(ANN, after_id=after["message_id"])
    assert reply["text"] == "echo: still there?"
    assert [m["text"] for m in await tg.bot_messages(ANN)] == ["echo: still there?"]
    failures = [r for r in caplog.records if r.name == "loyalbot.runtime" and "update failed" in r.getMessage()]
    assert len(failures) == 1
    ours = ("loyalbot", "aiogram", "telegram", "handlers")  # not the test's own control client
    logged = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith(ours))
    assert "ValueError" in failures[0].getMessage()
    assert "secret-words" not in logged and "Ann" not in logged and str(ANN) not in logged
    # The same lines as LOYALBOT_LOG_FORMAT=json writes them: one object each, nothing personal either.
    as_json = [json_formatter("test").format(r) for r in caplog.records if r.name.startswith(ours)]
    assert all(json.loads(line)["level"] in ("DEBUG", "INFO", "WARNING", "ERROR") for line in as_json)
    joined = "\n".join(as_json)
    assert "secret-words" not in joined and "Ann" not in joined and str(ANN) not in joined
