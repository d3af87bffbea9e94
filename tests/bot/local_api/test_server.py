"""Tests for the local Telegram Bot API server: raw HTTP, aiogram 3, python-telegram-bot 22, control API."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import pytest_asyncio
from aiohttp import web

from loyalbot.bot.local_api import LocalApiControl, LocalApiControlError, LocalBotApi
from loyalbot.bot.local_api.formatting import parse_text
from loyalbot.bot.local_api.images import make_png

pytestmark = pytest.mark.asyncio

TOKEN = "123456789:AAEhBOweik6ad9r_QXMENQjcrGbqCr4K-ra"
BOT_ID = 123456789
ANN = 1001
MING = 1002
STAFF = 9001


@pytest_asyncio.fixture
async def api() -> AsyncIterator[LocalBotApi]:
    server = LocalBotApi(webhook_retry_delay=0.01, webhook_retry_max=0.05)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest_asyncio.fixture
async def tg(api: LocalBotApi) -> AsyncIterator[LocalApiControl]:
    async with LocalApiControl(api.url) as control:
        await control.create_user(ANN, "Ann", last_name="Lee", username="ann_lee", language_code="en")
        await control.create_user(MING, "小明", language_code="zh-hans")
        await control.create_user(STAFF, "Sam", language_code="en")
        yield control


@pytest_asyncio.fixture
async def http(api: LocalBotApi) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=api.url, timeout=30) as client:
        yield client


async def call(http: httpx.AsyncClient, method: str, **params: Any) -> httpx.Response:
    """POST a Bot API call as JSON."""
    return await http.post(f"/bot{TOKEN}/{method}", json=params)


async def ok(http: httpx.AsyncClient, method: str, **params: Any) -> Any:
    response = await call(http, method, **params)
    body = response.json()
    assert response.status_code == 200 and body["ok"], body
    return body["result"]


async def forum(tg: LocalApiControl) -> int:
    group = await tg.create_group("Staff room", members=[STAFF], admins=[STAFF])
    return int(group["id"])


# ------------------------------------------------------------------------------------- raw HTTP


async def test_get_me_tokens_and_unknown_methods(http: httpx.AsyncClient, tg: LocalApiControl) -> None:
    response = await http.get(f"/bot{TOKEN}/getMe")
    me = response.json()["result"]
    assert me["id"] == BOT_ID and me["is_bot"] is True and me["username"]
    assert (await http.get(f"/bot{TOKEN}/GETME")).json()["ok"] is True  # method names ignore case

    await tg.create_bot("42:revoked", invalid=True)
    response = await http.get("/bot42:revoked/getMe")
    assert response.status_code == 401
    assert response.json() == {"ok": False, "error_code": 401, "description": "Unauthorized"}

    response = await http.get("/botnot-a-token/getMe")
    assert response.status_code == 404

    response = await http.post(f"/bot{TOKEN}/sendTelepathy", json={})
    assert response.status_code == 404
    assert response.json() == {"ok": False, "error_code": 404, "description": "Not Found: method not found"}


async def test_send_message_in_json_form_and_multipart(http: httpx.AsyncClient, tg: LocalApiControl) -> None:
    keyboard = {"inline_keyboard": [[{"text": "Points", "callback_data": "points"}]]}
    as_json = await ok(http, "sendMessage", chat_id=ANN, text="json", reply_markup=keyboard)
    assert as_json["chat"] == {
        "id": ANN,
        "type": "private",
        "first_name": "Ann",
        "last_name": "Lee",
        "username": "ann_lee",
    }
    assert as_json["from"]["id"] == BOT_ID and as_json["from"]["is_bot"] is True
    assert as_json["reply_markup"] == keyboard

    response = await http.post(
        f"/bot{TOKEN}/sendMessage",
        data={"chat_id": str(ANN), "text": "form", "reply_markup": json.dumps(keyboard)},
    )
    as_form = response.json()["result"]
    assert as_form["text"] == "form" and as_form["reply_markup"] == keyboard

    response = await http.post(
        f"/bot{TOKEN}/sendMessage",
        data={"chat_id": str(ANN), "text": "<b>multi</b>part", "parse_mode": "HTML"},
        files={"unused": ("x.txt", b"x", "text/plain")},
    )
    as_multipart = response.json()["result"]
    assert as_multipart["text"] == "multipart"
    assert as_multipart["entities"] == [{"type": "bold", "offset": 0, "length": 5}]

    response = await http.get(f"/bot{TOKEN}/sendMessage", params={"chat_id": ANN, "text": "query"})
    assert response.json()["result"]["text"] == "query"

    ids = [m["message_id"] for m in (as_json, as_form, as_multipart)]
    assert ids == sorted(ids) and len(set(ids)) == 3
    transcript = await tg.transcript(ANN)
    assert [m["text"] for m in transcript] == ["json", "form", "multipart", "query"]
    assert transcript[2]["raw_text"] == "<b>multi</b>part" and transcript[2]["parse_mode"] == "HTML"
    assert transcript[0]["reply_markup"] == keyboard and transcript[0]["direction"] == "bot"


async def test_error_answers_match_telegram(http: httpx.AsyncClient, tg: LocalApiControl) -> None:
    async def error(method: str, **params: Any) -> tuple[int, dict[str, Any]]:
        response = await call(http, method, **params)
        return response.status_code, response.json()

    assert await error("sendMessage", chat_id=777, text="hi") == (
        400,
        {"ok": False, "error_code": 400, "description": "Bad Request: chat not found"},
    )
    assert (await error("sendMessage", chat_id=ANN, text=""))[1][
        "description"
    ] == "Bad Request: message text is empty"
    assert (await error("sendMessage", chat_id=ANN, text="x" * 4097))[1]["description"] == (
        "Bad Request: message is too long"
    )
    await ok(http, "sendMessage", chat_id=ANN, text="x" * 4096)
    too_long_data = {"inline_keyboard": [[{"text": "b", "callback_data": "d" * 65}]]}
    assert (await error("sendMessage", chat_id=ANN, text="k", reply_markup=too_long_data))[1][
        "description"
    ] == ("Bad Request: BUTTON_DATA_INVALID")
    two_byte_chars = {"inline_keyboard": [[{"text": "b", "callback_data": "é" * 33}]]}  # 66 bytes, 33 chars
    assert (await error("sendMessage", chat_id=ANN, text="k", reply_markup=two_byte_chars))[0] == 400
    status, body = await error("sendMessage", chat_id=ANN, text="1 < 2 <b>x", parse_mode="HTML")
    assert status == 400 and body["description"].startswith("Bad Request: can't parse entities:")
    status, body = await error("sendMessage", chat_id=ANN, text="Done.", parse_mode="MarkdownV2")
    assert "Character '.' is reserved" in body["description"]

    await tg.set_user_state(MING, blocked=True)
    assert await error("sendMessage", chat_id=MING, text="hi") == (
        403,
        {"ok": False, "error_code": 403, "description": "Forbidden: bot was blocked by the user"},
    )
    await tg.create_user(1003, "Quiet", started=False)
    assert (await error("sendMessage", chat_id=1003, text="hi"))[1]["description"] == (
        "Forbidden: bot can't initiate conversation with a user"
    )

    photo = await http.post(
        f"/bot{TOKEN}/sendPhoto",
        data={"chat_id": str(ANN), "caption": "c" * 1025},
        files={"photo": ("p.png", make_png(), "image/png")},
    )
    assert photo.json()["description"] == "Bad Request: message caption is too long"
    not_image = await http.post(
        f"/bot{TOKEN}/sendPhoto",
        data={"chat_id": str(ANN)},
        files={"photo": ("p.png", b"not an image", "image/png")},
    )
    assert not_image.json()["description"] == "Bad Request: IMAGE_PROCESS_FAILED"


async def test_media_group_with_attach_and_members(http: httpx.AsyncClient, tg: LocalApiControl) -> None:
    media = [
        {"type": "photo", "media": "attach://one", "caption": "first"},
        {"type": "document", "media": "attach://two"},
    ]
    response = await http.post(
        f"/bot{TOKEN}/sendMediaGroup",
        data={"chat_id": str(ANN), "media": json.dumps(media)},
        files={
            "one": ("a.png", make_png(5, 5), "image/png"),
            "two": ("terms.pdf", b"%PDF-1.4", "application/pdf"),
        },
    )
    messages = response.json()["result"]
    assert [("photo" in m, "document" in m) for m in messages] == [(True, False), (False, True)]
    assert messages[0]["media_group_id"] == messages[1]["media_group_id"]
    assert messages[1]["document"] == {
        **messages[1]["document"],
        "file_name": "terms.pdf",
        "mime_type": "application/pdf",
    }
    missing = await http.post(f"/bot{TOKEN}/sendPhoto", data={"chat_id": str(ANN), "photo": "attach://nope"})
    assert missing.status_code == 400
    unknown = await call(http, "sendDocument", chat_id=ANN, document="no-such-file-id")
    assert unknown.json()["description"] == "Bad Request: wrong file identifier/HTTP URL specified"

    no_account = await tg.send_contact(ANN, contact_user_id=None, phone_number="+100", first_name="Granny")
    assert no_account["contact"] == {"phone_number": "+100", "first_name": "Granny"}

    group = await forum(tg)
    assert (await ok(http, "getChatMember", chat_id=group, user_id=STAFF))["status"] == "creator"
    assert (await ok(http, "getChatMember", chat_id=group, user_id=ANN))["status"] == "left"
    assert (await ok(http, "getChatMember", chat_id=group, user_id=BOT_ID))["status"] == "administrator"
    full = await ok(http, "getChat", chat_id=group)
    assert full["is_forum"] is True and "accepted_gift_types" in full


async def test_html_entities_use_utf16_offsets() -> None:
    text, entities = parse_text('😀 <b>粗体</b> <a href="https://example.com">link</a> &lt;3', "HTML")
    assert text == "😀 粗体 link <3"
    assert entities[0] == {"type": "bold", "offset": 3, "length": 2}  # the emoji is 2 UTF-16 units
    assert entities[1] == {"type": "text_link", "offset": 6, "length": 4, "url": "https://example.com"}
    text, entities = parse_text("*bold* _it_ \\. [a](https://x.org)", "MarkdownV2")
    assert text == "bold it . a"
    assert [e["type"] for e in entities] == ["bold", "italic", "text_link"]
    assert [e["type"] for e in parse_text("/points now, not a</b>", None)[1]] == ["bot_command"]


async def test_edit_delete_and_not_modified(http: httpx.AsyncClient, tg: LocalApiControl) -> None:
    keyboard = {"inline_keyboard": [[{"text": "A", "callback_data": "a"}]]}
    sent = await ok(http, "sendMessage", chat_id=ANN, text="v1", reply_markup=keyboard)
    same = await call(
        http, "editMessageText", chat_id=ANN, message_id=sent["message_id"], text="v1", reply_markup=keyboard
    )
    assert same.json()["description"].startswith("Bad Request: message is not modified")
    edited = await ok(http, "editMessageText", chat_id=ANN, message_id=sent["message_id"], text="v2")
    assert edited["text"] == "v2" and "edit_date" in edited
    assert "reply_markup" not in edited  # an edit without reply_markup drops the inline keyboard
    await ok(
        http, "editMessageReplyMarkup", chat_id=ANN, message_id=sent["message_id"], reply_markup=keyboard
    )
    entry = (await tg.transcript(ANN))[-1]
    assert entry["text"] == "v2" and entry["edited"] and [e["text"] for e in entry["edits"]] == ["v1", "v2"]
    assert entry["reply_markup"] == keyboard

    user_msg = await tg.send_text(ANN, "mine")
    refused = await call(http, "editMessageText", chat_id=ANN, message_id=user_msg["message_id"], text="x")
    assert refused.json()["description"] == "Bad Request: message can't be edited"

    assert await ok(http, "deleteMessage", chat_id=ANN, message_id=sent["message_id"]) is True
    again = await call(http, "deleteMessage", chat_id=ANN, message_id=sent["message_id"])
    assert again.json()["description"] == "Bad Request: message to delete not found"
    gone = await call(http, "editMessageText", chat_id=ANN, message_id=sent["message_id"], text="v3")
    assert gone.json()["description"] == "Bad Request: message to edit not found"
    assert [m["deleted"] for m in await tg.transcript(ANN)] == [True, False]
    assert [m["text"] for m in await tg.transcript(ANN, include_deleted=False)] == ["mine"]


async def test_updates_from_user_actions(http: httpx.AsyncClient, tg: LocalApiControl) -> None:
    sent = await tg.send_text(ANN, "/start promo42")  # before the bot ever connected
    assert sent["message_id"] == 1
    updates = await ok(http, "getUpdates")
    assert len(updates) == 1
    message = updates[0]["message"]
    assert message["text"] == "/start promo42"
    assert message["entities"] == [{"type": "bot_command", "offset": 0, "length": 6}]
    assert message["from"] == {
        "id": ANN,
        "is_bot": False,
        "first_name": "Ann",
        "last_name": "Lee",
        "username": "ann_lee",
        "language_code": "en",
    }
    assert message["chat"]["type"] == "private" and message["chat"]["id"] == ANN

    offset = updates[0]["update_id"] + 1
    await tg.send_contact(ANN, contact_user_id=MING, phone_number="+15550002", first_name="Ming")
    await tg.send_contact(ANN)
    photo = await tg.send_photo(ANN, caption="receipt")
    await tg.send_document(ANN, b"hello", file_name="note.txt")
    await tg.edit_text(ANN, sent["message_id"], "/start promo43")
    updates = await ok(http, "getUpdates", offset=offset, timeout=0)
    assert [next(k for k in u if k != "update_id") for u in updates] == [
        "message",
        "message",
        "message",
        "message",
        "edited_message",
    ]
    assert updates[0]["message"]["contact"] == {
        "phone_number": "+15550002",
        "first_name": "Ming",
        "user_id": MING,
    }
    assert updates[1]["message"]["contact"]["user_id"] == ANN
    sizes = updates[2]["message"]["photo"]
    assert sizes[-1]["width"] == 64 and updates[2]["message"]["caption"] == "receipt"
    assert photo["photo_file_id"] == sizes[-1]["file_id"]
    assert updates[3]["message"]["document"]["file_name"] == "note.txt"
    assert (
        updates[4]["edited_message"]["text"] == "/start promo43"
        and "edit_date" in updates[4]["edited_message"]
    )

    file_info = await ok(http, "getFile", file_id=updates[3]["message"]["document"]["file_id"])
    download = await http.get(f"/file/bot{TOKEN}/{file_info['file_path']}")
    assert download.content == b"hello"
    assert await tg.file_bytes(sizes[-1]["file_id"]) == make_png(64, 64)

    # Confirming with offset drops them; the next long poll returns as soon as something arrives.
    assert await ok(http, "getUpdates", offset=updates[-1]["update_id"] + 1) == []
    poll = asyncio.create_task(ok(http, "getUpdates", offset=updates[-1]["update_id"] + 1, timeout=30))
    await asyncio.sleep(0.05)
    assert not poll.done()
    await tg.send_text(ANN, "late")
    late = await asyncio.wait_for(poll, 10)
    assert late[0]["message"]["text"] == "late"

    only_callbacks = await ok(
        http, "getUpdates", offset=late[0]["update_id"] + 1, allowed_updates=["callback_query"]
    )
    assert only_callbacks == []


async def test_second_get_updates_ends_the_first_with_conflict(
    http: httpx.AsyncClient, tg: LocalApiControl
) -> None:
    first = asyncio.create_task(call(http, "getUpdates", timeout=30))
    await asyncio.sleep(0.05)
    second = asyncio.create_task(call(http, "getUpdates", timeout=30))
    response = await asyncio.wait_for(first, 10)
    assert response.status_code == 409
    assert response.json()["description"].startswith("Conflict: terminated by other getUpdates request")
    await tg.send_text(ANN, "hi")
    assert (await asyncio.wait_for(second, 10)).json()["result"][0]["message"]["text"] == "hi"


async def test_callbacks_can_be_forged_and_answers_are_recorded(
    http: httpx.AsyncClient, tg: LocalApiControl
) -> None:
    keyboard = {"inline_keyboard": [[{"text": "Redeem", "callback_data": "redeem:1"}]]}
    sent = await ok(http, "sendMessage", chat_id=ANN, text="Rewards", reply_markup=keyboard)
    query_id = await tg.press(ANN, ANN, sent["message_id"], "redeem:999999")  # not on any button
    updates = await ok(http, "getUpdates")
    query = updates[-1]["callback_query"]
    assert query["id"] == query_id and query["data"] == "redeem:999999"
    assert query["from"]["id"] == ANN and query["message"]["message_id"] == sent["message_id"]
    assert query["chat_instance"]

    assert (
        await ok(
            http, "answerCallbackQuery", callback_query_id=query_id, text="Not enough points", show_alert=True
        )
        is True
    )
    twice = await call(http, "answerCallbackQuery", callback_query_id=query_id)
    assert twice.json()["description"].startswith("Bad Request: query is too old")
    answers = await tg.callback_answers(query_id)
    assert answers[0]["text"] == "Not enough points" and answers[0]["show_alert"] is True
    assert answers[0]["data"] == "redeem:999999"
    entry = (await tg.transcript(ANN))[0]
    assert entry["callback_answers"][0]["text"] == "Not enough points"


async def test_reply_keyboard_contact_button(http: httpx.AsyncClient, tg: LocalApiControl) -> None:
    keyboard = {
        "keyboard": [[{"text": "Share phone", "request_contact": True}], ["Help"]],
        "resize_keyboard": True,
        "one_time_keyboard": True,
    }
    await ok(http, "sendMessage", chat_id=ANN, text="Please share", reply_markup=keyboard)
    state = await tg.chat_state(ANN)
    assert state["reply_keyboard"]["keyboard"][1] == [{"text": "Help"}]
    shared = await tg.press_reply_button(ANN, "Share phone")
    assert shared["contact"]["user_id"] == ANN and shared["contact"]["phone_number"]
    assert (await tg.chat_state(ANN))["reply_keyboard_hidden"] is True
    with pytest.raises(LocalApiControlError):
        await tg.press_reply_button(ANN, "No such button")
    await ok(http, "sendMessage", chat_id=ANN, text="Thanks", reply_markup={"remove_keyboard": True})
    assert (await tg.chat_state(ANN))["reply_keyboard"] is None


async def test_commands_per_scope_and_language(http: httpx.AsyncClient, tg: LocalApiControl) -> None:
    english = [
        {"command": "start", "description": "Start"},
        {"command": "points", "description": "My points"},
    ]
    chinese = [{"command": "start", "description": "开始"}]
    await ok(http, "setMyCommands", commands=english)
    await ok(http, "setMyCommands", commands=chinese, language_code="zh")
    await ok(
        http,
        "setMyCommands",
        commands=[{"command": "queue", "description": "Queue"}],
        scope={"type": "all_group_chats"},
    )
    assert await ok(http, "getMyCommands") == english
    assert await ok(http, "getMyCommands", language_code="zh") == chinese
    assert await ok(http, "getMyCommands", language_code="fr") == []
    bad_code = await call(http, "setMyCommands", commands=chinese, language_code="zh-hans")
    assert bad_code.status_code == 400
    bad_command = await call(http, "setMyCommands", commands=[{"command": "Points", "description": "x"}])
    assert bad_command.json()["description"] == "Bad Request: BOT_COMMAND_INVALID"
    await ok(http, "deleteMyCommands", language_code="zh")
    assert await ok(http, "getMyCommands", language_code="zh") == []
    stored = await tg.commands(BOT_ID)
    assert {(json.dumps(s["scope"]), s["language_code"]) for s in stored} == {
        ('{"type": "default"}', ""),
        ('{"type": "all_group_chats"}', ""),
    }


async def test_webhook_delivery_with_secret_and_retry(
    api: LocalBotApi, http: httpx.AsyncClient, tg: LocalApiControl
) -> None:
    received: asyncio.Queue[tuple[dict[str, str], dict[str, Any]]] = asyncio.Queue()
    attempts = 0

    async def hook(request: web.Request) -> web.Response:
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            return web.Response(status=500)  # the first delivery fails and must be retried
        body = await request.json()
        await received.put((dict(request.headers), body))
        return web.json_response(
            {
                "method": "sendMessage",
                "chat_id": body["message"]["chat"]["id"],
                "text": "answered in the webhook response",
            }
        )

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        await ok(http, "setWebhook", url=f"http://127.0.0.1:{port}/hook", secret_token="s3cret_-X")
        conflict = await call(http, "getUpdates")
        assert conflict.status_code == 409 and conflict.json()["description"].startswith("Conflict:")
        sent = await tg.send_text(ANN, "via webhook")
        headers, body = await asyncio.wait_for(received.get(), 10)
        assert headers["X-Telegram-Bot-Api-Secret-Token"] == "s3cret_-X"
        assert body["message"]["text"] == "via webhook"
        assert attempts == 2
        reply = await tg.wait_for_bot_message(ANN, after_id=sent["message_id"])
        assert reply["text"] == "answered in the webhook response"
        info = await ok(http, "getWebhookInfo")
        assert info["url"].endswith("/hook") and info["pending_update_count"] == 0
        assert info["last_error_message"].startswith("Wrong response from the webhook: 500")
        await ok(http, "deleteWebhook")
        assert (await ok(http, "getWebhookInfo"))["url"] == ""
        assert await ok(http, "getUpdates") == []
    finally:
        await runner.cleanup()


async def test_faults_answer_like_telegram(http: httpx.AsyncClient, tg: LocalApiControl) -> None:
    await tg.inject_fault("429", method="sendMessage", retry_after=7, count=2)
    for _ in range(2):
        response = await call(http, "sendMessage", chat_id=ANN, text="x")
        assert response.status_code == 429
        assert response.json() == {
            "ok": False,
            "error_code": 429,
            "description": "Too Many Requests: retry after 7",
            "parameters": {"retry_after": 7},
        }
    await ok(http, "sendMessage", chat_id=ANN, text="third time lucky")

    await tg.inject_fault("500", chat_id=ANN)
    await tg.inject_fault("502", chat_id=ANN)
    await tg.inject_fault("403", chat_id=ANN)
    await ok(http, "sendMessage", chat_id=MING, text="other chats are unaffected")
    assert (await ok(http, "getMe"))["id"] == BOT_ID  # "*" faults skip getMe
    assert (await call(http, "sendMessage", chat_id=ANN, text="x")).json()[
        "description"
    ] == "Internal Server Error"
    assert (await call(http, "sendMessage", chat_id=ANN, text="x")).status_code == 502
    forbidden = await call(http, "sendMessage", chat_id=ANN, text="x")
    assert forbidden.json()["description"] == "Forbidden: bot was blocked by the user"
    await tg.inject_fault("delay", delay=0.05)
    assert (await ok(http, "sendMessage", chat_id=ANN, text="slow"))["text"] == "slow"
    assert await tg.faults() == []

    stats = await tg.stats()
    assert stats["rate_limited"]["sendMessage"] == 2
    assert stats["delivered"]["sendMessage"] == 3
    outcomes = [c["outcome"] for c in await tg.calls("sendMessage", chat_id=ANN)]
    assert outcomes == ["fault", "fault", "ok", "fault", "fault", "fault", "delayed"]


async def test_rate_limits_refuse_bursts(http: httpx.AsyncClient, tg: LocalApiControl) -> None:
    await tg.set_limits(enabled=True, private_burst=3, private_per_second=0.5)
    answers = [await call(http, "sendMessage", chat_id=ANN, text=f"m{i}") for i in range(8)]
    delivered = [a for a in answers if a.status_code == 200]
    refused = [a for a in answers if a.status_code == 429]
    assert len(delivered) == 3 and len(refused) == 5
    assert all(a.json()["parameters"]["retry_after"] >= 1 for a in refused)
    assert [m["text"] for m in await tg.transcript(ANN)] == ["m0", "m1", "m2"]
    stats = await tg.stats()
    assert stats["delivered"]["sendMessage"] == 3 and stats["rate_limited"]["sendMessage"] == 5

    group = await forum(tg)
    await tg.set_limits(group_burst=2)
    group_answers = [(await call(http, "sendMessage", chat_id=group, text="g")).status_code for _ in range(3)]
    assert group_answers == [200, 200, 429]
    await tg.set_limits(enabled=False)
    await ok(http, "sendMessage", chat_id=ANN, text="limits off")


async def test_forum_topics_lifecycle(http: httpx.AsyncClient, tg: LocalApiControl) -> None:
    group = await forum(tg)
    topic = await ok(http, "createForumTopic", chat_id=group, name="Ann Lee · #1001")
    assert set(topic) == {"message_thread_id", "name", "icon_color"} and topic["icon_color"] == 7322096
    thread = topic["message_thread_id"]
    posted = await ok(
        http, "sendMessage", chat_id=group, message_thread_id=thread, text="New member question"
    )
    assert posted["message_thread_id"] == thread and posted["is_topic_message"] is True
    assert posted["reply_to_message"]["forum_topic_created"]["name"] == "Ann Lee · #1001"
    assert posted["chat"] == {"id": group, "type": "supergroup", "title": "Staff room", "is_forum": True}

    staff_reply = await tg.send_text(STAFF, "We'll help", chat_id=group, thread_id=thread)
    update = (await ok(http, "getUpdates"))[-1]["message"]
    assert update["message_thread_id"] == thread and update["is_topic_message"] is True
    assert update["message_id"] == staff_reply["message_id"] and update["from"]["id"] == STAFF
    assert [m["text"] for m in await tg.transcript(group, thread) if m["text"]] == [
        "New member question",
        "We'll help",
    ]

    missing = await call(http, "sendMessage", chat_id=group, message_thread_id=99999, text="x")
    assert missing.json()["description"] == "Bad Request: message thread not found"
    await ok(http, "editForumTopic", chat_id=group, message_thread_id=thread, name="Ann Lee · gold")
    await ok(http, "closeForumTopic", chat_id=group, message_thread_id=thread)
    await ok(http, "reopenForumTopic", chat_id=group, message_thread_id=thread)
    assert (await tg.topics(group))[0]["name"] == "Ann Lee · gold"

    await tg.delete_topic(group, thread)
    gone = await call(http, "sendMessage", chat_id=group, message_thread_id=thread, text="still there?")
    assert gone.status_code == 400 and gone.json()["description"] == "Bad Request: message thread not found"
    assert (await tg.topics(group))[0]["deleted"] is True

    second = await ok(http, "createForumTopic", chat_id=group, name="Second")
    await ok(http, "deleteForumTopic", chat_id=group, message_thread_id=second["message_thread_id"])
    again = await call(
        http, "sendMessage", chat_id=group, message_thread_id=second["message_thread_id"], text="x"
    )
    assert again.json()["description"] == "Bad Request: message thread not found"
    not_forum = await tg.create_group("Plain", is_forum=False)
    refused = await call(http, "createForumTopic", chat_id=not_forum["id"], name="x")
    assert refused.json()["description"] == "Bad Request: the chat is not a forum"


async def test_copy_and_forward_into_a_thread(http: httpx.AsyncClient, tg: LocalApiControl) -> None:
    group = await forum(tg)
    thread = (await ok(http, "createForumTopic", chat_id=group, name="Ann"))["message_thread_id"]
    photo = await tg.send_photo(ANN, caption="my receipt")
    text = await tg.send_text(ANN, "hello staff")
    copied = await ok(
        http,
        "copyMessage",
        chat_id=group,
        message_thread_id=thread,
        from_chat_id=ANN,
        message_id=photo["message_id"],
        caption="<i>from Ann</i>",
        parse_mode="HTML",
    )
    assert set(copied) == {"message_id"}
    await ok(
        http,
        "copyMessage",
        chat_id=group,
        message_thread_id=thread,
        from_chat_id=ANN,
        message_id=text["message_id"],
    )
    forwarded = await ok(
        http,
        "forwardMessage",
        chat_id=group,
        message_thread_id=thread,
        from_chat_id=ANN,
        message_id=text["message_id"],
    )
    assert (
        forwarded["forward_origin"]["type"] == "user"
        and forwarded["forward_origin"]["sender_user"]["id"] == ANN
    )

    in_thread = [m for m in await tg.transcript(group, thread) if m["kind"] != "service"]
    assert in_thread[0]["message_id"] == copied["message_id"]
    assert in_thread[0]["photo_file_id"] == photo["photo_file_id"]
    assert in_thread[0]["caption"] == "from Ann" and in_thread[0]["entities"][0]["type"] == "italic"
    assert in_thread[1]["text"] == "hello staff" and in_thread[1]["thread_id"] == thread

    missing = await call(http, "copyMessage", chat_id=group, from_chat_id=ANN, message_id=999)
    assert missing.json()["description"] == "Bad Request: message to copy not found"
    await tg.delete_topic(group, thread)
    dead = await call(
        http,
        "copyMessage",
        chat_id=group,
        message_thread_id=thread,
        from_chat_id=ANN,
        message_id=text["message_id"],
    )
    assert dead.json()["description"] == "Bad Request: message thread not found"


async def test_wait_for_bot_message_and_timeout(http: httpx.AsyncClient, tg: LocalApiControl) -> None:
    first = await ok(http, "sendMessage", chat_id=ANN, text="Welcome!")
    waiter = asyncio.create_task(
        tg.wait_for_bot_message(ANN, after_id=first["message_id"], contains="points")
    )
    await ok(http, "sendMessage", chat_id=ANN, text="Something else")
    await ok(http, "sendMessage", chat_id=ANN, text="You have 120 points")
    found = await asyncio.wait_for(waiter, 10)
    assert found["text"] == "You have 120 points"
    with pytest.raises(TimeoutError):
        await tg.wait_for_bot_message(ANN, after_id=found["message_id"], timeout=0.1)


async def test_reset_and_demo_config(api: LocalBotApi, tg: LocalApiControl) -> None:
    config = await tg.demo_config()
    assert [i["label"] for i in config["identities"]] == [
        "Ann (English)",
        "小明 (简体中文)",
        "阿美 (繁體中文)",
    ]
    await tg.set_demo_config(
        identities=[
            *config["identities"],
            {"id": STAFF, "first_name": "Sam", "label": "Sam (staff)", "role": "staff"},
        ],
        staff_group={"id": -1009001, "title": "Loyalty staff"},
    )
    group = await tg.chat(-1009001)
    assert group["is_forum"] is True and STAFF in group["members"]
    added = await tg.add_identity({"first_name": "Zoe", "language_code": "fr"})
    assert added["label"] == "Zoe (fr)" and any(u["id"] == added["id"] for u in await tg.users())
    async with httpx.AsyncClient(base_url=api.url) as client:
        page = await client.get("/")
        assert page.status_code == 200 and 'data-testid="identity-picker"' in page.text
        script = await client.get("/static/app.js")
        assert script.status_code == 200 and "renderEntities" in script.text
        assert (await client.get("/static/style.css")).status_code == 200
    await tg.reset()
    assert await tg.users() == [] and await tg.chats() == []


# ------------------------------------------------------------------------------------- aiogram 3


def aiogram_bot(api: LocalBotApi) -> Any:
    from aiogram import Bot
    from aiogram.client.session.aiohttp import AiohttpSession
    from aiogram.client.telegram import TelegramAPIServer

    return Bot(TOKEN, session=AiohttpSession(api=TelegramAPIServer.from_base(api.url)))


async def test_aiogram_bot_methods(api: LocalBotApi, tg: LocalApiControl) -> None:
    from aiogram.types import (
        BotCommand,
        BotCommandScopeDefault,
        BufferedInputFile,
        InlineKeyboardButton,
        InlineKeyboardMarkup,
    )

    bot = aiogram_bot(api)
    try:
        me = await bot.get_me()
        assert me.id == BOT_ID and me.is_bot
        markup = InlineKeyboardMarkup(
            inline_keyboard=[[InlineKeyboardButton(text="Balance", callback_data="bal")]]
        )
        msg = await bot.send_message(ANN, "<b>Hi</b> Ann", parse_mode="HTML", reply_markup=markup)
        assert msg.text == "Hi Ann" and msg.chat.id == ANN
        assert msg.reply_markup is not None and msg.reply_markup.inline_keyboard[0][0].callback_data == "bal"
        photo = await bot.send_photo(ANN, BufferedInputFile(make_png(32, 48), "qr.png"), caption="Your QR")
        assert photo.photo[-1].width == 32 and photo.photo[-1].height == 48 and photo.caption == "Your QR"
        file = await bot.get_file(photo.photo[-1].file_id)
        assert file.file_path
        downloaded = await bot.download_file(file.file_path)
        assert downloaded is not None and downloaded.read() == make_png(32, 48)
        again = await bot.send_photo(ANN, photo.photo[-1].file_id)  # re-send by file_id
        assert again.photo[-1].file_id == photo.photo[-1].file_id
        edited = await bot.edit_message_text(
            "Bye", chat_id=ANN, message_id=msg.message_id, reply_markup=markup
        )
        assert not isinstance(edited, bool) and edited.text == "Bye" and edited.edit_date

        query_id = await tg.press(ANN, ANN, msg.message_id, "bal")
        assert await bot.answer_callback_query(query_id, text="120 points") is True
        assert (await tg.callback_answers(query_id))[0]["text"] == "120 points"

        await bot.set_my_commands([BotCommand(command="start", description="Start")])
        await bot.set_my_commands([BotCommand(command="start", description="开始")], language_code="zh")
        zh = await bot.get_my_commands(scope=BotCommandScopeDefault(), language_code="zh")
        assert [(c.command, c.description) for c in zh] == [("start", "开始")]
        assert (await bot.get_my_commands())[0].description == "Start"
        await bot.send_chat_action(ANN, "typing")
        chat = await bot.get_chat(ANN)
        assert chat.id == ANN and chat.type == "private"
    finally:
        await bot.session.close()


async def test_aiogram_errors(api: LocalBotApi, tg: LocalApiControl) -> None:
    from aiogram.exceptions import TelegramBadRequest, TelegramForbiddenError, TelegramRetryAfter
    from aiogram.types import InlineKeyboardButton, InlineKeyboardMarkup

    bot = aiogram_bot(api)
    try:
        await tg.inject_fault("429", method="sendMessage", retry_after=3)
        with pytest.raises(TelegramRetryAfter) as retry:
            await bot.send_message(ANN, "x")
        assert retry.value.retry_after == 3
        await tg.inject_fault("403", method="sendMessage")
        with pytest.raises(TelegramForbiddenError):
            await bot.send_message(ANN, "x")
        with pytest.raises(TelegramBadRequest, match="message is too long"):
            await bot.send_message(ANN, "y" * 5000)
        big = InlineKeyboardMarkup(inline_keyboard=[[InlineKeyboardButton(text="b", callback_data="z" * 65)]])
        with pytest.raises(TelegramBadRequest, match="BUTTON_DATA_INVALID"):
            await bot.send_message(ANN, "k", reply_markup=big)
        group = await forum(tg)
        with pytest.raises(TelegramBadRequest, match="message thread not found"):
            await bot.send_message(group, "x", message_thread_id=4242)
        await tg.set_limits(enabled=True, private_burst=1, private_per_second=0.01)
        await bot.send_message(MING, "one")
        with pytest.raises(TelegramRetryAfter):
            await bot.send_message(MING, "two")
        assert [m["text"] for m in await tg.transcript(MING)] == ["one"]
    finally:
        await bot.session.close()


async def test_aiogram_dispatcher_polling(api: LocalBotApi, tg: LocalApiControl) -> None:
    from aiogram import Dispatcher, F
    from aiogram.filters import CommandStart
    from aiogram.types import CallbackQuery, InlineKeyboardButton, InlineKeyboardMarkup, Message

    dp = Dispatcher()

    @dp.message(CommandStart())
    async def start(message: Message) -> None:
        markup = InlineKeyboardMarkup(
            inline_keyboard=[[InlineKeyboardButton(text="Points", callback_data="pts")]]
        )
        await message.answer(
            f"Welcome, {message.from_user.first_name if message.from_user else '?'}!", reply_markup=markup
        )

    @dp.callback_query(F.data == "pts")
    async def points(query: CallbackQuery) -> None:
        if isinstance(query.message, Message):
            await query.message.edit_text("Points: 10")
        await query.answer("You have 10 points", show_alert=True)

    bot = aiogram_bot(api)
    polling = asyncio.create_task(dp.start_polling(bot, handle_signals=False, polling_timeout=2))
    try:
        sent = await tg.send_text(ANN, "/start")
        welcome = await tg.wait_for_bot_message(ANN, after_id=sent["message_id"], contains="Welcome")
        assert welcome["text"] == "Welcome, Ann!"
        query_id = await tg.press(ANN, ANN, welcome["message_id"], "pts")
        answer = await tg.wait_for_callback_answer(query_id)
        assert answer["text"] == "You have 10 points" and answer["show_alert"] is True
        final = [m for m in await tg.transcript(ANN) if m["message_id"] == welcome["message_id"]][0]
        assert final["text"] == "Points: 10" and [e["text"] for e in final["edits"]] == ["Welcome, Ann!"]
    finally:
        await dp.stop_polling()
        await asyncio.wait_for(polling, 10)


# ------------------------------------------------------------------------- python-telegram-bot 22


async def test_ptb_bot_methods(api: LocalBotApi, tg: LocalApiControl) -> None:
    from telegram import Bot, BotCommand, InlineKeyboardButton, InlineKeyboardMarkup
    from telegram.constants import ParseMode

    async with Bot(TOKEN, base_url=f"{api.url}/bot", base_file_url=f"{api.url}/file/bot") as bot:
        me = await bot.get_me()
        assert me.id == BOT_ID
        markup = InlineKeyboardMarkup([[InlineKeyboardButton("Balance", callback_data="bal")]])
        msg = await bot.send_message(ANN, "<i>Hello</i>", parse_mode=ParseMode.HTML, reply_markup=markup)
        assert msg.text == "Hello" and msg.reply_markup == markup
        photo = await bot.send_photo(ANN, make_png(20, 10), caption="QR")
        assert photo.photo[-1].width == 20
        file = await bot.get_file(photo.photo[-1].file_id)
        assert bytes(await file.download_as_bytearray()) == make_png(20, 10)
        document = await bot.send_document(ANN, b"csv,data\n", filename="points.csv")
        assert document.document is not None and document.document.file_name == "points.csv"
        edited = await bot.edit_message_text("Bye", chat_id=ANN, message_id=msg.message_id)
        assert not isinstance(edited, bool) and edited.text == "Bye"
        query_id = await tg.press(ANN, ANN, msg.message_id, "bal")
        assert await bot.answer_callback_query(query_id, text="ok") is True
        await bot.set_my_commands([BotCommand("start", "开始")], language_code="zh")
        assert [c.description for c in await bot.get_my_commands(language_code="zh")] == ["开始"]
        await tg.create_group("Staff", chat_id=-1001234, members=[STAFF])
        topic = await bot.create_forum_topic(-1001234, "Ann")
        sent = await bot.send_message(-1001234, "in topic", message_thread_id=topic.message_thread_id)
        assert sent.message_thread_id == topic.message_thread_id and sent.is_topic_message
        copied = await bot.copy_message(
            -1001234, ANN, photo.message_id, message_thread_id=topic.message_thread_id
        )
        assert copied.message_id > sent.message_id


@pytest.mark.filterwarnings("ignore:Deprecated since version v22.2")
async def test_ptb_errors(api: LocalBotApi, tg: LocalApiControl) -> None:
    from telegram import Bot
    from telegram.error import BadRequest, Forbidden, RetryAfter

    async with Bot(TOKEN, base_url=f"{api.url}/bot", base_file_url=f"{api.url}/file/bot") as bot:
        await tg.inject_fault("429", method="sendMessage", retry_after=5)
        with pytest.raises(RetryAfter) as retry:
            await bot.send_message(ANN, "x")
        waited = retry.value.retry_after
        assert (waited if isinstance(waited, int) else waited.total_seconds()) == 5
        await tg.inject_fault("403", method="sendMessage")
        with pytest.raises(Forbidden):
            await bot.send_message(ANN, "x")
        with pytest.raises(BadRequest, match="[Cc]hat not found"):
            await bot.send_message(31337, "x")


async def test_ptb_application_polling(api: LocalBotApi, tg: LocalApiControl) -> None:
    from telegram import Update
    from telegram.ext import (
        Application,
        CallbackQueryHandler,
        CommandHandler,
        ContextTypes,
        MessageHandler,
        filters,
    )

    async def start(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        assert update.effective_message is not None and update.effective_user is not None
        await update.effective_message.reply_text(
            f"Hi {update.effective_user.first_name}, args={context.args}", do_quote=True
        )

    async def echo(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        assert update.effective_message is not None
        await update.effective_message.reply_text(f"echo: {update.effective_message.text}")

    async def button(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        assert update.callback_query is not None
        await update.callback_query.answer(f"pressed {update.callback_query.data}")

    app = (
        Application.builder()
        .token(TOKEN)
        .base_url(f"{api.url}/bot")
        .base_file_url(f"{api.url}/file/bot")
        .build()
    )
    app.add_handler(CommandHandler("start", start))
    app.add_handler(MessageHandler(filters.TEXT & ~filters.COMMAND, echo))
    app.add_handler(CallbackQueryHandler(button))
    async with app:
        await app.start()
        assert app.updater is not None
        await app.updater.start_polling(timeout=2, poll_interval=0)
        try:
            sent = await tg.send_text(MING, "/start gold")
            reply = await tg.wait_for_bot_message(MING, after_id=sent["message_id"])
            assert reply["text"] == "Hi 小明, args=['gold']"
            assert reply["message"]["reply_to_message"]["message_id"] == sent["message_id"]
            sent = await tg.send_text(MING, "how many points?")
            reply = await tg.wait_for_bot_message(MING, after_id=sent["message_id"], contains="echo")
            assert reply["text"] == "echo: how many points?"
            query_id = await tg.press(MING, MING, reply["message_id"], "forged:data")
            assert (await tg.wait_for_callback_answer(query_id))["text"] == "pressed forged:data"
        finally:
            await app.updater.stop()
            await app.stop()
