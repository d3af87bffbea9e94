"""`loyalbot doctor`: a healthy deployment is all OK; each thing an operator can get wrong is one FAIL line with
the fix, and the exit status says so. Secrets never appear in what it prints."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import sys
from pathlib import Path

import httpx
import pytest

from loyalbot.bot.doctor import FAIL, OK, WARN, Finding, diagnose
from loyalbot.bot.local_api import LocalApiControl, LocalBotApi
from loyalbot.bot.settings import read_settings
from loyalbot.storage import Db
from loyalbot.storage.leases import PLANNER, LeaseStore

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "616161:doctor-test-token"
SECRET = "webhook-secret-value-42"
PASSWORD = "console-password-value-42"
REDIS = os.environ.get("LOYALBOT_TEST_REDIS_URL")
HOOK = "https://bot.example.org/telegram/hook"


@pytest.fixture
async def api():
    server = LocalBotApi(serve_page=False)
    await server.start()
    yield server
    await server.stop()


def settings_for(store_url: str, api: LocalBotApi, **changes: object):
    values: dict[str, object] = dict(database_url=store_url, bot_token=TOKEN, telegram_api_url=api.url,
                                     console_password=PASSWORD, redis_url=REDIS, webhook_url=None)
    values.update(changes)
    return read_settings(**values)


def by_check(findings: list[Finding]) -> dict[str, Finding]:
    return {f.check: f for f in findings}


def printed(findings: list[Finding]) -> str:
    return "\n".join(f.line() for f in findings)


async def test_a_healthy_webhook_deployment_is_all_ok_and_shows_no_secret(store_url, api):
    async with httpx.AsyncClient() as client:  # what `loyalbot run` does at start in webhook mode
        await client.post(f"{api.url}/bot{TOKEN}/setWebhook", data={"url": HOOK, "secret_token": SECRET})
    db = Db(store_url)
    try:
        await LeaseStore(db).try_take(PLANNER, "replica-a:1f2e", ttl=60)  # a replica is planning
    finally:
        await db.dispose()
    findings = await diagnose(settings_for(store_url, api, webhook_url=HOOK, webhook_secret=SECRET))
    checks = by_check(findings)
    expected = {"programme", "time zone", "database", "bot token", "webhook", "console", "planner", "redis"}
    assert set(checks) == expected
    if REDIS:
        assert all(f.status == OK for f in findings), printed(findings)
    else:  # webhook mode is how several replicas run: they need Redis
        assert checks["redis"].status == WARN and "LOYALBOT_REDIS_URL" in checks["redis"].fix
        assert all(f.status == OK for f in findings if f.check != "redis"), printed(findings)
    assert "migrated to head" in checks["database"].found
    assert "replica-a" in checks["planner"].found
    for secret in (TOKEN, TOKEN.split(":")[1], SECRET, PASSWORD):
        assert secret not in printed(findings)


async def test_a_wrong_database_url_fails_naming_the_setting(api, sqlite_template, tmp_path):
    findings = by_check(await diagnose(settings_for(
        "postgresql://loyalbot:db-password-9@127.0.0.1:1/loyalbot", api)))
    assert findings["database"].status == FAIL and "unreachable" in findings["database"].found
    assert "LOYALBOT_DATABASE_URL" in findings["database"].fix
    assert "db-password-9" not in findings["database"].line()
    assert "planner" not in findings  # nothing more to ask a database that does not answer
    missing = tmp_path / "nowhere.db"
    findings = by_check(await diagnose(settings_for(f"sqlite+aiosqlite:///{missing}", api)))
    assert findings["database"].status == FAIL and not missing.exists()  # the doctor creates nothing


async def test_an_unmigrated_database_fails_with_migrate_as_the_fix(store_url, api, tmp_path):
    empty = tmp_path / "empty.db"
    sqlite3.connect(empty).close()
    findings = by_check(await diagnose(settings_for(f"sqlite+aiosqlite:///{empty}", api)))
    assert findings["database"].status == FAIL and "not migrated" in findings["database"].found
    assert "loyalbot migrate" in findings["database"].fix


async def test_an_old_schema_fails_with_migrate_as_the_fix(api, tmp_path):
    from loyalbot.storage.migrate import upgrade

    old = tmp_path / "old.db"
    await asyncio.to_thread(upgrade, f"sqlite:///{old}", "0008")
    findings = by_check(await diagnose(settings_for(f"sqlite+aiosqlite:///{old}", api)))
    assert findings["database"].status == FAIL and "at migration 0008" in findings["database"].found


async def test_a_closed_redis_port_fails(store_url, api):
    findings = by_check(await diagnose(settings_for(store_url, api, redis_url="redis://:redis-pw-7@127.0.0.1:1/0")))
    assert findings["redis"].status == FAIL and "unreachable" in findings["redis"].found
    assert "redis-pw-7" not in findings["redis"].line()


async def test_a_token_the_bot_api_refuses_fails(store_url, api):
    async with LocalApiControl(api.url) as tg:
        await tg.create_bot(TOKEN, invalid=True)
    findings = by_check(await diagnose(settings_for(store_url, api)))
    assert findings["bot token"].status == FAIL and "refused the token" in findings["bot token"].found
    assert "webhook" not in findings  # not asked with a token that does not work
    assert TOKEN not in findings["bot token"].line()
    unreachable = by_check(await diagnose(settings_for(store_url, api, telegram_api_url="http://127.0.0.1:1")))
    assert unreachable["bot api"].status == FAIL and TOKEN not in unreachable["bot api"].line()


async def test_a_webhook_not_set_at_telegram_fails_and_a_leftover_webhook_warns(store_url, api):
    findings = by_check(await diagnose(settings_for(store_url, api, webhook_url=HOOK, webhook_secret=SECRET)))
    assert findings["webhook"].status == FAIL and "empty" in findings["webhook"].found
    no_secret = by_check(await diagnose(settings_for(store_url, api, webhook_url=HOOK)))
    assert no_secret["webhook"].status == FAIL and "LOYALBOT_WEBHOOK_SECRET" in no_secret["webhook"].found
    async with httpx.AsyncClient() as client:
        await client.post(f"{api.url}/bot{TOKEN}/setWebhook", data={"url": HOOK, "secret_token": SECRET})
    polling = by_check(await diagnose(settings_for(store_url, api)))
    assert polling["webhook"].status == WARN and "getUpdates" in polling["webhook"].found


async def test_no_console_password_and_no_planner_warn(store_url, api):
    findings = by_check(await diagnose(settings_for(store_url, api, console_password=None)))
    assert findings["console"].status == WARN and "LOYALBOT_CONSOLE_PASSWORD" in findings["console"].fix
    assert findings["planner"].status == WARN


async def run_doctor(env: dict[str, str]) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "loyalbot.bot.cli", "doctor", cwd=ROOT, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={**{k: v for k, v in os.environ.items() if not k.startswith("LOYALBOT_")}, "PYTHONPATH": str(ROOT),
             **env})
    out, _ = await process.communicate()
    return process.returncode, out.decode()


async def test_the_command_exits_0_when_healthy_and_1_on_a_failure(api, tmp_path, sqlite_template):
    import shutil

    store = tmp_path / "store.db"
    shutil.copy(sqlite_template, store)
    env = {"LOYALBOT_DATABASE_URL": f"sqlite+aiosqlite:///{store}", "LOYALBOT_BOT_TOKEN": TOKEN,
           "LOYALBOT_TELEGRAM_API_URL": api.url, "LOYALBOT_CONSOLE_PASSWORD": PASSWORD}
    code, out = await run_doctor(env)
    assert code == 0, out
    lines = out.strip().splitlines()
    assert lines[0].startswith("OK") and "settings" in lines[0]
    assert all(line.split()[0] in (OK, WARN) for line in lines), out  # the planner has not run: a WARN
    assert TOKEN not in out and PASSWORD not in out
    code, out = await run_doctor({**env, "LOYALBOT_TIMEZONE": "Mars/Olympus"})
    assert code == 1 and out.startswith("FAIL  settings") and "LOYALBOT_TIMEZONE" in out
    code, out = await run_doctor({**env, "LOYALBOT_REDIS_URL": "redis://127.0.0.1:1/0"})
    assert code == 1 and any(line.startswith("FAIL  redis") for line in out.splitlines()), out
