"""The dashboard's figures over time, bucketed by the shop's local days (or weeks from Monday) and kept fast.

How it stays fast on a million members: every source table has an index on the moment its rows happened
(migration 0014), and each completed bucket is computed once into `daily_stats` (zone, day, metric,
dimension) -> value. A page reads the rollup for the completed buckets of its range and computes only the
bucket that holds today live. A bucket is computed when first asked for, and computed again (at most once
an hour) until it is `SETTLE` old, so rows that change after the day (an outbox row sent late, a coupon used)
are caught; older buckets stay as computed. Additive figures (sums, counts) are kept per day and summed into
weeks; distinct counts (active members, purchasers, repeat purchasers) are kept per day and per week.
Figures over the whole range that are not sums (members active in the range, its repeat-purchase rate,
the medians of support times) are computed live from the indexes.

Everything here is an aggregate: no member's name, phone or message appears in a figure.
"""

from __future__ import annotations

import asyncio
import logging
import statistics
from collections import defaultdict
from collections.abc import Awaitable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from loyalbot.storage import Db, as_utc
from loyalbot.storage.clock import zone_or_utc
from loyalbot.storage.models import (
    Coupon,
    DailyMembers,
    DailyStat,
    HandoffConversation,
    LedgerEntry,
    Member,
    Outbox,
    Purchase,
    Referral,
    SurveyAnswer,
    TierChange,
)
from loyalbot.storage.rows import table_of

log = logging.getLogger(__name__)

SETTLE = timedelta(days=7)  # a bucket is recomputed until it is this old
RECHECK = timedelta(hours=1)  # ... at most this often
MAX_DAYS = 3 * 366  # the longest range a page shows
CHUNK = 28  # buckets computed in one go when the rollup is built
SETS_READ = 92  # days of stored member sets read at once
WEEKLY_AFTER = 92  # ranges longer than this many days are shown in weeks
PRESETS = (7, 30, 90, 365)
EARLIEST = date(2000, 1, 1)
# Ledger kinds that count as points issued (a yearly reset's carry is issued again, as its expiry counted whole).
ISSUED_KINDS = ("earn", "bonus", "referral", "carry")
WEEK_METRICS = frozenset({"active_week", "purchasers_week", "repeaters_week", "_done_week"})

STATS = table_of(DailyStat)
MEMBER_SETS = table_of(DailyMembers)
MEMBERS = table_of(Member)
LEDGER = table_of(LedgerEntry)
PURCHASES = table_of(Purchase)
COUPONS = table_of(Coupon)
OUTBOX = table_of(Outbox)
ANSWERS = table_of(SurveyAnswer)
HANDOFFS = table_of(HandoffConversation)
TIER_CHANGES = table_of(TierChange)
REFERRALS = table_of(Referral)


# --- the range asked for --------------------------------------------------------------------------------


class PeriodError(ValueError):
    """A range the dashboard refuses; `field` is the form field it concerns, `text` an English source string."""

    def __init__(self, field: str, text: str, **params: Any) -> None:
        super().__init__(text % params if params else text)
        self.field = field
        self.text = text
        self.params = params


@dataclass(frozen=True)
class Period:
    """Local days `first`..`last` (inclusive) in `zone`, shown in buckets of one `unit` (day or week)."""

    first: date
    last: date
    unit: str
    zone: str

    @property
    def days(self) -> int:
        return (self.last - self.first).days + 1

    def buckets(self) -> list[date]:
        step = timedelta(days=7 if self.unit == "week" else 1)
        found, at = [], self.first
        while at <= self.last:
            found.append(at)
            at += step
        return found

    def bucket_of(self, day: date) -> date:
        return day - timedelta(days=day.weekday()) if self.unit == "week" else day


def local_today(zone: str, now: datetime) -> date:
    return as_utc(now).astimezone(zone_or_utc(zone)).date()


def day_start(day: date, zone: str) -> datetime:
    """The UTC moment a local day begins."""
    return datetime.combine(day, time(0), tzinfo=ZoneInfo(zone)).astimezone(UTC)


def _parse_day(text: str, name: str) -> date:
    if len(text) != 10 or not text.isascii():
        raise PeriodError(name, "Give a date as YYYY-MM-DD.")
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise PeriodError(name, "Give a date as YYYY-MM-DD.") from None


