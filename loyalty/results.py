"""What the loyalty services return: plain frozen records of a call's outcome."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from loyalbot.loyalty.events import TierChanged
from loyalbot.loyalty.programme import StampCardSpec
from loyalbot.storage.models import Coupon, LedgerEntry, Member, Purchase, Refund, Reward


@dataclass(frozen=True)
class BonusGiven:
    """A bonus a purchase earned: the rule's code and the points."""

    code: str
    points: int


@dataclass(frozen=True)
class Stamped:
    """What one stamping did to a card: stamps added, the card now, coupons the last stamp issued."""

    card: str
    added: int
    stamps: int
    needed: int
    cycles: int
    coupons: tuple[str, ...] = ()
    repeated: bool = False


@dataclass(frozen=True)
class StampsTakenBack:
    """What a refund took back from a stamp card: the stamps, the card after it (below zero: in debt), and
    the unused coupons of the completions those stamps had made, voided."""

    card: str
    stamps: int
    left: int
    coupons_voided: tuple[str, ...] = ()


@dataclass(frozen=True)
class BonusTakenBack:
    """A spend-threshold bonus a refund took back: its period's spend fell below the threshold again."""

    code: str
    period: str
    points: int


@dataclass(frozen=True)
class CardProgress:
    """A member's card as the chat shows it."""

    spec: StampCardSpec
    stamps: int
    cycles: int


@dataclass(frozen=True)
class BirthdayGift:
    """A tier's birthday gift: the reward and the coupon issued for it."""

    reward_code: str
    coupon_code: str
    repeated: bool


@dataclass(frozen=True)
class AwardResult:
    purchase: Purchase
    points: int
    repeated: bool
    tier_change: TierChanged | None = None
    bonuses: tuple[BonusGiven, ...] = ()  # the bonus campaigns' points beside `points` (loyalty/bonuses.py)
    stamps: tuple[Stamped, ...] = ()  # the stamp cards the purchase stamped (loyalty/stamps.py)


@dataclass(frozen=True)
class RefundResult:
    refund: Refund
    points_taken: int
    shortfall: int
    repeated: bool
    pending_cancelled: int = 0  # points of the purchase still pending that the refund cancelled first
    stamps: tuple[StampsTakenBack, ...] = ()  # the stamps the purchase had added, taken back (loyalty/stamps.py)
    bonuses: tuple[BonusTakenBack, ...] = ()  # threshold bonuses that no longer hold (loyalty/bonuses.py)


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
class PendingView:
    """Points still inside their return window, and when they become spendable."""

    available_at: datetime
    points: int
    bonus: str | None = None  # the bonus campaign's code these points are for; None: the purchase's own


@dataclass(frozen=True)
class ReferralStats:
    """A member's referral code and how their friends are doing: joined, and bought (both rewarded)."""

    code: str
    joined: int
    rewarded: int
    next_milestone: int | None  # friends who must have bought for the next milestone, if any is left


@dataclass(frozen=True)
class PointsSummary:
    balance: int
    expiring: list[ExpiringPoints]
    recent: list[LedgerEntry]
    pending: list[PendingView] = field(default_factory=list)

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
    "BirthdayGift",
    "BonusGiven",
    "CardProgress",
    "CatalogueItem",
    "CounterUndo",
    "CouponView",
    "ExpiringPoints",
    "PointsSummary",
    "RedeemResult",
    "RefundResult",
    "Scores",
    "Stamped",
    "TierProgress",
]
