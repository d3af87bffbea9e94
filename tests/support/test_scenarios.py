"""Support end to end, on aiogram and on python-telegram-bot, through the local Bot API server."""

from __future__ import annotations

import asyncio

import pytest
from sqlmodel import select

from loyalbot.chat.callbacks import encode
from loyalbot.chat.i18n import Translator
from loyalbot.loyalty.handoff import BOT, CLOSED, HUMAN, WAITING
from loyalbot.storage.models import HandoffMessage, Survey, SurveyAnswer
from tests.support.conftest import SupportWorld

pytestmark = pytest.mark.asyncio(loop_scope="module")

EN = Translator("en")


async def _topic_closed(world: SupportWorld, thread_id: int) -> bool:
    return bool(next(t for t in await world.tg.topics(world.group) if t["message_thread_id"] == thread_id)["closed"])


async def _open(world: SupportWorld, name: str = "Ann"):
    ann = await world.chat.registered_member(name)
    await ann.send("/support")
    await world.settle()
    conv = await world.conversation(ann)
    return ann, conv


async def test_member_and_staff_talk_through_a_topic_from_request_to_csat(world: SupportWorld) -> None:
    chat, tg, group = world.chat, world.tg, world.group
    sam = await chat.staff("Sam")
    ann, conv = await _open(world)
    member = await ann.record()

    # The member is told they are waiting, with the expected wait (always open here).
    assert ann.saw(EN.t("support.waiting", minutes=10))
    assert conv.state == WAITING and conv.topic_id is not None
    topic = next(t for t in await tg.topics(group) if t["message_thread_id"] == conv.topic_id)
    assert member.member_no in topic["name"] and "Ann" in topic["name"]
    card = (await world.topic_messages(conv.topic_id))[0]
    tier = chat.loyalty.programme.tier(member.tier).names["en"]
    assert member.member_no in card["text"] and "Points: 0" in card["text"] and tier in card["text"]
    labels = [b["text"] for row in card["reply_markup"]["inline_keyboard"] for b in row]
    assert labels == [EN.t("support.button.take"), EN.t("support.button.handback"), EN.t("support.button.close")]

    # The member writes; staff see it in the topic.
    await ann.send("My coupon does not scan")
    assert ann.replies == []  # relayed, not answered by the bot
    await world.settle()
    assert "My coupon does not scan" in await world.topic_texts(conv.topic_id)

    # Staff take it over with the button; the member is told who joined.
    await sam.press(EN.t("support.button.take"), chat_id=group)
    assert (await world.store.get(conv.id)).state == HUMAN
    assert any("Sam" in (m.get("text") or "") for m in await ann.transcript() if m["direction"] == "bot")

    # Staff reply; the member gets a copy.
    await world.in_topic(sam, "Let me check that for you", conv.topic_id)
    mine = [m for m in await ann.transcript() if m["direction"] == "bot"]
    assert mine[-1]["text"] == "Let me check that for you"

    # Staff edit their reply; the member's copy is edited too.
    staff_msg = [m for m in await world.topic_messages(conv.topic_id) if m["direction"] == "user"][-1]
    await world.act(sam, lambda: tg.edit_text(sam.id, staff_msg["message_id"], "Checking now, one moment",
                                             chat_id=group), group)
    copy = next(m for m in await ann.transcript() if m["message_id"] == mine[-1]["message_id"])
    assert copy["text"] == "Checking now, one moment"

    # A photo with a caption longer than Telegram allows a copy to carry: split, nothing lost.
    caption = "Receipt: " + "x" * 1200 + " END"
    await world.act(ann, lambda: tg.send_photo(ann.id, caption=caption))
    await world.settle()
    posted = [m for m in await world.topic_messages(conv.topic_id) if m["direction"] == "bot"]
    photo = next(m for m in posted if m["kind"] == "photo")
    follow = posted[posted.index(photo) + 1]
    assert (photo["caption"] or "") + (follow["text"] or "") == caption

    # A staff photo reaches the member.
    await world.act(sam, lambda: tg.send_photo(sam.id, chat_id=group, thread_id=conv.topic_id), group)
    assert [m for m in await ann.transcript() if m["direction"] == "bot"][-1]["kind"] == "photo"

    # While a human holds it the bot never answers free text; commands still work.
    await ann.send("hello? anyone?")
    assert ann.replies == []
    await ann.send("/points")
    assert ann.replies and "0" in ann.last_text

    # Hand back: the bot answers free text again, and nothing goes to staff.
    await world.in_topic(sam, "/handback", conv.topic_id)
    assert (await world.store.get(conv.id)).state == BOT
    assert ann.saw(EN.t("support.handed_back")) or any(
        EN.t("support.handed_back") == m.get("text") for m in await ann.transcript())
    before = len(await world.topic_texts(conv.topic_id))
    await ann.send("what is my tier")
    assert ann.replies, "the bot answers again after hand back"
    await world.settle()
    assert "what is my tier" not in (await world.topic_texts(conv.topic_id))[before:]

    # Ask again, staff take and close: topic closed, member asked for CSAT, answer stored with Sam.
    await ann.send("/support")
    await world.in_topic(sam, "/take", conv.topic_id)
    await world.in_topic(sam, "All sorted, the coupon is fixed", conv.topic_id)
    await world.in_topic(sam, "/close", conv.topic_id)
    await world.settle()
    closed = await world.store.get(conv.id)
    assert closed.state == CLOSED and closed.resolution_seconds is not None
    assert closed.first_response_seconds is not None
    await world.wait_for(lambda: _topic_closed(world, conv.topic_id))  # closed once the notice is out
    await ann.press("5")
    async with chat.loyalty.db.read() as s:
        answer = (await s.execute(select(SurveyAnswer).join(Survey, Survey.id == SurveyAnswer.survey_id)
                                  .where(Survey.conversation_id == conv.id))).scalar_one()
    assert answer.score == 5 and answer.staff_id == sam.id
    await ann.press(EN.t("button.skip"))

    # Free text after the close is the bot's: it is not copied to staff and reopens nothing.
    before = len(await world.topic_texts(conv.topic_id))
    await ann.send("Oh, one more thing")
    assert ann.replies and not ann.saw(EN.t("support.reopened"))
    await world.settle()
    assert (await world.store.get(conv.id)).state == CLOSED
    assert "Oh, one more thing" not in (await world.topic_texts(conv.topic_id))[before:]

    # The Reopen button under the closing message brings the same conversation and topic back.
    await ann.press(EN.t("support.button.reopen"))
    assert ann.saw(EN.t("support.waiting", minutes=1).split("1")[0])
    await world.settle()
    again = await world.store.get(conv.id)
    assert again.state == WAITING and again.topic_id == conv.topic_id
    await ann.send("Oh, one more thing")
    await world.settle()
    assert "Oh, one more thing" in await world.topic_texts(conv.topic_id)
    assert not next(t for t in await tg.topics(group) if t["message_thread_id"] == conv.topic_id)["closed"]
    events = [(e.from_state, e.to_state) for e in await world.store.events(conv.id)]
    assert events[0] == (BOT, WAITING) and events[-1] == (CLOSED, WAITING)

    # /end: finished by the member; no second CSAT for this conversation.
    await ann.send("/end")
    assert ann.saw(EN.t("support.ended"))
    async with chat.loyalty.db.read() as s:
        surveys = (await s.execute(select(Survey).where(Survey.conversation_id == conv.id))).scalars().all()
    assert len(surveys) == 1


