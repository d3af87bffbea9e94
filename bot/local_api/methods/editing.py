"""Changing what the bot sent: editing text, caption or inline keyboard, and deleting messages."""

from __future__ import annotations

from typing import Any

from ..errors import bad
from ..hub import Hub
from ..markup import markup_param, not_modified, same_markup
from ..params import Params, caption_content, message_text
from ..records import MEDIA_KINDS, BotRec, ChatRec, MsgRec
from .common import chat_param
from .table import method

__all__: list[str] = []


def bot_message(hub: Hub, bot: BotRec, params: Params) -> tuple[ChatRec, MsgRec]:
    """The bot's own message that ``chat_id``/``message_id`` name, for editing."""
    if params.raw.get("inline_message_id"):
        raise bad("MESSAGE_ID_INVALID")
    chat = chat_param(hub, params)
    message_id = params.integer("message_id")
    if message_id is None:
        raise bad("message identifier is not specified")
    msg = chat.messages.get(message_id)
    if msg is None or msg.deleted:
        raise bad("message to edit not found")
    if not msg.from_bot or msg.from_id != bot.id:
        raise bad("message can't be edited")
    return chat, msg


@method("editMessageText")
async def edit_message_text(hub: Hub, bot: BotRec, params: Params) -> Any:
    _chat, msg = bot_message(hub, bot, params)
    if "text" not in msg.content:
        raise bad("there is no text in the message to edit")
    text, plain, entities = message_text(params)
    markup = markup_param(params, inline_only=True)
    same_text = plain == msg.content.get("text") and entities == (msg.content.get("entities") or [])
    if same_text and same_markup(markup, msg.reply_markup):
        raise not_modified()
    hub.record_edit(msg)
    msg.content["text"] = plain
    msg.content.pop("entities", None)
    if entities:
        msg.content["entities"] = entities
    msg.reply_markup = markup  # no reply_markup in the edit removes the old inline keyboard
    msg.raw_text = text
    msg.parse_mode = params.string("parse_mode")
    return hub.world.message_api(msg)


@method("editMessageCaption")
async def edit_message_caption(hub: Hub, bot: BotRec, params: Params) -> Any:
    _chat, msg = bot_message(hub, bot, params)
    if not any(kind in msg.content for kind in MEDIA_KINDS):
        raise bad("there is no caption in the message to edit")
    caption = caption_content(params)
    markup = markup_param(params, inline_only=True)
    same = caption.get("caption") == msg.content.get("caption") and caption.get(
        "caption_entities"
    ) == msg.content.get("caption_entities")
    if same and same_markup(markup, msg.reply_markup):
        raise not_modified()
    hub.record_edit(msg)
    for key in ("caption", "caption_entities", "show_caption_above_media"):
        msg.content.pop(key, None)
    msg.content.update(caption)
    msg.reply_markup = markup
    msg.raw_text = params.string("caption")
    return hub.world.message_api(msg)


@method("editMessageReplyMarkup")
async def edit_message_reply_markup(hub: Hub, bot: BotRec, params: Params) -> Any:
    _chat, msg = bot_message(hub, bot, params)
    markup = markup_param(params, inline_only=True)
    if same_markup(markup, msg.reply_markup):
        raise not_modified()
    hub.record_edit(msg)
    msg.reply_markup = markup
    return hub.world.message_api(msg)


def delete(hub: Hub, chat: ChatRec, message_id: int) -> bool:
    """Mark a message deleted; False when there was none to delete."""
    msg = chat.messages.get(message_id)
    if msg is None or msg.deleted:
        return False
    msg.deleted = True
    hub.notify({"type": "delete", "chat_id": chat.id, "thread_id": msg.thread_id, "message_id": message_id})
    return True


@method("deleteMessage")
async def delete_message(hub: Hub, bot: BotRec, params: Params) -> Any:
    chat = chat_param(hub, params)
    message_id = params.integer("message_id")
    if message_id is None:
        raise bad("message identifier is not specified")
    if not delete(hub, chat, message_id):
        raise bad("message to delete not found")
    return True


@method("deleteMessages")
async def delete_messages(hub: Hub, bot: BotRec, params: Params) -> Any:
    chat = chat_param(hub, params)
    ids = params.json("message_ids")
    if not isinstance(ids, list) or not ids:
        raise bad("message identifiers are not specified")
    for message_id in ids:
        delete(hub, chat, int(message_id))
    return True
