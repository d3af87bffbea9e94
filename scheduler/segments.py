"""Segments: which members an operator's schedule is for, as a JSON object whose keys are ANDed, turned into SQL.

Keys (kinds.SEGMENT_KEYS):

* ``tiers``, ``languages``, ``member_ids``: non-empty lists; ``min_balance``, ``max_balance``: points;
  ``joined_before_days`` N: joined at least N days ago; ``joined_within_days`` N: joined less than N days ago;
* ``rfm`` {"r": [1..5], "f": [..], "m": [..]} (any subset) and ``lifecycle`` [stages]: the last scoring run's
  scores (scheduler/rfm.py); a member not scored yet matches neither;
* ``days_since_purchase`` / ``days_since_visit`` {"min": N, "max": N}: whole days since the last purchase (or the
  last message to the bot), counted from joining for a member who never did; both bounds inclusive;
* ``spend`` {"days": N, "min": amount, "max": amount} (net of refunds) and ``purchases`` {"days": N, "min": N,
  "max": N} (fully refunded ones do not count) over the last N days; members without purchases have 0;
* ``birthday_month`` [1..12] or "current" (this month in the programme's time zone);
* ``holds_coupon`` bool (an active, unexpired coupon); ``expiring_points_days`` N: points that expire within N
  days; ``marketing_consent`` bool;
* ``segment`` "<name>": a saved segment (the `segments` table); ``any`` [segment, ...]: at least one of them;
  ``not`` segment: members it does not match. A saved segment naming itself, directly or not, is refused.

Every condition is TRUE or FALSE for every member, never NULL, so ``not`` is exactly the complement. How a count
stays fast is in docs/architecture.md ("Campaigns: scores, stages, segments, plays").
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime, timedelta, tzinfo
from decimal import Decimal, InvalidOperation
from typing import Any, TypeVar

import sqlalchemy as sa

from loyalbot.loyalty.ledger import lots_left
from loyalbot.scheduler.kinds import LIFECYCLE_STAGES, SEGMENT_KEYS
from loyalbot.storage import Db, as_utc
from loyalbot.storage.models import (
    SCORE_WINDOWS,
    AuditLog,
    Coupon,
    LedgerEntry,
    Member,
    MemberScore,
    Purchase,
    PurchaseChange,
)
from loyalbot.storage.models import Segment as SavedSegment
from loyalbot.storage.rows import table_of

SCORED = "campaign.score"  # the audit action of a scoring run (scheduler/rfm.py)
T = TypeVar("T")


class SegmentProblem(ValueError):
    """A segment cannot be used; the message says which key and why."""


# --- checking the shape -------------------------------------------------------------------------------------

def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _amount(value: Any) -> Decimal | None:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        return None
    return amount if amount.is_finite() and amount >= 0 else None


def _check_list(where: str, key: str, value: Any, allowed: tuple[Any, ...] | None = None) -> None:
    if not (isinstance(value, list) and value):
        raise SegmentProblem(f"{where}{key!r} must be a non-empty list")
    if allowed is not None:
        for item in value:
            if isinstance(item, bool) or item not in allowed:
                raise SegmentProblem(f"{where}{key!r}: {item!r} is not one of {', '.join(map(str, allowed))}")


def _check_bounds(where: str, key: str, value: Any, *, days: bool, amounts: bool = False) -> None:
    """{"min", "max"} (and, for a window, "days"): numbers, at least one bound, min not above max."""
    shape = '{"days": N, "min": ..., "max": ...}' if days else '{"min": N, "max": N}'
    if not isinstance(value, dict):
        raise SegmentProblem(f"{where}{key!r} must be an object like {shape}")
    allowed = {"days", "min", "max"} if days else {"min", "max"}
    if unknown := sorted(set(value) - allowed):
        raise SegmentProblem(f"{where}{key!r}: unknown key {unknown[0]!r}; use {', '.join(sorted(allowed))}")
    if days and not (_whole(value.get("days")) and value["days"] >= 1):
        raise SegmentProblem(f"{where}{key!r} needs \"days\": a whole number of days, 1 or more")
    if "min" not in value and "max" not in value:
        raise SegmentProblem(f"{where}{key!r} needs \"min\" or \"max\"")
    found: dict[str, Decimal] = {}
    for bound in ("min", "max"):
        if bound not in value:
            continue
        number = _amount(value[bound]) if amounts else (
            Decimal(value[bound]) if _whole(value[bound]) and value[bound] >= 0 else None)
        if number is None:
            kind = "an amount, 0 or more" if amounts else "a whole number, 0 or more"
            raise SegmentProblem(f"{where}{key!r}: {bound!r} must be {kind}")
        found[bound] = number
    if "min" in found and "max" in found and found["min"] > found["max"]:
        raise SegmentProblem(f"{where}{key!r}: \"min\" is above \"max\"")


def _check(segment: Any, where: str) -> None:
    if not isinstance(segment, dict):
        raise SegmentProblem(f"{where}a segment is a JSON object, e.g. {{\"tiers\": [\"gold\"]}}")
    unknown = sorted(set(segment) - set(SEGMENT_KEYS))
    if unknown:
        raise SegmentProblem(f"{where}unknown segment key {unknown[0]!r}; use {', '.join(SEGMENT_KEYS)}")
    for key in ("tiers", "languages", "member_ids"):
        if key in segment:
            _check_list(where, key, segment[key])
    for key in ("min_balance", "max_balance", "joined_before_days"):
        if key in segment and not _whole(segment[key]):
            raise SegmentProblem(f"{where}{key!r} must be a whole number")
    for key in ("joined_within_days", "expiring_points_days"):
        if key in segment and not (_whole(segment[key]) and segment[key] >= 1):
            raise SegmentProblem(f"{where}{key!r} must be a whole number of days, 1 or more")
    for key in ("holds_coupon", "marketing_consent"):
        if key in segment and not isinstance(segment[key], bool):
            raise SegmentProblem(f"{where}{key!r} must be true or false")
    if "rfm" in segment:
        rfm = segment["rfm"]
        if not isinstance(rfm, dict) or not rfm or set(rfm) - {"r", "f", "m"}:
            raise SegmentProblem(f"{where}'rfm' must be an object with \"r\", \"f\" and/or \"m\", "
                                 "each a list of scores 1-5, e.g. {\"r\": [1, 2]}")
        for letter, scores in rfm.items():
            _check_list(where, f"rfm.{letter}", scores, (1, 2, 3, 4, 5))
    if "lifecycle" in segment:
        _check_list(where, "lifecycle", segment["lifecycle"], LIFECYCLE_STAGES)
    for key in ("days_since_purchase", "days_since_visit"):
        if key in segment:
            _check_bounds(where, key, segment[key], days=False)
    if "spend" in segment:
        _check_bounds(where, "spend", segment["spend"], days=True, amounts=True)
    if "purchases" in segment:
        _check_bounds(where, "purchases", segment["purchases"], days=True)
    if "birthday_month" in segment and segment["birthday_month"] != "current":
        if not isinstance(segment["birthday_month"], list):
            raise SegmentProblem(f"{where}'birthday_month' must be a list of months 1-12 or \"current\"")
        _check_list(where, "birthday_month", segment["birthday_month"], tuple(range(1, 13)))
    if "segment" in segment and not (isinstance(segment["segment"], str) and segment["segment"].strip()):
        raise SegmentProblem(f"{where}'segment' must be the name of a saved segment")
    if "any" in segment:
        if not (isinstance(segment["any"], list) and segment["any"]):
            raise SegmentProblem(f"{where}'any' must be a non-empty list of segments")
        for index, part in enumerate(segment["any"]):
            _check(part, f"{where}in any[{index}]: ")
    if "not" in segment:
        _check(segment["not"], f"{where}in not: ")


def check_segment(segment: dict[str, Any]) -> None:
    """Raise SegmentProblem for unknown keys or values of the wrong shape (saved segments' names are checked when
    the segment is used: `named_segments` and `segment_conditions`)."""
    _check(segment, "")


# --- saved segments -----------------------------------------------------------------------------------------

def names_in(segment: Any) -> set[str]:
    """The saved segments a segment names, at any depth."""
    if not isinstance(segment, dict):
        return set()
    names = {segment["segment"]} if isinstance(segment.get("segment"), str) else set()
    parts: list[Any] = list(segment["any"]) if isinstance(segment.get("any"), list) else []
    for part in [*parts, segment.get("not")]:
        names |= names_in(part)
    return names


async def named_segments(db: Db, segment: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The definitions of the saved segments `segment` uses, directly or through other saved segments (no query
    when it uses none); names not saved are left out, and `segment_conditions` refuses them."""
    found: dict[str, dict[str, Any]] = {}
    asked: set[str] = set()
    wanted = names_in(segment)
    while wanted:
        async with db.read() as s:
            rows = (await s.execute(sa.select(SavedSegment.name, SavedSegment.definition)
                                    .where(SavedSegment.name.in_(sorted(wanted))))).all()
        found.update({name: dict(definition) for name, definition in rows})
        asked |= wanted
        wanted = set().union(*(names_in(found[name]) for name, _ in rows)) - asked
    return found


