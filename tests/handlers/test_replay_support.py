"""Support on both runtimes: an update handled, then cut before its done mark (as by a SIGKILL) and handled
again from the inbox after recovery, relays the member's (or the staff member's) message once, not twice."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import sqlalchemy as sa

from loyalbot.chat.i18n import Translator
from loyalbot.storage.models import HandoffMessage
from tests.support.conftest import SupportWorld, server, store_file, tg, world  # noqa: F401 - fixtures

pytestmark = pytest.mark.asyncio(loop_scope="module")

EN = Translator("en")


async def handled_twice(world: SupportWorld, action: Any) -> None:  # noqa: F811
    """Do `action` (an update to the bot); its handling is cut before the done mark, and after the inbox
    recovers this process's claims (as a restart does) the same update is handled a second time."""
    chat = world.chat
    pipeline = chat.app.runtime.pipeline
    inbox = pipeline.inbox
    real_claim = inbox.claim
    cut = asyncio.Event()

    async def killed_before_done(**kwargs: Any) -> Any:
        if kwargs.get("finished"):  # the first done mark is lost, as if the process died just before it
            inbox.claim = real_claim
            cut.set()
            kwargs["finished"] = []
        return await real_claim(**kwargs)

    inbox.claim = killed_before_done
    before = chat.handled()
    await action()
    await chat.settle(before)
    await asyncio.wait_for(cut.wait(), 10)
    again = chat.handled()
    assert await inbox.recover() == 1, "the cut update is still unfinished in the inbox"
    pipeline._wake.set()  # noqa: SLF001 - what a restart's first claim does
    await chat.settle(again)
    assert await pipeline.drain(10) and await inbox.unfinished() == 0
    await world.settle()


async def _rows(world: SupportWorld, direction: str) -> int:  # noqa: F811
    async with world.chat.loyalty.db.read() as s:
        return int((await s.execute(sa.select(sa.func.count()).select_from(HandoffMessage).where(
            HandoffMessage.direction == direction))).scalar_one())


async def test_a_replayed_member_message_reaches_the_staff_topic_once(world: SupportWorld) -> None:  # noqa: F811
    ann = await world.chat.registered_member("Ann")
    await ann.send("/support")
    await world.settle()
    conv = await world.conversation(ann)
    await handled_twice(world, lambda: world.tg.send_text(ann.id, "My coupon does not scan"))
    assert (await world.topic_texts(conv.topic_id)).count("My coupon does not scan") == 1
    assert await _rows(world, "in") == 1
    # The next message is relayed as usual.
    await ann.send("Still there?")
    await world.settle()
    assert (await world.topic_texts(conv.topic_id))[-1] == "Still there?"


async def test_a_replayed_staff_reply_reaches_the_member_once(world: SupportWorld) -> None:  # noqa: F811
    sam = await world.chat.staff("Sam")
    ann = await world.chat.registered_member("Ann")
    await ann.send("/support")
    await world.settle()
    conv = await world.conversation(ann)
    await world.in_topic(sam, "/take", conv.topic_id)
    await handled_twice(world, lambda: world.tg.send_text(sam.id, "Let me check that for you",
                                                          chat_id=world.group, thread_id=conv.topic_id))
    copies = [m for m in await ann.transcript() if m["direction"] == "bot" and m.get("text") == "Let me check that for you"]
    assert len(copies) == 1
    assert await _rows(world, "out") == 1
