"""`loyalbot apikey list`: which keys exist, their prefix (what revoke takes), when each was last used."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from pathlib import Path

import httpx

from loyalbot.console.api import create_api_key, create_app, list_api_keys, revoke_api_key
from loyalbot.loyalty import Loyalty, load_programme
from loyalbot.storage import Db

ROOT = Path(__file__).resolve().parents[2]


def cli(*args: str, url: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOYALBOT_")} | {
        "PYTHONPATH": str(ROOT), "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "loyalbot.bot.cli", "apikey", *args, "--database-url", url],
                          capture_output=True, text=True, env=env, timeout=120)


async def test_a_key_records_when_it_was_last_used(db, loyalty, ann):
    key = await create_api_key(db, "till")
    assert [k.last_used_at for k in await list_api_keys(db)] == [None]
    app = create_app(db, loyalty)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://shop",
                                 headers={"Authorization": f"Bearer {key}"}) as client:
        assert (await client.get(f"/api/v1/members/{ann.member_no}")).status_code == 200
        (used,) = await list_api_keys(db)
        assert used.last_used_at is not None
        assert (await client.get(f"/api/v1/members/{ann.member_no}")).status_code == 200
    (again,) = await list_api_keys(db)
    assert again.last_used_at == used.last_used_at  # within a minute: not written again


def test_apikey_list_shows_name_prefix_last_use_and_revocation(store_url):
    async def prepare() -> tuple[str, str]:
        db = Db(store_url)
        try:
            loyalty = Loyalty(db, load_programme())
            await loyalty.sync_programme()
            ann = await loyalty.register_member(telegram_id=1, terms_accepted=True)
            used, old = await create_api_key(db, "till-east"), await create_api_key(db, "webshop")
            await revoke_api_key(db, old[:10])
            app = create_app(db, loyalty)
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://shop") as client:
                await client.get(f"/api/v1/members/{ann.member_no}", headers={"X-Api-Key": used})
            return used, old
        finally:
            await db.dispose()

    used, old = asyncio.run(prepare())
    listed = cli("list", url=store_url)
    assert listed.returncode == 0, listed.stderr
    lines = {line.split()[1]: line for line in listed.stdout.splitlines() if "till-east" in line or "webshop" in line}
    assert set(lines) == {"till-east", "webshop"}
    assert used[:10] in lines["till-east"] and old[:10] in lines["webshop"]
    assert "never" not in lines["till-east"] and "never" in lines["webshop"]
    stamp = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d")
    assert len(stamp.findall(lines["webshop"])) == 2 and len(stamp.findall(lines["till-east"])) == 2  # created + revoked / used
    assert used not in listed.stdout  # only the prefix is ever shown
    revoked = cli("revoke", used[:10], url=store_url)
    assert revoked.returncode == 0 and "Revoked 1" in revoked.stdout
