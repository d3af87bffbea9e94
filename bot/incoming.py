"""Telegram updates read into an `Incoming`: aiogram's and PTB's objects, and recorded Bot API JSON.

aiogram and python-telegram-bot both mirror the Bot API's field names (from_user, chat.type,
message_thread_id, photo[-1].file_id ...), so one reading of a Message serves both runtimes and
guarantees a conversation sees exactly the same Incoming whichever framework is running; a recorded
update's JSON is read by the very same functions (`incoming_from_json`).
"""

from __future__ import annotations

from typing import Any

from loyalbot.chat.port import Contact, Incoming, IncomingMedia, parse_command

MEDIA_FIELDS = ("photo", "document", "voice", "video", "audio", "sticker", "animation", "video_note")


def _plain(value: Any) -> str:
    return str(getattr(value, "value", value))


def _where(message: Any) -> tuple[int, str, int | None]:
    chat = message.chat
    chat_type = _plain(chat.type)
    thread_id = getattr(message, "message_thread_id", None)
    # Outside forum topics a thread id only marks a reply chain; replies must not be sent "into" it.
    if thread_id is not None and not (getattr(message, "is_topic_message", None) or getattr(chat, "is_forum", None)):
        thread_id = None
    return chat.id, chat_type, thread_id


def _media(message: Any) -> IncomingMedia | None:
    for kind in MEDIA_FIELDS:
        item = getattr(message, kind, None)
        if not item:
            continue
        if isinstance(item, (list, tuple)):  # photo sizes, smallest first
            item = item[-1]
        name = kind if kind in ("photo", "document", "voice", "video", "audio", "sticker") else "other"
        return IncomingMedia(kind=name, file_id=item.file_id, caption=getattr(message, "caption", None),
                             filename=getattr(item, "file_name", None))
    return None


def incoming_from_message(message: Any, *, edited: bool = False) -> Incoming | None:
    """An aiogram or PTB Message as an `Incoming`; None for what no conversation handles (service messages)."""
    user = getattr(message, "from_user", None)
    if user is None or getattr(user, "is_bot", False):
        return None  # channel posts, anonymous admins, other bots
    chat_id, chat_type, thread_id = _where(message)
    reply_to = getattr(message, "reply_to_message", None)
    reply_to_id = reply_to.message_id if reply_to is not None else None
    if reply_to_id is not None and reply_to_id == thread_id:
        reply_to_id = None  # in a forum topic every message "replies" to the topic's first message
    base: dict[str, Any] = dict(
        user_id=user.id, chat_id=chat_id, chat_type=chat_type, language_code=user.language_code,
        first_name=user.first_name, last_name=user.last_name, username=user.username, thread_id=thread_id,
        message_id=message.message_id, reply_to_message_id=reply_to_id, edited=edited,
    )
    text = getattr(message, "text", None)
    if text is not None:
        command, args = parse_command(text)
        if command is not None:
            return Incoming(**base, command=command, args=args)
        return Incoming(**base, text=text)
    contact = getattr(message, "contact", None)
    if contact is not None:
        return Incoming(**base, contact=Contact(phone=contact.phone_number, user_id=contact.user_id,
                                                first_name=contact.first_name))
    media = _media(message)
    if media is not None:
        return Incoming(**base, media=media)
    if chat_type == "private":
        # A location, poll, dice ...: still a member talking to us, who deserves an answer.
        return Incoming(**base, media=IncomingMedia(kind="other", file_id=""))
    return None


def incoming_from_callback(query: Any) -> Incoming | None:
    """An aiogram or PTB CallbackQuery (a pressed inline button) as an `Incoming`."""
    user = query.from_user
    message = getattr(query, "message", None)
    if message is not None and getattr(message, "chat", None) is not None:
        chat_id, chat_type, thread_id = _where(message)
        message_id: int | None = message.message_id
    else:  # a button under an inline-mode message: no chat to answer in but the user's own
        chat_id, chat_type, thread_id, message_id = user.id, "private", None, None
    return Incoming(
        user_id=user.id, chat_id=chat_id, chat_type=chat_type, language_code=user.language_code,
        first_name=user.first_name, last_name=user.last_name, username=user.username, thread_id=thread_id,
        message_id=message_id, callback_data=query.data or "", callback_id=query.id,
    )


def incoming_from_update(update: Any) -> Incoming | None:
    """An aiogram or PTB Update as an `Incoming`: its message, edited message or pressed button."""
    if getattr(update, "message", None) is not None:
        return incoming_from_message(update.message)
    if getattr(update, "edited_message", None) is not None:
        return incoming_from_message(update.edited_message, edited=True)
    if getattr(update, "callback_query", None) is not None:
        return incoming_from_callback(update.callback_query)
    return None


class Fields:
    """A Bot API object as JSON, read the way aiogram and PTB objects are read: by attribute, with the
    framework's names (`from_user` for "from"), an absent field None, nested objects as `Fields` too."""

    __slots__ = ("_raw",)
    ALIASES = {"from_user": "from"}

    def __init__(self, raw: dict[str, Any]) -> None:
        self._raw = raw

    def __getattr__(self, name: str) -> Any:
        return _fields(self._raw.get(self.ALIASES.get(name, name)))


def _fields(value: Any) -> Any:
    if isinstance(value, dict):
        return Fields(value)
    if isinstance(value, list):
        return [_fields(item) for item in value]
    return value


def incoming_from_json(update: dict[str, Any]) -> Incoming | None:
    """A recorded update (Bot API JSON) as an `Incoming`, without building a framework's objects first.

    The same reading as `incoming_from_update` (the very same functions), so it gives exactly the
    `Incoming` that aiogram's or PTB's parse would (tests/bot/test_parse.py holds the three to it);
    a framework's parse of every update costs more than the rest of a simple answer's CPU (PTB: ~0.3 ms)."""
    if not isinstance(update, dict):
        raise TypeError("an update is a JSON object")
    return incoming_from_update(Fields(update))


__all__ = ["MEDIA_FIELDS", "Fields", "incoming_from_callback", "incoming_from_json", "incoming_from_message",
           "incoming_from_update"]
