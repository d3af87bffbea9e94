"""Both senders send what was asked and turn Telegram's failures into loyalty.outbound's named errors."""

from __future__ import annotations

import pytest

from loyalbot.bot.local_api import LocalApiControl
from loyalbot.bot.senders import AiogramSender, PtbSender, make_aiogram_bot, make_ptb_bot
from loyalbot.chat.outbound import (
    BadRequest,
    Blocked,
    Button,
    KeyButton,
    Media,
    Outgoing,
    RetryAfter,
    ThreadNotFound,
    Transient,
)

pytestmark = pytest.mark.asyncio(loop_scope="module")

ANN = 1001


async def test_text_with_html_and_inline_buttons_arrives(sender, tg: LocalApiControl) -> None:
    await tg.create_user(ANN, "Ann")
    sent = await sender.send(Outgoing(chat_id=ANN, text="Hello <b>Ann</b>",
                                      buttons=[[Button("Confirm", "rd:1"), Button("Site", url="https://example.org")]]))
    [message] = await tg.bot_messages(ANN)
    assert message["message_id"] == sent.message_id
    assert message["text"] == "Hello Ann"
    assert message["entities"][0]["type"] == "bold"
    rows = message["reply_markup"]["inline_keyboard"]
    assert rows[0][0] == {"text": "Confirm", "callback_data": "rd:1"}
    assert rows[0][1]["url"] == "https://example.org"


async def test_plain_text_is_not_parsed_as_html(sender, tg: LocalApiControl) -> None:
    await tg.create_user(ANN, "Ann")
    await sender.send(Outgoing(chat_id=ANN, text="1 < 2 <b>", html=False))
    [message] = await tg.bot_messages(ANN)
    assert message["text"] == "1 < 2 <b>"


async def test_contact_keyboard_then_removal(sender, tg: LocalApiControl) -> None:
    await tg.create_user(ANN, "Ann")
    await sender.send(Outgoing(chat_id=ANN, text="Share your number",
                               keyboard=[[KeyButton("Share my number", request_contact=True)]]))
    state = await tg.chat_state(ANN)
    button = state["reply_keyboard"]["keyboard"][0][0]
    assert button["text"] == "Share my number" and button["request_contact"] is True
    shared = await tg.press_reply_button(ANN, "Share my number")
    assert shared["contact"]["user_id"] == ANN
    await sender.send(Outgoing(chat_id=ANN, text="Thanks", remove_keyboard=True))
    state = await tg.chat_state(ANN)
    assert not state["reply_keyboard"] or state["reply_keyboard_hidden"]


@pytest.mark.parametrize("kind", ["photo", "document", "voice", "video", "audio", "sticker"])
async def test_each_media_kind_arrives_with_its_caption(sender, tg: LocalApiControl, kind: str) -> None:
    from loyalbot.bot.local_api.images import make_png

    await tg.create_user(ANN, "Ann")
    data = make_png() if kind in ("photo", "sticker") else b"loyalbot test bytes"
    caption = None if kind == "sticker" else f"your {kind}"
    await sender.send(Outgoing(chat_id=ANN, text=caption, media=Media(kind=kind, data=data, filename=f"f.{kind}")))
    [message] = await tg.bot_messages(ANN)
    assert message["kind"] == kind
    assert message["caption"] == caption
    assert await tg.file_bytes(message["file_id"]) == data
    # A file Telegram already has is sent again by its id, without uploading.
    await sender.send(Outgoing(chat_id=ANN, media=Media(kind=kind, file_id=message["file_id"])))
    again = (await tg.bot_messages(ANN))[-1]
    assert again["kind"] == kind and await tg.file_bytes(again["file_id"]) == data