def uses_windows(segment: Any, named: Mapping[str, dict[str, Any]], _seen: frozenset[str] = frozenset()) -> bool:
    """Whether a segment (through saved ones too) has a spend or purchases window: an aggregate over purchases,
    which a planning run works out once (`Selection`) instead of once per batch of members."""
    if not isinstance(segment, dict):
        return False
    if "spend" in segment or "purchases" in segment:
        return True
    name = segment.get("segment")
    if isinstance(name, str) and name not in _seen and uses_windows(named.get(name), named, _seen | {name}):
        return True
    parts: list[Any] = list(segment["any"]) if isinstance(segment.get("any"), list) else []
    return any(uses_windows(part, named, _seen) for part in [*parts, segment.get("not")])


# --- as SQL -------------------------------------------------------------------------------------------------

def _days_since(column: Any, bounds: dict[str, int], now: datetime) -> list[Any]:
    """Whole days since `column` (joining when it is empty) within [min, max]."""
    since = sa.func.coalesce(column, Member.joined_at)
    conditions = []
    if "min" in bounds:
        conditions.append(since <= now - timedelta(days=bounds["min"]))
    if "max" in bounds:
        conditions.append(since > now - timedelta(days=bounds["max"] + 1))
    return conditions


def _in_window(bounds: dict[str, Any], now: datetime, scored_at: datetime | None, joins: list[Any] | None, *,
               counted: bool) -> Any:
    """Members whose spend (or, `counted`, purchases not fully refunded) over the last bounds["days"] days lies in
    [min, max]; 0 without any. With `scored_at` (the last scoring run, `last_scored`) and a window it stored, the
    stored figures are used (`_stored_window`); otherwise the window's purchases are summed."""
    low = Decimal(str(bounds["min"])) if "min" in bounds else None
    high = Decimal(str(bounds["max"])) if "max" in bounds else None

    def within(value: Any) -> Any:
        return sa.and_(*([value >= low] if low is not None else []), *([value <= high] if high is not None else []))

    days = bounds["days"]
    if (scored_at is not None and joins is not None and days in SCORE_WINDOWS
            and now - timedelta(days=days) <= scored_at <= now):
        return _stored_window(within, days, now, scored_at, counted=counted, joins=joins)
    window = [Purchase.occurred_at > now - timedelta(days=days), Purchase.occurred_at <= now]
    if counted:
        window.append(Purchase.amount > Purchase.refunded_amount)
    summed = sa.func.count() if counted else sa.func.sum(Purchase.amount - Purchase.refunded_amount)
    grouped = sa.select(Purchase.member_id).where(*window).group_by(Purchase.member_id)
    if (low is None or low <= 0) and (high is None or high >= 0):  # no purchases (0) is in range
        return Member.id.not_in(grouped.having(sa.not_(within(summed))))
    return Member.id.in_(grouped.having(within(summed)))


