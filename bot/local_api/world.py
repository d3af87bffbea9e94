"""The in-memory world behind the local Bot API server: bots, users, chats, messages, files, updates.

The records (:mod:`.records`) are kept here, with the JSON builders that need more than one of them
(``Chat``, ``Message``, a transcript entry) and the counters behind every id.  The
:class:`~loyalbot.bot.local_api.hub.Hub` owns one :class:`World` and changes it from a single event loop, so
nothing here needs locks.
"""

from __future__ import annotations

import secrets
from typing import Any

from .images import image_size
from .records import MEDIA_KINDS, SERVICE_KEYS, BotRec, ChatRec, FileRec, MsgRec, UserRec, now

__all__ = ["World"]


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
