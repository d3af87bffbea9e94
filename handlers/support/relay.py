"""The staff-group queue: relays into the staff forum at the pace Telegram allows a group.

Telegram lets a bot post about 20 messages a minute into one group. Everything support posts to
the staff group (summary cards, members' messages, notices) goes through one `StaffRelay`, which

- sends in arrival order, one at a time, within a token-bucket budget (`per_minute`, `burst`;
  both configurable, and the clock and sleep are injectable so tests need not wait minutes);
- when a backlog builds (an item had to wait for the budget), merges the queued plain-text
  messages of the same topic that follow it into one message (never across a photo or another
  non-text item of that topic, so nothing is reordered, and never beyond Telegram's 4096 characters);
- honours RetryAfter (no sends until it has passed, then the same item again), retries transient
  failures with backoff, and when a topic was deleted asks the resolver for a new one and sends the
  failed item there (after the resolver's summary card);
- keeps the summary card true: an item of kind ``refresh`` asks the resolver for the card's current
  content when its turn comes (so it follows every item queued before it) and edits the card;
- drops what is queued for a conversation that may have no topic any more (`forget`, or the
  resolver raising `NoTopic`: its member erased their data).

It is "durable enough": members' messages are stored (handoff_messages) before they are queued and
marked with the staff copy's id once sent, so after a restart `HandoffStore.unrelayed` finds the few
that never went out. Nothing here imports a Telegram framework.

The Bot API calls support makes beside the queue (topics closed, reopened, renamed or deleted, messages
blanked) go through `StaffRelay.call`, so they too stay within the group's budget. `retrying` is the one
way support tries a call again after Telegram's RetryAfter, for the staff group and for members' chats.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from loyalbot.chat.limits import TEXT_LIMIT, group_pace
from loyalbot.chat.outbound import (
    BadRequest,
    Blocked,
    ChatSender,
    Keyboard,
    Media,
    Outgoing,
    RetryAfter,
    SendError,
    Sent,
    ThreadNotFound,
    Transient,
)
from loyalbot.chat.pacing import Pacer, group_key
from loyalbot.storage.rates import LimitsUnavailable, SendLimits

log = logging.getLogger(__name__)

MERGE_SEPARATOR = "\n"
T = TypeVar("T")


async def retrying(call: Callable[[], Awaitable[T]], *, wait: Callable[[float], Awaitable[None]], attempts: int = 3,
                   before: Callable[[], Awaitable[None]] | None = None) -> T:
    """`call()`, made again after each RetryAfter (at most `attempts` times in all, `wait(seconds)` between).

    `before` runs ahead of every attempt (e.g. taking a call of the group's budget). The last RetryAfter,
    and any other SendError at once, is raised to the caller, who decides what a failure means."""
    for attempt in range(1, attempts + 1):
        if before is not None:
            await before()
        try:
            return await call()
        except RetryAfter as exc:
            if attempt == attempts:
                raise
            await wait(exc.seconds)
    raise ValueError("retrying needs at least one attempt")


def backoff(attempt: int) -> float:
    """Seconds to wait before attempt `attempt` + 1 after a transient failure: 2, 4, 8, ... at most a minute."""
    return min(2.0 ** attempt, 60.0)


@dataclass
class RelayItem:
    """One thing to post into a conversation's staff topic.

    kind ``copy``: copy the member's message (`from_chat_id`, `message_id`; `caption` replaces a caption,
    HTML). kind ``text``: send `text` (HTML when `html`). kind ``edit``: change the text of the staff
    group's message `message_id` to `text`. kind ``refresh``: edit the conversation's summary card to
    what `TopicResolver.fresh_card` says when the item's turn comes. `mergeable`: a member's plain text (its words
    in `text`), which may be merged with the next ones of the same topic when a backlog builds. `refs`:
    handoff_messages rows that this staff copy stands for.
    """

    conversation_id: int | None  # None: the group's General topic (e.g. feedback)
    kind: str  # copy | text | edit | refresh
    text: str | None = None
    html: bool = False
    from_chat_id: int | None = None
    message_id: int | None = None
    caption: str | None = None
    buttons: Keyboard | None = None
    media: Media | None = None
    mergeable: bool = False
    card: bool = False  # the conversation's summary card
    refs: list[int] = field(default_factory=list)
    attempts: int = 0


class NoTopic(Exception):
    """The conversation may not have a staff topic any more (its member erased their data): drop the item."""


class TopicResolver(Protocol):
    """What the relay needs from support: where a conversation's topic is, and what to do once sent."""

    async def thread_for(self, conversation_id: int, *, gone: int | None = None) -> tuple[int, list[RelayItem]]:
        """The topic's thread id, creating the topic if it has none (or if `gone` was deleted);
        plus the items to post first in a new topic (its summary card)."""
        ...

    async def relayed(self, item: RelayItem, sent: Sent) -> None:
        """`item` is now in the staff group as `sent` (e.g. pair the member's messages with it)."""
        ...

    async def fresh_card(self, conversation_id: int) -> RelayItem | None:
        """An ``edit`` item that makes the conversation's summary card current (None: no card to edit)."""
        ...

    async def undeliverable(self, item: RelayItem, error: SendError) -> None:
        """`item` cannot be posted at all (e.g. the bot was removed from the staff group)."""
        ...


