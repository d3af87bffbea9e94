"""What loyalbot can send into a chat, independent of the Telegram framework that sends it.

Both runtimes (aiogram, python-telegram-bot) implement `ChatSender`; handlers, the scheduler's
dispatcher and the support relay call it and handle the named errors below, so rate limits and
failures are dealt with once, whatever framework is running.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True)
class Button:
    """An inline button: `data` comes back as callback data when pressed (or `url` opens a link)."""

    text: str
    data: str | None = None
    url: str | None = None


@dataclass(frozen=True)
class KeyButton:
    """A reply-keyboard button; `request_contact` asks Telegram to share the user's own phone number."""

    text: str
    request_contact: bool = False


Keyboard = list[list[Button]]


@dataclass(frozen=True)
class Sent:
    """What Telegram answered to a send: the new message's id (and thread id for new topics)."""

    message_id: int
    thread_id: int | None = None


class SendError(Exception):
    """A send failed; subclasses say whether and when to try again."""

    def __init__(self, description: str = "") -> None:
        self.description = description
        super().__init__(description)


class RetryAfter(SendError):
    """Telegram's 429: wait `seconds` before the next call."""

    def __init__(self, seconds: float, description: str = "") -> None:
        self.seconds = float(seconds)
        super().__init__(description or f"retry after {seconds}")


class Blocked(SendError):
    """Telegram's 403: the user blocked the bot (or the bot was removed from the chat)."""


class ThreadNotFound(SendError):
    """The forum topic was deleted or never existed."""


class BadRequest(SendError):
    """Telegram refused the call as malformed; retrying will not help."""


class Transient(SendError):
    """A 5xx, a timeout or a network failure: worth retrying with backoff."""


@dataclass(frozen=True)
class Media:
    """A file to send: fresh bytes, or the file_id of one Telegram already has."""

    kind: str  # photo | document | voice | sticker | video | audio
    data: bytes | None = None
    file_id: str | None = None
    filename: str = "file"


@dataclass(frozen=True)
class Outgoing:
    """One message to send; exactly one of text or media (with optional caption)."""

    chat_id: int
    text: str | None = None
    media: Media | None = None
    buttons: Keyboard | None = None
    keyboard: list[list[KeyButton]] | None = None
    remove_keyboard: bool = False
    thread_id: int | None = None
    html: bool = True
    extra: dict[str, Any] = field(default_factory=dict)


class ChatSender(Protocol):
    """The Bot API calls loyalbot makes; each runtime implements it with its own framework's Bot."""

    async def send(self, message: Outgoing) -> Sent: ...

    async def edit_text(self, chat_id: int, message_id: int, text: str, buttons: Keyboard | None = None,
                        html: bool = True) -> None: ...

    async def edit_buttons(self, chat_id: int, message_id: int, buttons: Keyboard | None) -> None: ...

    async def answer_callback(self, callback_id: str, text: str | None = None, alert: bool = False) -> None: ...

    async def copy_message(self, chat_id: int, from_chat_id: int, message_id: int, *,
                           thread_id: int | None = None, caption: str | None = None) -> Sent: ...

    async def create_topic(self, chat_id: int, name: str) -> int: ...

    async def edit_topic(self, chat_id: int, thread_id: int, name: str) -> None: ...

    async def close_topic(self, chat_id: int, thread_id: int) -> None: ...

    async def reopen_topic(self, chat_id: int, thread_id: int) -> None: ...

    async def delete_topic(self, chat_id: int, thread_id: int) -> None: ...

    async def delete_message(self, chat_id: int, message_id: int) -> None: ...

    async def set_commands(self, commands: list[tuple[str, str]], language: str | None = None) -> None: ...