def parse_period(start: str | None, end: str | None, days: str | None, *, zone: str, now: datetime) -> Period:
    """The range from a form's `from`/`to` (local dates) or a preset `days`; the last 30 days by default.

    Raises PeriodError naming the field for garbage, `to` before `from`, a range over three years, or dates
    before 2000 or after today.
    """
    zone = zone_or_utc(zone).key
    today = local_today(zone, now)
    start, end, days = (start or "").strip(), (end or "").strip(), (days or "").strip()
    if start or end:
        first = _parse_day(start, "from") if start else None
        last = _parse_day(end, "to") if end else today
        if first is None:
            first = last - timedelta(days=29)
        if first < EARLIEST:
            raise PeriodError("from", "Choose a date from 2000 on.")
        if last > today:
            raise PeriodError("to", "Choose a date up to today.")
        if last < first:
            raise PeriodError("to", "The end comes before the start.")
        if (last - first).days + 1 > MAX_DAYS:
            raise PeriodError("from", "Choose at most %(days)s days.", days=MAX_DAYS)
    else:
        if days and (not days.isdigit() or len(days) > 4):
            raise PeriodError("days", "Choose one of the ranges offered.")
        span = int(days) if days else 30
        if not 1 <= span <= MAX_DAYS:
            raise PeriodError("days", "Choose at most %(days)s days.", days=MAX_DAYS)
        last, first = today, today - timedelta(days=span - 1)
    if (last - first).days + 1 > WEEKLY_AFTER:  # whole weeks, Monday to Sunday
        return Period(first - timedelta(days=first.weekday()), last + timedelta(days=6 - last.weekday()), "week", zone)
    return Period(first, last, "day", zone)


# --- computing buckets from the source tables --------------------------------------------------------------


def _bucket(db: Db, column: Any, zone: str, unit: str) -> Any:
    if db.is_postgres:
        return sa.cast(sa.func.date_trunc(unit, sa.func.timezone(zone, column)), sa.Date)
    return sa.func.loyalbot_local_bucket(column, zone, unit)  # registered on every SQLite connection


def _as_date(value: Any) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    return date.fromisoformat(str(value))


Figures = dict[tuple[date, str, str], int]
Sets = dict[tuple[date, str], set[int]]


async def _grouped(s: AsyncSession, inner: sa.Subquery, metric: str, figures: Figures, *dims: str,
                   value: Any = None) -> None:
    """Add `metric` per bucket (and per the `dims` columns) from a subquery with a column `b`."""
    columns = [inner.c.b, *(inner.c[d] for d in dims)]
    total = value if value is not None else sa.func.count()
    for row in (await s.execute(sa.select(*columns, total).group_by(*columns))).all():
        if row[0] is None:
            continue
        dimension = ":".join("" if part is None else str(part) for part in row[1:-1])
        figures[(_as_date(row[0]), metric, dimension)] += int(row[-1] or 0)


