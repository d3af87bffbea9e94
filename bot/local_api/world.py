"""The in-memory world behind the local Bot API server: bots, users, chats, messages, files, updates.

Everything here is plain data plus the JSON builders that turn it into Bot API objects
(``User``, ``Chat``, ``Message``, ``ForumTopic``, ``PhotoSize`` ...).  The HTTP layer in
:mod:`bot.local_api.server` owns one :class:`World` and mutates it from a single event loop, so
nothing here needs locks.
"""

from __future__ import annotations

import secrets
import struct
import time
import zlib
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "BotRec",
    "ChatRec",
    "FileRec",
    "MsgRec",
    "TopicRec",
    "UserRec",
    "World",
    "image_size",
    "make_png",
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


def make_png(width: int = 64, height: int = 64, rgb: tuple[int, int, int] = (64, 160, 224)) -> bytes:
    """A solid-colour PNG, used when a test injects a photo without giving bytes."""
    row = b"\x00" + bytes(rgb) * width
    raw = row * height

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body))
            + kind
            + body
            + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


def image_size(data: bytes) -> tuple[str, int, int] | None:
    """Return ``(format, width, height)`` for PNG/JPEG/GIF/WEBP/BMP bytes, else ``None``."""
    if data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) >= 24:
        width, height = struct.unpack(">II", data[16:24])
        return "png", width, height
    if data[:6] in (b"GIF87a", b"GIF89a") and len(data) >= 10:
        width, height = struct.unpack("<HH", data[6:10])
        return "gif", width, height
    if data.startswith(b"BM") and len(data) >= 26:
        width, height = struct.unpack("<ii", data[18:26])
        return "bmp", abs(width), abs(height)
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP" and len(data) >= 30:
        if data[12:16] == b"VP8X":
            width = 1 + int.from_bytes(data[24:27], "little")
            height = 1 + int.from_bytes(data[27:30], "little")
            return "webp", width, height
        if data[12:16] == b"VP8 ":
            width, height = struct.unpack("<HH", data[26:30])
            return "webp", width & 0x3FFF, height & 0x3FFF
        if data[12:16] == b"VP8L" and len(data) >= 25:
            bits = int.from_bytes(data[21:25], "little")
            return "webp", (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
        return "webp", 512, 512
    if data.startswith(b"\xff\xd8"):
        pos = 2
        while pos + 9 < len(data):
            if data[pos] != 0xFF:
                pos += 1
                continue
            marker = data[pos + 1]
            if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
                pos += 2
                continue
            length = struct.unpack(">H", data[pos + 2 : pos + 4])[0]
            if marker in (0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF):
                height, width = struct.unpack(">HH", data[pos + 5 : pos + 9])
                return "jpeg", width, height
            pos += 2 + length
        return "jpeg", 1, 1
    return None


_FILE_ID_PREFIX = {
    "photo": "AgAC",
    "document": "BQAC",
    "sticker": "CAAC",
    "voice": "AwAC",
    "video": "BAAC",
    "audio": "CQAC",
    "animation": "CgAC",
}
_EXT = {"png": "png", "jpeg": "jpg", "gif": "gif", "webp": "webp", "bmp": "bmp"}


class World:
    """All state of one local Bot API server."""

    def __init__(self) -> None:
        self.bots: dict[str, BotRec] = {}
        self.users: dict[int, UserRec] = {}
        self.chats: dict[int, ChatRec] = {}
        self.files: dict[str, FileRec] = {}
        self.files_by_path: dict[str, FileRec] = {}
        self.callbacks: dict[str, dict[str, Any]] = {}
        # Updates injected before any bot has connected wait here for the first bot.
        self.orphan_updates: list[dict[str, Any]] = []
        # Counters behind the ids this server hands out; a saved world (bot.local_api.saved) restores them,
        # so an id is never given twice, not even across restarts.
        self.next_file_number = 1
        self.next_callback_number = 1
        self.next_user_id = 100_001
        self.next_group_number = 1

    # ----------------------------------------------------------------------------- bots and users

    def bot_for_token(self, token: str) -> BotRec:
        """Return the bot for ``token``, creating it (and handing it orphan updates) on first use."""
        bot = self.bots.get(token)
        if bot is None:
            bot = BotRec(token=token, id=int(token.split(":", 1)[0]))
            self.bots[token] = bot
            if not bot.invalid:
                self.adopt_orphans(bot)
        return bot

    def adopt_orphans(self, bot: BotRec) -> None:
        """Give ``bot`` the updates injected while no bot was connected."""
        for payload in self.orphan_updates:
            self.push_update(bot, dict(payload))
        self.orphan_updates.clear()

    def bot_by_id(self, bot_id: int) -> BotRec | None:
        """Find a bot by its numeric id."""
        for bot in self.bots.values():
            if bot.id == bot_id:
                return bot
        return None

    def live_bots(self) -> list[BotRec]:
        """Bots with valid tokens, the ones that receive updates."""
        return [bot for bot in self.bots.values() if not bot.invalid]

    def new_user_id(self) -> int:
        """An unused positive user id."""
        while True:
            user_id = self.next_user_id
            self.next_user_id += 1
            if user_id not in self.users:
                return user_id

    def new_group_id(self) -> int:
        """An unused supergroup id in Telegram's ``-100...`` style."""
        while True:
            chat_id = -1_000_000_000_000 - self.next_group_number
            self.next_group_number += 1
            if chat_id not in self.chats:
                return chat_id

    def user(self, user_id: int) -> UserRec:
        """Return a user, creating a placeholder one if the id is new."""
        user = self.users.get(user_id)
        if user is None:
            user = UserRec(id=user_id, first_name=f"User {user_id}")
            self.users[user_id] = user
        return user

    def private_chat(self, user_id: int) -> ChatRec:
        """Return the private chat with a user, creating it on first use."""
        chat = self.chats.get(user_id)
        if chat is None:
            chat = ChatRec(id=user_id, type="private")
            self.chats[user_id] = chat
        return chat

    # ----------------------------------------------------------------------------------- JSON

    def chat_api(self, chat: ChatRec) -> dict[str, Any]:
        """The ``Chat`` object embedded in messages."""
        if chat.type == "private":
            user = self.users.get(chat.id)
            data: dict[str, Any] = {
                "id": chat.id,
                "type": "private",
                "first_name": user.first_name if user else str(chat.id),
            }
            if user and user.last_name:
                data["last_name"] = user.last_name
            if user and user.username:
                data["username"] = user.username
            return data
        data = {"id": chat.id, "type": chat.type, "title": chat.title or ""}
        if chat.username:
            data["username"] = chat.username
        if chat.is_forum:
            data["is_forum"] = True
        return data

    def chat_full_api(self, chat: ChatRec) -> dict[str, Any]:
        """The ``ChatFullInfo`` object returned by ``getChat``."""
        data = self.chat_api(chat)
        data.update(
            {
                "accent_color_id": 0,
                "max_reaction_count": 11,
                "accepted_gift_types": {
                    "unlimited_gifts": True,
                    "limited_gifts": True,
                    "unique_gifts": True,
                    "premium_subscription": True,
                    "gifts_from_channels": True,
                },
            }
        )
        return data

    def sender_api(self, msg: MsgRec) -> dict[str, Any]:
        """The ``from`` of a message."""
        if msg.from_bot:
            bot = self.bot_by_id(msg.from_id)
            if bot is not None:
                return bot.api()
            return {"id": msg.from_id, "is_bot": True, "first_name": "Bot"}
        return self.user(msg.from_id).api()

    def message_api(self, msg: MsgRec, *, with_reply: bool = True) -> dict[str, Any]:
        """The ``Message`` object for ``msg`` as it is now."""
        chat = self.chats[msg.chat_id]
        data: dict[str, Any] = {
            "message_id": msg.message_id,
            "from": self.sender_api(msg),
            "chat": self.chat_api(chat),
            "date": msg.date,
        }
        if msg.thread_id is not None:
            data["message_thread_id"] = msg.thread_id
            if chat.is_forum:
                data["is_topic_message"] = True
        if msg.forward_origin is not None:
            data["forward_origin"] = msg.forward_origin
        if with_reply:
            reply_id = msg.reply_to
            # In a forum topic every message that replies to nothing else replies to the topic's
            # creation message: real bots see that, so they should see it here too.
            if (
                reply_id is None
                and chat.is_forum
                and msg.thread_id is not None
                and msg.thread_id != msg.message_id
            ):
                reply_id = msg.thread_id
            target = chat.messages.get(reply_id) if reply_id is not None else None
            if target is not None and not target.deleted:
                data["reply_to_message"] = self.message_api(target, with_reply=False)
        if msg.media_group_id:
            data["media_group_id"] = msg.media_group_id
        if msg.edit_date is not None:
            data["edit_date"] = msg.edit_date
        data.update(msg.content)
        if msg.reply_markup and "inline_keyboard" in msg.reply_markup and msg.reply_markup["inline_keyboard"]:
            # Only inline keyboards are part of a Message; reply keyboards live in the client.
            data["reply_markup"] = msg.reply_markup
        return data

    def message_control(self, msg: MsgRec) -> dict[str, Any]:
        """A transcript entry: the Message plus what a test wants to assert on."""
        entry: dict[str, Any] = {
            "message_id": msg.message_id,
            "chat_id": msg.chat_id,
            "thread_id": msg.thread_id,
            "direction": "bot" if msg.from_bot else "user",
            "from_id": msg.from_id,
            "date": msg.date,
            "kind": msg.kind,
            "text": msg.content.get("text"),
            "caption": msg.content.get("caption"),
            "entities": msg.content.get("entities") or msg.content.get("caption_entities") or [],
            "parse_mode": msg.parse_mode,
            "raw_text": msg.raw_text,
            "reply_markup": msg.reply_markup,
            "reply_to_message_id": msg.reply_to,
            "edited": msg.edit_date is not None,
            "edit_date": msg.edit_date,
            "edits": msg.edits,
            "deleted": msg.deleted,
            "method": msg.method,
            "callback_answers": msg.callback_answers,
            "message": self.message_api(msg),
        }
        for kind in MEDIA_KINDS:
            media = msg.content.get(kind)
            if media:
                item = media[-1] if isinstance(media, list) else media
                entry["file_id"] = item["file_id"]
                entry[f"{kind}_file_id"] = item["file_id"]
                record = self.files.get(item["file_id"])
                if record is not None:
                    entry["file_name"] = record.file_name
                    entry["mime_type"] = record.mime_type
        if "contact" in msg.content:
            entry["contact"] = msg.content["contact"]
        for key in SERVICE_KEYS:
            if key in msg.content:
                entry["service"] = key
        return entry

    # -------------------------------------------------------------------------------- messages

    def add_message(
        self,
        chat: ChatRec,
        *,
        from_id: int,
        from_bot: bool,
        content: dict[str, Any],
        thread_id: int | None = None,
        reply_to: int | None = None,
        reply_markup: dict[str, Any] | None = None,
        parse_mode: str | None = None,
        raw_text: str | None = None,
        method: str | None = None,
        message_id: int | None = None,
    ) -> MsgRec:
        """Store a new message in ``chat`` and return it."""
        msg = MsgRec(
            chat_id=chat.id,
            message_id=message_id if message_id is not None else chat.take_message_id(),
            from_id=from_id,
            from_bot=from_bot,
            date=now(),
            content=content,
            thread_id=thread_id,
            reply_to=reply_to,
            reply_markup=reply_markup,
            parse_mode=parse_mode,
            raw_text=raw_text,
            method=method,
        )
        chat.messages[msg.message_id] = msg
        return msg

    def push_update(self, bot: BotRec, payload: dict[str, Any]) -> dict[str, Any]:
        """Queue an update (``payload`` without ``update_id``) for ``bot``."""
        update = {"update_id": bot.next_update_id, **payload}
        bot.next_update_id += 1
        bot.updates.append(update)
        return update

    # ----------------------------------------------------------------------------------- files

    def add_file(
        self,
        data: bytes,
        kind: str,
        *,
        file_name: str | None = None,
        mime_type: str | None = None,
        width: int | None = None,
        height: int | None = None,
        duration: int | None = None,
        source_url: str | None = None,
    ) -> FileRec:
        """Store uploaded bytes and give them a Telegram-looking ``file_id``."""
        number = self.next_file_number
        self.next_file_number += 1
        ext = "dat"
        if kind in ("photo", "sticker"):
            info = image_size(data)
            if info is not None:
                fmt, w, h = info
                ext = _EXT.get(fmt, "jpg")
                width = width or w
                height = height or h
                mime_type = mime_type or f"image/{fmt}"
        if file_name and "." in file_name:
            ext = file_name.rsplit(".", 1)[1][:8] or ext
        elif kind == "voice":
            ext = "oga"
        elif kind in ("video", "animation"):
            ext = "mp4"
        elif kind == "audio":
            ext = "mp3"
        file_id = _FILE_ID_PREFIX.get(kind, "BQAC") + secrets.token_urlsafe(30)
        record = FileRec(
            file_id=file_id,
            file_unique_id="AQAD" + secrets.token_urlsafe(9),
            data=data,
            kind=kind,
            file_path=f"{kind}s/file_{number}.{ext}",
            mime_type=mime_type,
            file_name=file_name,
            width=width,
            height=height,
            duration=duration,
            source_url=source_url,
        )
        self.files[file_id] = record
        self.files_by_path[record.file_path] = record
        return record

    def new_callback_id(self) -> str:
        """A fresh callback query id (Telegram uses long decimal strings)."""
        number = self.next_callback_number
        self.next_callback_number += 1
        return str(4_000_000_000_000_000 + number * 7919 + secrets.randbelow(7919))
