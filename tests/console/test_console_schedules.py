"""Schedules in the console: create with checks named per field, edit without losing somebody else's change,
pause, preview as a member in three languages, test-send to a staff chat, delete; a live template preview."""

from __future__ import annotations

import html
import re

import httpx
import pytest
import sqlalchemy as sa

from loyalbot.console.accounts import add_operator
from loyalbot.console.api import create_app
from loyalbot.storage.models import AuditLog, Outbox, Schedule
from loyalbot.storage.throttle import SqlThrottle

PASSWORD = "correct horse battery"


@pytest.fixture
async def web(db, loyalty):
    await add_operator(db, "mia", PASSWORD)
    app = create_app(db, loyalty, throttle=SqlThrottle(db))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://console") as client:
        await client.post("/console/signin", data={"name": "mia", "password": PASSWORD})
        page = await client.get("/console/schedules")
        client.csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)  # type: ignore[attr-defined]
        yield client


@pytest.fixture
async def members(loyalty):
    ann = await loyalty.register_member(telegram_id=11, first_name="Ann", terms_accepted=True, language="zh_Hant",
                                        marketing_consent=True)
    ben = await loyalty.register_member(telegram_id=12, first_name="Ben", terms_accepted=True, marketing_consent=True)
    await loyalty.add_staff(900, "agent", name="Sam")
    return ann, ben


def form(web, **fields):
    base = {"csrf": web.csrf, "kind": "broadcast", "name": "Spring", "timing": "one_off",
            "one_off_at": "2030-03-01T10:00", "timezone": "Europe/Amsterdam",
            "template_en": "Hello {{ name }}, spring is here at {{ programme }}!"}
    return {**base, **fields}


async def schedules(db) -> list[Schedule]:
    async with db.read() as s:
        return list((await s.execute(sa.select(Schedule))).scalars())


async def test_a_schedule_is_created_from_the_form_and_audited(web, db, members):
    made = await web.post("/console/schedules/new", data=form(web))
    assert made.status_code == 303, made.text[-2000:]
    page = await web.get(made.headers["location"])
    assert "Schedule added" in page.text and "2 members in this segment" in page.text
    [row] = await schedules(db)
    assert row.kind == "broadcast" and row.templates["en"].startswith("Hello")
    async with db.read() as s:
        audit = (await s.execute(sa.select(AuditLog).where(AuditLog.action == "schedule_add"))).scalar_one()
    assert audit.actor == "console:mia" and audit.details["schedule"] == "Spring"


@pytest.mark.parametrize(("fields", "field", "words"), [
    ({"name": ""}, "name", "needs a name"),
    ({"template_en": "Hi {{ nickname }}"}, "template_en", "unknown variable 'nickname'"),
    ({"template_en": "Hi {{ name "}, "template_en", "not a valid template"),
    ({"template_en": "Hi {{ name.__class__ }}"}, "template_en", "does not render"),
    ({"timing": "daily", "daily_time": "25:99"}, "daily_time", ""),
    ({"tiers": "platinum"}, "tiers", "unknown tier"),
    ({"min_balance": "lots"}, "min_balance", "whole number"),
    ({"name": "bad\x07name"}, "name", "control characters"),
])
async def test_bad_fields_are_named_and_nothing_is_saved(web, db, members, fields, field, words):
    refused = await web.post("/console/schedules/new", data=form(web, **fields))
    assert refused.status_code == 422
    assert f'id="{field}-error"' in refused.text, refused.text[-3000:]
    assert words in html.unescape(refused.text)
    assert await schedules(db) == []


async def test_a_post_without_csrf_creates_nothing(web, db, members):
    refused = await web.post("/console/schedules/new", data={k: v for k, v in form(web).items() if k != "csrf"})
    assert refused.status_code == 400 and await schedules(db) == []


async def test_an_edit_over_a_newer_change_is_refused(web, db, members):
    made = await web.post("/console/schedules/new", data=form(web))
    page = await web.get(made.headers["location"])
    stamp = re.search(r'name="updated_at" value="([^"]+)"', page.text).group(1)
    schedule_id = made.headers["location"].split("/")[-1].split("?")[0]
    first = await web.post(f"/console/schedules/{schedule_id}", data=form(web, updated_at=stamp, name="Spring 1"))
    assert first.status_code == 303
    stale = await web.post(f"/console/schedules/{schedule_id}", data=form(web, updated_at=stamp, name="Spring 2"))
    assert stale.status_code == 422 and "someone changed this schedule" in stale.text
    assert [s.name for s in await schedules(db)] == ["Spring 1"]


