"""The operator's dashboard figures: members, points, coupons, deliveries, satisfaction and support times.

Every figure is an aggregate (no personal data), computed in the database in a handful of queries.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlmodel import col

from loyalbot.loyalty import Loyalty
from loyalbot.storage import as_utc, utcnow
from loyalbot.storage.models import Coupon, HandoffConversation, LedgerEntry, Member, Outbox


@dataclass
class Dashboard:
    """What the console shows; `period_days` is the window of the 'recent' figures."""

    period_days: int
    at: datetime
    members: dict[str, Any] = field(default_factory=dict)
    points: dict[str, int] = field(default_factory=dict)
    coupons: dict[str, int] = field(default_factory=dict)
    outbox: dict[str, int] = field(default_factory=dict)
    skipped: dict[str | None, int] = field(default_factory=dict)  # by reason (None: a row skipped without one)
    satisfaction: dict[str, Any] = field(default_factory=dict)
    support: dict[str, Any] = field(default_factory=dict)


async def build_dashboard(loyalty: Loyalty, *, now: datetime | None = None, period_days: int = 30) -> Dashboard:
    """Compute the dashboard over the last `period_days` (and totals where a total makes sense)."""
    now = as_utc(now or utcnow())
    since = now - timedelta(days=period_days)
    board = Dashboard(period_days=period_days, at=now)
    async with loyalty.db.read() as s:
        live = Member.status != "erased"
        board.members["total"] = (await s.execute(sa.select(sa.func.count()).where(live))).scalar_one()
        board.members["joined"] = (await s.execute(
            sa.select(sa.func.count()).where(live, col(Member.joined_at) >= since))).scalar_one()
        board.members["unreachable"] = (await s.execute(
            sa.select(sa.func.count()).where(Member.status == "unreachable"))).scalar_one()
        board.members["by_tier"] = dict((await s.execute(
            sa.select(Member.tier, sa.func.count()).where(live).group_by(Member.tier))).all())
        board.members["by_language"] = dict((await s.execute(
            sa.select(Member.language, sa.func.count()).where(live).group_by(Member.language))).all())
        board.points["outstanding"] = int((await s.execute(
            sa.select(sa.func.coalesce(sa.func.sum(Member.balance), 0)))).scalar_one())
        moved = dict((await s.execute(
            sa.select(LedgerEntry.kind, sa.func.coalesce(sa.func.sum(LedgerEntry.delta), 0))
            .where(col(LedgerEntry.created_at) >= since).group_by(LedgerEntry.kind))).all())
        for kind in ("earn", "bonus", "redeem", "expire", "refund", "adjust"):
            board.points[kind] = int(moved.get(kind, 0))
        board.coupons["issued"] = (await s.execute(
            sa.select(sa.func.count()).where(col(Coupon.issued_at) >= since))).scalar_one()
        board.coupons["used"] = (await s.execute(
            sa.select(sa.func.count()).where(col(Coupon.used_at) >= since))).scalar_one()
        board.coupons["active"] = (await s.execute(
            sa.select(sa.func.count()).where(Coupon.status == "active", col(Coupon.expires_at) > now))).scalar_one()
        board.outbox = dict((await s.execute(
            sa.select(Outbox.status, sa.func.count()).where(col(Outbox.created_at) >= since)
            .group_by(Outbox.status))).all())
        board.skipped = dict((await s.execute(
            sa.select(Outbox.skip_reason, sa.func.count())
            .where(col(Outbox.created_at) >= since, Outbox.status == "skipped")
            .group_by(Outbox.skip_reason))).all())
        board.support["open"] = dict((await s.execute(
            sa.select(HandoffConversation.state, sa.func.count())
            .where(col(HandoffConversation.state).in_(("waiting", "human")))
            .group_by(HandoffConversation.state))).all())
        closed = (await s.execute(
            sa.select(HandoffConversation.first_response_seconds, HandoffConversation.resolution_seconds)
            .where(col(HandoffConversation.closed_at) >= since))).all()
    first = [row[0] for row in closed if row[0] is not None]
    resolution = [row[1] for row in closed if row[1] is not None]
    board.support["closed"] = len(closed)
    board.support["median_first_response_min"] = round(statistics.median(first) / 60, 1) if first else None
    board.support["median_resolution_min"] = round(statistics.median(resolution) / 60, 1) if resolution else None
    for kind in ("csat", "nps"):
        scores = await loyalty.scores(kind, since=now - timedelta(days=90), until=now + timedelta(seconds=1))
        board.satisfaction[kind] = {"value": scores.value, "answers": scores.answers}
    return board
