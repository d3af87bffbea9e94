"""The kept bench database on PostgreSQL with N seeded members: what bench/console.py and bench/campaigns.py share."""

from __future__ import annotations

import time
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from loyalbot.bot.settings import Settings
from loyalbot.storage import Db
from loyalbot.storage.migrate import upgrade_async


async def admin(server_url: str, statement: str, *args: Any) -> Any:
    """One statement on the server's own database (CREATE/DROP DATABASE cannot run in the bench one)."""
    import asyncpg

    url = make_url(server_url)
    conn = await asyncpg.connect(host=url.host, port=url.port or 5432, user=url.username, password=url.password,
                                 database=url.database)
    try:
        return await conn.fetchval(statement, *args)
    finally:
        await conn.close()


async def seeded_database(server: str, name: str, members: int, *, fresh: bool) -> tuple[str, dict[str, Any]]:
    """The database `name` (dropped first when `fresh`), migrated, with at least `members` members and their two
    years of purchases from `loyalbot seed-demo`'s generator; seeds only what is missing. Returns its URL and,
    when it seeded, {"seed_members_s": seconds}."""
    figures: dict[str, Any] = {}
    exists = await admin(server, "SELECT 1 FROM pg_database WHERE datname = $1", name)
    if fresh and exists:
        await admin(server, f'DROP DATABASE "{name}" WITH (FORCE)')
    if fresh or not exists:
        await admin(server, f'CREATE DATABASE "{name}"')
    url = make_url(server).set(drivername="postgresql+asyncpg", database=name).render_as_string(hide_password=False)
    await upgrade_async(url)
    db = Db(url)
    try:
        async with db.read() as s:
            have = (await s.execute(sa.text("SELECT count(*) FROM members"))).scalar_one()
    finally:
        await db.dispose()
    if have < members:
        from loyalbot.bot.seed import seed_members

        start = time.perf_counter()
        await seed_members(Settings(database_url=url), members - have)
        figures["seed_members_s"] = round(time.perf_counter() - start, 1)
    return url, figures