def _stored_window(within: Callable[[Any], Any], days: int, now: datetime, scored_at: datetime, *, counted: bool,
                   joins: list[Any]) -> Any:
    """A window from the figures the last scoring run (at `scored_at`, within the window) stored, on the members
    joined to their scores (SCORED_MEMBERS) and to a small table of the figures that differ (added to `joins`).

    A member without a `purchase_changes` row has had no purchase written since that run, so their figure now is
    the stored one (over (C - days, C]) plus their purchases dated in (C, now] (dated ahead when recorded) minus
    those in (C - days, now - days] (that have left the window since): a day's purchases for a nightly run, the
    `edges`. The members with such a row (bought or refunded since; or never scored) have their window summed, as
    without stored figures. Those two sets are the small table; everybody else's figure is on their row."""
    name = f"{'purchases' if counted else 'spend'}_{days}d"
    value = (sa.case((Purchase.amount > Purchase.refunded_amount, 1), else_=0) if counted
             else Purchase.amount - Purchase.refunded_amount)
    changed = (sa.select(PurchaseChange.member_id.label("member_id"), sa.func.coalesce(sa.func.sum(value), 0)
                         .label("figure"))
               .select_from(PurchaseChange)
               .outerjoin(Purchase, sa.and_(Purchase.member_id == PurchaseChange.member_id,
                                            Purchase.occurred_at > now - timedelta(days=days),
                                            Purchase.occurred_at <= now))
               .group_by(PurchaseChange.member_id))
    entered = Purchase.occurred_at > scored_at
    edges = (sa.select(Purchase.member_id, sa.func.sum(sa.case((entered, value), else_=-value)).label("delta"))
             .where(sa.or_(sa.and_(entered, Purchase.occurred_at <= now),
                           sa.and_(Purchase.occurred_at > scored_at - timedelta(days=days),
                                   Purchase.occurred_at <= now - timedelta(days=days))))
             .group_by(Purchase.member_id).subquery("edges"))
    scores = table_of(MemberScore).alias("edge_scores")
    on_the_edge = (sa.select(edges.c.member_id, (scores.c[name] + edges.c.delta).label("figure"))
                   .join(scores, scores.c.member_id == edges.c.member_id)
                   .where(edges.c.member_id.not_in(sa.select(PurchaseChange.member_id))))
    differ = sa.union_all(changed, on_the_edge).subquery(f"window_{len(joins) + 1}")
    joins.append(differ)
    return within(sa.case((differ.c.member_id.is_not(None), differ.c.figure),
                          (MemberScore.member_id.is_not(None), getattr(MemberScore, name)), else_=0))