async def test_two_staff_take_at_once_one_wins_the_other_is_told_who(world: SupportWorld) -> None:
    sam = await world.chat.staff("Sam")
    kim = await world.chat.staff("Kim")
    ann, conv = await _open(world)
    card = (await world.topic_messages(conv.topic_id))[0]
    take = encode("sp", "t", str(conv.id))
    handled = world.chat.handled()
    ids = await asyncio.gather(world.tg.press(sam.id, world.group, card["message_id"], take),
                               world.tg.press(kim.id, world.group, card["message_id"], take))
    await world.chat.settle(handled + 1)
    holder = (await world.store.get(conv.id)).staff_id
    assert holder in (sam.id, kim.id)
    winner, loser = (sam, kim) if holder == sam.id else (kim, sam)
    loser_query = ids[0] if loser is sam else ids[1]
    answer = await world.tg.wait_for_callback_answer(loser_query)
    assert EN.t("error.handoff_held", holder=winner.name) in (answer["text"] or "")
    assert [e.to_state for e in await world.store.events(conv.id)] == [WAITING, HUMAN]


async def test_people_not_in_the_staff_table_cannot_act_in_the_staff_group(world: SupportWorld) -> None:
    ann, conv = await _open(world)
    eve = await world.chat.registered_member("Eve")
    before = len(await world.topic_messages(conv.topic_id))
    await world.in_topic(eve, "/take", conv.topic_id)
    await world.in_topic(eve, "Hi Ann, tell me secret-code-XYZ", conv.topic_id)
    card = (await world.topic_messages(conv.topic_id))[0]
    await eve.press_data(card["message_id"], encode("sp", "c", str(conv.id)), chat_id=world.group)
    assert (await world.store.get(conv.id)).state == WAITING
    assert not any("secret-code-XYZ" in (m.get("text") or "") for m in await ann.transcript())
    bot_after = [m for m in (await world.topic_messages(conv.topic_id))[before:] if m["direction"] == "bot"]
    assert bot_after == []  # ignored, not even answered


