"""The chat port: what a conversation sees of Telegram (`Incoming`) and what it answers (`Reply`).

Runtimes turn their framework's update into an `Incoming`, call `Router.handle`, and hand the
replies to `deliver`, which speaks only to a `ChatSender`. Nothing here imports a framework.
"""

from __future__ import annotations

import logging
import traceback
import unicodedata
from dataclasses import dataclass

from loyalbot.chat.limits import INCOMING_CAPTION_LIMIT, TEXT_LIMIT
from loyalbot.chat.outbound import (
    Button,
    ChatSender,
    Keyboard,
    KeyButton,
    Media,
    Outgoing,
    SendError,
    Sent,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Contact:
    phone: str
    user_id: int | None
    first_name: str | None = None


@dataclass(frozen=True)
class IncomingMedia:
    kind: str  # photo | document | voice | sticker | video | audio | other
    file_id: str
    caption: str | None = None
    filename: str | None = None


@dataclass(frozen=True)
class Incoming:
    """One update from a user, reduced to what conversations need. Exactly one payload is set."""

    user_id: int
    chat_id: int
    chat_type: str = "private"  # private | group | supergroup | channel
    language_code: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    username: str | None = None
    thread_id: int | None = None
    message_id: int | None = None
    reply_to_message_id: int | None = None
    edited: bool = False
    # The Telegram update this came from (set by the runtime's inbox): `update_key` is unique per update,
    # so a write made while handling it can be recognised when the update is handled again after a crash.
    update_id: int | None = None
    update_key: str | None = None
    # payloads
    command: str | None = None  # lower-case, without "/" or "@botname"
    args: str = ""
    text: str | None = None
    callback_data: str | None = None
    callback_id: str | None = None
    contact: Contact | None = None
    media: IncomingMedia | None = None

    @property
    def is_private(self) -> bool:
        return self.chat_type == "private"


# What a member may send in one message: Telegram's own limits (a forged or relayed update may exceed them).
NAME_MAX = 128  # a profile name as the store keeps it (Telegram allows 64)
LINE_BREAKS = frozenset("\n\r\t")  # the only control characters a typed text may hold


def text_problem(text: str | None, *, limit: int = TEXT_LIMIT, multiline: bool = True) -> str | None:
    """Why a text from the chat cannot be taken at all, or None if it can.

    "control": a control character (NUL and the rest of Unicode's Cc, except newline, carriage return
    and tab where `multiline`) or a lone surrogate, which no keyboard types and no store should hold;
    "too_long": more than `limit` characters. Format characters (emoji joiners, direction marks) are
    fine: real clients send them.
    """
    if text is None:
        return None
    for ch in text:
        if (ch < " " or "\x7f" <= ch <= "\x9f" or "\ud800" <= ch <= "\udfff") and not (
                multiline and ch in LINE_BREAKS):
            return "control"
    if len(text) > limit:
        return "too_long"
    return None


def incoming_problem(incoming: Incoming) -> tuple[str, int] | None:
    """Why an update's text (message, command arguments, caption, shared contact) cannot be taken, with the
    length limit of the text at fault; None if it can be taken."""
    checks: list[tuple[str | None, int, bool]] = [(incoming.text, TEXT_LIMIT, True), (incoming.args, TEXT_LIMIT, True)]
    if incoming.media is not None:
        checks += [(incoming.media.caption, INCOMING_CAPTION_LIMIT, True), (incoming.media.filename, 255, False)]
    if incoming.contact is not None:
        checks += [(incoming.contact.phone, 32, False), (incoming.contact.first_name, NAME_MAX, False)]
    for text, limit, multiline in checks:
        if (problem := text_problem(text, limit=limit, multiline=multiline)) is not None:
            return problem, limit
    return None


def clean_name(name: str | None) -> str | None:
    """A profile name (first/last/user name) fit to store: without control characters, at most NAME_MAX long.

    Names come from the member's Telegram profile, not from what they typed now, so they are cleaned,
    never refused: refusing them would lock the member out of the chat.
    """
    if name is None:
        return None
    kept = "".join(ch for ch in name if unicodedata.category(ch) not in ("Cc", "Cs")).strip()
    return kept[:NAME_MAX] or None


def parse_command(text: str) -> tuple[str | None, str]:
    """Split '/cmd@bot args' into ('cmd', 'args'); (None, text) when text is not a command."""
    if not text.startswith("/") or len(text) < 2:
        return None, text
    head, _, rest = text.partition(" ")
    name = head[1:].split("@", 1)[0].lower()
    if not name or not all(ch.isalnum() or ch == "_" for ch in name) or len(name) > 32:
        return None, text
    return name, rest.strip()


def describe(incoming: Incoming) -> str:
    """What an update was, for logs: its kind and the command or button action, never its content."""
    if incoming.callback_data is not None:
        head = incoming.callback_data.split(":")[1:2]
        return f"button {head[0][:8] if head else '?'}"
    if incoming.command is not None:
        return f"/{incoming.command[:32]}"
    if incoming.contact is not None:
        return "contact"
    if incoming.media is not None:
        return f"media {incoming.media.kind}"
    return "text" if incoming.chat_type == "private" else f"{incoming.chat_type} message"


def log_failure(logger: logging.Logger, what: str, incoming: Incoming, exc: BaseException, *,
                detail: str = "", frames: int | None = None) -> None:
    """Log an update's failure at either boundary (the router's, the runtimes' pipeline): where it
    happened (the kind of update and the code's frames), never the message or the exception's text,
    which may quote what the member typed or SQL parameters."""
    trace = traceback.format_tb(exc.__traceback__)
    logger.error("%s on %s: %s%s\n%s", what, describe(incoming), type(exc).__name__,
                 f" ({detail})" if detail else "", "".join(trace[-frames:] if frames else trace))


@dataclass(frozen=True)
class Reply:
    """One thing to send back. By default it goes to the chat (and topic) the update came from."""

    text: str | None = None
    media: Media | None = None
    buttons: Keyboard | None = None
    keyboard: list[list[KeyButton]] | None = None
    remove_keyboard: bool = False
    edit: bool = False  # edit the message whose button was pressed instead of sending a new one
    chat_id: int | None = None
    thread_id: int | None = None
    toast: str | None = None  # the answer to a pressed button (a small notice), if any
    alert: bool = False

    def outgoing(self, chat_id: int, thread_id: int | None = None) -> Outgoing:
        """This reply as the message the sender sends to `chat_id` (and topic): the one place fields are copied."""
        return Outgoing(chat_id=chat_id, text=self.text, media=self.media, buttons=self.buttons,
                        keyboard=self.keyboard, remove_keyboard=self.remove_keyboard, thread_id=thread_id)


async def deliver(incoming: Incoming, replies: list[Reply], sender: ChatSender) -> list[Sent]:
    """Send the replies through `sender`; a pressed button is always answered, so its spinner stops."""
    sent: list[Sent] = []
    toast = next((r for r in replies if r.toast), None)
    if incoming.callback_id is not None:
        try:
            await sender.answer_callback(incoming.callback_id, toast.toast if toast else None,
                                         alert=bool(toast and toast.alert))
        except SendError as exc:  # an old callback cannot be answered any more; the replies still go out
            log.info("callback answer failed: %s", exc.description)
    for reply in replies:
        if reply.text is None and reply.media is None and not reply.edit:
            continue
        chat_id = reply.chat_id if reply.chat_id is not None else incoming.chat_id
        thread_id = reply.thread_id if reply.chat_id is not None else (reply.thread_id or incoming.thread_id)
        if reply.edit and incoming.message_id is not None and reply.media is None:
            try:
                if reply.text is not None:
                    await sender.edit_text(chat_id, incoming.message_id, reply.text, reply.buttons)
                else:
                    await sender.edit_buttons(chat_id, incoming.message_id, reply.buttons)
                continue
            except SendError as exc:
                # "message is not modified" or a message too old to edit: send it fresh instead.
                log.info("edit failed (%s); sending a new message", exc.description)
                if reply.text is None:
                    continue
        sent.append(await sender.send(reply.outgoing(chat_id, thread_id)))
    return sent


__all__ = ["Button", "Contact", "Incoming", "IncomingMedia", "KeyButton",
           "Media", "Reply", "clean_name", "deliver", "describe", "incoming_problem", "log_failure", "parse_command", "text_problem"]
