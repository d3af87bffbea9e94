"""What the loyalty services return: plain frozen records of a call's outcome."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from loyalbot.loyalty.events import TierChanged
from loyalbot.storage.models import Coupon, LedgerEntry, Member, Purchase, Refund, Reward


@dataclass(frozen=True)
class AwardResult:
    purchase: Purchase
    points: int
    repeated: bool
    tier_change: TierChanged | None = None


@dataclass(frozen=True)
class RefundResult:
    refund: Refund
    points_taken: int
    shortfall: int
    repeated: bool


@dataclass(frozen=True)
class CounterUndo:
    """An /award undone at the counter: the purchase, its refund, and the member after it."""

    purchase: Purchase
    refund: RefundResult
    member: Member


@dataclass(frozen=True)
class RedeemResult:
    coupon: Coupon
    reward: Reward
    repeated: bool


@dataclass(frozen=True)
class ExpiringPoints:
    expires_at: datetime
    points: int


@dataclass(frozen=True)
class PointsSummary:
    balance: int
    expiring: list[ExpiringPoints]
    recent: list[LedgerEntry]

    @property
    def next_expiry(self) -> ExpiringPoints | None:
        return self.expiring[0] if self.expiring else None


@dataclass(frozen=True)
class TierProgress:
    tier: str
    spend: Decimal
    next_tier: str | None
    needed: Decimal | None
    window_months: int


@dataclass(frozen=True)
class CatalogueItem:
    reward: Reward
    available: bool
    reason: str | None  # the Refusal code that stops this member taking it now
    taken: int = 0


@dataclass(frozen=True)
class CouponView:
    coupon: Coupon
    reward: Reward
    member: Member


@dataclass
class Scores:
    kind: str
    answers: int
    value: float | None
    distribution: dict[int, int] = field(default_factory=dict)


__all__ = [
    "AwardResult",
    "CatalogueItem",
    "CounterUndo",
    "CouponView",
    "ExpiringPoints",
    "PointsSummary",
    "RedeemResult",
    "RefundResult",
    "Scores",
    "TierProgress",
]
