"""Counters that limit how often something may be tried: sign-ins, API keys, look-ups at the counter.

A `Throttle` counts attempts per (scope, key) in a fixed window and says how long to wait once the
limit is reached. The in-process one serves a single process; the SQL and Redis ones (same contract)
hold across replicas.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol


class Throttle(Protocol):
    """Limits attempts per (scope, key): `hit` counts one and returns 0.0, or the seconds to wait."""

    async def hit(self, scope: str, key: str, *, limit: int, per: float) -> float:
        """Count one attempt at `scope` by `key`; 0.0 when allowed, else seconds until the window resets."""
        ...


class MemoryThrottle:
    """A fixed-window counter in this process's memory."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._windows: dict[tuple[str, str], tuple[float, int]] = {}

    async def hit(self, scope: str, key: str, *, limit: int, per: float) -> float:
        now = self._clock()
        start, count = self._windows.get((scope, key), (now, 0))
        if now - start >= per:
            start, count = now, 0
        count += 1
        self._windows[(scope, key)] = (start, count)
        if len(self._windows) > 100_000:  # forget finished windows so guessing cannot grow memory
            self._windows = {k: v for k, v in self._windows.items() if now - v[0] < per}
        return 0.0 if count <= limit else max(0.001, per - (now - start))


__all__ = ["MemoryThrottle", "Throttle"]