async def compute(db: Db, s: AsyncSession, zone: str, unit: str, first: date, end: date
                  ) -> tuple[Figures, Sets]:
    """The figures of the buckets that start in [first, end), straight from the source tables; for days also
    the sets of members active, buying, and buying twice or more on each day."""
    lo, hi = day_start(first, zone), day_start(end, zone)
    figures: Figures = defaultdict(int)

    def when(column: Any) -> Any:
        return _bucket(db, column, zone, unit).label("b")

    def within(column: Any) -> Any:
        return sa.and_(column >= lo, column < hi)

    if unit == "day":
        await _grouped(s, sa.select(when(MEMBERS.c.joined_at)).where(within(MEMBERS.c.joined_at)).subquery(),
                       "joined", figures)
        ledger = sa.select(when(LEDGER.c.created_at), LEDGER.c.kind, LEDGER.c.delta).where(
            within(LEDGER.c.created_at)).subquery()
        await _grouped(s, ledger, "points", figures, "kind", value=sa.func.sum(ledger.c.delta))
        await _grouped(s, sa.select(when(COUPONS.c.issued_at)).where(within(COUPONS.c.issued_at)).subquery(),
                       "coupons_issued", figures)
        await _grouped(s, sa.select(when(COUPONS.c.used_at)).where(within(COUPONS.c.used_at)).subquery(),
                       "coupons_used", figures)
        await _grouped(s, sa.select(when(OUTBOX.c.created_at), OUTBOX.c.status).where(
            within(OUTBOX.c.created_at)).subquery(), "outbox", figures, "status")
        await _grouped(s, sa.select(when(OUTBOX.c.created_at), OUTBOX.c.skip_reason).where(
            within(OUTBOX.c.created_at), OUTBOX.c.status == "skipped").subquery(), "skipped", figures, "skip_reason")
        await _grouped(s, sa.select(when(ANSWERS.c.created_at), ANSWERS.c.kind, ANSWERS.c.score).where(
            within(ANSWERS.c.created_at)).subquery(), "answers", figures, "kind", "score")
        await _grouped(s, sa.select(when(TIER_CHANGES.c.created_at), TIER_CHANGES.c.to_tier).where(
            within(TIER_CHANGES.c.created_at)).subquery(), "tier_in", figures, "to_tier")
        await _grouped(s, sa.select(when(REFERRALS.c.created_at)).where(within(REFERRALS.c.created_at)).subquery(),
                       "referred", figures)
        await _grouped(s, sa.select(when(REFERRALS.c.settled_at)).where(
            within(REFERRALS.c.settled_at), REFERRALS.c.status == "rewarded").subquery(), "converted", figures)
    # Distinct members per bucket: anyone with a purchase or a ledger entry (other than an expiry) is active.
    active = sa.union(
        sa.select(when(LEDGER.c.created_at), LEDGER.c.member_id.label("m")).where(
            within(LEDGER.c.created_at), LEDGER.c.kind != "expire"),
        sa.select(when(PURCHASES.c.occurred_at), PURCHASES.c.member_id.label("m")).where(
            within(PURCHASES.c.occurred_at)),
    ).subquery()
    per_member = sa.select(when(PURCHASES.c.occurred_at), PURCHASES.c.member_id, sa.func.count().label("n")).where(
        within(PURCHASES.c.occurred_at)).group_by(sa.text("1"), PURCHASES.c.member_id).subquery()
    if unit == "week":
        await _grouped(s, active, "active_week", figures)
        rows = await s.execute(sa.select(
            per_member.c.b, sa.func.count(), sa.func.sum(sa.case((per_member.c.n >= 2, 1), else_=0))
        ).group_by(per_member.c.b))
        for bucket, purchasers, repeaters in rows.all():
            figures[(_as_date(bucket), "purchasers_week", "")] += int(purchasers)
            figures[(_as_date(bucket), "repeaters_week", "")] += int(repeaters or 0)
        return figures, {}
    # Per day, the members themselves are kept (as sets) so that any range's distinct counts are unions.
    sets: Sets = defaultdict(set)
    for day, ids in await _by_bucket(db, s, active.c.b, active.c.m):
        sets[(day, "active")].update(ids)
    for day, ids, counts in await _by_bucket(db, s, per_member.c.b, per_member.c.member_id, per_member.c.n):
        sets[(day, "buyers")].update(ids)
        figures[(day, "purchases", "")] += sum(counts)
        sets[(day, "buyers2")].update(m for m, n in zip(ids, counts, strict=True) if n >= 2)
    for (day, kind), members in sets.items():
        metric = {"active": "active_day", "buyers": "purchasers_day", "buyers2": "repeaters_day"}[kind]
        figures[(day, metric, "")] = len(members)
    return figures, sets


async def _by_bucket(db: Db, s: AsyncSession, bucket: Any, *columns: Any) -> list[tuple[Any, ...]]:
    """(day, [values of each column]...) per bucket. On PostgreSQL a bucket is one row of arrays (array_agg),
    so a busy day's 30,000 members are not 30,000 rows to build in Python; on SQLite, rows grouped here."""
    if db.is_postgres:
        rows = await s.execute(sa.select(bucket, *(sa.func.array_agg(column) for column in columns))
                               .where(bucket.is_not(None)).group_by(bucket))
        return [(_as_date(b), *values) for b, *values in rows.all()]
    grouped: dict[date, list[list[int]]] = {}
    for b, *values in (await s.execute(sa.select(bucket, *columns))).all():
        if b is not None:
            lists = grouped.setdefault(_as_date(b), [[] for _ in columns])
            for into, value in zip(lists, values, strict=True):
                into.append(int(value))
    return [(day, *lists) for day, lists in grouped.items()]


def pack(members: set[int]) -> bytes:
    """A set of member ids as bytes: sorted 32-bit little-endian. Not compressed: sorted ids barely shrink
    under zlib (a fifth), and inflating a year of days cost more than reading them (migration 0016)."""
    return np.sort(np.fromiter(members, dtype="<u4", count=len(members))).tobytes()


def _family(unit: str) -> Any:
    names = sorted(WEEK_METRICS)
    return STATS.c.metric.in_(names) if unit == "week" else STATS.c.metric.not_in(names)


def _spans(buckets: Iterable[date], step: timedelta) -> Iterator[tuple[date, date]]:
    """Runs of consecutive buckets, as [first, end) pairs."""
    start = prev = None
    for bucket in sorted(buckets):
        if start is None:
            start = prev = bucket
        elif prev is not None and bucket == prev + step:
            prev = bucket
        else:
            assert prev is not None
            yield start, prev + step
            start = prev = bucket
    if start is not None and prev is not None:
        yield start, prev + step


def _chunked(spans: Iterable[tuple[date, date]], most: timedelta) -> Iterator[tuple[date, date]]:
    """Spans cut to at most `most` each, so one computation holds a month of members, not a year."""
    for start, end in spans:
        while end - start > most:
            yield start, start + most
            start += most
        yield start, end


