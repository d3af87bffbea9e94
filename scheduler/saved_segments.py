"""Saved segments: named segment definitions operators reuse in schedules as {"segment": "<name>"}.

Saving checks the definition as a schedule's segment is checked, and also that it does not name itself through
other saved segments (the cycle is named). Deleting a segment a schedule or another saved segment still names
is refused, so nothing that runs is left pointing at a name that is gone.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from loyalbot.scheduler.segments import (
    SegmentProblem,
    check_segment,
    named_segments,
    names_in,
    segment_conditions,
)
from loyalbot.storage import Db, as_utc
from loyalbot.storage.models import AuditLog, Schedule, Segment

NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


async def list_segments(db: Db) -> list[Segment]:
    async with db.read() as s:
        return list((await s.execute(sa.select(Segment).order_by(Segment.name))).scalars())


async def get_segment(db: Db, name: str) -> Segment | None:
    async with db.read() as s:
        return (await s.execute(sa.select(Segment).where(Segment.name == name))).scalar_one_or_none()


async def check_saved(db: Db, name: str, definition: Any, now: datetime) -> None:
    """Raise SegmentProblem when `definition` cannot be saved as `name` (shape, unknown names, a cycle)."""
    if not NAME.match(name or ""):
        raise SegmentProblem("a segment's name is 1-64 lower-case letters, digits, '-' or '_', e.g. vip-dormant")
    check_segment(definition)
    # everything the new definition reaches, with the new definition in place of the stored one
    named = {**await named_segments(db, definition), name: definition}
    segment_conditions({"segment": name}, now, named=named)


async def save_segment(db: Db, name: str, definition: dict[str, Any], *, actor: str, now: datetime) -> Segment:
    """Create or replace the saved segment `name`; refused (SegmentProblem) when the definition cannot be used."""
    now = as_utc(now)
    await check_saved(db, name, definition, now)
    async with db.transaction() as tx:
        row = (await tx.execute(sa.select(Segment).where(Segment.name == name))).scalar_one_or_none()
        if row is None:
            row = Segment(name=name, definition=dict(definition), created_by=actor[:64], updated_at=now)
            tx.add(row)
        else:
            row.definition, row.updated_at = dict(definition), now
        tx.add(AuditLog(actor=actor[:64], action="segment.save", details={"segment": name}))
        await tx.flush()
        return row


async def delete_segment(db: Db, name: str, *, actor: str) -> None:
    """Delete a saved segment nothing names any more; refused (SegmentProblem) while something does."""
    async with db.transaction() as tx:
        schedules = (await tx.execute(sa.select(Schedule.name, Schedule.segment)
                                      .where(Schedule.archived_at.is_(None)))).all()
        segments = (await tx.execute(sa.select(Segment.name, Segment.definition))).all()
        users = [f"schedule {n!r}" for n, d in schedules if name in names_in(d)]
        users += [f"segment {n!r}" for n, d in segments if n != name and name in names_in(d)]
        if users:
            raise SegmentProblem(f"segment {name!r} is used by {', '.join(users)}; change those first")
        deleted = await tx.execute(sa.delete(Segment).where(Segment.name == name))
        if not getattr(deleted, "rowcount", 0):
            raise SegmentProblem(f"there is no saved segment called {name!r}")
        tx.add(AuditLog(actor=actor[:64], action="segment.delete", details={"segment": name}))
