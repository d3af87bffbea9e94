"""What both Telegram runtimes share: the ordered-per-member work lanes and the error boundary.

A runtime (aiogram or python-telegram-bot) only turns its framework's update into an `Incoming`
and calls `Pipeline.submit`. The pipeline runs each member's updates in arrival order, different
members concurrently, calls the router, and delivers the replies through the runtime's sender. One
bad update is logged (without personal data) and never stops the bot.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
import traceback
from collections import deque
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import Any, Protocol

from handlers.port import Contact, Incoming, IncomingMedia, Reply, deliver, parse_command
from loyalty.outbound import ChatSender

log = logging.getLogger("loyalbot.runtime")

# One salt per process: the same user gets the same tag in one run's logs, and no tag can be
# turned back into a Telegram id by hashing candidate ids.
_SALT = secrets.token_bytes(16)

ALLOWED_UPDATES = ["message", "edited_message", "callback_query"]


@dataclass(frozen=True)
class Connection:
    """Where and how a runtime reaches Telegram. The token is a secret: never log this object."""

    token: str
    api_url: str = "https://api.telegram.org"  # a Bot API server root; methods at <root>/bot<token>/<method>
    webhook_url: str | None = None  # set: receive by webhook; unset: long polling
    webhook_secret: str | None = None
    webhook_listen: str = "127.0.0.1:8443"
    polling_timeout: int = 10

    def __repr__(self) -> str:
        return f"Connection(api_url={self.api_url!r}, webhook={bool(self.webhook_url)})"


def user_tag(user_id: int | None) -> str:
    """A short, salted hash of a Telegram user id for logs (never the id itself)."""
    if user_id is None:
        return "-"
    return hashlib.blake2b(str(user_id).encode(), key=_SALT, digest_size=5).hexdigest()


def update_kind(incoming: Incoming) -> str:
    """What kind of update it was, for logs: never its text."""
    if incoming.command is not None:
        return f"command:{incoming.command[:32]}"
    if incoming.callback_data is not None:
        return "button"
    if incoming.contact is not None:
        return "contact"
    if incoming.media is not None:
        return f"media:{incoming.media.kind}"
    return "text"


def quiet_http_loggers() -> None:
    """httpx logs every request URL at INFO, and Bot API URLs contain the bot token: keep it out of logs."""
    for name in ("httpx", "httpcore"):
        logging.getLogger(name).setLevel(logging.WARNING)


# --- framework objects -> Incoming -------------------------------------------------------------------
# aiogram and python-telegram-bot both mirror the Bot API's field names (from_user, chat.type,
# message_thread_id, photo[-1].file_id ...), so one reading of a Message serves both runtimes and
# guarantees a conversation sees exactly the same Incoming whichever framework is running.

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


class RouterLike(Protocol):
    """What a runtime needs of `handlers.router.Router`."""

    async def handle(self, incoming: Incoming) -> list[Reply]: ...


class Lanes:
    """Runs jobs concurrently across keys and strictly in submission order within one key.

    `submit` never waits, so a framework's update loop can hand an update over and move on to the
    next; a lane's task ends when its queue is empty, so idle members cost nothing.
    """

    def __init__(self, *, concurrency: int = 64) -> None:
        self._queues: dict[Hashable, deque[Callable[[], Awaitable[None]]]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._slots = asyncio.Semaphore(concurrency)  # bounds work in flight (database pool, sockets)

    def submit(self, key: Hashable, job: Callable[[], Awaitable[None]]) -> None:
        queue = self._queues.get(key)
        if queue is not None:
            queue.append(job)
            return
        self._queues[key] = deque([job])
        task = asyncio.get_running_loop().create_task(self._run(key))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, key: Hashable) -> None:
        queue = self._queues[key]
        try:
            while queue:
                job = queue[0]
                async with self._slots:
                    try:
                        await job()
                    except Exception:  # jobs have their own boundary; this only keeps the lane alive
                        log.exception("lane job failed")
                queue.popleft()
        finally:
            self._queues.pop(key, None)

    @property
    def pending(self) -> int:
        return sum(len(q) for q in self._queues.values())

    async def drain(self, within: float = 10.0) -> bool:
        """Wait until every submitted job has run (or `within` seconds pass); True when nothing is left."""
        deadline = asyncio.get_running_loop().time() + within
        while self._tasks:
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                return False
            await asyncio.wait(set(self._tasks), timeout=remaining)
        return True

    async def cancel(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


class Pipeline:
    """Incoming -> router -> deliver, per member in order, with an error boundary around each update."""

    def __init__(self, sender: ChatSender, router: RouterLike | None = None, *, concurrency: int = 64) -> None:
        self.sender = sender
        self.router = router
        self.lanes = Lanes(concurrency=concurrency)
        self.handled = 0
        self.failed = 0
        self.listeners: list[Callable[[Incoming], None]] = []  # e.g. a bench counting handled updates

    def submit(self, incoming: Incoming) -> None:
        """Queue an update behind the same user's earlier ones; returns at once."""
        self.lanes.submit(incoming.user_id, lambda: self.process(incoming))

    async def process(self, incoming: Incoming) -> None:
        """Handle one update now; never raises (failures are logged without personal data)."""
        if self.router is None:
            log.warning("update dropped: no router yet (user %s)", user_tag(incoming.user_id))
            return
        try:
            replies = await self.router.handle(incoming)
            await deliver(incoming, replies, self.sender)
            self.handled += 1
        except Exception as exc:
            self.failed += 1
            # The exception's message may quote the member's text or SQL parameters: log its type and
            # where it happened, not what it says.
            where = "".join(traceback.format_tb(exc.__traceback__)[-6:])
            log.error("update failed: %s (user %s, %s, chat type %s)\n%s", type(exc).__name__,
                      user_tag(incoming.user_id), update_kind(incoming), incoming.chat_type, where)
        for listener in self.listeners:
            listener(incoming)

    async def drain(self, within: float = 10.0) -> None:
        if not await self.lanes.drain(within):
            log.warning("stopping with %d update(s) unhandled", self.lanes.pending)
            await self.lanes.cancel()


class Runtime(Protocol):
    """A running Telegram framework: its sender, and start/stop of polling or the webhook."""

    name: str
    sender: ChatSender
    pipeline: Pipeline

    async def open(self) -> None:
        """Connect the bot (getMe) so the sender can be used; no updates are received yet."""

    async def start(self) -> None:
        """Begin receiving updates (polling or webhook); returns once receiving has started."""

    async def stop(self) -> None:
        """Stop receiving, finish the updates already received, close the connection."""


__all__ = ["ALLOWED_UPDATES", "Connection", "Lanes", "incoming_from_callback", "incoming_from_message", "Pipeline", "RouterLike", "Runtime", "quiet_http_loggers", "update_kind",
           "user_tag"]