async def refresh(db: Db, zone: str, unit: str, first: date, last: date, *, now: datetime) -> int:
    """Compute the missing or unsettled buckets starting in [first, last] into daily_stats; returns how many."""
    if last < first:
        return 0
    step = timedelta(days=7 if unit == "week" else 1)
    async with db.read() as s:
        done = dict((await s.execute(sa.select(STATS.c.day, STATS.c.value).where(
            STATS.c.zone == zone, STATS.c.metric == f"_done_{unit}", STATS.c.day >= first,
            STATS.c.day <= last))).all())
    stamp = int(as_utc(now).timestamp())
    stale = []
    at = first
    while at <= last:
        computed = done.get(at)
        settled_at = int((day_start(at + step, zone) + SETTLE).timestamp())
        if computed is None or (computed < settled_at and stamp - computed >= RECHECK.total_seconds()):
            stale.append(at)
        at += step
    for start, end in _chunked(_spans(stale, step), step * CHUNK):
        async with db.read() as s:
            figures, sets = await compute(db, s, zone, unit, start, end)
        rows = [{"zone": zone, "day": day, "metric": metric, "dimension": dimension, "value": value}
                for (day, metric, dimension), value in figures.items() if value]
        marks = []
        at = start
        while at < end:
            marks.append({"zone": zone, "day": at, "metric": f"_done_{unit}", "dimension": "", "value": stamp})
            at += step
        try:
            async with db.transaction() as s:
                await s.execute(sa.delete(STATS).where(STATS.c.zone == zone, STATS.c.day >= start,
                                                       STATS.c.day < end, _family(unit)))
                if unit == "day":
                    await s.execute(sa.delete(MEMBER_SETS).where(
                        MEMBER_SETS.c.zone == zone, MEMBER_SETS.c.day >= start, MEMBER_SETS.c.day < end))
                    kept = [{"zone": zone, "day": day, "metric": kind, "members": pack(members)}
                            for (day, kind), members in sets.items() if members]
                    for chunk in range(0, len(kept), 500):
                        await s.execute(sa.insert(MEMBER_SETS), kept[chunk:chunk + 500])
                for chunk in range(0, len(rows + marks), 5000):
                    await s.execute(sa.insert(STATS), (rows + marks)[chunk:chunk + 5000])
        except IntegrityError:  # another replica or request wrote the same buckets at the same time
            log.info("dashboard: %s buckets %s..%s were computed by another request", unit, start, end)
    return len(stale)


async def _stored(db: Db, zone: str, unit: str, first: date, last: date) -> Figures:
    figures: Figures = defaultdict(int)
    if last < first:
        return figures
    async with db.read() as s:
        rows = await s.execute(sa.select(STATS.c.day, STATS.c.metric, STATS.c.dimension, STATS.c.value).where(
            STATS.c.zone == zone, STATS.c.day >= first, STATS.c.day <= last, _family(unit),
            ~STATS.c.metric.startswith("_done")))
        for day, metric, dimension, value in rows.all():
            figures[(_as_date(day), metric, dimension)] += int(value)
    return figures


# --- the figures a page shows ----------------------------------------------------------------------------


@dataclass
class Column:
    key: str  # the CSV header
    label: str  # an English source string, translated when shown
    kind: str = "count"  # count | percent | minutes | points | score


@dataclass
class Chart:
    """One chart of the dashboard: its rows are (bucket or category, value per column)."""

    key: str
    title: str
    kind: str  # line | bar | stacked | categories
    index: Column
    columns: list[Column]
    rows: list[list[Any]] = field(default_factory=list)
    summary: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # English source strings, params


@dataclass
class Board:
    period: Period
    today: date
    charts: list[Chart]
    totals: dict[str, Any]

    def chart(self, key: str) -> Chart:
        return next(chart for chart in self.charts if chart.key == key)


def _rate(part: float, whole: float) -> float | None:
    return round(100.0 * part / whole, 1) if whole else None


def _scores(dist: dict[int, int], kind: str) -> float | None:
    total = sum(dist.values())
    if not total:
        return None
    if kind == "csat":
        return round(100.0 * sum(n for score, n in dist.items() if score >= 4) / total, 1)
    promoters = sum(n for score, n in dist.items() if score >= 9)
    detractors = sum(n for score, n in dist.items() if score <= 6)
    return round(100.0 * (promoters - detractors) / total, 1)


def _minutes(seconds: float | None) -> float | None:
    return round(float(seconds) / 60, 1) if seconds is not None else None


@dataclass
class SupportTimes:
    """Support conversations closed in a bucket (or the range): how many, and the median times in seconds."""

    closed: int = 0
    first_response: float | None = None
    resolution: float | None = None


