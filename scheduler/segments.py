"""Segments: which members an operator's schedule is for (tiers, languages, balance, ...), as SQL conditions."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from loyalbot.scheduler.kinds import SEGMENT_KEYS
from loyalbot.storage import Db, as_utc
from loyalbot.storage.models import Member


class SegmentProblem(ValueError):
    """A segment cannot be used; the message says which key and why."""


def check_segment(segment: dict[str, Any]) -> None:
    """Raise SegmentProblem for unknown keys or values of the wrong shape."""
    if not isinstance(segment, dict):
        raise SegmentProblem("a segment is a JSON object, e.g. {\"tiers\": [\"gold\"]}")
    unknown = sorted(set(segment) - set(SEGMENT_KEYS))
    if unknown:
        raise SegmentProblem(f"unknown segment key {unknown[0]!r}; use {', '.join(SEGMENT_KEYS)}")
    for key in ("tiers", "languages", "member_ids"):
        if key in segment and not (isinstance(segment[key], list) and segment[key]):
            raise SegmentProblem(f"segment {key!r} must be a non-empty list")
    for key in ("min_balance", "max_balance", "joined_before_days"):
        if key in segment and (not isinstance(segment[key], int) or isinstance(segment[key], bool)):
            raise SegmentProblem(f"segment {key!r} must be a whole number")


def segment_conditions(segment: dict[str, Any], now: datetime) -> list[Any]:
    """The segment as conditions on the members table (checked first: raises SegmentProblem)."""
    check_segment(segment)
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
    return conditions


async def segment_size(db: Db, segment: dict[str, Any], now: datetime) -> int:
    """How many members (not erased) a segment matches."""
    conditions = segment_conditions(segment, as_utc(now))
    async with db.read() as s:
        query = sa.select(sa.func.count()).select_from(Member).where(Member.status != "erased", *conditions)
        return int((await s.execute(query)).scalar_one())
