"""The durable inbox on SQLite and PostgreSQL: recorded once, claimed in member order by one worker at a
time, taken back after a crash, pruned; and through the webhook a redelivered update changes nothing."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta

import httpx
import pytest
import sqlalchemy as sa
from aiohttp import web

from loyalbot.bot.aiogram_runtime import AiogramRuntime
from loyalbot.bot.local_api import LocalApiControl, LocalBotApi
from loyalbot.bot.ptb_runtime import PtbRuntime
from loyalbot.bot.runtime import Connection, received
from loyalbot.bot.webhook import SECRET_HEADER, webhook_app
from loyalbot.chat.port import Incoming, Reply
from loyalbot.storage import utcnow
from loyalbot.storage.inbox import SqlInbox
from loyalbot.storage.models import InboxUpdate
from tests.bot.conftest import TOKEN, free_port

SECRET = "inbox-Secret_9"


def message(update_id: int, user: int, text: str, *, message_id: int | None = None) -> dict:
    return {"update_id": update_id, "message": {
        "message_id": message_id or update_id, "date": 1_700_000_000 + update_id,
        "chat": {"id": user, "type": "private"}, "from": {"id": user, "is_bot": False, "first_name": "M"},
        "text": text}}


class Clock:
    def __init__(self) -> None:
        self.now = utcnow()

    def __call__(self):
        return self.now


async def test_a_redelivered_update_is_recorded_once_and_a_reused_id_is_a_new_update(db) -> None:
    inbox = SqlInbox(db, bot_id=1, worker="w1")
    assert await inbox.record(received([message(1, 10, "a"), message(2, 11, "b")])) == [1, 2]
    assert await inbox.record(received([message(1, 10, "a"), message(2, 11, "b")])) == []
    rows = await inbox.claim(limit=10)
    assert [r.update_id for r in rows] == [1, 2]
    await inbox.done(1)
    assert await inbox.record(received([message(1, 10, "a")])) == [], "a redelivery after handling"
    # The same id carrying another message (numbering restarted): a new update to handle.
    assert await inbox.record(received([message(1, 10, "other", message_id=99)])) == [1]
    assert await inbox.unfinished() == 2
    async with db.read() as s:
        assert (await s.get(InboxUpdate, (1, 1))).payload["message"]["text"] == "other"


async def test_one_members_updates_are_claimed_one_at_a_time_in_order(db) -> None:
    inbox = SqlInbox(db, bot_id=1, worker="w1")
    await inbox.record(received([message(1, 10, "a1"), message(2, 10, "a2"), message(3, 11, "b1"),
                                 message(4, 10, "a3")]))
    first = await inbox.claim(limit=10)
    assert [(r.update_id, r.lane) for r in first] == [(1, "u:10"), (3, "u:11")]
    assert await inbox.claim(limit=10) == [], "a member's next update waits for the one in hand"
    await inbox.done(1)
    assert [r.payload["message"]["text"] for r in await inbox.claim(limit=10)] == ["a2"]
    await inbox.done(2)
    await inbox.done(3)
    assert [r.update_id for r in await inbox.claim(limit=10)] == [4]
    async with db.read() as s:
        done = (await s.get(InboxUpdate, (1, 1)))
    assert done.status == "done" and done.payload is None, "what the member wrote goes with the handling"


async def test_two_workers_share_the_inbox_without_taking_the_same_update_or_overtaking(db) -> None:
    clock = Clock()
    one = SqlInbox(db, bot_id=1, worker="replica-1", lease=timedelta(seconds=30), clock=clock)
    two = SqlInbox(db, bot_id=1, worker="replica-2", lease=timedelta(seconds=30), clock=clock)
    await one.record(received([message(n, 100 + n % 5, f"t{n}") for n in range(1, 21)]))
    taken_one, taken_two = await asyncio.gather(one.claim(limit=3), two.claim(limit=10))
    ids_one = {r.update_id for r in taken_one}
    ids_two = {r.update_id for r in taken_two}
    assert not ids_one & ids_two
    lanes = [r.lane for r in taken_one + taken_two]
    assert len(lanes) == len(set(lanes)) == 5, "one update per member in hand, whoever holds it"
    assert sorted(ids_one | ids_two) == [1, 2, 3, 4, 5]

    # replica-1 dies. Its updates wait for their lease; replica-2 then takes them, still in order.
    assert await two.claim(limit=10) == []
    for row in taken_two:
        await two.done(row.update_id)
    later = await two.claim(limit=10)
    assert {r.lane for r in later}.isdisjoint({r.lane for r in taken_one})
    clock.now += timedelta(seconds=31)
    for row in later:
        await two.done(row.update_id)
    after_lease = await two.claim(limit=10)
    assert ids_one <= {r.update_id for r in after_lease}


async def test_a_lapsed_worker_renewing_its_lease_does_not_take_back_what_another_worker_took_over(db) -> None:
    clock = Clock()
    slow = SqlInbox(db, bot_id=1, worker="replica-1", lease=timedelta(seconds=30), clock=clock)
    other = SqlInbox(db, bot_id=1, worker="replica-2", lease=timedelta(seconds=30), clock=clock)
    await slow.record(received([message(1, 10, "x"), message(2, 11, "y")]))
    assert [r.update_id for r in await slow.claim(limit=1)] == [1]
    clock.now += timedelta(seconds=31)  # replica-1 stalled past its lease; replica-2 takes the update over
    assert [r.update_id for r in await other.claim(limit=10)] == [1, 2]
    await slow.extend([1, 2])  # replica-1 wakes up and renews what it thinks it holds
    async with db.read() as s:
        rows = {n: await s.get(InboxUpdate, (1, n)) for n in (1, 2)}
    assert {n: row.claimed_by for n, row in rows.items()} == {1: "replica-2", 2: "replica-2"}
    clock.now += timedelta(seconds=20)
    await other.extend([1, 2])  # the holder's own renewal still works
    clock.now += timedelta(seconds=20)
    assert await slow.claim(limit=10) == [], "replica-2's renewed leases keep both updates its own"


async def test_a_restarted_worker_takes_back_its_own_updates_at_once(db) -> None:
    inbox = SqlInbox(db, bot_id=1, worker="host-a")
    await inbox.record(received([message(1, 10, "x"), message(2, 10, "y")]))
    assert [r.update_id for r in await inbox.claim(limit=10)] == [1]
    restarted = SqlInbox(db, bot_id=1, worker="host-a")  # same name after the crash
    assert await restarted.claim(limit=10) == []
    assert await restarted.recover() == 1
    again = await restarted.claim(limit=10)
    assert [(r.update_id, r.attempts) for r in again] == [(1, 2)]


async def test_an_update_that_keeps_failing_is_set_aside_and_the_member_goes_on(db) -> None:
    inbox = SqlInbox(db, bot_id=1, worker="w", max_attempts=2)
    await inbox.record(received([message(1, 10, "poison"), message(2, 10, "next")]))
    for _ in range(2):
        assert [r.update_id for r in await inbox.claim(limit=10)] == [1]
        await inbox.recover()  # the process died while handling it
    assert [r.update_id for r in await inbox.claim(limit=10)] == [2]
    async with db.read() as s:
        assert (await s.get(InboxUpdate, (1, 1))).status == "failed"


async def test_handled_updates_are_pruned_after_the_keep_time(db) -> None:
    clock = Clock()
    inbox = SqlInbox(db, bot_id=1, worker="w", keep=timedelta(hours=1), clock=clock)
    await inbox.record(received([message(1, 10, "a"), message(2, 11, "b")]))
    await inbox.claim(limit=10)
    await inbox.done(1)
    clock.now += timedelta(minutes=30)
    assert await inbox.prune() == 0
    clock.now += timedelta(minutes=31)
    assert await inbox.prune() == 1
    async with db.read() as s:
        left = (await s.execute(sa.select(InboxUpdate.update_id))).scalars().all()
    assert left == [2], "unfinished updates are never pruned"


# --- the webhook --------------------------------------------------------------------------------------


class Echo:
    async def handle(self, incoming: Incoming) -> list[Reply]:
        return [Reply(text=f"echo: {incoming.text}")]


@pytest.mark.parametrize("runtime_class", [AiogramRuntime, PtbRuntime], ids=["aiogram", "ptb"])
async def test_a_redelivered_webhook_update_changes_nothing(db, runtime_class: type) -> None:
    server = LocalBotApi(serve_page=False)
    await server.start()
    port = free_port()
    hook = f"http://127.0.0.1:{port}/telegram"
    inbox = SqlInbox(db, bot_id=424242, worker="w")
    runtime = runtime_class(Connection(token=TOKEN, api_url=server.url, webhook_url=hook, webhook_secret=SECRET,
                                       webhook_listen=f"127.0.0.1:{port}"), Echo(), inbox=inbox)
    try:
        async with LocalApiControl(server.url) as tg:
            await tg.create_user(7001, "Ann")
            await runtime.open()
            await runtime.start()
            update = message(900, 7001, "only once")
            async with httpx.AsyncClient() as client:
                answers = [await client.post(hook, json=update, headers={SECRET_HEADER: SECRET}) for _ in range(3)]
            assert [a.status_code for a in answers] == [200, 200, 200]
            assert await runtime.pipeline.drain()
            await asyncio.sleep(0)
            assert [m["text"] for m in await tg.bot_messages(7001)] == ["echo: only once"]
            async with httpx.AsyncClient() as client:  # and again after it was handled
                late = await client.post(hook, json=update, headers={SECRET_HEADER: SECRET})
            assert late.status_code == 200
            assert await runtime.pipeline.drain()
            assert [m["text"] for m in await tg.bot_messages(7001)] == ["echo: only once"]
            assert await inbox.unfinished() == 0
    finally:
        await runtime.stop()
        await server.stop()


async def _serve(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, f"http://127.0.0.1:{port}/hook"


async def test_an_oversized_webhook_body_is_refused_before_it_is_read() -> None:
    fed: list[dict] = []

    async def feed(update: dict) -> None:
        fed.append(update)

    runner, url = await _serve(webhook_app("/hook", SECRET, feed, max_bytes=2048))
    big = json.dumps(message(1, 1, "x" * 4000)).encode()

    async def chunks():
        yield big[:1000]
        yield big[1000:]

    try:
        async with httpx.AsyncClient() as client:
            sized = await client.post(url, content=big, headers={SECRET_HEADER: SECRET})
            chunked = await client.post(url, content=chunks(), headers={SECRET_HEADER: SECRET})
            fits = await client.post(url, json=message(2, 1, "short"), headers={SECRET_HEADER: SECRET})
    finally:
        await runner.cleanup()
    assert (sized.status_code, chunked.status_code, fits.status_code) == (413, 413, 200)
    assert "larger than 2048 bytes" in sized.text
    assert [u["update_id"] for u in fed] == [2]


async def test_an_update_that_cannot_be_recorded_is_not_confirmed_to_telegram() -> None:
    async def feed(update: dict) -> None:
        raise OSError("store away")

    runner, url = await _serve(webhook_app("/hook", SECRET, feed))
    try:
        async with httpx.AsyncClient() as client:
            answer = await client.post(url, json=message(3, 1, "hi"), headers={SECRET_HEADER: SECRET})
    finally:
        await runner.cleanup()
    assert answer.status_code == 503, "Telegram sends it again"


@pytest.mark.parametrize("kind", ["sql", "memory"])
async def test_updates_handled_since_the_last_claim_are_marked_done_by_the_next_one(db, kind: str) -> None:
    from loyalbot.storage.inbox import MemoryInbox

    inbox = SqlInbox(db, bot_id=1, worker="w1") if kind == "sql" else MemoryInbox()
    await inbox.record(received([message(1, 10, "a1"), message(2, 10, "a2"), message(3, 11, "b1"),
                                 message(4, 11, "b2")]))
    assert [r.update_id for r in await inbox.claim(limit=10)] == [1, 3]
    # Both handled: marked done in the claim itself, which then finds each member's next update.
    assert [r.update_id for r in await inbox.claim(limit=10, skip=[1, 3], finished=[1, 3])] == [2, 4]
    assert await inbox.unfinished() == 2
    assert await inbox.claim(limit=0, finished=[2]) == [] and await inbox.unfinished() == 1
    assert await inbox.record(received([message(1, 10, "a1")])) == [], "a marked update is known when redelivered"
    if kind == "sql":
        async with db.read() as s:
            rows = {r.update_id: (r.status, r.payload) for r in (await s.execute(sa.select(InboxUpdate))).scalars()}
        assert rows[1] == ("done", None) and rows[2] == ("done", None) and rows[4][0] == "pending"


async def test_a_kill_before_the_done_marks_repeats_only_what_was_in_hand(db) -> None:
    """The pipeline marks handled updates done with its next claim; killed before that, a restart (same
    worker name) hands exactly those again, and nothing that was marked."""
    inbox = SqlInbox(db, bot_id=1, worker="w1")
    await inbox.record(received([message(i, 100 + i, f"m{i}") for i in range(1, 7)]))
    assert len(await inbox.claim(limit=3)) == 3
    await inbox.claim(limit=0, finished=[1])  # 1 marked; 2 and 3 handled but not marked at the kill
    restarted = SqlInbox(db, bot_id=1, worker="w1")
    assert await restarted.recover() == 2
    assert [r.update_id for r in await restarted.claim(limit=10)] == [2, 3, 4, 5, 6]
