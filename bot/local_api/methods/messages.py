"""Sending messages that carry no uploaded file: text, contact, location, copies and forwards."""

from __future__ import annotations

import copy
from typing import Any

from ..errors import bad
from ..hub import Hub
from ..params import Params, caption_content, message_text
from ..records import CONTENT_KEYS, MEDIA_KINDS, BotRec, MsgRec
from .common import chat_param, deliver, send_target, thread_and_reply
from .table import method

__all__: list[str] = []

PAST = {"copy": "copied", "forward": "forwarded"}


@method("sendMessage", limited=True)
async def send_message(hub: Hub, bot: BotRec, params: Params) -> Any:
    chat = send_target(hub, params)
    text, plain, entities = message_text(params)
    content: dict[str, Any] = {"text": plain}
    if entities:
        content["entities"] = entities
    msg = deliver(hub, bot, chat, params, content, method="sendMessage", raw_text=text)
    return hub.world.message_api(msg)


@method("sendContact", limited=True)
async def send_contact(hub: Hub, bot: BotRec, params: Params) -> Any:
    chat = send_target(hub, params)
    phone = params.string("phone_number")
    first_name = params.string("first_name")
    if not phone:
        raise bad("phone number is empty")
    if not first_name:
        raise bad("first name is empty")
    contact: dict[str, Any] = {"phone_number": phone, "first_name": first_name}
    if params.string("last_name"):
        contact["last_name"] = params.string("last_name")
    if params.string("vcard"):
        contact["vcard"] = params.string("vcard")
    msg = deliver(hub, bot, chat, params, {"contact": contact}, method="sendContact")
    return hub.world.message_api(msg)


@method("sendLocation", limited=True)
async def send_location(hub: Hub, bot: BotRec, params: Params) -> Any:
    chat = send_target(hub, params)
    latitude, longitude = params.number("latitude"), params.number("longitude")
    if latitude is None or longitude is None:
        raise bad("wrong latitude or longitude specified")
    msg = deliver(
        hub,
        bot,
        chat,
        params,
        {"location": {"latitude": latitude, "longitude": longitude}},
        method="sendLocation",
    )
    return hub.world.message_api(msg)


def source_content(hub: Hub, params: Params, verb: str) -> tuple[MsgRec, dict[str, Any]]:
    """The message ``from_chat_id``/``message_id`` name, and a copy of what it carries."""
    source_chat = chat_param(hub, params, "from_chat_id")
    message_id = params.integer("message_id")
    if message_id is None:
        raise bad("message identifier is not specified")
    msg = source_chat.messages.get(message_id)
    if msg is None or msg.deleted:
        raise bad(f"message to {verb} not found")
    content = {key: copy.deepcopy(value) for key, value in msg.content.items() if key in CONTENT_KEYS}
    if not content:
        raise bad(f"message can't be {PAST[verb]}")
    return msg, content


@method("copyMessage", limited=True)
async def copy_message(hub: Hub, bot: BotRec, params: Params) -> Any:
    chat = send_target(hub, params)
    _source, content = source_content(hub, params, "copy")
    is_media = any(kind in content for kind in MEDIA_KINDS)
    if params.has("caption") and is_media:
        for key in ("caption", "caption_entities"):
            content.pop(key, None)
        content.update(caption_content(params))
    msg = deliver(
        hub,
        bot,
        chat,
        params,
        content,
        method="copyMessage",
        raw_text=content.get("text") or content.get("caption"),
    )
    return {"message_id": msg.message_id}


@method("forwardMessage", limited=True)
async def forward_message(hub: Hub, bot: BotRec, params: Params) -> Any:
    chat = send_target(hub, params)
    source, content = source_content(hub, params, "forward")
    origin = {"type": "user", "date": source.date, "sender_user": hub.world.sender_api(source)}
    placement = (thread_and_reply(hub, chat, params)[0], None)
    msg = deliver(
        hub, bot, chat, params, content, method="forwardMessage", thread_and_reply_to=placement, markup={}
    )
    msg.forward_origin = origin
    return hub.world.message_api(msg)
