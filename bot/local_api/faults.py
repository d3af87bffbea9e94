"""Injected faults: the next matching calls answer 429, 5xx, 403 or any error, or are delayed.

``method: "*"`` matches every method except getUpdates, getMe and the webhook methods (so a poller
cannot swallow a fault meant for a send).  A ``delay`` fault sleeps and then answers normally, so the
message *is* delivered even if the client gave up waiting.
"""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import asdict, dataclass
from typing import Any

from .errors import ApiError, ControlError
from .params import int_field

__all__ = ["WILDCARD_EXEMPT", "Fault", "FaultQueue"]

# A "*" fault must not be eaten by the poller or by start-up calls.
WILDCARD_EXEMPT = frozenset({"getUpdates", "getMe", "setWebhook", "deleteWebhook", "getWebhookInfo"})
KINDS = ("429", "500", "502", "403", "delay", "error")


@dataclass
class Fault:
    """A queued failure: the next ``remaining`` matching calls misbehave."""

    id: int
    kind: str
    method: str = "*"
    chat_id: int | None = None
    remaining: int = 1
    retry_after: int = 1
    delay: float = 0.0
    error_code: int | None = None
    description: str | None = None

    def matches(self, method: str, chat_id: int | None) -> bool:
        """True when this fault applies to a call of ``method`` for ``chat_id``."""
        if self.remaining <= 0:
            return False
        if self.method == "*":
            if method in WILDCARD_EXEMPT:
                return False
        elif self.method.lower() != method.lower():
            return False
        return self.chat_id is None or self.chat_id == chat_id

    async def apply(self) -> None:
        """Misbehave as this fault says: sleep (``delay``) or raise the error it stands for."""
        if self.kind == "delay":
            await asyncio.sleep(self.delay)
            return
        if self.kind == "429":
            raise ApiError(
                429, f"Too Many Requests: retry after {self.retry_after}", retry_after=self.retry_after
            )
        if self.kind == "500":
            raise ApiError(500, self.description or "Internal Server Error")
        if self.kind == "502":
            raise ApiError(502, self.description or "Bad Gateway")
        if self.kind == "403":
            raise ApiError(403, self.description or "Forbidden: bot was blocked by the user")
        raise ApiError(self.error_code or 400, self.description or "Bad Request: injected fault")


class FaultQueue:
    """The faults queued through ``/control/faults``, in the order they were added."""

    def __init__(self) -> None:
        self.faults: list[Fault] = []
        self._ids = itertools.count(1)

    def take(self, method: str, chat_id: int | None) -> Fault | None:
        """The first fault matching this call, counted as used once."""
        for fault in self.faults:
            if fault.matches(method, chat_id):
                fault.remaining -= 1
                if fault.remaining <= 0:
                    self.faults.remove(fault)
                return fault
        return None

    def add(self, body: dict[str, Any]) -> Fault:
        """Queue a fault: ``{kind, method?="*", chat_id?, count?=1, retry_after?=1, delay?=0, error_code?, description?}``."""
        kind = str(body.get("kind") or "")
        if kind not in KINDS:
            raise ControlError(400, "kind must be one of 429, 500, 502, 403, delay, error")
        fault = Fault(
            id=next(self._ids),
            kind=kind,
            method=str(body.get("method") or "*"),
            chat_id=int_field(body, "chat_id"),
            remaining=max(1, int_field(body, "count") or 1),
            retry_after=max(1, int_field(body, "retry_after") or 1),
            delay=float(body.get("delay") or 0.0),
            error_code=int_field(body, "error_code"),
            description=body.get("description"),
        )
        self.faults.append(fault)
        return fault

    def clear(self) -> None:
        """Drop every queued fault."""
        self.faults.clear()

    def listing(self) -> list[dict[str, Any]]:
        """The queued faults as the control API shows them."""
        return [asdict(fault) for fault in self.faults]