def _scored(joined: bool, *conditions: Any) -> Any:
    if joined:  # the member's own scores row, or none (never scored: FALSE, not NULL)
        return sa.and_(MemberScore.member_id.is_not(None), *conditions)
    return Member.id.in_(sa.select(MemberScore.member_id).where(*conditions))


# Members joined to their scores, what a segment read with `joined=True` selects from: one hash join, so that
# scores and stored windows are tested on each member's row instead of through sets of ids
SCORED_MEMBERS = sa.outerjoin(table_of(Member), table_of(MemberScore), MemberScore.member_id == Member.id)


def segment_conditions(segment: dict[str, Any], now: datetime, *, named: Mapping[str, dict[str, Any]] | None = None,
                       zone: tzinfo | None = None, joined: bool = False, scored_at: datetime | None = None,
                       joins: list[Any] | None = None, _using: tuple[str, ...] = ()) -> list[Any]:
    """The segment as conditions on the members table (checked first: raises SegmentProblem). `named` holds the
    saved segments it uses (`named_segments`); `zone` is the programme's, for "this month". `joined`: the query
    selects from SCORED_MEMBERS (the whole store at once: `read_segment`); then, with `scored_at` (the moment of
    the last scoring run, read in the same breath), spend and purchase windows start from the figures that run
    stored, each adding to `joins` a table the query must outer-join on member_id. Otherwise (a batch, one
    member) windows are summed from the purchases."""
    check_segment(segment)
    now = as_utc(now)
    if scored_at is not None and (not joined or joins is None):
        raise ValueError("stored windows are read from SCORED_MEMBERS and their joins: pass joined and joins")
    scored_at = as_utc(scored_at) if scored_at is not None else None
    conditions: list[Any] = []
    if "tiers" in segment:
        conditions.append(Member.tier.in_(segment["tiers"]))
    if "languages" in segment:
        conditions.append(Member.language.in_(segment["languages"]))
    if "member_ids" in segment:
        conditions.append(Member.id.in_([int(x) for x in segment["member_ids"]]))
    if "min_balance" in segment:
        conditions.append(Member.balance >= segment["min_balance"])
    if "max_balance" in segment:
        conditions.append(Member.balance <= segment["max_balance"])
    if "joined_before_days" in segment:
        conditions.append(Member.joined_at <= now - timedelta(days=segment["joined_before_days"]))
    if "joined_within_days" in segment:
        conditions.append(Member.joined_at > now - timedelta(days=segment["joined_within_days"]))
    if "rfm" in segment:
        conditions.append(_scored(joined, *(getattr(MemberScore, letter).in_(scores)
                                            for letter, scores in segment["rfm"].items())))
    if "lifecycle" in segment:
        conditions.append(_scored(joined, MemberScore.lifecycle.in_(segment["lifecycle"])))
    if "days_since_purchase" in segment:
        conditions += _days_since(Member.last_purchase_at, segment["days_since_purchase"], now)
    if "days_since_visit" in segment:
        conditions += _days_since(Member.last_activity_at, segment["days_since_visit"], now)
    if "spend" in segment:
        conditions.append(_in_window(segment["spend"], now, scored_at, joins, counted=False))
    if "purchases" in segment:
        conditions.append(_in_window(segment["purchases"], now, scored_at, joins, counted=True))
    if "birthday_month" in segment:
        months = segment["birthday_month"]
        if months == "current":
            months = [now.astimezone(zone).month if zone else now.month]
        conditions.append(sa.and_(Member.birthday.is_not(None), sa.extract("month", Member.birthday).in_(months)))
    if "holds_coupon" in segment:
        holds = sa.exists().where(Coupon.member_id == Member.id, Coupon.status == "active", Coupon.expires_at > now)
        conditions.append(holds if segment["holds_coupon"] else ~holds)
    if "expiring_points_days" in segment:
        horizon = now + timedelta(days=segment["expiring_points_days"])
        conditions.append(sa.exists().where(LedgerEntry.member_id == Member.id, *lots_left(now, until=horizon)))
    if "marketing_consent" in segment:
        conditions.append(Member.marketing_consent == segment["marketing_consent"])
    if "segment" in segment:
        conditions += _saved(segment["segment"], now, named or {}, zone, joined, scored_at, joins, _using)
    if "any" in segment:
        conditions.append(sa.or_(*(sa.and_(sa.true(), *segment_conditions(part, now, named=named, zone=zone, joined=joined,
                                                                          scored_at=scored_at, joins=joins, _using=_using))
                                   for part in segment["any"])))
    if "not" in segment:
        conditions.append(sa.not_(sa.and_(sa.true(), *segment_conditions(segment["not"], now, named=named, zone=zone, joined=joined,
                                                                         scored_at=scored_at, joins=joins, _using=_using))))
    return conditions