async def _support_times(db: Db, s: AsyncSession, period: Period, lo: datetime, hi: datetime
                         ) -> tuple[dict[date, SupportTimes], SupportTimes]:
    """Closed conversations per bucket and over the range. On PostgreSQL the medians are percentile_cont in
    the query (a year of conversations is not fetched); SQLite has no percentiles, and a SQLite shop's
    conversations are few, so they are read and the medians taken here."""
    within = (HANDOFFS.c.closed_at >= lo, HANDOFFS.c.closed_at < hi)
    if db.is_postgres:
        first = sa.func.percentile_cont(0.5).within_group(HANDOFFS.c.first_response_seconds)
        resolution = sa.func.percentile_cont(0.5).within_group(HANDOFFS.c.resolution_seconds)
        bucket = _bucket(db, HANDOFFS.c.closed_at, period.zone, period.unit)
        rows = (await s.execute(sa.select(bucket, sa.func.count(), first, resolution).where(*within)
                                .group_by(bucket))).all()
        whole = (await s.execute(sa.select(sa.func.count(), first, resolution).where(*within))).one()
        return ({_as_date(b): SupportTimes(int(n), f, r) for b, n, f, r in rows if b is not None},
                SupportTimes(int(whole[0]), whole[1], whole[2]))
    closed = (await s.execute(sa.select(HANDOFFS.c.closed_at, HANDOFFS.c.first_response_seconds,
                                        HANDOFFS.c.resolution_seconds).where(*within))).all()
    zone = ZoneInfo(period.zone)
    grouped: dict[date, list[tuple[Any, Any]]] = defaultdict(list)
    for closed_at, first_s, resolution_s in closed:
        grouped[period.bucket_of(as_utc(closed_at).astimezone(zone).date())].append((first_s, resolution_s))

    def times(pairs: list[tuple[Any, Any]]) -> SupportTimes:
        firsts = [int(f) for f, _ in pairs if f is not None]
        resolutions = [int(r) for _, r in pairs if r is not None]
        return SupportTimes(len(pairs), statistics.median(firsts) if firsts else None,
                            statistics.median(resolutions) if resolutions else None)

    return {b: times(pairs) for b, pairs in grouped.items()}, times([pair for g in grouped.values() for pair in g])


async def _period_live(db: Db, period: Period, hi: datetime) -> dict[str, Any]:
    """The range's figures that are not sums of buckets, computed live from the indexes."""
    lo = day_start(period.first, period.zone)
    async with db.read() as s:
        support, support_total = await _support_times(db, s, period, lo, hi)
        # One index-only scan of ix_members_status_tier_balance gives both the tiers and the points held.
        by_tier: dict[str, int] = defaultdict(int)
        outstanding = 0
        for tier, status, count, held in (await s.execute(sa.select(
                MEMBERS.c.tier, MEMBERS.c.status, sa.func.count(), sa.func.coalesce(sa.func.sum(MEMBERS.c.balance), 0))
                .group_by(MEMBERS.c.status, MEMBERS.c.tier))).all():
            outstanding += int(held)
            if status != "erased":
                by_tier[str(tier)] += int(count)
    return {"support": support, "support_total": support_total,
            "by_tier": {str(k): int(v) for k, v in by_tier.items()}, "outstanding": outstanding}


def _ids(blob: bytes) -> np.ndarray:
    """A packed set (see `pack`) as an array of member ids, without a Python int per member."""
    return np.frombuffer(blob, dtype="<u4")


def _distinct(days: dict[str, list[np.ndarray]]) -> dict[str, int]:
    """Distinct members over many days' sets: marks in one array indexed by member id (a million members is
    a megabyte), so a year of days is a few vectorised passes, not millions of set insertions."""
    every = [ids for arrays in days.values() for ids in arrays if ids.size]
    if not every:
        return {"active": 0, "purchasers": 0, "repeaters": 0}
    size = int(max(int(ids.max()) for ids in every)) + 1

    def marked(arrays: list[np.ndarray]) -> np.ndarray:
        mask = np.zeros(size, dtype=bool)
        for ids in arrays:
            mask[ids] = True
        return mask

    # A member buying on two different days, or twice on one day (that day's buyers2), is a repeat buyer.
    buying_days = np.zeros(size, dtype=np.uint16)
    for ids in days["buyers"]:
        buying_days[ids] += 1  # a day's set holds each member once, so the index assignment counts days
    twice = marked(days["buyers2"]) | (buying_days >= 2)
    return {"active": int(np.count_nonzero(marked(days["active"]))),
            "purchasers": int(np.count_nonzero(buying_days)), "repeaters": int(np.count_nonzero(twice))}


