"""`loyalbot schedule ...` as an operator runs it: a separate process on a SQLite file, as in the README.

Times default to the shop's zone (LOYALBOT_TIMEZONE, else the programme's), `schedule list` shows a
run made with `run-now`, and preview and run-now print the message as terminal text, not HTML tags.
"""

from __future__ import annotations

import asyncio
import os
import re
import sys
from datetime import timedelta
from pathlib import Path

import sqlalchemy as sa

from loyalbot.storage import utcnow
from loyalbot.storage.models import Schedule
from tests.scheduler.conftest import add_member, outbox_rows

REPO = Path(__file__).resolve().parents[2]


async def loyalbot(url: str, *args: str, timezone: str | None = None) -> str:
    """`python -m loyalbot.bot.cli ARGS` in its own process on the store at `url`; returns what it printed."""
    env = {key: value for key, value in os.environ.items() if key != "LOYALBOT_TIMEZONE"}
    env.update(LOYALBOT_DATABASE_URL=url.replace("sqlite+aiosqlite:", "sqlite:"), COLUMNS="160", NO_COLOR="1",
               PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    if timezone is not None:
        env["LOYALBOT_TIMEZONE"] = timezone
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "loyalbot.bot.cli", *args, env=env, cwd=REPO,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(), 120)
    text = out.decode()
    assert proc.returncode == 0, f"loyalbot {' '.join(args)} failed ({proc.returncode}):\n{text}"
    return text


def listed(output: str, name: str) -> str:
    line = next((line for line in output.splitlines() if f" {name} " in line), None)
    assert line is not None, output
    return line


async def test_schedule_times_default_to_the_shops_zone(sqlite_url, db, loyalty):
    await loyalbot(sqlite_url, "schedule", "add", "taipei", "--kind", "broadcast", "--daily-time", "09:00",
                   timezone="Asia/Taipei")
    await loyalbot(sqlite_url, "schedule", "add", "programme", "--kind", "broadcast", "--daily-time", "09:00")
    await loyalbot(sqlite_url, "schedule", "add", "given", "--kind", "broadcast", "--daily-time", "09:00",
                   "--timezone", "Europe/London", timezone="Asia/Taipei")
    async with db.read() as s:
        zones = dict((await s.execute(sa.select(Schedule.name, Schedule.timezone))).all())
    assert zones == {"taipei": "Asia/Taipei", "programme": loyalty.programme.programme.timezone,
                     "given": "Europe/London"}
    assert loyalty.programme.programme.timezone != "UTC"
    listing = await loyalbot(sqlite_url, "schedule", "list")
    assert "09:00 Asia/Taipei" in listed(listing, "taipei")
    assert "UTC" not in listed(listing, "programme")


async def test_run_now_is_a_run_and_messages_print_as_text(sqlite_url, db, loyalty):
    now = utcnow()
    member = await add_member(loyalty, now=now - timedelta(days=300), first_name="Ann")
    lot = await loyalty.grant_bonus(member.id, 75, reference="earlier", note="earlier visits",
                                    now=now - timedelta(days=300))
    assert lot is not None and lot.expires_at > now
    await loyalbot(sqlite_url, "schedule", "add", "expiring", "--kind", "points_expiry", "--offset-days", "366",
                   "--daily-time", "09:00")
    assert "never" in listed(await loyalbot(sqlite_url, "schedule", "list"), "expiring")

    preview = await loyalbot(sqlite_url, "schedule", "preview", "expiring")
    sample = preview.split("sample (en)", 1)[1]
    assert "Ann" in sample and " 75 " in sample, preview
    assert "<b>" not in preview and "</b>" not in preview and "&" not in sample
    assert await outbox_rows(db) == []

    ran = await loyalbot(sqlite_url, "schedule", "run-now", "expiring")
    assert "<b>" not in ran and " 75 " in ran.split("sample (en)", 1)[1]
    (row,) = await outbox_rows(db)
    assert row.member_id == member.id and "<b>75</b>" in row.text, "the chat still gets Telegram's HTML"
    line = listed(await loyalbot(sqlite_url, "schedule", "list"), "expiring")
    assert "never" not in line
    assert re.search(rf"{now:%Y-%m-%d} \d\d:\d\d", line), line
