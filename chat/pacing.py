"""Keeping to Telegram's rate limits: the pacers of the outbox dispatcher and the staff-group relay, and the
per-chat and per-group spacing of everything else the bot sends (`PacedSender`)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from loyalbot.chat.limits import CHAT_SPACING, GROUP_BURST, GROUP_MESSAGES_PER_MINUTE, group_pace
from loyalbot.chat.outbound import ChatSender, Outgoing, RetryAfter, Transient
from loyalbot.storage.rates import LimitsUnavailable, SendLimits

log = logging.getLogger(__name__)

EPSILON = 1e-9  # what float arithmetic may lose of a token that a wait has refilled


class Pacer:
    """A token bucket: at most `burst` sends at once, refilled at `rate` a second; `pause` holds every send.

    Without `burst` it hands out evenly spaced slots (the outbox dispatcher): the bucket then holds one
    send plus `slack` seconds' worth, so a late slot is made up by the next ones, but never more than
    `slack` seconds' worth, and in any window of T seconds at most rate * (T + slack) + 1 sends go out.
    Counting in tokens rather than "1/rate after the last send" matters at high rates: the event loop
    cannot sleep less than about a millisecond and a commit now and then delays a slot, and at 1000/s
    losing that time on every slot would lose half the rate. 20 ms is what it takes to ride out the
    scheduling hiccups of a busy two-core machine at 1000/s (10 ms lost 1-6% of the rate there; see
    bench/fanout.py): 20 messages. When that is less than two slots (below 100/s) the slack is at most
    half a slot instead, so two sends are never closer than half an interval: at low rates a row's send
    is answered and recorded before the next is handed over, which keeps a crash's unknown window to
    one row (see scheduler/dispatcher.py).

    A caller that decides between waiting and sending (the staff relay merges a backlog while it waits)
    uses `wait_time()` and `take()`; concurrent senders await `slot()`.
    """

    def __init__(self, rate: float, *, burst: float | None = None, slack: float = 0.02,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        if rate <= 0 or (burst is not None and burst < 1):
            raise ValueError("a pacer needs a rate > 0 and a burst >= 1")
        self.rate = rate
        self.interval = 1.0 / rate
        if burst is None:
            slack = slack if slack >= 2 * self.interval else min(slack, self.interval / 2)
            burst = 1.0 + slack * rate
        self.capacity = float(burst)
        self.slack = (self.capacity - 1.0) / rate
        self.clock = clock
        self.sleep = sleep
        self.tokens = self.capacity
        self.stamp = clock()  # tokens are counted up to here; later than now during a pause
        self._lock = asyncio.Lock()

    def _refill(self) -> None:
        now = self.clock()
        if now > self.stamp:
            self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now

    def wait_time(self) -> float:
        """Seconds until the next send is allowed (0: now)."""
        self._refill()
        paused = max(0.0, self.stamp - self.clock())
        lack = 0.0 if self.tokens >= 1.0 - EPSILON else (1.0 - self.tokens) / self.rate
        return paused + lack

    def take(self) -> None:
        """Count one send."""
        self._refill()
        self.tokens -= 1.0

    def pause(self, seconds: float) -> None:
        """Telegram said RetryAfter: nothing goes out for `seconds`; then one send, and on at the rate (no burst)."""
        self._refill()
        until = self.clock() + seconds
        if until > self.stamp:
            self.stamp = until
            self.tokens = 1.0

    async def slot(self) -> None:
        """Wait for the next send and count it (safe to call from many tasks at once)."""
        async with self._lock:
            while (wait := self.wait_time()) > 0:
                await self.sleep(wait)
            self.take()


BOT_SLOT_KEY = "bot"  # the bot's overall rate in the shared limits: the dispatchers' slots and everything else's


def bot_slack(rate: float, slack: float = 0.02) -> float:
    """The burst a shared rate key allows, in seconds: as the Pacer's, below 100/s at most half a slot, so
    two sends are never back to back. Every process reserving from one key must use the same figure."""
    interval = 1.0 / rate
    return slack if slack >= 2 * interval else min(slack, interval / 2)


class SharedPacer:
    """Evenly spaced send slots of one rate key of the shared limits (storage/rates.py): every process that
    paces by the same key together stays within `rate`.

    Slots are reserved `batch` at a time in one call to the backend, each with the moment it may go; a slot
    used late goes at once (later never means faster), so the rate is kept over every window to within
    `slack` seconds' worth, whichever processes take the slots. `pause` stops every process's slots for a
    429's retry_after (each may still use what it already reserved: at most `batch` slots, `horizon` ahead).
    A backend that does not answer raises `LimitsUnavailable` from `slot()`: nothing is sent unlimited."""

    def __init__(self, limits: SendLimits, key: str, rate: float, *, batch: int = 1, slack: float = 0.02,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        if rate <= 0 or batch < 1:
            raise ValueError("a pacer needs a rate > 0 and a batch >= 1")
        self.limits = limits
        self.key = key
        self.rate = rate
        self.interval = 1.0 / rate
        self.slack = bot_slack(rate, slack)
        self.batch = batch
        self.horizon = batch * self.interval + self.interval
        self.clock = clock
        self.sleep = sleep
        self._slots: deque[float] = deque()
        self._lock = asyncio.Lock()

    async def slot(self) -> None:
        """Wait for the next slot and take it (safe to call from many tasks at once)."""
        async with self._lock:
            while not self._slots:
                grant = await self.limits.reserve(self.key, self.batch, interval=self.interval,
                                                  tolerance=self.slack, horizon=self.horizon)
                base = self.clock()  # the answer's moment: slots are counted from it, so never early
                self._slots.extend(base + delay for delay in grant.delays)
                if not self._slots:
                    await self.sleep(min(max(grant.wait, 0.001), 1.0))
            moment = self._slots.popleft()
            if (wait := moment - self.clock()) > 0:
                await self.sleep(wait)

    async def pause(self, seconds: float) -> None:
        """Telegram said RetryAfter for the whole bot: no slot for anyone for `seconds`."""
        self._slots.clear()
        await self.limits.pause(self.key, seconds, tolerance=self.slack)


def chat_key(chat_id: int) -> str:
    """A chat's key in the shared limits: held while a message is on its way into it (the dispatcher's too)."""
    return f"chat:{int(chat_id)}"


def group_key(chat_id: int) -> str:
    """A group's key in the shared limits: its 20 posts a minute, whoever posts."""
    return f"group:{int(chat_id)}"