def _saved(name: str, now: datetime, named: Mapping[str, dict[str, Any]], zone: tzinfo | None,
           joined: bool, scored_at: datetime | None, joins: list[Any] | None, using: tuple[str, ...]) -> list[Any]:
    """A saved segment's conditions; refused when it is unknown or (through others) uses itself."""
    if name in using:
        raise SegmentProblem(f"saved segment {name!r} uses itself ({' -> '.join((*using, name))})")
    if name not in named:
        raise SegmentProblem(f"there is no saved segment called {name!r}")
    try:
        return segment_conditions(named[name], now, named=named, zone=zone, joined=joined, scored_at=scored_at,
                                  joins=joins, _using=(*using, name))
    except SegmentProblem as exc:
        if str(exc).startswith(("saved segment", "there is no saved segment")):
            raise
        raise SegmentProblem(f"saved segment {name!r}: {exc}") from None


async def last_scored(db: Db) -> datetime | None:
    """When members were last scored (the newest scoring run in the audit log), or None."""
    async with db.read() as s:
        found = (await s.execute(sa.select(sa.func.max(AuditLog.created_at)).where(AuditLog.action == SCORED))
                 ).scalar_one()
    return as_utc(found) if found is not None else None


def scored_source(joins: list[Any]) -> Any:
    """SCORED_MEMBERS with the tables stored windows added to `joins` (`segment_conditions`) outer-joined."""
    source = SCORED_MEMBERS
    for differ in joins:
        source = source.outerjoin(differ, differ.c.member_id == Member.id)
    return source


async def read_segment(db: Db, segment: dict[str, Any], now: datetime, zone: tzinfo | None,
                       read: Callable[[Any, list[Any]], Awaitable[T]]) -> T:
    """`read(source, conditions)`: a query over `source` (SCORED_MEMBERS and what the windows join to it) with the
    segment's conditions; a segment with a window uses the last scoring run's stored figures. Reads are each their
    own snapshot, so that run's moment is read before and after: a run that committed in between (its figures and
    its moment go together) makes the read start again."""
    named = await named_segments(db, segment)
    if not uses_windows(segment, named):
        return await read(SCORED_MEMBERS, segment_conditions(segment, as_utc(now), named=named, zone=zone,
                                                             joined=True))
    scored_at = await last_scored(db)
    while True:
        joins: list[Any] = []
        conditions = segment_conditions(segment, as_utc(now), named=named, zone=zone, joined=True,
                                        scored_at=scored_at, joins=joins)
        found = await read(scored_source(joins), conditions)
        again = await last_scored(db)
        if again == scored_at:
            return found
        scored_at = again


async def segment_size(db: Db, segment: dict[str, Any], now: datetime, *, zone: tzinfo | None = None) -> int:
    """How many members (not erased) a segment matches."""
    async def count(source: Any, conditions: list[Any]) -> int:
        async with db.read() as s:
            query = sa.select(sa.func.count()).select_from(source).where(Member.status != "erased", *conditions)
            return int((await s.execute(query)).scalar_one())

    return await read_segment(db, segment, now, zone, count)
