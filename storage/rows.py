"""What a type checker cannot see about rows and tables: the Core table of a model, a stored row's id, a DML count.

SQLModel declares neither a model's `__table__` nor that a stored row's id is set (ids are `int | None`,
None only before an insert), and a session's `execute` returns an UPDATE's `CursorResult` typed as a
plain `Result`. These helpers say so once, and check it, instead of an ignore at every use.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import CursorResult, Result
from sqlmodel import SQLModel


def table_of(model: type[SQLModel]) -> sa.Table:
    """The Core table of a table model, for Core statements (SQLModel declares no `__table__` for type checkers)."""
    table = sa.inspect(model).local_table
    if not isinstance(table, sa.Table):
        raise TypeError(f"{model.__name__} is not a table model")
    return table


def stored_id(row_id: int | None) -> int:
    """The id of a row read from the store. The models type ids `int | None`, None only before an insert."""
    if row_id is None:
        raise ValueError("the row has no id: it was never stored")
    return row_id


def rows_changed(result: Result[*tuple[Any, ...]]) -> int:
    """How many rows an UPDATE or DELETE changed (a session's execute returns its CursorResult typed as Result)."""
    if not isinstance(result, CursorResult):
        raise TypeError(f"not the result of an UPDATE or DELETE: {type(result).__name__}")
    return int(result.rowcount or 0)


__all__ = ["rows_changed", "stored_id", "table_of"]
