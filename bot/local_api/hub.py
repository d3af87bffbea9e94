"""The state one local Bot API server shares between its Bot API methods and its control API.

:class:`Hub` owns the :class:`~loyalbot.bot.local_api.world.World`, the change feed the demo page and the
long polls follow, the call log and counters, the queued faults and flood limits, the demo page's
configuration, and the world changes that more than one side makes (a topic created by the bot or by a
member, an edit, an update pushed to the bots).  :class:`~loyalbot.bot.local_api.server.LocalBotApi` is a
Hub that listens on a socket.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import copy
import itertools
import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypedDict

import aiohttp

from .faults import FaultQueue
from .limits import Limits, RateLimiter
from .records import TOPIC_COLORS, ChatRec, MsgRec, TopicRec, now
from .saved import COUNTERS, SavedWorld
from .world import World

__all__ = ["DEFAULT_IDENTITIES", "Hub", "HubOptions"]

DEFAULT_IDENTITIES: list[dict[str, Any]] = [
    {
        "id": 1001,
        "first_name": "Ann",
        "last_name": "Lee",
        "username": "ann_lee",
        "language_code": "en",
        "label": "Ann (English)",
        "role": "member",
    },
    {
        "id": 1002,
        "first_name": "小明",
        "language_code": "zh-hans",
        "label": "小明 (简体中文)",
        "role": "member",
    },
    {
        "id": 1003,
        "first_name": "阿美",
        "language_code": "zh-hant",
        "label": "阿美 (繁體中文)",
        "role": "member",
    },
]


class HubOptions(TypedDict, total=False):
    """The keyword arguments of :class:`Hub` (and so of ``LocalBotApi``)."""

    webhook_retry_delay: float
    webhook_retry_max: float
    webhook_timeout: float
    call_log_size: int
    state_path: str | Path | None


class Hub:
    """What the Bot API methods, the webhook sender and the control routes read and change.

    ``webhook_retry_*``: back-off between failed webhook deliveries; ``call_log_size``: calls kept
    for ``/control/calls``; ``state_path``: a SQLite file that keeps users, chats, topics, files and
    ids across restarts.
    """

    def __init__(
        self,
        *,
        webhook_retry_delay: float = 0.2,
        webhook_retry_max: float = 5.0,
        webhook_timeout: float = 10.0,
        call_log_size: int = 10_000,
        state_path: str | Path | None = None,
    ) -> None:
        self.world = World()
        self.saved = SavedWorld(state_path) if state_path is not None else None
        # Changes with every start, so a page that outlived a restart knows to reload what it shows.
        self.instance = secrets.token_hex(6)
        self.webhook_retry_delay = webhook_retry_delay
        self.webhook_retry_max = webhook_retry_max
        self.webhook_timeout = webhook_timeout
        self.call_log_size = call_log_size
        self.client: aiohttp.ClientSession | None = None
        self.changed = asyncio.Event()
        self.stopping = False
        self.webhook_tasks: dict[str, asyncio.Task[None]] = {}
        self.reset_state()

    def reset_state(self) -> None:
        """Start from an empty world, no faults, limits off, empty logs and the default demo config."""
        for task in self.webhook_tasks.values():
            task.cancel()
        self.webhook_tasks = {}
        self.world = World()
        self.limiter = RateLimiter()
        self.faults = FaultQueue()
        self.calls: collections.deque[dict[str, Any]] = collections.deque(maxlen=self.call_log_size)
        self.call_seq = itertools.count(1)
        self.counters: dict[str, collections.Counter[str]] = {
            "calls": collections.Counter(),
            "delivered": collections.Counter(),
            "rate_limited": collections.Counter(),
            "errors": collections.Counter(),
        }
        self.events: collections.deque[dict[str, Any]] = collections.deque(maxlen=5000)
        self.event_seq = 0
        self.demo_config: dict[str, Any] = {
            "identities": copy.deepcopy(DEFAULT_IDENTITIES),
            "staff_group": None,
            "info": {},
        }

    def reset(self) -> None:
        """Forget everything, as ``POST /control/reset`` does."""
        old = self.world
        self.reset_state()
        if self.saved is not None:
            for name in COUNTERS:  # a reset forgets the chats, never the ids it handed out
                setattr(self.world, name, getattr(old, name))
            self.saved.clear(self.world)
        self.notify({"type": "reset"})

    @property
    def limits(self) -> Limits:
        """The flood limits in force (see :class:`~loyalbot.bot.local_api.limits.Limits`)."""
        return self.limiter.limits

    def stats(self) -> dict[str, Any]:
        """Counters: calls, delivered messages, 429 answers and errors, per method."""
        return {
            "calls": dict(self.counters["calls"]),
            "delivered": dict(self.counters["delivered"]),
            "rate_limited": dict(self.counters["rate_limited"]),
            "errors": dict(self.counters["errors"]),
            "total_calls": sum(self.counters["calls"].values()),
            "total_delivered": sum(v for k, v in self.counters["delivered"].items() if k != "webhook"),
            "total_rate_limited": sum(self.counters["rate_limited"].values()),
        }

    # --------------------------------------------------------------------------- notification

    def wake(self) -> None:
        """Wake every long poll (and the saved world's writer): something changed."""
        if self.saved is not None:
            self.saved.changed()
        event = self.changed
        self.changed = asyncio.Event()
        event.set()

    def notify(self, event: dict[str, Any]) -> None:
        """Append ``event`` to the change feed and wake the long polls."""
        self.event_seq += 1
        self.events.append({"seq": self.event_seq, "time": time.time(), **event})
        self.wake()

    def notify_message(self, msg: MsgRec) -> None:
        """Tell the feed a message was added to a chat."""
        self.notify(
            {
                "type": "message",
                "chat_id": msg.chat_id,
                "thread_id": msg.thread_id,
                "message_id": msg.message_id,
                "direction": "bot" if msg.from_bot else "user",
            }
        )

    async def wait_until(self, predicate: Callable[[], Any], timeout: float) -> Any:  # noqa: ASYNC109
        """Re-check ``predicate`` on every change until it is truthy or ``timeout`` passes."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(timeout, 0.0)
        while True:
            result = predicate()
            if result or self.stopping:
                return result
            remaining = deadline - loop.time()
            if remaining <= 0:
                return result
            event = self.changed
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), remaining)

    # ------------------------------------------------------------------------- world changes

    def find_chat(self, raw: Any) -> ChatRec | None:
        """The chat a ``chat_id`` names (a number or ``@username``), or ``None``."""
        if raw is None or raw == "":
            return None
        if isinstance(raw, str) and raw.startswith("@"):
            name = raw[1:].lower()
            for group in self.world.chats.values():
                if group.type != "private" and group.username and group.username.lower() == name:
                    return group
            return None
        try:
            chat_id = int(raw)
        except (TypeError, ValueError):
            return None
        chat = self.world.chats.get(chat_id)
        if chat is None and chat_id in self.world.users:
            chat = self.world.private_chat(chat_id)
        return chat

    def push_to_bots(self, payload: dict[str, Any]) -> list[int]:
        """Queue an update for every connected bot (or keep it for the first bot to connect)."""
        bots = self.world.live_bots()
        if not bots:
            self.world.orphan_updates.append(payload)
            self.wake()
            return []
        ids = [self.world.push_update(bot, copy.deepcopy(payload))["update_id"] for bot in bots]
        self.wake()
        return ids

    def record_edit(self, msg: MsgRec) -> None:
        """Keep the message as it was in its edit history before it changes."""
        msg.edits.append(
            {
                "date": msg.edit_date or msg.date,
                "text": msg.content.get("text"),
                "caption": msg.content.get("caption"),
                "entities": msg.content.get("entities") or msg.content.get("caption_entities"),
                "reply_markup": msg.reply_markup,
            }
        )
        msg.edit_date = now()
        self.notify(
            {"type": "edit", "chat_id": msg.chat_id, "thread_id": msg.thread_id, "message_id": msg.message_id}
        )

    def create_topic(
        self, chat: ChatRec, name: str, color: int | None, emoji: str | None, *, from_id: int, from_bot: bool
    ) -> TopicRec:
        """Open a forum topic (by the bot or by a member) with its ``forum_topic_created`` message."""
        thread_id = chat.take_message_id()
        topic = TopicRec(
            thread_id=thread_id,
            name=name,
            icon_color=color or TOPIC_COLORS[0],
            icon_custom_emoji_id=emoji or None,
            created_by=from_id,
        )
        chat.topics[thread_id] = topic
        created: dict[str, Any] = {"name": name, "icon_color": topic.icon_color}
        if topic.icon_custom_emoji_id:
            created["icon_custom_emoji_id"] = topic.icon_custom_emoji_id
        msg = self.world.add_message(
            chat,
            from_id=from_id,
            from_bot=from_bot,
            content={"forum_topic_created": created},
            thread_id=thread_id,
            message_id=thread_id,
            method="createForumTopic" if from_bot else None,
        )
        self.notify({"type": "topic", "chat_id": chat.id, "thread_id": thread_id, "action": "created"})
        self.notify_message(msg)
        if not from_bot:
            self.push_to_bots({"message": self.world.message_api(msg)})
        return topic

    def remove_topic(self, chat: ChatRec, topic: TopicRec) -> None:
        """Delete a forum topic and every message in it."""
        topic.deleted = True
        for msg in chat.messages.values():
            if msg.thread_id == topic.thread_id:
                msg.deleted = True
        self.notify({"type": "topic", "chat_id": chat.id, "thread_id": topic.thread_id, "action": "deleted"})
