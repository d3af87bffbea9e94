"""Operators' commands refuse bad input before saving; a running service follows table changes and catches up."""

from __future__ import annotations

import asyncio
from datetime import date

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from loyalbot.scheduler.cli import outbox_app, schedule_app
from loyalbot.scheduler.service import SchedulerService
from loyalbot.scheduler.templates import LANGUAGES, TemplateBook, default_templates
from loyalbot.storage.models import Schedule
from tests.scheduler.conftest import add_member, at, outbox_rows, schedule_jobs

runner = CliRunner()
KINDS_WITH_TEMPLATES = ("birthday", "anniversary", "winback", "tier_change", "points_expiry", "coupon_expiry",
                        "nps", "csat", "csat_support", "broadcast")


@pytest.mark.parametrize("kind", KINDS_WITH_TEMPLATES)
def test_every_shipped_template_renders_in_every_language(kind):
    templates = default_templates(kind)
    assert set(templates) == set(LANGUAGES)
    TemplateBook().check_all(templates, kind)


def cli(app, url: str, *args: str):
    return runner.invoke(app, [*args, "--database-url", url])


async def schedules(db) -> list[Schedule]:
    async with db.read() as s:
        return list((await s.execute(sa.select(Schedule))).scalars())


async def test_bad_input_is_refused_with_exit_2_and_nothing_saved(sqlite_url, db, loyalty):
    await add_member(loyalty, now=at("2025-01-01 10:00"))
    cases = {
        "cron": ["add", "x", "--kind", "broadcast", "--cron", "61 * * * *"],
        "unknown variable": ["add", "x", "--kind", "birthday", "--daily-time", "10:00",
                             "--template", "en=Hi {{ nickname }}"],
        "kind variable": ["add", "x", "--kind", "birthday", "--daily-time", "10:00",
                          "--template", "en=Your {{ coupon_code }}"],
        "does not render": ["add", "x", "--kind", "broadcast", "--daily-time", "10:00",
                            "--template", "en={{ points / 0 }}"],
        "nobody": ["add", "x", "--kind", "broadcast", "--daily-time", "10:00", "--segment", '{"tiers": ["gold"]}'],
        "daily time": ["add", "x", "--kind", "broadcast", "--daily-time", "25:00"],
    }
    messages = {}
    for label, args in cases.items():
        result = await asyncio.to_thread(cli, schedule_app, sqlite_url, *args)
        assert result.exit_code == 2, (label, result.output)
        messages[label] = result.output
    assert "bad cron expression" in messages["cron"]
    assert "unknown variable 'nickname'" in messages["unknown variable"]
    assert "unknown variable 'coupon_code' for a birthday message" in messages["kind variable"]
    assert "does not render" in messages["does not render"]
    assert "matches nobody" in messages["nobody"]
    assert "HH:MM" in messages["daily time"]
    assert await schedules(db) == []


async def test_add_preview_pause_and_run_now(sqlite_url, db, loyalty):
    await add_member(loyalty, now=at("2025-01-01 10:00"), first_name="Mei", language="zh_Hans")
    await add_member(loyalty, now=at("2025-01-01 10:00"), marketing_consent=False)
    added = await asyncio.to_thread(cli, schedule_app, sqlite_url, "add", "weekly", "--kind", "broadcast",
                                    "--cron", "0 10 * * 1", "--timezone", "Europe/Amsterdam")
    assert added.exit_code == 0, added.output
    (row,) = await schedules(db)
    assert row.templates == default_templates("broadcast") and row.enabled
    preview = await asyncio.to_thread(cli, schedule_app, sqlite_url, "preview", "weekly")
    assert preview.exit_code == 0 and "no_consent 1" in preview.output and "Mei" in preview.output
    assert await outbox_rows(db) == []
    paused = await asyncio.to_thread(cli, schedule_app, sqlite_url, "pause", "weekly")
    assert paused.exit_code == 0 and not (await schedules(db))[0].enabled
    ran = await asyncio.to_thread(cli, schedule_app, sqlite_url, "run-now", "weekly")
    assert ran.exit_code == 0, ran.output
    assert sorted(r.status for r in await outbox_rows(db)) == ["pending", "skipped"]
    status = await asyncio.to_thread(cli, outbox_app, sqlite_url, "status")
    assert status.exit_code == 0 and "no_consent 1" in status.output
    missing = await asyncio.to_thread(cli, schedule_app, sqlite_url, "show", "nope")
    assert missing.exit_code == 2 and "no schedule called 'nope'" in missing.output


async def test_service_follows_table_changes_and_plans_a_missed_run_once(db, loyalty):
    member = await add_member(loyalty, now=at("2024-01-01 10:00"), birthday=date(1990, 6, 10))
    now = at("2025-06-10 12:00")
    async with db.transaction() as tx:  # last ran two days ago: two daily ticks were missed
        tx.add(Schedule(name="bday", kind="birthday", daily_time="09:00", created_at=at("2025-01-01 00:00"),
                        updated_at=at("2025-01-01 00:00"), last_run_at=at("2025-06-08 09:00")))
    service = SchedulerService(db, loyalty, dispatch=False, poll_seconds=0.05, clock=lambda: now)
    await service.start()
    try:
        async def settled(predicate) -> None:
            for _ in range(200):  # short polls for the service's own I/O
                if await predicate():
                    return
                await asyncio.sleep(0.02)
            raise AssertionError("service did not settle")

        async def planned() -> bool:
            return len(await outbox_rows(db, member_id=member.id)) == 1

        await settled(planned)
        assert [j.name for j in schedule_jobs(service)] == ["bday"]
        # The CLI (another process) adds a schedule: the running service picks it up without a restart.
        async with db.transaction() as tx:
            tx.add(Schedule(name="news", kind="broadcast", cron="0 10 * * *", created_at=now, updated_at=now))

        async def has_two_jobs() -> bool:
            return sorted(j.name for j in schedule_jobs(service)) == ["bday", "news"]

        await settled(has_two_jobs)
        async with db.transaction() as tx:
            await tx.execute(sa.update(Schedule).where(Schedule.name == "bday").values(enabled=False, updated_at=now))

        async def bday_paused() -> bool:
            return [j.name for j in schedule_jobs(service)] == ["news"]

        await settled(bday_paused)
    finally:
        await service.stop()
    assert len(await outbox_rows(db, member_id=member.id)) == 1
    (bday,) = [s for s in await schedules(db) if s.name == "bday"]
    assert bday.last_run_at == now
