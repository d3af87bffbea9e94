"""Keeping to Telegram's rate limits: one pacer for the outbox dispatcher and the staff-group relay."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

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


__all__ = ["Pacer"]