def _chat_of_call(name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> int | None:
    """The chat a ChatSender call puts a message into (a new one, an edit, a copy, a topic); None: not one."""
    if name == "send":
        message = args[0] if args else kwargs.get("message")
        return message.chat_id if isinstance(message, Outgoing) else None
    if name in ("edit_text", "edit_buttons", "copy_message", "create_topic"):
        chat = args[0] if args else kwargs.get("chat_id")
        return int(chat) if isinstance(chat, int) else None
    return None


class PacedSender:
    """A `ChatSender` whose messages keep Telegram's per-chat limits, shared with every other sender of the bot.

    Into a private chat: one message a second, spaced from Telegram's answer to the previous one: the chat
    is held (`SendLimits.hold`, the key the outbox dispatcher holds while its message is on its way) for the
    call and released `CHAT_SPACING` after the answer (a 429's retry_after instead). A reply to a chat that
    has had nothing for a second goes at once, after one round trip to the limits; the second of two
    messages one update produces, or a reply landing just after a campaign message, waits its second.
    Into a group (a negative chat id), when `groups`: one call of the group's budget (`group_pace`, the key
    the staff relay takes), so the bot's replies in the staff group count in its 20 a minute too; the relay
    itself posts through a sender without `groups`, having taken its budget already.
    With `bot_rate` (the rate the outbox dispatcher sends at): every message also takes one slot of the bot's
    rate (`bot_slot_key`, the key the dispatchers' `SharedPacer` reserves from), so replies, support's
    notices and the relay's posts count in the bot's 30/s (1000/s with paid broadcasts) together with
    campaigns: the dispatchers get fewer slots while members are answered, never more than the rate in all.

    A chat held longer than `max_wait` (a process died holding it) or limits that do not answer raise
    `Transient`: the caller's retries apply, and nothing is ever sent unlimited. Other calls pass through.
    """

    def __init__(self, sender: ChatSender, limits: SendLimits, *, groups: bool = True,
                 group_per_minute: float = GROUP_MESSAGES_PER_MINUTE, group_burst: int = GROUP_BURST,
                 lease: float = 15.0, max_wait: float = 20.0, spacing: float = CHAT_SPACING,
                 bot_rate: float | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        if bot_rate is not None and bot_rate <= 0:
            raise ValueError("the bot's rate must be > 0")
        self.sender = sender
        self.limits = limits
        self.groups = groups
        self.group_interval, self.group_tolerance = group_pace(group_per_minute, group_burst)
        self.lease = lease
        self.max_wait = max_wait
        self.spacing = spacing
        self.bot_interval = 1.0 / bot_rate if bot_rate else None
        self.bot_tolerance = bot_slack(bot_rate) if bot_rate else 0.0
        self.clock = clock
        self.sleep = sleep

    def __getattr__(self, name: str) -> Any:
        call = getattr(self.sender, name)
        if not callable(call):
            return call

        async def paced(*args: Any, **kwargs: Any) -> Any:
            chat = _chat_of_call(name, args, kwargs)
            if chat is None:
                return await call(*args, **kwargs)
            if chat < 0:
                if not self.groups:
                    await self._bot_slot()
                    return await call(*args, **kwargs)
                await self._group_slot(chat)
                await self._bot_slot()
                try:
                    return await call(*args, **kwargs)
                except RetryAfter as exc:  # the group's limit: every sender into it waits
                    with contextlib.suppress(LimitsUnavailable):
                        await self.limits.pause(group_key(chat), exc.seconds, tolerance=self.group_tolerance)
                    raise
            return await self._in_chat(chat, lambda: call(*args, **kwargs))

        return paced

    async def _in_chat(self, chat: int, call: Callable[[], Awaitable[Any]]) -> Any:
        key = chat_key(chat)
        deadline = self.clock() + self.max_wait
        while (wait := (await self._limits(self.limits.hold([key], lease=self.lease))).get(key, 0.0)) > 0:
            if self.clock() + min(wait, 0.5) > deadline:
                raise Transient("chat held by another sender past the wait")
            # Held while another message is on its way (the lease is long): look again soon, not at its end.
            await self.sleep(min(wait, 0.5))
        spacing = self.spacing
        try:
            await self._bot_slot()
            return await call()
        except RetryAfter as exc:
            spacing = max(spacing, exc.seconds)
            raise
        finally:
            try:
                await self.limits.release([(key, spacing)])
            except LimitsUnavailable:  # the hold runs out with its lease: later, never sooner
                log.warning("chat hold not released (limits unavailable); it ends with its lease")

    async def _group_slot(self, chat: int) -> None:
        deadline = self.clock() + self.max_wait
        while True:
            grant = await self._limits(self.limits.reserve(group_key(chat), 1, interval=self.group_interval,
                                                           tolerance=self.group_tolerance, horizon=0.0))
            if grant.delays:
                return
            if self.clock() + grant.wait > deadline:
                raise Transient("the group's budget is spent past the wait")
            await self.sleep(max(grant.wait, 0.01))

    async def _bot_slot(self) -> None:
        """Wait for one slot of the bot's rate (nothing to wait for without `bot_rate`).

        The slot is reserved up to a second ahead: the dispatchers keep their next slots reserved a batch
        ahead, and a reply asking only for a slot due now would never find one while a campaign runs."""
        if self.bot_interval is None:
            return
        deadline = self.clock() + self.max_wait
        while True:
            grant = await self._limits(self.limits.reserve(BOT_SLOT_KEY, 1, interval=self.bot_interval,
                                                           tolerance=self.bot_tolerance, horizon=1.0))
            base = self.clock()
            if grant.delays:
                if grant.delays[0] > 0:
                    await self.sleep(max(0.0, base + grant.delays[0] - self.clock()))
                return
            if self.clock() + grant.wait > deadline:
                raise Transient("the bot's rate is spent past the wait")
            await self.sleep(max(grant.wait, 0.001))

    @staticmethod
    async def _limits(pending: Awaitable[Any]) -> Any:
        try:
            return await pending
        except LimitsUnavailable as exc:
            raise Transient(str(exc)) from None


__all__ = ["BOT_SLOT_KEY", "PacedSender", "Pacer", "SharedPacer", "bot_slack", "chat_key", "group_key"]
