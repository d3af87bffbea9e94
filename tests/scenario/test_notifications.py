"""The member hears what happens to their points, on aiogram and on python-telegram-bot.

The app runs with its scheduler attached as `loyalbot run` attaches it. A shop posts purchases to the
real shop API (the console's FastAPI app, on the app's own store), staff use /award at the counter;
the member's chat then gets one message with the points and the new balance -- one for a burst of
five purchases -- and nothing when they switched these messages off in /settings (the outbox says
why). The app's clock is moved past the merge delay instead of waiting for it.
"""

from __future__ import annotations

import html
import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import pytest_asyncio
import sqlalchemy as sa

from loyalbot.bot.app import App
from loyalbot.bot.local_api import LocalApiControl, LocalBotApi
from loyalbot.bot.runtime import Connection
from loyalbot.console.api import create_api_key, create_app
from loyalbot.scheduler.notices import DEFAULT_DELAY
from loyalbot.scheduler.service import attach as attach_scheduler
from loyalbot.storage.models import Notice, Outbox
from tests.scenario.conftest import FRAMEWORKS, TOKEN, scenario_settings
from tests.scenario.driver import Chat, Person, TestClock, eventually

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(params=FRAMEWORKS, loop_scope="module")
async def chat(request: pytest.FixtureRequest, server: LocalBotApi, tg: LocalApiControl, store_file: Any
               ) -> AsyncIterator[Chat]:
    group = await tg.create_group("Staff", is_forum=True)
    clock = TestClock()
    app = App(scenario_settings(server, store_file, group["id"]), framework=request.param, clock=clock,
              connection=Connection(token=TOKEN, api_url=server.url, polling_timeout=1))
    attach_scheduler(app)
    await app.start()
    try:
        yield Chat(tg, app, group["id"], clock)
    finally:
        await app.stop()


@pytest_asyncio.fixture(loop_scope="module")
async def till(chat: Chat) -> AsyncIterator[httpx.AsyncClient]:
    """A shop system with its own API key, posting to the shop API over the app's store."""
    assert chat.app.db is not None
    key = await create_api_key(chat.app.db, "till-1")
    api = create_app(chat.app.db, chat.loyalty)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=api), base_url="http://shop",
                                 headers={"Authorization": f"Bearer {key}"}) as client:
        yield client


def plain(rendered: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", "", rendered))


async def newest_id(person: Person) -> int:
    return max((m["message_id"] for m in await person.transcript()), default=0)


async def bot_messages_after(person: Person, after: int) -> list[str]:
    return [str(m.get("text") or "") for m in await person.transcript()
            if m["direction"] == "bot" and m["message_id"] > after]


async def notice_rows(chat: Chat, person: Person) -> list[Outbox]:
    member = await person.record()
    async with chat.loyalty.db.read() as s:
        return list((await s.execute(sa.select(Outbox).where(Outbox.member_id == member.id,
                                                             Outbox.kind == "notice_points")
                                     .order_by(Outbox.id))).scalars())


async def all_notices_planned(chat: Chat) -> bool:
    async with chat.loyalty.db.read() as s:
        return (await s.execute(sa.select(Notice.id).where(Notice.status == "new").limit(1))).first() is None


async def buy(till: httpx.AsyncClient, member_no: str, external_id: str, amount: str) -> None:
    response = await till.post("/api/v1/purchases", json={"member_no": member_no, "external_id": external_id,
                                                          "amount": amount})
    assert response.status_code == 201, response.text


async def told_once(chat: Chat, person: Person, after: int) -> str:
    """Move past the merge delay; the one points message that arrives (and no second one)."""
    await eventually(lambda: all_notices_planned(chat))
    chat.clock.advance(seconds=DEFAULT_DELAY + 1)
    rows = await eventually(lambda: _sent(chat, person))
    (row,) = rows
    messages = await eventually(lambda: bot_messages_after(person, after))
    assert messages == [plain(row.text)]
    return messages[0]


async def _sent(chat: Chat, person: Person) -> list[Outbox] | None:
    rows = await notice_rows(chat, person)
    return rows if rows and all(r.status == "sent" for r in rows) else None


async def test_a_purchase_over_the_shop_api_is_told_with_the_new_balance(chat: Chat, till: httpx.AsyncClient):
    ann = await chat.registered_member("Ann")
    member = await ann.record()
    before = await newest_id(ann)
    await buy(till, member.member_no, "till-1-0001", "12.50")
    text = await told_once(chat, ann, before)
    assert text == "Ann, you earned 12 points for your purchase of €12.50. ⭐\nYour balance is now 12 points."


async def test_an_award_at_the_counter_is_told_in_the_members_language(chat: Chat):
    mei = await chat.registered_member("小明", language_code="zh-hans")
    member = await mei.record()
    sam = await chat.staff("Sam")
    await sam.send(f"/award {member.member_no} 20")
    assert sam.saw(member.member_no)
    before = await newest_id(mei)
    await sam.press("Confirm")  # staff confirm what the award records before anything is recorded
    text = await told_once(chat, mei, before)
    assert text == "小明，您消费 €20.00，获得 20 积分。⭐\n您现在共有 20 积分。"


async def test_five_quick_purchases_are_one_message(chat: Chat, till: httpx.AsyncClient):
    ann = await chat.registered_member("Ann")
    member = await ann.record()
    before = await newest_id(ann)
    for i in range(5):
        await buy(till, member.member_no, f"till-1-{i:04d}", "10")
    text = await told_once(chat, ann, before)
    assert text.startswith("Ann, you earned 50 points for 5 purchases (€50.00 in all).")
    assert text.endswith("Your balance is now 50 points.")
    async with chat.loyalty.db.read() as s:
        folded = (await s.execute(sa.select(sa.func.count()).select_from(Notice)
                                  .where(Notice.member_id == member.id, Notice.kind == "points"))).scalar_one()
    assert folded == 5


async def test_a_member_who_switched_updates_off_hears_nothing(chat: Chat, till: httpx.AsyncClient):
    ann = await chat.registered_member("Ann")
    member = await ann.record()
    await ann.send("/settings")
    label = ann.t("settings.kind_activity")
    await ann.press(f"✅ {label}")
    assert (await ann.record()).notify["activity"] is False
    before = await newest_id(ann)
    await buy(till, member.member_no, "till-1-0001", "12.50")
    await eventually(lambda: all_notices_planned(chat))
    chat.clock.advance(seconds=DEFAULT_DELAY + 1)
    (row,) = await notice_rows(chat, ann)
    assert (row.status, row.skip_reason) == ("skipped", "opted_out")
    # Something the member does get afterwards arrives alone: the purchase was not told.
    await ann.send("/points")
    assert ann.saw("12")
    assert not any("purchase" in text for text in await bot_messages_after(ann, before))
