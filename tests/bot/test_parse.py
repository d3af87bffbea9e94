"""A recorded update is read straight from its JSON, and that reading is exactly aiogram's and PTB's.

The pipeline turns the inbox's JSON into an `Incoming` without building framework objects first (it
was a third of a simple answer's CPU on PTB). This holds the shortcut to the frameworks: for every
kind of update a member or colleague can send, the JSON reading, aiogram's parse and PTB's parse
give the same `Incoming`, field for field.
"""

from __future__ import annotations

import aiogram
import pytest
import telegram
from aiogram.types import Update as AiogramUpdate

from loyalbot.bot.aiogram_runtime import AiogramRuntime
from loyalbot.bot.incoming import incoming_from_json, incoming_from_update
from loyalbot.bot.ptb_runtime import PtbRuntime
from loyalbot.bot.runtime import Connection

TOKEN = "424242:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
ANN = {"id": 1001, "is_bot": False, "first_name": "Ann", "last_name": "Lee", "username": "ann_l",
       "language_code": "zh-hans"}
PRIVATE = {"id": 1001, "type": "private", "first_name": "Ann"}
FORUM = {"id": -100777, "type": "supergroup", "title": "Staff", "is_forum": True}
GROUP = {"id": -100888, "type": "supergroup", "title": "Chatter"}


def message(**fields):
    return {"message_id": 50, "date": 1764620000, "chat": PRIVATE, "from": ANN, **fields}


CASES = {
    "text": {"update_id": 1, "message": message(text="hello there")},
    "command": {"update_id": 2, "message": message(text="/award@lumen_bot 123456789 12.50",
                                                 entities=[{"type": "bot_command", "offset": 0, "length": 15}])},
    "no language": {"update_id": 3, "message": message(**{"from": {"id": 1002, "is_bot": False, "first_name": "B"}},
                                                       text="hi")},
    "own contact": {"update_id": 4, "message": message(contact={"phone_number": "+31612345678", "first_name": "Ann",
                                                                "user_id": 1001})},
    "someone's contact": {"update_id": 5, "message": message(contact={"phone_number": "123", "first_name": "X"})},
    "photo": {"update_id": 6, "message": message(caption="my receipt", photo=[
        {"file_id": "small", "file_unique_id": "s", "width": 90, "height": 90},
        {"file_id": "large", "file_unique_id": "l", "width": 1280, "height": 1280}])},
    "document": {"update_id": 7, "message": message(document={"file_id": "doc", "file_unique_id": "d",
                                                              "file_name": "receipt.pdf"})},
    "voice": {"update_id": 8, "message": message(voice={"file_id": "v", "file_unique_id": "v", "duration": 3})},
    "video note": {"update_id": 9, "message": message(video_note={"file_id": "vn", "file_unique_id": "vn",
                                                                  "length": 240, "duration": 2})},
    "sticker": {"update_id": 10, "message": message(sticker={"file_id": "st", "file_unique_id": "st", "type": "regular",
                                                             "width": 512, "height": 512, "is_animated": False,
                                                             "is_video": False})},
    "location in private": {"update_id": 11, "message": message(location={"latitude": 52.1, "longitude": 4.3})},
    "location in a group": {"update_id": 12, "message": message(chat=GROUP, location={"latitude": 1, "longitude": 2})},
    "edited": {"update_id": 13, "edited_message": message(text="hello, edited", edit_date=1764620100)},
    "reply": {"update_id": 14, "message": message(text="this one", reply_to_message=message(message_id=40,
                                                                                           text="earlier"))},
    "forum topic": {"update_id": 15, "message": message(
        chat=FORUM, message_thread_id=33, is_topic_message=True, text="Let me check",
        reply_to_message={"message_id": 33, "date": 1764610000, "chat": FORUM, "from": ANN,
                          "forum_topic_created": {"name": "Ann", "icon_color": 7322096}})},
    "forum reply to a copy": {"update_id": 16, "message": message(
        chat=FORUM, message_thread_id=33, is_topic_message=True, text="answer",
        reply_to_message=message(message_id=41, chat=FORUM, message_thread_id=33, text="question"))},
    "reply chain in a plain group": {"update_id": 17, "message": message(
        chat=GROUP, message_thread_id=60, text="re", reply_to_message=message(message_id=60, chat=GROUP, text="x"))},
    "from a bot": {"update_id": 18, "message": message(**{"from": {"id": 9, "is_bot": True, "first_name": "Bot"}},
                                                       text="beep")},
    "anonymous admin": {"update_id": 19, "message": {"message_id": 51, "date": 1764620000, "chat": GROUP,
                                                     "sender_chat": GROUP, "text": "notice"}},
    "channel post": {"update_id": 20, "channel_post": {"message_id": 52, "date": 1764620000,
                                                       "chat": {"id": -100999, "type": "channel", "title": "News"},
                                                       "text": "news"}},
    "button": {"update_id": 21, "callback_query": {"id": "cb-1", "from": ANN, "chat_instance": "ci", "data": "1:rw:c:3:x",
                                                   "message": message(from_user=None, text="Confirm?")}},
    "button in a topic": {"update_id": 22, "callback_query": {
        "id": "cb-2", "from": ANN, "chat_instance": "ci", "data": "1:hs:take:7",
        "message": message(chat=FORUM, message_thread_id=33, is_topic_message=True, text="card")}},
    "button of an inline message": {"update_id": 23, "callback_query": {"id": "cb-3", "from": ANN, "chat_instance": "ci",
                                                                        "inline_message_id": "im", "data": "1:x"}},
    "button of an old message": {"update_id": 24, "callback_query": {
        "id": "cb-4", "from": ANN, "chat_instance": "ci", "data": "1:rw:p:1",
        "message": {"message_id": 12, "date": 0, "chat": PRIVATE}}},
    "button without data": {"update_id": 25, "callback_query": {"id": "cb-5", "from": ANN, "chat_instance": "ci",
                                                                "game_short_name": "g",
                                                                "message": message(text="game")}},
}
for case in CASES.values():  # "from_user=None" above only marks a bot's own message: drop the key
    body = case.get("callback_query", {}).get("message")
    if isinstance(body, dict) and body.get("from_user", 0) is None:
        body.pop("from_user")
        body["from"] = {"id": 42, "is_bot": True, "first_name": "Lumen"}


