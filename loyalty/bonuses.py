"""Bonus campaigns: which of the programme's `[[bonuses]]` a purchase earns, and their points, each its own
ledger entry (kind "bonus", reference "bonus:<code>") so that the member's history says why.

Applied by the award (loyalty/award.py) inside its transaction, after the purchase is written:

* multiplier: within its window (starts/ends, the shop's time zone when they carry none), the purchase's
  points again times (factor - 1): "double points this weekend" is factor 2. Limited to tiers, to stores
  (when the purchase names its store) and to categories (then only those items' amounts count).
* member_day: the same, on one weekday every week (in the shop's time zone).
* threshold: once the member's spend within the period (week, month, year, in the shop's time zone)
  reaches `threshold`, `points` once per member and period.

Each grant is kept in bonus_grants under (member, bonus, period): the purchase for the first two, the
period for a threshold, so a repeat gives nothing twice. A purchase still inside its return window
(loyalty/pending.py) gets its bonuses as pending rows beside its own points: they wait and are cancelled
with them.

A refund takes the purchase's own bonuses back with its points (loyalty/points.py), and a threshold bonus
whose period's spend, less every refund, falls below the threshold again (`thresholds_lost`): its grant is
renamed "<period>~revoked:<refund>", so the member who reaches the threshold again in that period earns it
again, once.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_FLOOR, Decimal
from typing import Protocol
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from loyalbot.loyalty.basket import Basket
from loyalbot.loyalty.programme import WEEKDAYS, BonusRule, Programme
from loyalbot.loyalty.results import BonusGiven, BonusTakenBack
from loyalbot.storage.models import BonusGrant, Purchase
from loyalbot.storage.rule_writers import Grant


class BonusWriter(Protocol):
    async def spend_between(self, member_id: int, start: datetime, end: datetime) -> Decimal: ...

    async def grant(self, grant: Grant) -> bool: ...


def local(value: datetime, zone: ZoneInfo) -> datetime:
    """A rule's time: as written when it carries a zone, else in the shop's."""
    return value.replace(tzinfo=zone) if value.tzinfo is None else value


def in_window(rule: BonusRule, at: datetime, zone: ZoneInfo) -> bool:
    """Whether `at` is within the rule's window: from `starts` (included) to `ends` (not)."""
    if rule.starts is not None and at < local(rule.starts, zone):
        return False
    return not (rule.ends is not None and at >= local(rule.ends, zone))


def applies(rule: BonusRule, *, tier: str, store: str | None, at: datetime, zone: ZoneInfo) -> bool:
    """Whether the rule is on for a purchase at `at` by a member of `tier` in `store` (items aside)."""
    if not in_window(rule, at, zone) or (rule.tiers and tier not in rule.tiers):
        return False
    if rule.stores and store not in rule.stores:
        return False
    return not (rule.kind == "member_day" and WEEKDAYS[at.astimezone(zone).weekday()] != rule.weekday)


def counted_amount(rule: BonusRule, amount: Decimal, basket: Basket) -> Decimal:
    """What of the purchase the rule multiplies: all of it, or only the items of its categories."""
    if not rule.categories:
        return amount
    return sum((item.amount or Decimal(0) for item in basket.items if item.category in rule.categories), Decimal(0))


def period_of(period: str, at: datetime, zone: ZoneInfo) -> tuple[str, datetime, datetime]:
    """The week (from Monday), month or year `at` falls in, in the shop's time zone: its name, start, end (UTC)."""
    day = at.astimezone(zone).date()
    if period == "week":
        first = day - timedelta(days=day.weekday())
        name, following = f"{first.isocalendar().year}-W{first.isocalendar().week:02d}", first + timedelta(days=7)
    elif period == "month":
        first = day.replace(day=1)
        following = (first + timedelta(days=32)).replace(day=1)
        name = f"{first:%Y-%m}"
    else:
        first, following = day.replace(month=1, day=1), day.replace(year=day.year + 1, month=1, day=1)
        name = f"{first:%Y}"

    def start(d: date) -> datetime:
        return datetime.combine(d, time(0), tzinfo=zone).astimezone(UTC)

    return name, start(first), start(following)