async def _distinct_over(db: Db, zone: str, first: date, last: date, today: date, today_sets: Sets
                         ) -> dict[str, int]:
    """Members active, buying, and buying twice or more over local days `first`..`last`: unions of the days'
    stored sets, and of today's (computed live) when the days reach today."""
    days: dict[str, list[np.ndarray]] = {"active": [], "buyers": [], "buyers2": []}
    # A quarter of days at a time (7 MB of ids at a million members; a read each month cost a year's page
    # 13 round trips and 150 ms more): reads run in autocommit on PostgreSQL, where a server-side cursor
    # (stream) cannot live.
    reach, last = last, min(last, today - timedelta(days=1))
    start = first
    while start <= last:
        end = min(last, start + timedelta(days=SETS_READ - 1))
        async with db.read() as s:
            rows = (await s.execute(sa.select(MEMBER_SETS.c.metric, MEMBER_SETS.c.members).where(
                MEMBER_SETS.c.zone == zone, MEMBER_SETS.c.day >= start, MEMBER_SETS.c.day <= end))).all()
        for kind, blob in rows:
            if kind in days:
                days[kind].append(_ids(blob))
        start = end + timedelta(days=1)
    if first <= today <= reach:
        for (_day, kind), members in today_sets.items():
            if kind in days and members:
                days[kind].append(np.fromiter(members, dtype=np.uint32, count=len(members)))
    return _distinct(days)


async def _nothing(value: Any = None) -> Any:
    return value


async def _together(db: Db, *steps: Awaitable[Any]) -> list[Any]:
    """Run independent reads at once on PostgreSQL (a connection each); one after another on SQLite, whose
    single file gains nothing from it."""
    if db.is_postgres:
        return list(await asyncio.gather(*steps))
    return [await step for step in steps]


