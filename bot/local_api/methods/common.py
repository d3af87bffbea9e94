"""What the sending methods share: which chat a call names, who may receive it, its topic and reply,
and storing the message once every check passed."""

from __future__ import annotations

from typing import Any

from ..errors import ApiError, bad
from ..hub import Hub
from ..markup import markup_param
from ..params import Params
from ..records import BotRec, ChatRec, MsgRec, TopicRec

__all__ = ["chat_param", "deliver", "send_target", "thread_and_reply", "topic_param"]


def chat_param(hub: Hub, params: Params, name: str = "chat_id") -> ChatRec:
    """The chat a parameter names; 400 when it is missing or unknown."""
    raw = params.raw.get(name)
    if raw is None or raw == "":
        raise bad(f"{name} is empty")
    chat = hub.find_chat(raw)
    if chat is None:
        raise bad("chat not found")
    return chat


def send_target(hub: Hub, params: Params) -> ChatRec:
    """The chat a message is sent to, refusing users who cannot receive it."""
    chat = chat_param(hub, params)
    if chat.type == "private":
        user = hub.world.user(chat.id)
        if user.deactivated:
            raise ApiError(403, "Forbidden: user is deactivated")
        if user.blocked:
            raise ApiError(403, "Forbidden: bot was blocked by the user")
        if not user.started:
            raise ApiError(403, "Forbidden: bot can't initiate conversation with a user")
    return chat


def thread_and_reply(hub: Hub, chat: ChatRec, params: Params) -> tuple[int | None, int | None]:
    """Resolve ``message_thread_id`` and the reply target, with Telegram's errors."""
    reply_to: int | None = None
    allow_without = params.flag("allow_sending_without_reply")
    reply_params = params.json("reply_parameters")
    if isinstance(reply_params, dict) and reply_params.get("message_id") is not None:
        reply_to = int(reply_params["message_id"])
        allow_without = bool(reply_params.get("allow_sending_without_reply", allow_without))
        other_chat = reply_params.get("chat_id")
        if other_chat is not None and hub.find_chat(other_chat) is not chat:
            reply_to = None  # a reply into another chat is an external reply; not modelled
    elif params.integer("reply_to_message_id") is not None:
        reply_to = params.integer("reply_to_message_id")
    target: MsgRec | None = None
    if reply_to is not None:
        target = chat.messages.get(reply_to)
        if target is None or target.deleted:
            if not allow_without:
                raise bad("message to be replied not found")
            reply_to, target = None, None
    thread_id = params.integer("message_thread_id")
    if not chat.is_forum:
        # Outside forums Telegram ignores the thread for sending purposes.
        return None, reply_to
    if thread_id is None and target is not None:
        thread_id = target.thread_id
    if thread_id is None:
        return None, reply_to
    topic = chat.topics.get(thread_id)
    if topic is None or topic.deleted:
        raise bad("message thread not found")
    if target is not None and target.thread_id != thread_id:
        if not allow_without:
            raise bad("message to be replied not found")
        reply_to = None
    return thread_id, reply_to


def topic_param(chat: ChatRec, params: Params) -> TopicRec:
    """The open forum topic ``message_thread_id`` names; 400 outside forums or for a deleted topic."""
    if not chat.is_forum:
        raise bad("the chat is not a forum")
    thread_id = params.integer("message_thread_id")
    topic = chat.topics.get(thread_id) if thread_id is not None else None
    if topic is None or topic.deleted:
        raise bad("message thread not found")
    return topic


def deliver(
    hub: Hub,
    bot: BotRec,
    chat: ChatRec,
    params: Params,
    content: dict[str, Any],
    *,
    method: str,
    raw_text: str | None = None,
    thread_and_reply_to: tuple[int | None, int | None] | None = None,
    markup: dict[str, Any] | None = None,
    media_group_id: str | None = None,
) -> MsgRec:
    """Store a bot message after all validation passed; count it as delivered."""
    thread_id, reply_to = thread_and_reply_to or thread_and_reply(hub, chat, params)
    if markup is None:
        markup = markup_param(params)
    msg = hub.world.add_message(
        chat,
        from_id=bot.id,
        from_bot=True,
        content=content,
        thread_id=thread_id,
        reply_to=reply_to,
        reply_markup=markup,
        parse_mode=params.string("parse_mode"),
        raw_text=raw_text,
        method=method,
    )
    msg.media_group_id = media_group_id
    if markup and "keyboard" in markup:
        chat.reply_keyboard = markup
        chat.reply_keyboard_message_id = msg.message_id
        chat.reply_keyboard_hidden = False
    elif markup and markup.get("remove_keyboard"):
        chat.reply_keyboard = None
        chat.reply_keyboard_message_id = None
    hub.counters["delivered"][method] += 1
    hub.notify_message(msg)
    return msg