async def test_a_member_cannot_end_someone_elses_conversation(world: SupportWorld) -> None:
    ann, ann_conv = await _open(world, "Ann")
    bob, bob_conv = await _open(world, "Bob")
    msg = [m for m in await bob.transcript() if m["direction"] == "bot"][-1]
    await bob.press_data(msg["message_id"], encode("sp", "x", str(ann_conv.id)))
    assert (await world.store.get(ann_conv.id)).state == WAITING
    assert (await world.store.get(bob_conv.id)).state == WAITING


async def test_a_deleted_topic_is_recreated_with_its_card_and_the_message_is_not_lost(world: SupportWorld) -> None:
    ann, conv = await _open(world)
    await world.tg.delete_topic(world.group, conv.topic_id)
    await ann.send("Are you still there?")
    await world.settle()
    moved = await world.store.get(conv.id)
    assert moved.topic_id is not None and moved.topic_id != conv.topic_id
    texts = await world.topic_texts(moved.topic_id)
    assert EN.t("support.staff.recreated") in texts[0]
    assert texts[1:] == ["Are you still there?"]
    async with world.chat.loyalty.db.read() as s:
        row = (await s.execute(select(HandoffMessage).where(HandoffMessage.conversation_id == conv.id,
                                                            HandoffMessage.direction == "in"))).scalar_one()
    assert row.staff_message_id is not None


async def test_a_burst_of_100_messages_reaches_staff_in_order_within_the_group_limit(
        world: SupportWorld) -> None:
    ann, conv = await _open(world)
    limits = dict(group_per_minute=world.service.config.relay_per_minute,
                  group_burst=world.service.config.relay_burst + 1)
    await world.tg.set_limits(enabled=True, **limits)
    try:
        handled = world.chat.handled()
        for n in range(100):
            await world.tg.send_text(ann.id, f"message {n:03d}")
        await world.chat.settle(handled + 99)
        await world.settle()
        stats = await world.tg.stats()
    finally:
        await world.tg.set_limits(enabled=False)
    lines = [line for text in (await world.topic_texts(conv.topic_id))[1:] for line in text.split("\n")]
    assert lines == [f"message {n:03d}" for n in range(100)]
    assert stats["total_rate_limited"] == 0
    assert [m for m in await ann.transcript() if m["direction"] == "bot"][-1]["text"].startswith("You're in")


