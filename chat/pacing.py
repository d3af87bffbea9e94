"""Keeping to Telegram's rate limits: one pacer for the outbox dispatcher and the staff-group relay."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable

from loyalbot.storage.rates import SendLimits

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
        # As the Pacer: below 100/s at most half a slot of slack, so two sends are never back to back.
        self.slack = slack if slack >= 2 * self.interval else min(slack, self.interval / 2)
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


__all__ = ["Pacer", "SharedPacer"]
