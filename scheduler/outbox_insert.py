"""Inserting planned outbox rows in bulk, leaving alone those whose idempotency key is already there.

On SQLite that is SQLAlchemy's sqlite ``insert().on_conflict_do_nothing()`` as one executemany; on
PostgreSQL the batch travels as one array per column through ``unnest`` (one statement and round trip
per batch, no 32767-parameter limit; columns the same for the whole run travel once).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from loyalbot.storage import Db
from loyalbot.storage.models import Outbox

Inserted = tuple[int, str, str | None]  # (member_id, status, skip_reason) of a row that was inserted


async def insert_rows(db: Db, rows: list[dict[str, Any]]) -> list[Inserted]:
    """Insert rows, skipping those whose (schedule, member, period) exists; returns what was inserted."""
    if db.is_postgres:
        return await _insert_postgres(db, rows)
    stmt = (sqlite_insert(Outbox).on_conflict_do_nothing()
            .returning(Outbox.member_id, Outbox.status, Outbox.skip_reason))
    async with db.connection() as conn:  # Core executemany: the ORM's bulk path is slow with RETURNING
        result = await conn.execute(stmt, rows)
        return [(r[0] or 0, r[1], r[2]) for r in result.all()]  # planned rows always have a member


async def _insert_postgres(db: Db, rows: list[dict[str, Any]]) -> list[Inserted]:
    # One statement per batch whatever its size: columns travel as arrays and are unnested, so
    # PostgreSQL's 32767-parameter limit never applies and there is one round trip per batch.
    first = rows[0]
    shared = all(row[key] == first[key] for row in rows for key in _PG_SHARED)
    columns: dict[str, Any] = {key: first[key] if shared and key in _PG_SHARED else [row[key] for row in rows]
                               for key in _PG_COLUMNS if key != "offer"}
    columns["buttons"] = [json.dumps(b) if b else "[]" for b in columns["buttons"]]
    columns["offer"] = [json.dumps(row["offer"]) if row.get("offer") else None for row in rows]
    async with db.connection() as conn:
        result = await conn.execute(_PG_INSERT_SHARED if shared else _PG_INSERT, columns)
        return [(r[0], r[1], r[2]) for r in result.all()]


_PG_COLUMNS = {"schedule_id": "integer", "member_id": "integer", "chat_id": "bigint", "idempotency_key": "text",
               "kind": "text", "offer": "text",
               "period": "text", "variant": "text", "text": "text", "buttons": "text", "survey_id": "integer",
               "status": "text",
               "skip_reason": "text", "not_before": "timestamptz", "created_at": "timestamptz"}
# Columns that are the same for every row of a run travel once, as plain parameters, when they are.
_PG_SHARED = ("schedule_id", "kind", "created_at")


def _pg_insert(shared: Sequence[str]) -> sa.TextClause:
    arrays = {c: t for c, t in _PG_COLUMNS.items() if c not in shared}
    values = [f"CAST(:{c} AS {t})" if c in shared else f"u.{c}::json" if c in ("buttons", "offer") else f"u.{c}"
              for c, t in _PG_COLUMNS.items()]
    return sa.text(
        f"INSERT INTO outbox ({', '.join(_PG_COLUMNS)}, attempts) SELECT {', '.join(values)}, 0 "
        f"FROM unnest({', '.join(f'CAST(:{c} AS {t}[])' for c, t in arrays.items())}) AS u({', '.join(arrays)}) "
        "ON CONFLICT DO NOTHING RETURNING member_id, status, skip_reason")


_PG_INSERT = _pg_insert(())
_PG_INSERT_SHARED = _pg_insert(_PG_SHARED)
