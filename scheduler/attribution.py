"""A campaign's results: who converted after its message, per variant, against the control group.

A message counts from the moment it was sent (`outbox.sent_at`, status sent); a control member from
the moment they were held out (`campaign_holdouts.assigned_at`, the run's planning time). Either
*converted* when the member made a purchase in (t, t + window] (the schedule's ``window_days``, 7 by
default): a purchase at exactly t does not count (it was not caused by the message), one at exactly
t + window does. Revenue is the sum of those purchases' amounts and points the points they were
awarded (both as recorded, before any refund). Each outbox row or holdout row is one unit: a member
planned in three runs of a recurring schedule counts three times, once per run.

*Coupon redemption* is counted only when the store links a campaign's message to an offer coupon
(`outbox.coupon_id`, the coupon the message's offer issued at hand-over): the
share of sent messages carrying a coupon whose coupon was used at the counter within the window.
Without the link there is no redemption figure (None), never a made-up zero.

The statistics are formulas, written out here so anyone can check them (z = 1.96 for 95%):

* each rate p = k / n gets a Wilson score interval,
  (p + z²/2n ± z·sqrt(p(1-p)/n + z²/4n²)) / (1 + z²/n), which stays inside [0, 1] for small counts;
* lift = p_treated - p_control, with the two-proportion normal approximation (unpooled),
  lift ± z·sqrt(p_t(1-p_t)/n_t + p_c(1-p_c)/n_c). When the interval does not include 0 the
  difference is unlikely to be chance (at the 95% level). When both rates are 0 or 1 (nobody, or
  everybody, bought in either group: a few members, a campaign just sent) the formula has no spread and
  its interval would be a point, claiming a certainty the counts do not hold: the lift then has no
  interval (low and high None), and the CLI and console say "too few to tell".

Everything is counted in SQL (one grouped statement per question) so a million sent messages and
five million purchases are read by the database, not carried into Python (bench/campaign_results.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from loyalbot.scheduler.experiments import CONTROL, window_days
from loyalbot.storage import Db
from loyalbot.storage.models import CampaignHoldout, Coupon, Outbox, Purchase, Schedule
from loyalbot.storage.rows import stored_id, table_of

Z95 = 1.959963984540054
SINGLE = "all"  # the name of the one arm of a schedule without variants


@dataclass(frozen=True)
class Rate:
    """k of n, with its 95% Wilson interval (all None when n is 0)."""

    k: int
    n: int

    @property
    def value(self) -> float | None:
        return self.k / self.n if self.n else None

    @property
    def interval(self) -> tuple[float, float] | None:
        return wilson(self.k, self.n)


@dataclass(frozen=True)
class Lift:
    """Treated conversion minus control conversion, with its 95% interval (None when the counts give none)."""

    difference: float
    low: float | None
    high: float | None


@dataclass
class Arm:
    """One variant (or all messages of a schedule without variants), or the control group."""

    name: str
    units: int = 0  # messages sent, or members held out
    converted: int = 0
    revenue: Decimal = Decimal("0.00")
    points: int = 0
    with_coupon: int | None = None  # messages that carried an offer coupon (None: no link in the store)
    redeemed: int | None = None
    lift: Lift | None = None

    @property
    def conversion(self) -> Rate:
        return Rate(self.converted, self.units)

    @property
    def redemption(self) -> Rate | None:
        if self.with_coupon is None or self.redeemed is None:
            return None
        return Rate(self.redeemed, self.with_coupon)

    def as_dict(self) -> dict[str, Any]:
        conversion, redemption = self.conversion, self.redemption
        return {"name": self.name, "units": self.units, "converted": self.converted,
                "conversion": conversion.value, "conversion_ci": conversion.interval,
                "revenue": str(self.revenue), "points": self.points,
                "with_coupon": self.with_coupon, "redeemed": self.redeemed,
                "redemption": redemption.value if redemption else None,
                "redemption_ci": redemption.interval if redemption else None,
                "lift": None if self.lift is None else {"difference": self.lift.difference, "low": self.lift.low,
                                                        "high": self.lift.high}}


@dataclass
class CampaignResults:
    """A schedule's figures: one arm per variant, all of them together, and the control group."""

    schedule: str
    window_days: int
    variants: list[Arm] = field(default_factory=list)
    treated: Arm = field(default_factory=lambda: Arm("treated"))
    control: Arm | None = None  # None: the schedule keeps no control group (and never held anyone out)

    def as_dict(self) -> dict[str, Any]:
        return {"schedule": self.schedule, "window_days": self.window_days,
                "variants": [a.as_dict() for a in self.variants], "treated": self.treated.as_dict(),
                "control": self.control.as_dict() if self.control else None}


# --- the formulas ---------------------------------------------------------------------------------


def wilson(k: int, n: int, z: float = Z95) -> tuple[float, float] | None:
    """The Wilson score interval of k successes in n trials (None when n is 0)."""
    if n <= 0:
        return None
    p = k / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def lift(treated: Rate, control: Rate, z: float = Z95) -> Lift | None:
    """p_treated - p_control with the unpooled two-proportion normal interval (None without both rates; no
    interval when both rates are 0 or 1)."""
    if not treated.n or not control.n:
        return None
    p1, p0 = treated.k / treated.n, control.k / control.n
    se = math.sqrt(p1 * (1 - p1) / treated.n + p0 * (1 - p0) / control.n)
    if se == 0:  # both rates 0 or 1: no spread to measure, not a certain difference
        return Lift(p1 - p0, None, None)
    return Lift(p1 - p0, p1 - p0 - z * se, p1 - p0 + z * se)


