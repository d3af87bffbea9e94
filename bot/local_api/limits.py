"""Flood limits: Telegram's per-bot, per-chat and per-group rates as token buckets, off by default."""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from typing import Any

from .errors import ApiError, ControlError
from .records import ChatRec

__all__ = ["Limits", "RateLimiter"]


@dataclass
class Limits:
    """Flood limits, off by default.

    Defaults follow Telegram's published guidance: about 30 messages a second per bot overall,
    one message a second per private chat and 20 messages a minute per group.  Per-chat limits
    are token buckets: a private chat may burst ``private_burst`` (3) messages and then refills
    at ``private_per_second``; a group may burst ``group_burst`` (20) and refills at
    ``group_per_minute``/60 per second.  Telegram itself tolerates short bursts the same way.
    """

    enabled: bool = False
    global_per_second: float = 30.0
    private_per_second: float = 1.0
    private_burst: int = 3
    group_per_minute: float = 20.0
    group_burst: int = 20


class Bucket:
    """A token bucket: ``capacity`` tokens, refilled at ``rate`` per second."""

    def __init__(self, capacity: float, rate: float) -> None:
        self.capacity = max(capacity, 1.0)
        self.rate = max(rate, 1e-9)
        self.tokens = self.capacity
        self.stamp = time.monotonic()

    def refill(self, moment: float) -> None:
        if moment > self.stamp:
            self.tokens = min(self.capacity, self.tokens + (moment - self.stamp) * self.rate)
            self.stamp = moment

    def wait_time(self) -> float:
        """Seconds until one token is available (0 when one is)."""
        return 0.0 if self.tokens >= 1 else (1 - self.tokens) / self.rate


class RateLimiter:
    """The buckets of every bot and chat under the current :class:`Limits`."""

    def __init__(self) -> None:
        self.limits = Limits()
        self._buckets: dict[tuple[int, int | None], Bucket] = {}

    def check(self, bot_id: int, chat: ChatRec | None) -> None:
        """Take a token for one message of ``bot_id`` into ``chat``, or answer 429 with ``retry_after``."""
        moment = time.monotonic()
        buckets: list[Bucket] = []
        key_global = (bot_id, None)
        if key_global not in self._buckets:
            self._buckets[key_global] = Bucket(self.limits.global_per_second, self.limits.global_per_second)
        buckets.append(self._buckets[key_global])
        if chat is not None:
            key_chat = (bot_id, chat.id)
            if key_chat not in self._buckets:
                if chat.type == "private":
                    self._buckets[key_chat] = Bucket(
                        self.limits.private_burst, self.limits.private_per_second
                    )
                else:
                    self._buckets[key_chat] = Bucket(
                        self.limits.group_burst, self.limits.group_per_minute / 60
                    )
            buckets.append(self._buckets[key_chat])
        for bucket in buckets:
            bucket.refill(moment)
        wait = max(bucket.wait_time() for bucket in buckets)
        if wait > 0:
            retry_after = max(1, math.ceil(wait))
            raise ApiError(429, f"Too Many Requests: retry after {retry_after}", retry_after=retry_after)
        for bucket in buckets:
            bucket.tokens -= 1

    def update(self, body: dict[str, Any]) -> dict[str, Any]:
        """Change the limits named in ``body`` (``POST /control/limits``); buckets start full again."""
        current = asdict(self.limits)
        for key, value in body.items():
            if key not in current:
                raise ControlError(400, f"unknown limit {key!r}")
            if value is not None:
                current[key] = bool(value) if key == "enabled" else type(current[key])(value)
        self.limits = Limits(**current)
        self._buckets.clear()
        return asdict(self.limits)
