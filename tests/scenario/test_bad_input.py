"""Bad input gets an answer and changes nothing, on both runtimes."""

from __future__ import annotations

import pytest

from loyalbot.chat.callbacks import encode
from loyalbot.chat.i18n import Translator
from tests.scenario.driver import Chat, Person

pytestmark = pytest.mark.asyncio(loop_scope="module")


async def snapshot(chat: Chat, person: Person) -> tuple:
    """What a member would notice if it changed: points, language, settings, coupons, conversation step."""
    member = await person.record()
    state = await chat.app.states.get(person.id, person.id)
    coupons = await chat.loyalty.coupons_of(member.id, status=None)
    return (member.balance, member.language, dict(member.notify or {}), member.status, len(coupons),
            state.step if state else None)


@pytest.mark.parametrize("text", ["x" * 4096, "☕🎉🙂", "/frobnicate now", "   ", "<b>not html</b> & <script>"],
                         ids=["very-long", "emoji", "unknown-command", "blank", "markup"])
async def test_odd_messages_get_an_answer_and_change_nothing(chat: Chat, text: str) -> None:
    ann = await chat.registered_member("Ann", points=300)
    before = await snapshot(chat, ann)
    await ann.send(text)
    assert ann.replies, "the member is answered"
    assert all(m["text"] or m["caption"] for m in ann.replies)
    assert await snapshot(chat, ann) == before


async def test_too_long_feedback_is_refused_and_not_stored(chat: Chat) -> None:
    ann = await chat.registered_member("Ann")
    await ann.send("/feedback")
    await ann.send("y" * 4096 + "z" * 904)
    assert ann.saw(Translator("en").t("error.invalid_feedback", limit=4000))
    exported = await chat.loyalty.export_member_data((await ann.record()).id)
    assert "yyyy" not in str(exported)


@pytest.mark.parametrize("data", ["garbage", encode("rw", "c", 999999, "forged"), encode("pv", "y", "forged"),
                                  "v:zz:q:1", "x" * 64], ids=["garbage", "unknown-reward", "erase-not-asked",
                                                              "unknown-action", "long"])
async def test_forged_buttons_get_an_answer_and_change_nothing(chat: Chat, data: str) -> None:
    ann = await chat.registered_member("Ann", points=300)
    await ann.send("/points")
    before = await snapshot(chat, ann)
    await ann.press_data(ann.last_message["message_id"], data)
    answers = await chat.tg.callback_answers(chat_id=ann.id)
    assert answers, "the pressed button is answered, so its spinner stops"
    assert await snapshot(chat, ann) == before  # a forged "yes, erase" without the question erases nothing


async def test_someone_who_has_not_joined_is_pointed_to_start(chat: Chat) -> None:
    bob = await chat.member("Bob")
    for text in ("/points", "hello", "/rewards"):
        await bob.send(text)
        assert bob.saw("/start")
    assert await chat.loyalty.member_by_telegram(bob.id) is None