async def test_blocked_members_are_told_politely_and_unblocking_restores_support(world: SupportWorld) -> None:
    sam = await world.chat.staff("Sam")
    ann, conv = await _open(world)
    await world.in_topic(sam, "/block", conv.topic_id)
    assert (await world.store.get(conv.id)).state == CLOSED
    await ann.send("/support")
    assert ann.saw(EN.t("error.support_blocked"))
    await ann.send("hello")
    assert not ann.saw(EN.t("support.reopened"))
    await world.in_topic(sam, "/unblock", conv.topic_id)
    await ann.send("/support")
    assert (await world.store.get(conv.id)).state == WAITING


async def test_a_long_wait_gets_one_polite_update(world: SupportWorld) -> None:
    ann, conv = await _open(world)
    world.chat.clock.advance(minutes=16)
    assert await world.service.tick(world.chat.clock()) == 1
    assert await world.service.tick(world.chat.clock()) == 0
    texts = [m.get("text") for m in await ann.transcript() if m["direction"] == "bot"]
    assert texts.count(EN.t("support.still_waiting")) == 1


async def test_feedback_is_posted_to_the_staff_group(world: SupportWorld) -> None:
    ann = await world.chat.registered_member("Ann")
    await ann.send("/feedback")
    await ann.send("The oat latte was lovely")
    await ann.press("⭐⭐⭐⭐⭐")
    await world.settle()
    general = [m for m in await world.tg.transcript(world.group) if m["direction"] == "bot"]
    assert any("The oat latte was lovely" in (m.get("text") or "") and "FB-" in m["text"] for m in general)


async def test_out_of_hours_the_member_is_told_when_staff_are_back_not_more_than_every_30_minutes(
        closed_world: SupportWorld) -> None:
    world = closed_world
    ann, conv = await _open(world)
    away = EN.t("support.waiting_closed", when="{when}").split("{when}")[0]
    assert ann.saw(away)
    opening = world.service.next_opening(world.chat.clock())
    assert opening is not None and opening > world.chat.clock()
    member = await ann.record()
    shown = world.service.member_tr(member)
    assert ann.saw(f"{shown.date(opening)} {shown.time(opening)}")

    await ann.send("Is anyone there?")
    assert ann.replies == []  # just told; not repeated within 30 minutes
    world.chat.clock.advance(minutes=31)
    await ann.send("Hello again")
    assert ann.saw(EN.t("support.out_of_hours", when="{when}").split("{when}")[0])
    await world.settle()
    assert ["Is anyone there?", "Hello again"] == (await world.topic_texts(conv.topic_id))[1:]


async def test_a_member_is_answered_in_their_own_language(world: SupportWorld) -> None:
    ming = await world.chat.registered_member("小明", language_code="zh-hans")
    await ming.send("/support")
    assert ming.saw(Translator("zh_Hans").t("support.waiting", minutes=10))


async def test_member_messages_stored_but_never_relayed_are_sent_after_a_restart(world: SupportWorld) -> None:
    ann, conv = await _open(world)
    # As if the process stopped between storing the member's message and copying it to staff:
    handled = world.chat.handled()
    sent = await world.tg.send_text(ann.id, "/points")  # any message of hers in her chat will do
    await world.chat.settle(handled)
    row = await world.store.record_message(conv.id, "in", member_message_id=sent["message_id"], text="/points")
    assert await world.service.resume(now=world.chat.clock()) == 1
    await world.settle()
    assert "/points" in await world.topic_texts(conv.topic_id)
    assert [m.staff_message_id is not None for m in await world.store.messages(conv.id) if m.id == row.id] == [True]


async def test_a_member_edit_is_relayed_as_an_edit_of_the_staff_copy(world: SupportWorld) -> None:
    ann, conv = await _open(world)
    handled = world.chat.handled()
    sent = await world.tg.send_text(ann.id, "My order number is 1234")
    await world.chat.settle(handled)
    await world.settle()
    handled = world.chat.handled()
    await world.tg.edit_text(ann.id, sent["message_id"], "My order number is 1243")
    await world.chat.settle(handled)
    await world.settle()
    texts = await world.topic_texts(conv.topic_id)
    assert texts[1:] == ["My order number is 1243"]
