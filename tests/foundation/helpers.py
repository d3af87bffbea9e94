"""Helpers for foundation tests: a snapshot of the whole store, to prove a refusal changed nothing."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlmodel import SQLModel

from storage import Db


async def snapshot(db: Db) -> dict[str, Any]:
    """Every row of every table, so that two snapshots compare equal only if nothing changed."""
    state: dict[str, Any] = {}
    async with db.read() as s:
        for table in SQLModel.metadata.sorted_tables:
            rows = (await s.execute(sa.select(table))).all()
            state[table.name] = sorted(tuple(str(v) for v in row) for row in rows)
    return state