# --- counting -------------------------------------------------------------------------------------


def _window_end(db: Db, stamp: Any, days: int) -> Any:
    """`stamp` + `days` as SQL the stored timestamps compare with exactly (to the microsecond)."""
    if db.is_postgres:
        return stamp + timedelta(days=days)
    # SQLite keeps 'YYYY-MM-DD HH:MM:SS.ffffff'; datetime() drops the fraction, so it is put back.
    return sa.func.datetime(stamp, f"+{int(days)} days").op("||")(sa.func.substr(stamp, 20))


def _purchases_after(db: Db, member: Any, stamp: Any, days: int) -> Any:
    return sa.and_(Purchase.member_id == member, Purchase.occurred_at > stamp,
                   Purchase.occurred_at <= _window_end(db, stamp, days))


async def _arms(db: Db, schedule_id: int, days: int) -> list[Arm]:
    """Sent messages, conversions, revenue and points per variant."""
    per_row = (sa.select(Outbox.id, Outbox.variant, sa.func.count(Purchase.id).label("n"),
                         sa.func.coalesce(sa.func.sum(Purchase.amount), 0).label("revenue"),
                         sa.func.coalesce(sa.func.sum(Purchase.points_awarded), 0).label("points"))
               .select_from(Outbox)
               .outerjoin(Purchase, _purchases_after(db, Outbox.member_id, Outbox.sent_at, days))
               .where(Outbox.schedule_id == schedule_id, Outbox.status == "sent", Outbox.sent_at.is_not(None))
               .group_by(Outbox.id, Outbox.variant).subquery())
    query = (sa.select(per_row.c.variant, sa.func.count(), sa.func.sum(sa.case((per_row.c.n > 0, 1), else_=0)),
                       sa.func.sum(per_row.c.revenue), sa.func.sum(per_row.c.points))
             .group_by(per_row.c.variant).order_by(per_row.c.variant))
    async with db.read() as s:
        rows = (await s.execute(query)).all()
    return [Arm(variant or SINGLE, int(sent), int(converted or 0), Decimal(revenue or 0).quantize(Decimal("0.01")),
                int(points or 0)) for variant, sent, converted, revenue, points in rows]


async def _control(db: Db, schedule_id: int, days: int) -> Arm | None:
    per_row = (sa.select(CampaignHoldout.id, sa.func.count(Purchase.id).label("n"),
                         sa.func.coalesce(sa.func.sum(Purchase.amount), 0).label("revenue"),
                         sa.func.coalesce(sa.func.sum(Purchase.points_awarded), 0).label("points"))
               .select_from(CampaignHoldout)
               .outerjoin(Purchase, _purchases_after(db, CampaignHoldout.member_id, CampaignHoldout.assigned_at, days))
               .where(CampaignHoldout.schedule_id == schedule_id)
               .group_by(CampaignHoldout.id).subquery())
    query = sa.select(sa.func.count(), sa.func.sum(sa.case((per_row.c.n > 0, 1), else_=0)),
                      sa.func.sum(per_row.c.revenue), sa.func.sum(per_row.c.points))
    async with db.read() as s:
        held, converted, revenue, points = (await s.execute(query)).one()
    if not held:
        return None
    return Arm(CONTROL, int(held), int(converted or 0), Decimal(revenue or 0).quantize(Decimal("0.01")),
               int(points or 0))


async def _redemptions(db: Db, schedule_id: int, days: int) -> dict[str | None, tuple[int, int]] | None:
    """variant -> (sent messages with an offer coupon, of which the coupon was used within the window); None
    when none of the campaign's messages carried a coupon (no offer: no figure, rather than a zero)."""
    used_in_window = sa.and_(Coupon.id == Outbox.coupon_id, Coupon.status == "used", Coupon.used_at > Outbox.sent_at,
                             Coupon.used_at <= _window_end(db, Outbox.sent_at, days))
    query = (sa.select(Outbox.variant, sa.func.count(Outbox.coupon_id), sa.func.count(Coupon.id))
             .select_from(table_of(Outbox).outerjoin(table_of(Coupon), used_in_window))
             .where(Outbox.schedule_id == schedule_id, Outbox.status == "sent", Outbox.sent_at.is_not(None))
             .group_by(Outbox.variant))
    async with db.read() as s:
        found = {variant: (int(carried), int(used)) for variant, carried, used in (await s.execute(query)).all()}
    return found if any(carried for carried, _ in found.values()) else None


async def campaign_results(db: Db, schedule: Schedule) -> CampaignResults:
    """The schedule's figures so far (sent messages, conversions, revenue, points, redemption, lift)."""
    schedule_id, days = stored_id(schedule.id), window_days(schedule)
    results = CampaignResults(schedule.name, days, await _arms(db, schedule_id, days),
                              control=await _control(db, schedule_id, days))
    redemptions = await _redemptions(db, schedule_id, days)
    treated = results.treated
    for arm in results.variants:
        if redemptions is not None:
            arm.with_coupon, arm.redeemed = redemptions.get(None if arm.name == SINGLE else arm.name, (0, 0))
        treated.units += arm.units
        treated.converted += arm.converted
        treated.revenue += arm.revenue
        treated.points += arm.points
    if redemptions is not None:
        treated.with_coupon = sum(carried for carried, _ in redemptions.values())
        treated.redeemed = sum(used for _, used in redemptions.values())
    if results.control is not None:
        for arm in (*results.variants, treated):
            arm.lift = lift(arm.conversion, results.control.conversion)
    return results