class StaffRelay:
    """The in-process queue of posts to the staff group; one worker sends them in order within the budget."""

    def __init__(
        self,
        sender: Callable[[], ChatSender | None],
        chat_id: int,
        resolver: TopicResolver,
        *,
        per_minute: float = 20.0,
        burst: int = 5,
        clock: Callable[[], float] | None = None,
        sleep: Callable[[float], Awaitable[None]] | None = None,
        max_attempts: int = 8,
        shared: SendLimits | None = None,
    ) -> None:
        self._sender = sender
        self.chat_id = chat_id
        self.resolver = resolver
        # The burst comes out of the minute (chat.limits.group_pace): no 60 seconds hold more than per_minute.
        self._interval, self._tolerance = group_pace(per_minute, burst)
        self.budget = Pacer(1.0 / self._interval, burst=1 + round(self._tolerance / self._interval),
                            clock=clock or time.monotonic)
        # The same budget in the shared limits (storage/rates.py), so the relays of several replicas together
        # stay within the group's 20 a minute, topic creation and the bot's replies in the group included
        # (chat.pacing.PacedSender takes the same key); None: this process only.
        self.shared = shared
        self._group_key = group_key(chat_id)
        self._sleep = sleep or asyncio.sleep
        self.max_attempts = max_attempts
        self._queue: deque[RelayItem] = deque()
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._worker: asyncio.Task[None] | None = None
        self._busy = False
        # Figures for tests and the dashboard.
        self.sent = 0
        self.merged = 0
        self.retried = 0
        self.dropped = 0

    # --- the queue --------------------------------------------------------------------------------------

    def put(self, item: RelayItem) -> None:
        """Queue `item` behind everything queued before it; returns at once."""
        self._queue.append(item)
        self._idle.clear()
        self._wake.set()
        if self._worker is None or self._worker.done():
            self._worker = asyncio.get_running_loop().create_task(self._run())

    async def acquire(self) -> None:
        """Wait for (and take) one call of the group's budget, for calls made beside the queue."""
        await self._wait_for_budget()
        await self._take()

    async def _take(self) -> None:
        """Count one call in this process's budget and, when shared, in every replica's."""
        while self.shared is not None:
            try:
                grant = await self.shared.reserve(self._group_key, 1, interval=self._interval,
                                                  tolerance=self._tolerance, horizon=0.0)
            except LimitsUnavailable as exc:  # never post unlimited: wait for the limits to answer
                log.warning("staff relay: shared limits unavailable (%s); waiting", exc)
                await self._sleep(1.0)
                continue
            if grant.delays:
                break
            await self._sleep(max(grant.wait, 0.01))
        self.budget.take()

    async def _hold_group(self, seconds: float) -> None:
        self.budget.pause(seconds)
        if self.shared is not None:
            with contextlib.suppress(LimitsUnavailable):
                await self.shared.pause(self._group_key, seconds, tolerance=self._tolerance)

    async def call(self, call: Callable[[], Awaitable[T]], *, attempts: int = 3) -> T:
        """One Bot API call into the group beside the queue, within the group's budget.

        A RetryAfter holds the whole group's budget (the queue waits too) and the call is made again;
        the last RetryAfter and any other SendError are raised."""
        try:
            return await retrying(call, wait=self._hold_group, attempts=attempts, before=self.acquire)
        except RetryAfter as exc:
            await self._hold_group(exc.seconds)
            raise

    def forget(self, conversation_id: int) -> int:
        """Drop everything queued for the conversation; returns how many items were dropped."""
        kept = deque(item for item in self._queue if item.conversation_id != conversation_id)
        dropped = len(self._queue) - len(kept)
        self._queue = kept
        self.dropped += dropped
        return dropped

    def holds(self, conversation_id: int, kind: str) -> bool:
        """Whether an item of `kind` for the conversation is queued and not yet taken by the worker."""
        return any(item.kind == kind and item.conversation_id == conversation_id for item in self._queue)

    @property
    def pending(self) -> int:
        return len(self._queue) + (1 if self._busy else 0)

    async def drain(self, within: float = 30.0) -> bool:
        """Wait until everything queued has been sent (or `within` seconds pass); True when empty."""
        try:
            await asyncio.wait_for(self._idle.wait(), within)
        except TimeoutError:
            return False
        return True

    async def stop(self, within: float = 10.0) -> None:
        """Send what is queued (for at most `within` seconds), then stop the worker."""
        await self.drain(within)
        if self._worker is not None:
            self._worker.cancel()
            try:
                await self._worker
            except asyncio.CancelledError:
                pass
            self._worker = None
        if self._queue:
            log.warning("staff relay stopped with %d item(s) unsent; stored member messages are resent on start",
                        len(self._queue))

    # --- the worker -------------------------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            if not self._queue:
                self._idle.set()
                self._wake.clear()
                await self._wake.wait()
                continue
            self._busy = True
            try:
                await self._send_next()
            except Exception:  # one bad item must not stop the relay of every other conversation
                log.exception("staff relay failed on an item; dropped")
                self.dropped += 1
            finally:
                self._busy = False

    async def _wait_for_budget(self) -> bool:
        """Wait until a send is allowed; True when we had to wait (a backlog is building)."""
        waited = False
        while (delay := self.budget.wait_time()) > 0:
            waited = True
            await self._sleep(delay)
        return waited

    async def _send_next(self) -> None:
        waited = await self._wait_for_budget()
        item = self._queue.popleft()
        if waited or self._queue:
            item = self._merge(item)
        sender = self._sender()
        if sender is None:
            log.warning("staff relay has no sender yet; waiting")
            self._queue.appendleft(item)
            await self._sleep(1.0)
            return
        thread_id: int | None = None
        try:
            if item.conversation_id is not None:
                thread_id, first = await self.resolver.thread_for(item.conversation_id)
                # A new topic opens with its summary card; a card being sent needs no second one.
                first = [pre for pre in first if not (item.card and pre.card)]
            else:
                first = []
            if first:
                self._queue.appendleft(item)
                for pre in reversed(first):
                    self._queue.appendleft(pre)
                return
            if item.kind == "refresh":
                assert item.conversation_id is not None
                fresh = await self.resolver.fresh_card(item.conversation_id)
                if fresh is None:
                    return
                item = fresh
            await self._take()
            sent = await self._post(sender, item, thread_id)
        except NoTopic:
            log.info("staff relay: conversation %s has no topic any more; item dropped", item.conversation_id)
            self.dropped += 1
            return
        except RetryAfter as exc:
            log.info("staff group rate limited: retry after %.1fs", exc.seconds)
            self.retried += 1
            await self._hold_group(exc.seconds)
            self._queue.appendleft(item)
            return
        except ThreadNotFound:
            log.info("staff topic of conversation %s is gone; opening a new one", item.conversation_id)
            item.attempts += 1
            if item.attempts > self.max_attempts:
                await self._give_up(item, ThreadNotFound("topic keeps disappearing"))
                return
            assert item.conversation_id is not None
            try:
                _, first = await self.resolver.thread_for(item.conversation_id, gone=thread_id)
            except NoTopic:
                log.info("staff relay: conversation %s has no topic any more; item dropped", item.conversation_id)
                self.dropped += 1
                return
            first = [pre for pre in first if not (item.card and pre.card)]
            self._queue.appendleft(item)
            for pre in reversed(first):
                self._queue.appendleft(pre)
            return
        except Transient as exc:
            item.attempts += 1
            if item.attempts > self.max_attempts:
                await self._give_up(item, exc)
                return
            self.retried += 1
            self._queue.appendleft(item)
            await self._sleep(backoff(item.attempts))
            return
        except BadRequest as exc:
            if item.kind == "edit" and "not modified" in exc.description.lower():
                return  # the card already says this
            if item.kind == "copy" and item.text:
                # The original cannot be copied (deleted, too old): its words still reach staff.
                log.info("copy refused (%s); sending the text instead", exc.description)
                self._queue.appendleft(RelayItem(conversation_id=item.conversation_id, kind="text", text=item.text,
                                                 refs=item.refs))
                return
            await self._give_up(item, exc)
            return
        except Blocked as exc:
            await self._give_up(item, exc)
            return
        self.sent += 1
        await self.resolver.relayed(item, sent)

    async def _give_up(self, item: RelayItem, error: SendError) -> None:
        self.dropped += 1
        log.error("staff relay could not post an item of conversation %d: %s", item.conversation_id,
                  type(error).__name__)
        await self.resolver.undeliverable(item, error)

    async def _post(self, sender: ChatSender, item: RelayItem, thread_id: int | None) -> Sent:
        if item.kind == "edit":
            assert item.message_id is not None and item.text is not None
            await sender.edit_text(self.chat_id, item.message_id, item.text, item.buttons, html=item.html)
            return Sent(item.message_id, thread_id)
        if item.kind == "copy":
            assert item.from_chat_id is not None and item.message_id is not None
            return await sender.copy_message(self.chat_id, item.from_chat_id, item.message_id,
                                             thread_id=thread_id, caption=item.caption)
        return await sender.send(Outgoing(chat_id=self.chat_id, text=item.text, media=item.media,
                                          buttons=item.buttons, thread_id=thread_id, html=item.html))

    def _merge(self, head: RelayItem) -> RelayItem:
        """`head` plus the queued plain texts of the same topic that directly follow it in that topic."""
        if not head.mergeable or not head.text:
            return head
        texts, refs = [head.text], list(head.refs)
        length = len(head.text)
        taken: list[int] = []
        for index, item in enumerate(self._queue):
            if item.conversation_id != head.conversation_id:
                continue  # other topics keep their own order; merging skips over them
            if not item.mergeable or not item.text:
                break  # a photo or a notice in this topic: later texts must stay after it
            if length + len(MERGE_SEPARATOR) + len(item.text) > TEXT_LIMIT:
                break
            texts.append(item.text)
            refs.extend(item.refs)
            length += len(MERGE_SEPARATOR) + len(item.text)
            taken.append(index)
        if not taken:
            return head
        for index in reversed(taken):
            del self._queue[index]
        self.merged += len(taken)
        return RelayItem(conversation_id=head.conversation_id, kind="text", text=MERGE_SEPARATOR.join(texts),
                         html=False, mergeable=False, refs=refs)


__all__ = ["NoTopic", "RelayItem", "StaffRelay", "TopicResolver", "backoff", "retrying"]
