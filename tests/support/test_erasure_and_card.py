"""The staff side of erasure, reopening only when asked, and a summary card that stays true: end to end on
aiogram and on python-telegram-bot, through the local Bot API server."""

from __future__ import annotations

from typing import Any

import pytest

from loyalbot.chat.i18n import Translator
from loyalbot.loyalty import Loyalty
from loyalbot.loyalty.handoff import BOT, CLOSED, HUMAN, WAITING
from tests.loyalty.helpers import personal_data_left
from tests.scenario.driver import Person
from tests.support.conftest import SupportWorld

pytestmark = pytest.mark.asyncio(loop_scope="module")

EN = Translator("en")


async def _topic(world: SupportWorld, thread_id: int) -> dict[str, Any]:
    return next(t for t in await world.tg.topics(world.group) if t["message_thread_id"] == thread_id)


async def _card_text(world: SupportWorld, conversation_id: int) -> str:
    await world.settle()
    row = await world.store.latest_card(conversation_id)
    assert row is not None, "no card posted"
    conv = await world.store.get(conversation_id)
    messages = await world.tg.transcript(world.group, conv.topic_id)
    return next(str(m["text"]) for m in messages if m["message_id"] == row.staff_message_id)


async def _erase(person: Person) -> None:
    await person.send("/privacy")
    await person.press(EN.t("privacy.button_erase"))
    await person.press(EN.t("privacy.button_erase_yes"))
    assert await person.chat.loyalty.member_by_telegram(person.id) is None


async def _general(world: SupportWorld) -> list[str]:
    """What the bot posted in the staff group outside member topics."""
    return [str(m.get("text") or "") for m in await world.tg.transcript(world.group)
            if m["direction"] == "bot" and m.get("thread_id") is None and not m["deleted"]]


async def _talk(world: SupportWorld) -> tuple[Person, Person, Any, Any]:
    sam = await world.chat.staff("Sam")
    ann = await world.chat.registered_member("Annabel")
    member = await ann.record()
    await ann.send("/support")
    await ann.send("I'm Annabel, my number is 0612345678")
    await world.settle()
    conv = await world.conversation(ann)
    await world.in_topic(sam, "/take", conv.topic_id)
    await world.in_topic(sam, "Hello Annabel, let me look", conv.topic_id)
    await world.settle()
    assert "I'm Annabel, my number is 0612345678" in await world.topic_texts(conv.topic_id)
    return sam, ann, member, conv


async def test_erasing_deletes_the_staff_topic_and_tells_staff_without_the_name(world: SupportWorld) -> None:
    _, ann, member, conv = await _talk(world)
    await _erase(ann)

    async def deleted() -> bool:
        return bool((await _topic(world, conv.topic_id))["deleted"])

    await world.wait_for(deleted)
    general = []

    async def told() -> bool:
        general[:] = await _general(world)
        return EN.t("support.staff.member_erased") in general

    await world.wait_for(told)
    assert not any("Annabel" in text or member.member_no in text for text in general)
    assert (await world.store.get(conv.id)).topic_id is None
    assert await world.store.erased_topics() == []
    # Nothing readable about her is left anywhere in the group, nor anywhere in the store.
    left = [m for m in await world.tg.transcript(world.group, conv.topic_id) if not m["deleted"]]
    assert not any("Annabel" in str(m.get("text") or "") for m in left)
    assert await personal_data_left(world.chat.loyalty.db, ["Annabel", "0612345678"], [ann.id]) == []


async def test_where_the_bot_may_not_delete_the_topic_it_is_closed_renamed_and_emptied(world: SupportWorld) -> None:
    _, ann, member, conv = await _talk(world)
    await world.tg.inject_fault("error", method="deleteForumTopic", error_code=400,
                                description="Bad Request: not enough rights to delete the topic")
    await _erase(ann)

    async def anonymised() -> bool:
        topic = await _topic(world, conv.topic_id)
        return bool(topic["closed"]) and (await world.store.get(conv.id)).topic_id is None

    await world.wait_for(anonymised)
    topic = await _topic(world, conv.topic_id)
    assert not topic["deleted"] and topic["name"] == EN.t("support.staff.erased_title", ref=conv.id)
    assert member.member_no not in topic["name"] and "Annabel" not in topic["name"]
    shown = [m for m in await world.tg.transcript(world.group, conv.topic_id)
             if not m["deleted"] and m.get("text") is not None]
    texts = [str(m["text"]) for m in shown]
    assert EN.t("support.staff.card_erased").replace("<b>", "").replace("</b>", "") in texts
    assert not any("Annabel" in text or "0612345678" in text or member.member_no in text for text in texts)
    await world.wait_for(lambda: _told(world))


