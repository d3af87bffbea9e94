"""/metrics: this process's registry (chat/metrics.py) in Prometheus' text format, with what the store says.

The counters and histograms (updates, latency, sends, 429s, relay queue, planner leadership) are
this process's own. What only the store knows (inbox and outbox depth, and the dashboard's business
gauges: members, points, coupons, satisfaction, support) is read once per scrape into a snapshot
that a custom collector turns into gauge families; a snapshot younger than `max_age` seconds is
reused, so a burst of scrapes (several Prometheus servers, a curious visitor) costs one set of
queries. Only aggregates: no label carries personal data.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlmodel import col

from loyalbot.chat.metrics import Metrics
from loyalbot.console.dashboard import Dashboard, build_dashboard
from loyalbot.loyalty import Loyalty
from loyalbot.storage.models import InboxUpdate, Outbox

CONTENT_TYPE = CONTENT_TYPE_LATEST
OUTBOX_WAITING = ("pending", "sending")


@dataclass
class Snapshot:
    """What the store said at one scrape."""

    board: Dashboard
    inbox: dict[str, int] = field(default_factory=dict)  # pending (not taken) / claimed (being handled)
    outbox: dict[str, int] = field(default_factory=dict)  # rows waiting to be sent, by status


async def read_snapshot(loyalty: Loyalty) -> Snapshot:
    board = await build_dashboard(loyalty)
    async with loyalty.db.read() as s:
        claimed = sa.case((col(InboxUpdate.claimed_by).is_(None), "pending"), else_="claimed")
        inbox: dict[str, int] = dict((await s.execute(
            sa.select(claimed, sa.func.count()).where(InboxUpdate.status == "pending").group_by(claimed))).all())
        outbox = dict((await s.execute(
            sa.select(Outbox.status, sa.func.count()).where(col(Outbox.status).in_(OUTBOX_WAITING))
            .group_by(Outbox.status))).all())
    return Snapshot(board, {k: int(inbox.get(k, 0)) for k in ("pending", "claimed")},
                    {k: int(outbox.get(k, 0)) for k in OUTBOX_WAITING})


def _gauge(name: str, doc: str, values: Mapping[Any, float | int | None] | float | int, label: str = "") -> Metric:
    family = GaugeMetricFamily(f"loyalbot_{name}", doc, labels=[label] if label else None)
    if isinstance(values, Mapping):
        for key, value in values.items():
            if value is not None:
                family.add_metric([str(key)], float(value))
    else:
        family.add_metric([], float(values))
    return family


class StoreCollector(Collector):
    """Gauges read from the store: set `snapshot` before the registry is rendered."""

    def __init__(self) -> None:
        self.snapshot: Snapshot | None = None

    def describe(self) -> Iterable[Metric]:
        return []  # nothing to describe before the first scrape (and no store query at registration)

    def collect(self) -> Iterable[Metric]:
        snap = self.snapshot
        if snap is None:
            return
        board = snap.board
        yield _gauge("inbox_depth", "Updates recorded and not yet handled: pending (waiting for a worker) or "
                     "claimed (being handled).", snap.inbox, "state")
        yield _gauge("outbox_depth", "Outbox rows waiting to be sent, by status (pending, sending).",
                     snap.outbox, "status")
        yield _gauge("members", "Members who have not been erased.", board.members.get("total", 0))
        yield _gauge("members_by_tier", "Members per tier.", board.members.get("by_tier", {}), "tier")
        yield _gauge("points_outstanding", "Points members hold.", board.points.get("outstanding", 0))
        yield _gauge("points_moved", f"Points moved in the last {board.period_days} days, by ledger kind.",
                     {k: v for k, v in board.points.items() if k != "outstanding"}, "kind")
        yield _gauge("coupons_active", "Coupons issued and not yet used or expired.", board.coupons.get("active", 0))
        yield _gauge("outbox", f"Outbox rows of the last {board.period_days} days, by status.", board.outbox, "status")
        yield _gauge("satisfaction", "CSAT (% of 4-5) and NPS over 90 days.",
                     {k: v["value"] for k, v in board.satisfaction.items()}, "kind")
        yield _gauge("support_open", "Support conversations waiting or with a person.",
                     board.support.get("open", {}), "state")


class MetricsPage:
    """Renders /metrics for one app: its Metrics' registry plus the store's gauges."""

    def __init__(self, loyalty: Loyalty, metrics: Metrics, *, max_age: float = 2.0) -> None:
        self.loyalty = loyalty
        self.metrics = metrics
        self.max_age = max_age
        self.collector = StoreCollector()
        metrics.registry.register(self.collector)
        self._read_at = float("-inf")
        self._lock = asyncio.Lock()

    async def render(self) -> bytes:
        async with self._lock:  # concurrent scrapes share one read
            if time.monotonic() - self._read_at >= self.max_age:
                self.collector.snapshot = await read_snapshot(self.loyalty)
                self._read_at = time.monotonic()
        return generate_latest(self.metrics.registry)


__all__ = ["CONTENT_TYPE", "MetricsPage", "Snapshot", "StoreCollector", "read_snapshot"]
