"""One async engine from a URL, and sessions that are each one transaction.

SQLite (the embedded default) allows one writer at a time: write transactions take an
in-process lock and start with BEGIN IMMEDIATE, so two writers queue instead of failing
half-way; reads use a second engine and never wait for writers (WAL). PostgreSQL uses one
pooled engine, its reads in autocommit (no BEGIN/COMMIT round trips); services lock the member row
with SELECT ... FOR UPDATE, which SQLite ignores.
A hot path may take the pooled connection's asyncpg driver itself (`driver_transaction`, PostgreSQL
only) to run prepared statements without SQLAlchemy's per-statement work.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

import asyncpg
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.util import greenlet_spawn

if TYPE_CHECKING:
    from sqlalchemy.dialects.sqlite.aiosqlite import AsyncAdapt_aiosqlite_connection
    from sqlalchemy.engine import Connection
    from sqlalchemy.pool import ConnectionPoolEntry

log = logging.getLogger(__name__)

DEFAULT_URL = "sqlite+aiosqlite:///./loyalbot.db"


class DbUrlError(ValueError):
    """The database URL cannot be used: names what is wrong."""


def normalise_url(url: str) -> str:
    """Give a database URL its async driver: sqlite -> aiosqlite, postgresql -> asyncpg.

    Raises DbUrlError for anything that is not a SQLite or PostgreSQL URL.
    """
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise DbUrlError(f"not a database URL: {exc}") from None
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        parsed = parsed.set(drivername="sqlite+aiosqlite")
    elif backend in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+asyncpg")
        if not parsed.database:
            raise DbUrlError("a PostgreSQL URL needs a database name, e.g. postgresql://user@host/loyalbot")
    else:
        raise DbUrlError(f"unsupported database {backend!r}: use sqlite:///file.db or postgresql://...")
    return parsed.render_as_string(hide_password=False)


def redact_url(url: str) -> str:
    """The URL without its password, for logs."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<invalid url>"


def _sqlite_engine(url: str, *, writer: bool) -> AsyncEngine:
    # The reader runs in autocommit: each SELECT sees a consistent snapshot of its own, with no BEGIN,
    # COMMIT or reset round trips (every aiosqlite call is a hop to its thread, and they add up).
    engine = create_async_engine(url, connect_args={"timeout": 30},
                                 pool_reset_on_return="rollback" if writer else None)

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: AsyncAdapt_aiosqlite_connection, _record: ConnectionPoolEntry) -> None:
        # Let SQLAlchemy, not the driver, decide when a transaction begins (see "begin" below).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()
        dbapi_connection.create_function("loyalbot_local_bucket", 3, sqlite_local_bucket, deterministic=True)

    if writer:
        @event.listens_for(engine.sync_engine, "begin")
        def _on_begin(conn: Connection) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def sqlite_local_bucket(stamp: str | None, zone: str, unit: str) -> str | None:
    """SQLite's `loyalbot_local_bucket(ts, zone, unit)`: the local day (unit 'day') or the Monday of the local
    week ('week') of a stored UTC timestamp, as 'YYYY-MM-DD'; PostgreSQL does the same with date_trunc and
    AT TIME ZONE. SQLite has no time zones, so the dashboard's buckets are computed here."""
    if stamp is None:
        return None
    try:
        moment = datetime.fromisoformat(stamp).replace(tzinfo=UTC).astimezone(_zone(zone))
    except (ValueError, KeyError):
        return None
    day = moment.date()
    if unit == "week":
        day -= timedelta(days=day.weekday())
    return day.isoformat()


@functools.lru_cache(maxsize=32)
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


PG_WORK_MEM = "64MB"  # per sort or hash of one query; enough to hash the member sets of ~8M members


