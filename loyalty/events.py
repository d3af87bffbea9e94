"""Events the rest of the system may react to after a service call commits, and the notices written with it.

A *notice* is written in the event's own transaction (the member is to be told; scheduler/notices.py
tells them). An *event* is handed to the listeners after the commit; a listener's failure is logged
and never undoes the call.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from loyalbot.storage.models import Notice
from loyalbot.storage.rows import table_of

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TierChanged:
    member_id: int
    from_tier: str
    to_tier: str
    reason: str
    upgrade: bool


@dataclass(frozen=True)
class CouponUsed:
    member_id: int
    coupon_id: int
    staff_id: int


@dataclass(frozen=True)
class MemberErased:
    """A member's personal data was erased (support then clears its staff topic)."""

    member_id: int


@dataclass(frozen=True)
class MemberJoined:
    """A member finished joining (the demo then gives them something to see)."""

    member_id: int


LoyaltyEvent = TierChanged | CouponUsed | MemberErased | MemberJoined
Listener = Callable[[LoyaltyEvent], Awaitable[None]]


class Events:
    """The listeners of one Loyalty, told of each event after its transaction commits."""

    def __init__(self) -> None:
        self._listeners: list[Listener] = []

    def subscribe(self, listener: Listener) -> None:
        """Call `listener` after commit for every tier change, used coupon, erasure and join."""
        self._listeners.append(listener)

    async def emit(self, event: LoyaltyEvent | None) -> None:
        if event is None:
            return
        for listener in self._listeners:
            try:
                await listener(event)
            except Exception:  # a listener's failure must not undo a committed service call
                log.exception("loyalty event listener failed for %s", type(event).__name__)


async def record_notice(tx: AsyncSession | AsyncConnection, member_id: int, kind: str, key: str,
                        now: datetime) -> None:
    """Record, in the event's own transaction, that the member is to be told (scheduler/notices.py tells)."""
    await tx.execute(sa.insert(table_of(Notice)).values(member_id=member_id, kind=kind, key=key[:128], status="new",
                                                   created_at=now))


__all__ = [
    "CouponUsed",
    "Events",
    "Listener",
    "LoyaltyEvent",
    "MemberErased",
    "MemberJoined",
    "TierChanged",
    "record_notice",
]
