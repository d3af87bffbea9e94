"""Both runtimes: a reply that meets a transient Bot API failure (5xx, 429) is sent again before the
update is marked done; a refusal (400, 403) is not tried again."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from loyalbot.bot.aiogram_runtime import AiogramRuntime
from loyalbot.bot.incoming import incoming_from_json
from loyalbot.bot.local_api import LocalApiControl, LocalBotApi
from loyalbot.bot.ptb_runtime import PtbRuntime
from loyalbot.bot.runtime import Connection, Persistent, Pipeline
from loyalbot.chat.outbound import BadRequest, Outgoing, RetryAfter, Sent, Transient
from loyalbot.chat.port import Incoming, Reply
from loyalbot.storage.inbox import SqlInbox
from tests.bot.conftest import TOKEN

pytestmark = pytest.mark.asyncio(loop_scope="module")

ANN = 3001


class Echo:
    async def handle(self, incoming: Incoming) -> list[Reply]:
        return [Reply(text=f"echo: {incoming.text}")]


@pytest_asyncio.fixture(params=["aiogram", "ptb"], loop_scope="module")
async def running(request: pytest.FixtureRequest, server: LocalBotApi, tg: LocalApiControl
                  ) -> AsyncIterator[tuple[object, LocalApiControl]]:
    kind = AiogramRuntime if request.param == "aiogram" else PtbRuntime
    runtime = kind(Connection(token=TOKEN, api_url=server.url, polling_timeout=1), Echo())
    runtime.pipeline.replies.backoff = 0.01  # the same tries, without the test waiting seconds between them
    await tg.create_user(ANN, "Ann")
    await runtime.open()
    await runtime.start()
    yield runtime, tg
    await runtime.stop()


async def _send_calls(tg: LocalApiControl) -> list[dict]:
    return await tg.calls(method="sendMessage", chat_id=ANN)


@pytest.mark.parametrize("fault", ["500", "502"])
async def test_a_reply_that_meets_a_server_error_is_sent_again(running, fault: str) -> None:
    runtime, tg = running
    await tg.inject_fault(fault, method="sendMessage", chat_id=ANN, count=2)
    await tg.send_text(ANN, "hello")
    reply = await tg.wait_for_bot_message(ANN, contains="echo: hello")
    assert reply["text"] == "echo: hello"
    outcomes = [c["ok"] for c in await _send_calls(tg)]
    assert outcomes == [False, False, True]
    assert [m["text"] for m in await tg.bot_messages(ANN)] == ["echo: hello"]  # once, not once per try
    assert runtime.pipeline.failed == 0


async def test_a_reply_after_a_429_waits_and_is_sent(running) -> None:
    _, tg = running
    await tg.inject_fault("429", method="sendMessage", chat_id=ANN, count=1, retry_after=1)
    await tg.send_text(ANN, "busy?")
    reply = await tg.wait_for_bot_message(ANN, contains="echo: busy?")
    assert reply["text"] == "echo: busy?"
    assert [c["ok"] for c in await _send_calls(tg)] == [False, True]


async def test_a_blocked_chat_is_not_tried_again_and_the_next_update_is_answered(running) -> None:
    runtime, tg = running
    await tg.inject_fault("403", method="sendMessage", chat_id=ANN, count=1)
    await tg.send_text(ANN, "first")
    after = await tg.send_text(ANN, "second")
    await tg.wait_for_bot_message(ANN, after_id=after["message_id"], contains="echo: second")
    assert [c["ok"] for c in await _send_calls(tg)] == [False, True]  # one try for "first", then "second"
    assert [m["text"] for m in await tg.bot_messages(ANN)] == ["echo: second"]
    assert runtime.pipeline.failed == 1
    assert await runtime.pipeline.inbox.unfinished() == 0


class Flaky:
    """A sender whose first `fail` sends raise `error`."""

    def __init__(self, fail: int, error: Exception) -> None:
        self.fail, self.error, self.calls = fail, error, 0

    async def send(self, message: Outgoing) -> Sent:
        self.calls += 1
        if self.calls <= self.fail:
            raise self.error
        return Sent(self.calls, None)


async def _no_sleep(seconds: float) -> None:
    return None


async def test_persistent_gives_up_after_its_attempts_and_never_retries_a_bad_request() -> None:
    down = Flaky(10, Transient("Bad Gateway"))
    with pytest.raises(Transient):
        await Persistent(down, attempts=3, sleep=_no_sleep).send(Outgoing(chat_id=1, text="x"))
    assert down.calls == 3
    refused = Flaky(10, BadRequest("chat not found"))
    with pytest.raises(BadRequest):
        await Persistent(refused, attempts=3, sleep=_no_sleep).send(Outgoing(chat_id=1, text="x"))
    assert refused.calls == 1


class FakeClock:
    """Monotonic seconds that move only when the code under test sleeps."""

    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


async def test_persistent_rides_out_a_storm_of_server_errors_longer_than_a_few_quick_tries() -> None:
    clock = FakeClock()
    storm = Flaky(6, Transient("Bad Gateway"))
    sent = await Persistent(storm, within=30.0, sleep=clock.sleep, clock=clock).send(Outgoing(chat_id=1, text="x"))
    assert sent.message_id == 7, "sent on the seventh try, not given up after four"
    assert clock.slept == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0], "backing off, at most 8 s apart"


async def test_persistent_stops_at_its_deadline_and_on_a_429_longer_than_it() -> None:
    clock = FakeClock()
    down = Flaky(100, Transient("Bad Gateway"))
    with pytest.raises(Transient):
        await Persistent(down, within=30.0, sleep=clock.sleep, clock=clock).send(Outgoing(chat_id=1, text="x"))
    assert clock.now <= 30.0 and down.calls == 7
    flood = Flaky(100, RetryAfter(45))
    with pytest.raises(RetryAfter):
        await Persistent(flood, within=30.0, sleep=clock.sleep, clock=clock).send(Outgoing(chat_id=1, text="x"))
    assert flood.calls == 1, "a 429 that outlasts the deadline is handed back at once"


class StormSender:
    """A sender whose first `fail` sends answer 502; records what got through."""

    def __init__(self, fail: int) -> None:
        self.fail, self.calls = fail, 0
        self.delivered: list[Outgoing] = []
        self.arrived = asyncio.Event()

    async def send(self, message: Outgoing) -> Sent:
        self.calls += 1
        if self.calls <= self.fail:
            raise Transient("Bad Gateway")
        self.delivered.append(message)
        self.arrived.set()
        return Sent(self.calls)


@pytest.mark.asyncio(loop_scope="function")
async def test_an_update_whose_reply_outlasts_the_retries_stays_in_the_inbox_and_is_answered_later(db) -> None:
    sender = StormSender(fail=8)
    pipeline = Pipeline(sender, Echo(), inbox=SqlInbox(db, bot_id=1, worker="w1"))
    pipeline.parse = incoming_from_json
    pipeline.replies.backoff, pipeline.replies.within = 0.001, 0.01  # gives up after a few tries
    pipeline.retry_undelivered = 0.05
    await pipeline.start()
    try:
        await pipeline.receive([{"update_id": 1, "message": {
            "message_id": 1, "date": 1_700_000_000, "chat": {"id": ANN, "type": "private"},
            "from": {"id": ANN, "is_bot": False, "first_name": "Ann"}, "text": "hello"}}])
        await asyncio.wait_for(sender.arrived.wait(), 20)
        assert await pipeline.drain(10)
    finally:
        await pipeline.close(5)
    assert [m.text for m in sender.delivered] == ["echo: hello"]
    assert pipeline.undelivered >= 1 and pipeline.failed == 0, "given back, not counted as handled"
    assert await pipeline.inbox.unfinished() == 0
