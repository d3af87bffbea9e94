"""Shared fixtures: a migrated store on SQLite and (when LOYALBOT_TEST_DATABASE_URL is set) on PostgreSQL.

`store_url` is parametrized over both back-ends, so every test that uses it runs twice. Without the
environment variable the PostgreSQL runs are skipped, with that reason shown in the test report.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlmodel import SQLModel

from loyalbot.loyalty import Loyalty, load_programme
from loyalbot.storage import Db
from loyalbot.storage.migrate import upgrade

PG_ENV = "LOYALBOT_TEST_DATABASE_URL"
NO_PG = f"PostgreSQL run skipped: set {PG_ENV} (e.g. postgresql://postgres@127.0.0.1:5432/test) to run it"


def pg_server_url() -> str | None:
    return os.environ.get(PG_ENV) or None


def _admin_exec(server_url: str, *statements: str) -> None:
    """Run statements on the server's maintenance database, outside a transaction (CREATE/DROP DATABASE)."""
    import asyncpg

    url = make_url(server_url)

    async def go() -> None:
        conn = await asyncpg.connect(host=url.host or "127.0.0.1", port=url.port or 5432, user=url.username,
                                     password=url.password, database=url.database or "postgres")
        try:
            for statement in statements:
                await conn.execute(statement)
        finally:
            await conn.close()

    asyncio.run(go())


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file, copied for each test (migrating once is much faster than per test)."""
    path = tmp_path_factory.mktemp("template") / "template.db"
    upgrade(f"sqlite:///{path}")
    return path


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str | None]:
    """A PostgreSQL database of this test session's own, migrated once; dropped at the end."""
    server = pg_server_url()
    if server is None:
        yield None
        return
    name = f"loyalbot_test_{uuid.uuid4().hex[:10]}"
    _admin_exec(server, f'CREATE DATABASE "{name}"')
    url = make_url(server).set(drivername="postgresql+asyncpg", database=name).render_as_string(hide_password=False)
    try:
        upgrade(url)
        yield url
    finally:
        _admin_exec(server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def truncate_all(url: str) -> None:
    db = Db(url)
    try:
        async with db.transaction() as s:
            names = ", ".join(f'"{t.name}"' for t in SQLModel.metadata.sorted_tables)
            await s.execute(sa.text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
    finally:
        await db.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, sqlite_template: Path, tmp_path: Path) -> str:
    """The URL of an empty, migrated store: a SQLite file, or this session's PostgreSQL database."""
    if request.param == "sqlite":
        path = tmp_path / "store.db"
        shutil.copy(sqlite_template, path)
        return f"sqlite+aiosqlite:///{path}"
    url = request.getfixturevalue("pg_database")
    if url is None:
        pytest.skip(NO_PG)
    asyncio.run(truncate_all(url))
    return url


@pytest.fixture
async def db(store_url: str) -> AsyncIterator[Db]:
    database = Db(store_url)
    yield database
    await database.dispose()


@pytest.fixture
def programme():
    return load_programme()


@pytest.fixture
async def loyalty(db: Db, programme) -> Loyalty:
    service = Loyalty(db, programme)
    await service.sync_programme()
    return service