async def _told(world: SupportWorld) -> bool:
    return EN.t("support.staff.member_erased") in await _general(world)


async def test_erased_members_topics_left_by_a_stop_are_cleared_at_start(world: SupportWorld) -> None:
    _, ann, member, conv = await _talk(world)
    # As if the process stopped right after the erasure's commit, before support heard of it: another
    # Loyalty over the same store, with nobody listening, erases her.
    elsewhere = Loyalty(world.chat.loyalty.db, world.chat.loyalty.programme)
    await elsewhere.erase_member(member.id, actor="test", now=world.chat.clock())
    assert not (await _topic(world, conv.topic_id))["deleted"]
    assert [c.id for c in await world.store.erased_topics()] == [conv.id]

    assert await world.service.forget_erased() == 1  # what start() does
    assert (await _topic(world, conv.topic_id))["deleted"]
    assert await world.store.erased_topics() == []
    await world.wait_for(lambda: _told(world))
    assert await world.service.forget_erased() == 0


async def test_after_end_free_text_is_the_bots_and_the_reopen_button_brings_a_person_back(
        world: SupportWorld) -> None:
    ann = await world.chat.registered_member("Ann")
    await ann.send("/support")
    await world.settle()
    conv = await world.conversation(ann)
    await ann.send("/end")
    assert ann.saw(EN.t("support.ended"))
    await world.settle()
    posted = len(await world.topic_texts(conv.topic_id))

    await ann.send("hello")
    assert ann.replies, "the bot answers free text after /end"
    assert not ann.saw(EN.t("support.reopened")) and not ann.saw(EN.t("support.waiting", minutes=10))
    await world.settle()
    assert (await world.store.get(conv.id)).state == CLOSED
    assert len(await world.topic_texts(conv.topic_id)) == posted  # staff were not bothered
    assert (await _topic(world, conv.topic_id))["closed"]

    await ann.press(EN.t("support.button.reopen"))
    assert ann.saw(EN.t("support.waiting", minutes=10))
    await world.settle()
    assert (await world.store.get(conv.id)).state == WAITING
    assert not (await _topic(world, conv.topic_id))["closed"]
    assert EN.t("support.staff.reopened") in await world.topic_texts(conv.topic_id)


async def test_the_card_says_the_current_state_coupons_and_language_after_every_step(world: SupportWorld) -> None:
    loyalty = world.chat.loyalty
    sam = await world.chat.staff("Sam")
    mei = await world.chat.registered_member("阿美", language_code="zh-hant", points=1000)
    member = await mei.record()
    reward = next(item.reward for item in await loyalty.catalogue(member.id, now=world.chat.clock())
                  if item.available)
    await loyalty.redeem_reward(member.id, reward.id, request_id="card-test", now=world.chat.clock())
    await mei.send("/support")
    await world.settle()
    conv = await world.conversation(mei)
    state = EN.t("support.staff.card", member_no="", name="", tier="", points="", coupons="", feedback="",
                 language="", since="", state="{state}").split("{state}")[0].split("\n")[-1]

    def says(text: str, expected: str) -> bool:
        return f"{state}{expected}" in text

    card = await _card_text(world, conv.id)
    assert says(card, EN.t("support.state.waiting"))
    assert reward.titles["en"] in card and "Traditional Chinese" in card and "zh_Hant" not in card

    await world.in_topic(sam, "/take", conv.topic_id)
    assert (await world.store.get(conv.id)).state == HUMAN
    assert says(await _card_text(world, conv.id), EN.t("support.state.human_by", name="Sam"))

    await world.in_topic(sam, "/handback", conv.topic_id)
    assert (await world.store.get(conv.id)).state == BOT
    assert says(await _card_text(world, conv.id), EN.t("support.state.bot"))

    await mei.send("/support")
    assert says(await _card_text(world, conv.id), EN.t("support.state.waiting"))

    await sam.press(EN.t("support.button.close"), chat_id=world.group)
    assert (await world.store.get(conv.id)).state == CLOSED
    assert says(await _card_text(world, conv.id), EN.t("support.state.closed"))

    await mei.press(mei.t("support.button.reopen"))
    assert (await world.store.get(conv.id)).state == WAITING
    assert says(await _card_text(world, conv.id), EN.t("support.state.waiting"))
    # One card, edited in place: the topic does not fill up with stale copies.
    cards = [m for m in await world.topic_messages(conv.topic_id) if member.member_no in str(m.get("text") or "")]
    assert len(cards) == 1
