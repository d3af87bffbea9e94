"""The records of the local Bot API server's world: bots, users, chats, topics, messages, files.

Plain data plus the JSON builders that turn one record into its Bot API object (``User``,
``ForumTopic``, ``File``, ``PhotoSize`` ...); :class:`~loyalbot.bot.local_api.world.World` keeps them
and builds the objects that need more than one record (``Chat``, ``Message``).
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "CONTENT_KEYS",
    "MEDIA_KINDS",
    "SERVICE_KEYS",
    "TOPIC_COLORS",
    "BotRec",
    "ChatRec",
    "FileRec",
    "MsgRec",
    "TopicRec",
    "UserRec",
    "WebhookRec",
    "now",
]

# Telegram's fixed palette for forum topic icons; the first one is its default.
TOPIC_COLORS = (7322096, 16766590, 13338331, 9367192, 16749490, 16478047)

# Message fields that carry content, i.e. what copyMessage copies and what a transcript shows.
MEDIA_KINDS = ("photo", "document", "sticker", "voice", "video", "audio", "animation")
CONTENT_KEYS = (
    "text",
    "entities",
    "caption",
    "caption_entities",
    "contact",
    "location",
    "show_caption_above_media",
    "has_media_spoiler",
    *MEDIA_KINDS,
)
SERVICE_KEYS = (
    "forum_topic_created",
    "forum_topic_edited",
    "forum_topic_closed",
    "forum_topic_reopened",
    "new_chat_members",
)


def now() -> int:
    """Current Unix time in whole seconds, as Telegram's ``date`` fields use."""
    return int(time.time())


@dataclass
class UserRec:
    """A Telegram user the tests or the demo page act as."""

    id: int
    first_name: str
    last_name: str | None = None
    username: str | None = None
    language_code: str | None = None
    phone_number: str | None = None
    is_premium: bool | None = None
    started: bool = True  # has pressed Start, so the bot may write first
    blocked: bool = False  # has blocked the bot(s)
    deactivated: bool = False

    def api(self) -> dict[str, Any]:
        """The ``User`` object as Telegram sends it."""
        data: dict[str, Any] = {"id": self.id, "is_bot": False, "first_name": self.first_name}
        if self.last_name:
            data["last_name"] = self.last_name
        if self.username:
            data["username"] = self.username
        if self.language_code:
            data["language_code"] = self.language_code
        if self.is_premium:
            data["is_premium"] = True
        return data

    def phone(self) -> str:
        """The user's phone number, made up from the id when none was given."""
        return self.phone_number or f"+1555{self.id % 10_000_000:07d}"

    def control(self) -> dict[str, Any]:
        """The user as the control API shows it (API fields plus test switches)."""
        return {
            **self.api(),
            "phone_number": self.phone(),
            "started": self.started,
            "blocked": self.blocked,
            "deactivated": self.deactivated,
        }


@dataclass
class WebhookRec:
    """A bot's webhook as set by ``setWebhook``."""

    url: str
    secret_token: str | None = None
    max_connections: int = 40
    allowed_updates: list[str] | None = None
    ip_address: str | None = None
    last_error_date: int | None = None
    last_error_message: str | None = None


@dataclass
class BotRec:
    """A bot known to the server, created the first time its token is used."""

    token: str
    id: int
    first_name: str = "Local Bot"
    username: str = ""
    invalid: bool = False
    next_update_id: int = 1
    updates: list[dict[str, Any]] = field(default_factory=list)
    allowed_updates: list[str] | None = None
    webhook: WebhookRec | None = None
    commands: dict[tuple[str, str], list[dict[str, str]]] = field(default_factory=dict)
    poll_generation: int = 0
    can_join_groups: bool = True
    can_read_all_group_messages: bool = True

    def __post_init__(self) -> None:
        if not self.username:
            self.username = f"local_{self.id}_bot"

    def api(self) -> dict[str, Any]:
        """The bot's ``User`` object (the ``from`` of its messages)."""
        return {"id": self.id, "is_bot": True, "first_name": self.first_name, "username": self.username}

    def me(self) -> dict[str, Any]:
        """What ``getMe`` returns."""
        return {
            **self.api(),
            "can_join_groups": self.can_join_groups,
            "can_read_all_group_messages": self.can_read_all_group_messages,
            "supports_inline_queries": False,
            "can_connect_to_business": False,
            "has_main_web_app": False,
        }


