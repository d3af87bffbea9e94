"""Schema management through Alembic: the only way the schema is made or changed."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.ext.asyncio import create_async_engine
from sqlmodel import SQLModel

import loyalbot.storage.models  # noqa: F401
from loyalbot.storage.db import normalise_url

MIGRATIONS = Path(__file__).with_name("migrations")


def alembic_config(url: str) -> Config:
    """An Alembic config pointing at the packaged migrations and the given database."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", normalise_url(url).replace("%", "%%"))
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    """Bring the database at `url` up to `revision` (synchronous; call it outside an event loop)."""
    command.upgrade(alembic_config(url), revision)


async def upgrade_async(url: str, revision: str = "head") -> None:
    """Same as `upgrade`, from inside a running event loop."""
    await asyncio.to_thread(upgrade, url, revision)


def head_revision() -> str | None:
    """The newest revision of the packaged migrations."""
    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()


async def current_revision(url: str) -> str | None:
    """The revision the database at `url` is at (None: not under Alembic yet)."""
    engine = create_async_engine(normalise_url(url))
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(lambda c: MigrationContext.configure(c).get_current_revision())
    finally:
        await engine.dispose()


# Expression indexes whose reflected form (casts added by PostgreSQL) alembic cannot compare with the model's;
# `expression_indexes` lists which of them a database has, and the tests check that instead.
EXPRESSION_INDEXES = frozenset({"ix_members_name_order"})


def _comparable(obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
    return not (type_ == "index" and name in EXPRESSION_INDEXES)


async def schema_drift(url: str) -> list[Any]:
    """Differences between the models and a database migrated to head (empty when they agree)."""
    engine = create_async_engine(normalise_url(url))
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(
                lambda c: compare_metadata(MigrationContext.configure(
                    c, opts={"compare_type": True, "include_object": _comparable}), SQLModel.metadata)
            )
    finally:
        await engine.dispose()


async def expression_indexes(url: str) -> set[str]:
    """Which of EXPRESSION_INDEXES the database at `url` has."""
    engine = create_async_engine(normalise_url(url))
    try:
        async with engine.connect() as conn:
            names = await conn.run_sync(lambda c: {str(index["name"]) for index in sa.inspect(c).get_indexes("members")})
            return set(names & EXPRESSION_INDEXES)
    finally:
        await engine.dispose()
