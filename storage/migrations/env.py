"""Alembic environment: runs migrations on the async engine of the configured URL."""

from __future__ import annotations

import asyncio
import warnings

from alembic import context
from sqlalchemy.engine import Connection
from sqlalchemy.exc import SAWarning
from sqlalchemy.ext.asyncio import create_async_engine
from sqlmodel import SQLModel

import loyalbot.storage.models  # noqa: F401  (registers the tables)

target_metadata = SQLModel.metadata

# On SQLite a batch migration of a table with a foreign key to members reflects members, whose expression
# indexes (coalesce(last_purchase_at, joined_at), ...) SQLAlchemy cannot reflect; the batch leaves them alone,
# so the warning said nothing to the newcomer who saw it on the demo's first start.
warnings.filterwarnings("ignore", message="Skipped unsupported reflection of expression-based index",
                        category=SAWarning)


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )


def _run(connection: Connection) -> None:
    _configure(connection)
    with context.begin_transaction():
        context.run_migrations()


async def _run_async(url: str) -> None:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            await conn.run_sync(_run)
            await conn.commit()
    finally:
        await engine.dispose()


url = context.config.get_main_option("sqlalchemy.url")
connection = context.config.attributes.get("connection")
if connection is not None:
    _run(connection)
elif url is None:
    raise RuntimeError("no database to migrate: the Alembic config sets no sqlalchemy.url")
else:
    asyncio.run(_run_async(url))