@dataclass
class TopicRec:
    """A forum topic; its ``thread_id`` is the id of the service message that created it."""

    thread_id: int
    name: str
    icon_color: int = TOPIC_COLORS[0]
    icon_custom_emoji_id: str | None = None
    closed: bool = False
    deleted: bool = False
    created_by: int | None = None

    def api(self) -> dict[str, Any]:
        """The ``ForumTopic`` object."""
        data: dict[str, Any] = {
            "message_thread_id": self.thread_id,
            "name": self.name,
            "icon_color": self.icon_color,
        }
        if self.icon_custom_emoji_id:
            data["icon_custom_emoji_id"] = self.icon_custom_emoji_id
        return data

    def control(self) -> dict[str, Any]:
        """The topic as the control API shows it."""
        return {**self.api(), "closed": self.closed, "deleted": self.deleted}


@dataclass
class FileRec:
    """An uploaded file; ``file_id`` may be reused to send it again."""

    file_id: str
    file_unique_id: str
    data: bytes
    kind: str
    file_path: str
    mime_type: str | None = None
    file_name: str | None = None
    width: int | None = None
    height: int | None = None
    duration: int | None = None
    source_url: str | None = None

    def api_file(self) -> dict[str, Any]:
        """The ``File`` object returned by ``getFile``."""
        return {
            "file_id": self.file_id,
            "file_unique_id": self.file_unique_id,
            "file_size": len(self.data),
            "file_path": self.file_path,
        }

    def media(self) -> Any:
        """The media object a Message carries for this file (``PhotoSize`` list for photos)."""
        base: dict[str, Any] = {
            "file_id": self.file_id,
            "file_unique_id": self.file_unique_id,
            "file_size": len(self.data),
        }
        if self.kind == "photo":
            return [{**base, "width": self.width or 1, "height": self.height or 1}]
        if self.kind == "sticker":
            return {
                **base,
                "type": "regular",
                "width": self.width or 512,
                "height": self.height or 512,
                "is_animated": False,
                "is_video": False,
            }
        if self.kind in ("video", "animation"):
            data = {
                **base,
                "width": self.width or 1,
                "height": self.height or 1,
                "duration": self.duration or 0,
            }
            if self.mime_type:
                data["mime_type"] = self.mime_type
            if self.file_name:
                data["file_name"] = self.file_name
            return data
        if self.kind in ("voice", "audio"):
            data = {**base, "duration": self.duration or 0}
            if self.mime_type:
                data["mime_type"] = self.mime_type
            if self.kind == "audio" and self.file_name:
                data["file_name"] = self.file_name
            return data
        data = dict(base)
        if self.file_name:
            data["file_name"] = self.file_name
        if self.mime_type:
            data["mime_type"] = self.mime_type
        return data


@dataclass
class MsgRec:
    """One message in a chat transcript, sent by a bot or injected as a user."""

    chat_id: int
    message_id: int
    from_id: int
    from_bot: bool
    date: int
    content: dict[str, Any]
    thread_id: int | None = None
    reply_to: int | None = None
    reply_markup: dict[str, Any] | None = None
    parse_mode: str | None = None
    raw_text: str | None = None
    method: str | None = None
    edit_date: int | None = None
    edits: list[dict[str, Any]] = field(default_factory=list)
    deleted: bool = False
    forward_origin: dict[str, Any] | None = None
    media_group_id: str | None = None
    callback_answers: list[dict[str, Any]] = field(default_factory=list)

    @property
    def kind(self) -> str:
        """A short name for what the message carries: text, photo, contact, service, ..."""
        for key in (*MEDIA_KINDS, "contact", "location"):
            if key in self.content:
                return key
        if "text" in self.content:
            return "text"
        return "service"

    def text_or_caption(self) -> str:
        """The visible text of the message, whatever kind it is."""
        return str(self.content.get("text") or self.content.get("caption") or "")


@dataclass
class ChatRec:
    """A chat: a private chat (id == user id) or a (super)group (negative id)."""

    id: int
    type: str
    title: str | None = None
    username: str | None = None
    is_forum: bool = False
    members: list[int] = field(default_factory=list)
    admins: list[int] = field(default_factory=list)
    next_message_id: int = 1
    messages: dict[int, MsgRec] = field(default_factory=dict)
    topics: dict[int, TopicRec] = field(default_factory=dict)
    reply_keyboard: dict[str, Any] | None = None
    reply_keyboard_message_id: int | None = None
    reply_keyboard_hidden: bool = False
    chat_instance: str = field(default_factory=lambda: str(secrets.randbits(62)))

    def take_message_id(self) -> int:
        """Reserve the next message id of this chat."""
        message_id = self.next_message_id
        self.next_message_id += 1
        return message_id