def _extra(points: int, factor: Decimal) -> int:
    return int((points * (factor - 1)).to_integral_value(rounding=ROUND_FLOOR))


async def apply_bonuses(writer: BonusWriter, programme: Programme, purchase: Purchase, basket: Basket, *,
                        tier: str, price: Callable[[Decimal], int], expires_at: datetime,
                        pending_until: datetime | None = None) -> list[BonusGiven]:
    """Give the purchase's bonuses (in the caller's transaction, the member locked); what was given.

    `price` is the award's own rule (points for an amount, tier and birthday month included), so a
    multiplier doubles exactly what the purchase earned. With `pending_until` (the purchase's points wait
    out the return window, loyalty/pending.py) its bonuses wait with them, each as its own pending row."""
    zone, at, member_id = programme.zone, purchase.occurred_at, purchase.member_id
    given = []
    for rule in programme.bonuses:
        if not applies(rule, tier=tier, store=basket.store, at=at, zone=zone):
            continue
        if rule.kind == "threshold":
            assert rule.period is not None and rule.threshold is not None and rule.points is not None
            name, start, end = period_of(rule.period, at, zone)
            if await writer.spend_between(member_id, start, end) < rule.threshold:
                continue
            points, period = rule.points, f"{rule.period}:{name}"
        else:
            assert rule.factor is not None
            points, period = _extra(price(counted_amount(rule, Decimal(purchase.amount), basket)), rule.factor), \
                f"purchase:{purchase.id}"
        if points <= 0:
            continue
        grant = Grant(member_id, rule.code, period, points, expires_at, f"bonus:{rule.code}", purchase.id,
                      purchase.created_at, pending_until)
        if await writer.grant(grant):
            given.append(BonusGiven(rule.code, points))
    return given


async def thresholds_lost(tx: AsyncSession, programme: Programme, member_id: int, occurred_at: datetime, *,
                          refund_id: str) -> list[tuple[BonusTakenBack, int | None]]:
    """The threshold bonuses a refund of a purchase made at `occurred_at` undoes (inside the refund's
    transaction, the member locked, the refund already counted in the purchase): each grant of the
    purchase's period whose spend is now below its threshold is marked revoked; the caller takes the points
    back (still pending with the purchase that earned them, given as `purchase_id`, or from the balance)."""
    zone, lost = programme.zone, []
    for rule in programme.bonuses:
        if rule.kind != "threshold":
            continue
        assert rule.period is not None and rule.threshold is not None
        name, start, end = period_of(rule.period, occurred_at, zone)
        period = f"{rule.period}:{name}"
        grant = (await tx.execute(sa.select(BonusGrant).where(
            BonusGrant.member_id == member_id, BonusGrant.bonus_code == rule.code, BonusGrant.period == period
        ).execution_options(populate_existing=True))).scalar_one_or_none()
        if grant is None:
            continue
        spend = Decimal((await tx.execute(
            sa.select(sa.func.coalesce(sa.func.sum(Purchase.amount - Purchase.refunded_amount), 0)).where(
                Purchase.member_id == member_id, Purchase.occurred_at >= start, Purchase.occurred_at < end)
        )).scalar_one())
        if spend >= rule.threshold:
            continue
        grant.period = f"{period}~revoked:{refund_id}"[:140]
        tx.add(grant)
        lost.append((BonusTakenBack(rule.code, period, grant.points), grant.purchase_id))
    return lost


def bonus_title(programme: Programme, reference: str | None, language: str) -> str | None:
    """The title of the bonus a ledger entry's reference ("bonus:<code>") names, in `language`; None if none."""
    if not reference or not reference.startswith("bonus:"):
        return None
    code = reference.removeprefix("bonus:")
    for rule in programme.bonuses:
        if rule.code == code:
            default = programme.programme.default_language
            return rule.titles.get(language) or rule.titles.get(default) or rule.code
    return None


__all__ = ["BonusGiven", "BonusTakenBack", "apply_bonuses", "thresholds_lost", "applies", "bonus_title", "counted_amount", "in_window", "period_of"]