@pytest.fixture(scope="module")
def frameworks():
    return aiogram.Bot(TOKEN), telegram.Bot(TOKEN)


@pytest.mark.parametrize("name", sorted(CASES))
def test_the_json_reading_is_aiograms_and_ptbs(name: str, frameworks) -> None:
    ag_bot, ptb_bot = frameworks
    raw = CASES[name]
    by_aiogram = incoming_from_update(AiogramUpdate.model_validate(raw, context={"bot": ag_bot}))
    by_ptb = incoming_from_update(telegram.Update.de_json(raw, ptb_bot))
    assert by_aiogram == by_ptb, "the two frameworks disagree: the case itself is off"
    assert incoming_from_json(raw) == by_ptb


def test_the_cases_cover_what_the_conversations_read() -> None:
    """Not a vacuous comparison: the cases give texts, commands, contacts, media, edits, buttons and nothing."""
    got = {name: incoming_from_json(raw) for name, raw in CASES.items()}
    assert got["command"].command == "award" and got["command"].args == "123456789 12.50"
    assert got["photo"].media.file_id == "large" and got["photo"].media.caption == "my receipt"
    assert got["own contact"].contact.user_id == 1001 and got["someone's contact"].contact.user_id is None
    assert got["forum topic"].thread_id == 33 and got["forum topic"].reply_to_message_id is None
    assert got["forum reply to a copy"].reply_to_message_id == 41
    assert got["reply chain in a plain group"].thread_id is None
    assert got["edited"].edited and got["button"].callback_data == "1:rw:c:3:x"
    assert got["button of an inline message"].chat_id == 1001 and got["button of an inline message"].message_id is None
    assert got["button without data"].callback_data == ""
    assert all(got[n] is None for n in ("from a bot", "anonymous admin", "channel post", "location in a group"))


@pytest.mark.parametrize("runtime", [AiogramRuntime, PtbRuntime])
def test_each_runtime_reads_recorded_updates_this_way(runtime) -> None:
    rt = runtime(Connection(token=TOKEN, api_url="http://127.0.0.1:9"))
    for raw in CASES.values():
        assert rt.parse(raw) == incoming_from_json(raw)
    with pytest.raises(TypeError):
        rt.parse(["not", "an", "update"])  # the pipeline logs it as unreadable and answers nothing
