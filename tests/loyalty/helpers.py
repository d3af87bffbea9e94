"""Helpers for foundation tests: a snapshot of the whole store, to prove a refusal changed nothing."""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa
from sqlmodel import SQLModel

from loyalbot.storage import Db


async def snapshot(db: Db) -> dict[str, Any]:
    """Every row of every table, so that two snapshots compare equal only if nothing changed."""
    state: dict[str, Any] = {}
    async with db.read() as s:
        for table in SQLModel.metadata.sorted_tables:
            rows = (await s.execute(sa.select(table))).all()
            state[table.name] = sorted(tuple(str(v) for v in row) for row in rows)
    return state


async def personal_data_left(db: Db, words: list[str], ids: list[int]) -> list[tuple[str, str, Any]]:
    """(table, column, value) of every value in the store that still names someone: a text, string or JSON
    value containing one of `words` (case-insensitive), or a whole-number value equal to one of `ids`."""
    found = []
    async with db.read() as s:
        for table in SQLModel.metadata.sorted_tables:
            for row in (await s.execute(sa.select(table))).mappings().all():
                for column in table.columns:
                    value = row[column.name]
                    if value is None or isinstance(value, bool):
                        continue
                    if isinstance(column.type, sa.Integer):  # BigInteger included
                        if int(value) in ids:
                            found.append((table.name, column.name, value))
                        continue
                    text = value if isinstance(value, str) else json.dumps(value, default=str, ensure_ascii=False)
                    if any(word.casefold() in text.casefold() for word in words):
                        found.append((table.name, column.name, value))
    return found