async def test_edit_answer_copy_and_commands(sender, tg: LocalApiControl) -> None:
    await tg.create_user(ANN, "Ann")
    sent = await sender.send(Outgoing(chat_id=ANN, text="Pick", buttons=[[Button("A", "a")]]))
    callback_id = await tg.press(ANN, ANN, sent.message_id, "a")
    await sender.answer_callback(callback_id, "Done", alert=True)
    [answer] = await tg.callback_answers(callback_id)
    assert answer["text"] == "Done" and answer["show_alert"] is True
    await sender.edit_buttons(ANN, sent.message_id, [[Button("B", "b")]])
    await sender.edit_text(ANN, sent.message_id, "Picked <i>A</i>", None)
    [message] = await tg.bot_messages(ANN)
    assert message["text"] == "Picked A" and message["edited"]
    assert not (message["reply_markup"] or {}).get("inline_keyboard")
    group = await tg.create_group("Staff", members=[ANN], admins=[ANN])
    thread = await sender.create_topic(group["id"], "Ann Lee")
    copied = await sender.copy_message(group["id"], ANN, sent.message_id, thread_id=thread)
    in_topic = await tg.bot_messages(group["id"], thread_id=thread)
    assert [m["message_id"] for m in in_topic if m["kind"] == "text"] == [copied.message_id]
    assert in_topic[-1]["text"] == "Picked A"
    await sender.edit_topic(group["id"], thread, "Ann Lee (closed)")
    await sender.close_topic(group["id"], thread)
    topic = next(t for t in await tg.topics(group["id"]) if t["message_thread_id"] == thread)
    assert topic["name"] == "Ann Lee (closed)" and topic["closed"]
    await sender.reopen_topic(group["id"], thread)
    topic = next(t for t in await tg.topics(group["id"]) if t["message_thread_id"] == thread)
    assert not topic["closed"]
    await sender.set_commands([("points", "Your points")], language="en")
    stored = await tg.commands()
    assert any(c["language_code"] == "en" and c["commands"] == [{"command": "points", "description": "Your points"}]
               for c in stored)


async def test_429_becomes_retry_after_with_the_servers_delay(sender, tg: LocalApiControl) -> None:
    await tg.create_user(ANN, "Ann")
    await tg.inject_fault("429", method="sendMessage", retry_after=7)
    with pytest.raises(RetryAfter) as caught:
        await sender.send(Outgoing(chat_id=ANN, text="hi"))
    assert caught.value.seconds == 7
    assert await tg.bot_messages(ANN) == []


async def test_403_becomes_blocked(sender, tg: LocalApiControl) -> None:
    await tg.create_user(ANN, "Ann")
    await tg.inject_fault("403", method="sendMessage")
    with pytest.raises(Blocked):
        await sender.send(Outgoing(chat_id=ANN, text="hi"))


async def test_a_user_who_blocked_the_bot_is_blocked(sender, tg: LocalApiControl) -> None:
    await tg.create_user(ANN, "Ann", blocked=True)
    with pytest.raises(Blocked):
        await sender.send(Outgoing(chat_id=ANN, text="hi"))


@pytest.mark.parametrize("status", ["500", "502"])
async def test_server_errors_are_transient(sender, tg: LocalApiControl, status: str) -> None:
    await tg.create_user(ANN, "Ann")
    await tg.inject_fault(status, method="sendPhoto")
    with pytest.raises(Transient):
        await sender.send(Outgoing(chat_id=ANN, media=Media(kind="photo", data=b"\x89PNG")))


async def test_a_deleted_topic_is_thread_not_found(sender, tg: LocalApiControl) -> None:
    group = await tg.create_group("Staff")
    thread = await sender.create_topic(group["id"], "Ann Lee")
    await sender.send(Outgoing(chat_id=group["id"], text="first", thread_id=thread))
    await tg.delete_topic(group["id"], thread)
    with pytest.raises(ThreadNotFound):
        await sender.send(Outgoing(chat_id=group["id"], text="second", thread_id=thread))


async def test_malformed_html_is_a_bad_request(sender, tg: LocalApiControl) -> None:
    await tg.create_user(ANN, "Ann")
    with pytest.raises(BadRequest) as caught:
        await sender.send(Outgoing(chat_id=ANN, text="<b>never closed"))
    assert not isinstance(caught.value, ThreadNotFound)
    assert "parse" in caught.value.description


async def test_unknown_chat_is_a_bad_request(sender, tg: LocalApiControl) -> None:
    with pytest.raises(BadRequest):
        await sender.send(Outgoing(chat_id=-100999, text="hi"))


async def test_an_unreachable_server_is_transient(sender, tg: LocalApiControl) -> None:
    from tests.bot.conftest import TOKEN, free_port

    dead = f"http://127.0.0.1:{free_port()}"
    if isinstance(sender, AiogramSender):
        bot = make_aiogram_bot(TOKEN, dead)
        other: AiogramSender | PtbSender = AiogramSender(bot)
    else:
        other = PtbSender(make_ptb_bot(TOKEN, dead))
    try:
        with pytest.raises(Transient):
            await other.send(Outgoing(chat_id=ANN, text="hi"))
    finally:
        if isinstance(other, AiogramSender):
            await other.bot.session.close()


async def test_an_outgoing_with_nothing_to_send_is_refused(sender) -> None:
    with pytest.raises(BadRequest):
        await sender.send(Outgoing(chat_id=ANN))