class Db:
    """The store's engine(s) and a way to run one transaction."""

    def __init__(self, url: str = DEFAULT_URL, *, pool_size: int = 20) -> None:
        self.url = normalise_url(url)
        self.dialect = make_url(self.url).get_backend_name()
        if self.dialect == "sqlite":
            self.engine = _sqlite_engine(self.url, writer=True)
            self._read_engine = _sqlite_engine(self.url, writer=False)
            self._write_lock: asyncio.Lock | None = asyncio.Lock()
        else:
            # No pre-ping: it costs a round trip per checkout; stale connections are recycled instead.
            # work_mem: a segment's conditions are IN-subqueries under OR/NOT (scheduler/segments.py), which
            # PostgreSQL runs once as a hash only when the member set fits in work_mem; at its default 4 MB
            # a 1,000,000-member store re-scanned the set for every member (an audience count ran for hours).
            self.engine = create_async_engine(
                self.url, pool_size=pool_size, max_overflow=pool_size, pool_recycle=1800,
                connect_args={"server_settings": {"work_mem": PG_WORK_MEM}},
            )
            # Reads share the pool but run in autocommit: each SELECT is its own snapshot, with no BEGIN and
            # COMMIT round trips around it (a chat turn makes several reads; that was two trips each).
            self._read_engine = self.engine.execution_options(isolation_level="AUTOCOMMIT")
            self._write_lock = None
        self._sessions = async_sessionmaker(self.engine, expire_on_commit=False, autoflush=False)
        self._read_sessions = async_sessionmaker(self._read_engine, expire_on_commit=False, autoflush=False)

    @property
    def is_postgres(self) -> bool:
        return self.dialect == "postgresql"

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """One write transaction: committed when the block ends, rolled back if it raises."""
        lock = self._write_lock if self._write_lock is not None else contextlib.nullcontext()
        async with lock:
            async with self._sessions() as session, session.begin():
                yield session

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[AsyncConnection]:
        """One write transaction on a bare connection (Core statements only; no ORM bookkeeping)."""
        lock = self._write_lock if self._write_lock is not None else contextlib.nullcontext()
        async with lock:
            async with self.engine.begin() as conn:
                yield conn

    @contextlib.asynccontextmanager
    async def driver_transaction(self) -> AsyncIterator[asyncpg.Connection]:
        """PostgreSQL only: one write transaction on the pooled asyncpg connection itself, for hot paths.

        The connection comes from (and goes back to) the engine's pool: one pool, one connection limit.
        Statements go straight to asyncpg, which prepares each SQL text once per connection and reuses
        it, so a call pays no SQLAlchemy compile, parameter or result processing. Committed when the
        block ends, rolled back if it raises; a server error surfaces as SQLAlchemy's exception class
        (IntegrityError, DBAPIError), as on every other path.
        """
        if not self.is_postgres:
            raise RuntimeError("driver_transaction() needs PostgreSQL; use connection()")
        pooled = await self.engine.raw_connection()
        driver: asyncpg.Connection = pooled.driver_connection
        reusable = False
        try:
            try:
                async with driver.transaction():
                    yield driver
            except (asyncpg.InterfaceError, OSError):
                raise  # the connection itself failed: it must not go back to the pool
            except asyncpg.IntegrityConstraintViolationError as exc:
                reusable = True  # asyncpg rolled the transaction back; the connection is fine
                raise sa.exc.IntegrityError(None, None, exc) from exc
            except asyncpg.PostgresError as exc:
                reusable = True
                raise sa.exc.DBAPIError(None, None, exc) from exc
            except Exception:
                reusable = True  # a refusal raised by the caller; asyncpg rolled back
                raise
            else:
                reusable = True
        finally:
            # Cancelled mid-statement, the connection may still be busy or inside the transaction.
            if not reusable or driver.is_closed() or driver.is_in_transaction():
                await greenlet_spawn(pooled.invalidate)
            else:
                # Through greenlet_spawn: checking in an overflow connection closes it, which awaits.
                await greenlet_spawn(pooled.close)

    @contextlib.asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        """A read-only session that never waits for a writer. In autocommit on both stores: every statement
        sees the latest committed state on its own (no BEGIN/COMMIT round trips), so a session is not one
        snapshot; what a decision rests on is read in the write transaction that acts on it."""
        async with self._read_sessions() as session, session.begin():
            yield session

    async def ping(self) -> None:
        """Raise if the database cannot be reached."""
        async with self._read_engine.connect() as conn:
            await conn.execute(sa.text("SELECT 1"))

    async def dispose(self) -> None:
        await self.engine.dispose()
        if self._read_engine.sync_engine.pool is not self.engine.sync_engine.pool:
            await self._read_engine.dispose()