async def build_board(db: Db, period: Period, *, now: datetime, tier_order: list[str] | None = None) -> Board:
    """Every chart of the dashboard over `period`: completed buckets from the rollup, today's live."""
    zone, unit = period.zone, period.unit
    now = as_utc(now)
    today = local_today(zone, now)
    this_week = today - timedelta(days=today.weekday())
    last_week = min(period.last - timedelta(days=6), this_week - timedelta(days=7))
    weekly = unit == "week"
    end = min(day_start(period.last + timedelta(days=1), zone), now + timedelta(seconds=1))

    async def today_live() -> tuple[Figures, Sets]:
        async with db.read() as s:
            return await compute(db, s, zone, "day", today, today + timedelta(days=1))

    # Days from the start through yesterday are kept; the outstanding points need every day up to today.
    # What does not wait on the rollup runs beside bringing it up to date (on PostgreSQL, each on its own
    # connection), then the rollup and the day sets are read together.
    (live_days, live_sets), live, _, _ = await _together(
        db, today_live(), _period_live(db, period, end),
        refresh(db, zone, "day", period.first, today - timedelta(days=1), now=now),
        refresh(db, zone, "week", period.first, last_week, now=now) if weekly else _nothing())
    days, weeks, distinct, so_far = await _together(
        db, _stored(db, zone, "day", period.first, today - timedelta(days=1)),
        _stored(db, zone, "week", period.first, last_week) if weekly else _nothing(defaultdict(int)),
        _distinct_over(db, zone, period.first, period.last, today, live_sets),
        # the week so far: its days' sets, not a week of rows
        _distinct_over(db, zone, this_week, today, today, live_sets)
        if weekly and period.first <= this_week <= period.last else _nothing())
    for key, value in live_days.items():
        days[key] += value
    if so_far is not None:
        for metric in ("active", "purchasers", "repeaters"):
            weeks[(this_week, f"{metric}_week", "")] = so_far[metric]
    live.update(distinct)

    buckets = period.buckets()
    summed: dict[date, dict[tuple[str, str], int]] = {b: defaultdict(int) for b in buckets}
    after: dict[date, int] = defaultdict(int)  # points moved after each bucket, up to now
    moved_by_day: dict[date, int] = defaultdict(int)
    for (day, metric, dimension), value in days.items():
        if metric == "points":
            moved_by_day[day] += value
        bucket = period.bucket_of(day)
        if bucket in summed and day <= period.last:
            summed[bucket][(metric, dimension)] += value
    for (bucket, metric, dimension), value in weeks.items():
        if bucket in summed:
            summed[bucket][(metric, dimension)] += value
    for bucket in buckets:
        bucket_end = bucket + timedelta(days=7 if unit == "week" else 1)
        after[bucket] = sum(v for day, v in moved_by_day.items() if day >= bucket_end)

    def get(bucket: date, metric: str, dimension: str = "") -> int:
        return summed[bucket].get((metric, dimension), 0)

    def dims(metric: str) -> list[str]:
        return sorted({d for b in buckets for (m, d) in summed[b] if m == metric})

    index = Column("week" if unit == "week" else "day", "Week from" if unit == "week" else "Day", "date")
    charts: list[Chart] = []
    totals: dict[str, Any] = {"members": sum(live["by_tier"].values()), "outstanding": live["outstanding"]}

    members = Chart("members", "Members over time", "bar", index,
                    [Column("joined", "Joined"), Column("active", "Active (points or purchases)")])
    for b in buckets:
        members.rows.append([b, get(b, "joined"), get(b, f"active_{unit}")])
    totals["joined"] = sum(row[1] for row in members.rows)
    totals["active"] = live["active"]
    members.summary = [("%(members)s members now; %(joined)s joined and %(active)s were active in this range.",
                        {"members": totals["members"], "joined": totals["joined"], "active": totals["active"]})]
    charts.append(members)

    order = [t for t in (tier_order or []) if t in live["by_tier"]] + sorted(
        t for t in live["by_tier"] if t not in (tier_order or []))
    tiers = Chart("tiers", "Members by tier now", "categories", Column("tier", "Tier", "text"),
                  [Column("members", "Members")], rows=[[t, live["by_tier"][t]] for t in order])
    tiers.summary = [("%(tier)s: %(n)s members.", {"tier": t, "n": n}) for t, n in tiers.rows]
    charts.append(tiers)

    moves = dims("tier_in")
    tier_moves = Chart("tier-moves", "Tier changes over time (members moving into each tier)", "stacked", index,
                       [Column(f"into_{t}", t) for t in moves])
    for b in buckets:
        tier_moves.rows.append([b, *(get(b, "tier_in", t) for t in moves)])
    tier_moves.summary = [("%(n)s tier changes in this range.", {"n": sum(sum(r[1:]) for r in tier_moves.rows)})]
    charts.append(tier_moves)

    points = Chart("points", "Points issued, redeemed and expired", "bar", index,
                   [Column("issued", "Issued", "points"), Column("redeemed", "Redeemed", "points"),
                    Column("expired", "Expired", "points"), Column("outstanding", "Outstanding at the end", "points")])
    for b in buckets:
        issued = sum(get(b, "points", kind) for kind in ISSUED_KINDS)
        points.rows.append([b, issued, -get(b, "points", "redeem"), -get(b, "points", "expire"),
                            live["outstanding"] - after[b]])
    totals["issued"] = sum(r[1] for r in points.rows)
    totals["redeemed"] = sum(r[2] for r in points.rows)
    totals["expired"] = sum(r[3] for r in points.rows)
    points.summary = [("%(issued)s points issued, %(redeemed)s redeemed and %(expired)s expired in this range; "
                       "members hold %(outstanding)s now.",
                       {k: totals[k] for k in ("issued", "redeemed", "expired", "outstanding")})]
    charts.append(points)

    redemption = Chart("redemption", "Redemption rate and coupon use", "line", index,
                       [Column("redemption_rate", "Redemption rate (redeemed / issued)", "percent"),
                        Column("coupons_issued", "Coupons issued"), Column("coupons_used", "Coupons used")])
    for b, row in zip(buckets, points.rows, strict=True):
        redemption.rows.append([b, _rate(row[2], row[1]), get(b, "coupons_issued"), get(b, "coupons_used")])
    totals["redemption_rate"] = _rate(totals["redeemed"], totals["issued"])
    totals["coupons_issued"] = sum(r[2] for r in redemption.rows)
    totals["coupons_used"] = sum(r[3] for r in redemption.rows)
    redemption.summary = [("Redemption rate %(rate)s; %(issued)s coupons issued and %(used)s used in this range.",
                           {"rate": totals["redemption_rate"], "issued": totals["coupons_issued"],
                            "used": totals["coupons_used"]})]
    charts.append(redemption)

    repeat = Chart("repeat", "Repeat-purchase rate", "line", index,
                   [Column("repeat_rate", "Repeat-purchase rate", "percent"), Column("purchasers", "Buying members"),
                    Column("repeaters", "Members with 2 or more purchases"), Column("purchases", "Purchases")])
    for b in buckets:
        buyers, again = get(b, f"purchasers_{unit}"), get(b, f"repeaters_{unit}")
        repeat.rows.append([b, _rate(again, buyers), buyers, again, get(b, "purchases")])
    totals["purchasers"], totals["repeaters"] = live["purchasers"], live["repeaters"]
    totals["repeat_rate"] = _rate(live["repeaters"], live["purchasers"])
    repeat.summary = [("%(repeaters)s of %(purchasers)s buying members bought twice or more in this range "
                       "(%(rate)s).", {"repeaters": live["repeaters"], "purchasers": live["purchasers"],
                                       "rate": totals["repeat_rate"]})]
    charts.append(repeat)

    referrals = Chart("referrals", "Referrals", "bar", index,
                      [Column("referred", "Friends who joined through a link"),
                       Column("converted", "Converted (first purchase cleared, both rewarded)")])
    for b in buckets:
        referrals.rows.append([b, get(b, "referred"), get(b, "converted")])
    totals["referred"] = sum(r[1] for r in referrals.rows)
    totals["converted"] = sum(r[2] for r in referrals.rows)
    referrals.summary = [("%(referred)s friends joined through a referral link and %(converted)s referrals "
                          "converted in this range.", {"referred": totals["referred"],
                                                        "converted": totals["converted"]})]
    charts.append(referrals)

    statuses = ["sent", "pending", "sending", "failed", "skipped"]
    statuses += [s for s in dims("outbox") if s not in statuses]
    deliveries = Chart("deliveries", "Deliveries by status", "stacked", index,
                       [Column(status, status) for status in statuses])
    for b in buckets:
        deliveries.rows.append([b, *(get(b, "outbox", status) for status in statuses)])
    by_status = {s: sum(r[i + 1] for r in deliveries.rows) for i, s in enumerate(statuses)}
    deliveries.summary = [("%(status)s: %(n)s.", {"status": s, "n": n}) for s, n in by_status.items()]
    charts.append(deliveries)

    reasons: dict[str, int] = defaultdict(int)
    for b in buckets:
        for (metric, dimension), value in summed[b].items():
            if metric == "skipped":
                reasons[dimension or "unknown"] += value
    skips = Chart("skips", "Skipped deliveries by reason", "categories", Column("reason", "Reason", "text"),
                  [Column("skipped", "Skipped")],
                  rows=[[r, n] for r, n in sorted(reasons.items(), key=lambda item: (-item[1], item[0]))])
    skips.summary = [("%(reason)s: %(n)s.", {"reason": r, "n": n}) for r, n in skips.rows] or [
        ("No deliveries were skipped in this range.", {})]
    charts.append(skips)

    satisfaction = Chart("satisfaction", "CSAT and NPS", "line", index,
                         [Column("csat", "CSAT (share of 4 and 5)", "percent"), Column("csat_answers", "CSAT answers"),
                          Column("nps", "NPS", "score"), Column("nps_answers", "NPS answers")])
    whole: dict[str, dict[int, int]] = {"csat": defaultdict(int), "nps": defaultdict(int)}
    for b in buckets:
        dist: dict[str, dict[int, int]] = {"csat": defaultdict(int), "nps": defaultdict(int)}
        for (metric, dimension), value in summed[b].items():
            if metric == "answers":
                kind, _, score = dimension.partition(":")
                if kind in dist and score.lstrip("-").isdigit():
                    dist[kind][int(score)] += value
                    whole[kind][int(score)] += value
        satisfaction.rows.append([b, _scores(dist["csat"], "csat"), sum(dist["csat"].values()),
                                  _scores(dist["nps"], "nps"), sum(dist["nps"].values())])
    for kind in ("csat", "nps"):
        totals[kind], totals[f"{kind}_answers"] = _scores(whole[kind], kind), sum(whole[kind].values())
    satisfaction.summary = [("CSAT %(csat)s from %(csat_answers)s answers; NPS %(nps)s from %(nps_answers)s "
                             "answers.", {k: totals[k] for k in ("csat", "csat_answers", "nps", "nps_answers")})]
    charts.append(satisfaction)

    support = Chart("support", "Support response and resolution times", "line", index,
                    [Column("first_response_min", "Median first response (minutes)", "minutes"),
                     Column("resolution_min", "Median resolution (minutes)", "minutes"),
                     Column("closed", "Conversations closed")])
    for b in buckets:
        times = live["support"].get(b, SupportTimes())
        support.rows.append([b, _minutes(times.first_response), _minutes(times.resolution), times.closed])
    support_total: SupportTimes = live["support_total"]
    totals["closed"] = support_total.closed
    totals["first_response_min"] = _minutes(support_total.first_response)
    totals["resolution_min"] = _minutes(support_total.resolution)
    support.summary = [("%(closed)s conversations closed; median first response %(first)s min, median resolution "
                        "%(resolution)s min.", {"closed": totals["closed"], "first": totals["first_response_min"],
                                                "resolution": totals["resolution_min"]})]
    charts.append(support)
    return Board(period=period, today=today, charts=charts, totals=totals)


CHART_KEYS = ("members", "tiers", "tier-moves", "points", "redemption", "repeat", "referrals", "deliveries",
              "skips", "satisfaction", "support")

__all__ = ["CHART_KEYS", "Board", "Chart", "Column", "Period", "PeriodError", "build_board", "compute",
           "parse_period", "refresh"]