async def test_preview_as_a_member_in_each_language_and_test_send_to_staff(web, db, members):
    ann, _ben = members
    made = await web.post("/console/schedules/new", data=form(
        web, template_zh_Hans="{{ name }}，您好！", template_zh_Hant="{{ name }}，您好！春天來了。"))
    schedule_id = made.headers["location"].split("/")[-1].split("?")[0]
    preview = await web.get(f"/console/schedules/{schedule_id}/preview", params={"member_no": ann.member_no})
    assert preview.status_code == 200
    assert "Hello Ann, spring is here" in html.unescape(preview.text) and "Ann，您好！春天來了。" in preview.text
    unknown = await web.get(f"/console/schedules/{schedule_id}/preview", params={"member_no": "999999999"})
    assert "no member with that number" in unknown.text
    sent = await web.post(f"/console/schedules/{schedule_id}/test",
                          data={"csrf": web.csrf, "member_no": ann.member_no, "staff": "900"})
    assert sent.status_code == 303
    again = await web.post(f"/console/schedules/{schedule_id}/test",
                           data={"csrf": web.csrf, "member_no": ann.member_no, "staff": "900", "language": "en"})
    assert again.status_code == 303
    async with db.read() as s:
        rows = list((await s.execute(sa.select(Outbox).order_by(Outbox.id))).scalars())
    assert [(r.chat_id, r.kind, r.schedule_id) for r in rows] == [(900, "test", None), (900, "test", None)]
    assert "春天來了" in rows[0].text and rows[1].text.startswith("Hello Ann")
    stranger = await web.post(f"/console/schedules/{schedule_id}/test",
                              data={"csrf": web.csrf, "member_no": ann.member_no, "staff": "12345"})
    assert stranger.status_code == 422 and "not on the staff list" in stranger.text


async def test_pause_resume_run_and_delete(web, db, members):
    made = await web.post("/console/schedules/new", data=form(web, timing="daily", daily_time="10:00"))
    schedule_id = made.headers["location"].split("/")[-1].split("?")[0]
    assert (await web.post(f"/console/schedules/{schedule_id}/pause", data={"csrf": web.csrf})).status_code == 303
    assert [s.enabled for s in await schedules(db)] == [False]
    await web.post(f"/console/schedules/{schedule_id}/resume", data={"csrf": web.csrf})
    ran = await web.post(f"/console/schedules/{schedule_id}/run", data={"csrf": web.csrf})
    assert ran.status_code == 303
    outbox = await web.get(f"/console/schedules/{schedule_id}/outbox")
    assert outbox.status_code == 200 and outbox.text.count("<tr><td>") == 2
    wrong = await web.post(f"/console/schedules/{schedule_id}/delete", data={"csrf": web.csrf, "confirm": "nope"})
    assert wrong.status_code == 422 and len(await schedules(db)) == 1
    gone = await web.post(f"/console/schedules/{schedule_id}/delete", data={"csrf": web.csrf, "confirm": "Spring"})
    assert gone.status_code == 303 and gone.headers["location"].endswith("done=archived")
    listing = await web.get("/console/schedules")
    assert "Spring" not in listing.text.split("<main", 1)[1] or "No schedules yet." in listing.text
    async with db.read() as s:
        statuses = {r.status for r in (await s.execute(sa.select(Outbox))).scalars()}
    assert statuses == {"skipped"}


async def test_the_template_preview_follows_typing_and_shows_the_sandbox_problem(web, members):
    good = await web.post("/console/schedules-template-preview", headers={"X-CSRF-Token": web.csrf},
                          data={"kind": "birthday", "language": "zh_Hans",
                                "template_zh_Hans": "{{ name }}，生日快乐！<b>{{ points|number }}</b> 积分<script>x</script>"})
    assert good.status_code == 200 and "Ann，生日快乐！<b>1,234</b>" in good.text and "<script>" not in good.text
    bad = await web.post("/console/schedules-template-preview", headers={"X-CSRF-Token": web.csrf},
                         data={"kind": "birthday", "language": "en", "template_en": "{% for %}"})
    assert "not a valid template" in bad.text and 'role="alert"' in bad.text
    forged = await web.post("/console/schedules-template-preview",
                            data={"kind": "birthday", "language": "en", "template_en": "Hi"})
    assert forged.status_code == 400
