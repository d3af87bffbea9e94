"""Segments in the console: save with a live count, refusals that say what is wrong, delete only when unused,
score members now, install the plays; a schedule's rich segment and offer survive an edit through the form."""

from __future__ import annotations

import json
import re

import httpx
import pytest
import sqlalchemy as sa

from loyalbot.console.accounts import add_operator
from loyalbot.console.api import create_app
from loyalbot.scheduler.plays import PLAYS
from loyalbot.storage.models import MemberScore, Schedule, Segment
from loyalbot.storage.throttle import SqlThrottle

PASSWORD = "correct horse battery"


@pytest.fixture
async def web(db, loyalty):
    await add_operator(db, "mia", PASSWORD)
    app = create_app(db, loyalty, throttle=SqlThrottle(db))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://console") as client:
        await client.post("/console/signin", data={"name": "mia", "password": PASSWORD})
        page = await client.get("/console/segments")
        client.csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)  # type: ignore[attr-defined]
        yield client


@pytest.fixture
async def members(loyalty):
    ann = await loyalty.register_member(telegram_id=11, first_name="Ann", terms_accepted=True, language="zh_Hant",
                                        marketing_consent=True)
    ben = await loyalty.register_member(telegram_id=12, first_name="Ben", terms_accepted=True)
    return ann, ben


async def test_a_segment_is_saved_counted_live_and_listed(web, db, members):
    live = await web.get("/console/segments-count", params={"definition": '{"marketing_consent": true}'})
    assert "1 member in this segment" in live.text
    bad = await web.get("/console/segments-count", params={"definition": '{"rfm": {"r": [9]}}'})
    assert "&#39;rfm.r&#39;: 9 is not one of" in bad.text or "'rfm.r': 9 is not one of" in bad.text
    broken = await web.get("/console/segments-count", params={"definition": '{"tiers": '})
    assert "not JSON" in broken.text

    saved = await web.post("/console/segments/save", data={"csrf": web.csrf, "name": "consenting",
                                                            "definition": '{"marketing_consent": true}'})
    assert saved.status_code == 303
    page = await web.get(saved.headers["location"])
    assert "Segment saved." in page.text and "consenting" in page.text
    named = await web.get("/console/segments-count", params={"name": "consenting"})
    assert "1 member in this segment" in named.text
    async with db.read() as s:
        row = (await s.execute(sa.select(Segment))).scalar_one()
    assert row.definition == {"marketing_consent": True} and row.created_by == "console:mia"


async def test_bad_segments_are_refused_and_nothing_is_saved(web, db, members):
    for name, definition, words in (("loop", '{"segment": "loop"}', "uses itself"),
                                    ("Bad Name", "{}", "lower-case letters"),
                                    ("x", '["gold"]', "a segment is a JSON object"),
                                    ("y", '{"lifecycle": ["asleep"]}', "is not one of")):
        refused = await web.post("/console/segments/save", data={"csrf": web.csrf, "name": name,
                                                                  "definition": definition})
        assert refused.status_code == 422 and "Nothing was saved" in refused.text
        assert words in refused.text.replace("&#39;", "'").replace("&#34;", '"')
    async with db.read() as s:
        assert (await s.execute(sa.select(sa.func.count()).select_from(Segment))).scalar_one() == 0


async def test_a_segment_in_use_is_not_deleted(web, db, members):
    await web.post("/console/segments/save", data={"csrf": web.csrf, "name": "vip", "definition": "{}"})
    async with db.transaction() as tx:
        tx.add(Schedule(name="news", kind="broadcast", daily_time="10:00", segment={"segment": "vip"}))
    refused = await web.post("/console/segments/vip/delete", data={"csrf": web.csrf})
    assert refused.status_code == 409 and "used by schedule" in refused.text
    async with db.transaction() as tx:
        await tx.execute(sa.delete(Schedule))
    deleted = await web.post("/console/segments/vip/delete", data={"csrf": web.csrf})
    assert deleted.status_code == 303


async def test_scoring_now_and_installing_the_plays(web, db, members):
    scored = await web.post("/console/segments/score", data={"csrf": web.csrf})
    assert scored.status_code == 200 and "Scored 2 members" in scored.text
    async with db.read() as s:
        stages = set((await s.execute(sa.select(MemberScore.lifecycle))).scalars())
    assert stages == {"new"}
    for _ in range(2):
        installed = await web.post("/console/segments/plays", data={"csrf": web.csrf})
        assert installed.status_code == 303
    async with db.read() as s:
        rows = list((await s.execute(sa.select(Schedule))).scalars())
    assert len(rows) == len(PLAYS) and not any(r.enabled for r in rows)
    page = await web.get("/console/schedules")
    assert "Lifecycle change" in page.text  # the high-value dormant play lists with its kind


async def test_a_schedule_form_keeps_conditions_it_has_no_fields_for_and_the_offer_it_shows(web, db, members):
    await web.post("/console/segments/plays", data={"csrf": web.csrf})
    async with db.read() as s:
        row = (await s.execute(sa.select(Schedule).where(Schedule.name == "play-winback-90"))).scalar_one()
    page = await web.get(f"/console/schedules/{row.id}")
    shown = re.search(r'<textarea id="segment_more"[^>]*>([^<]*)</textarea>', page.text).group(1)
    assert json.loads(shown.replace("&#34;", '"')) == {"not": {"rfm": {"m": [4, 5]}}}
    updated_at = re.search(r'name="updated_at" value="([^"]+)"', page.text).group(1)
    offer = {name: re.search(rf'name="{name}"[^>]*value="([^"]*)"', page.text).group(1)
             for name in ("offer_valid_days", "offer_remind_days")}
    assert re.search(r'<option value="coffee"[^>]*selected', page.text) and offer["offer_valid_days"] == "14"
    saved = await web.post(f"/console/schedules/{row.id}", data={
        "csrf": web.csrf, "updated_at": updated_at, "name": row.name, "timing": "daily", "daily_time": "11:00",
        "member_local_time": "on", "timezone": row.timezone, "tiers": ["green"], "param_inactive_days": "90",
        "segment_more": '{"not": {"rfm": {"m": [4, 5]}}}', "frequency_cap_days": "90", "offer_reward": "coffee",
        **offer,
        **{f"template_{lang}": text for lang, text in row.templates.items()}})
    assert saved.status_code == 303, saved.text[-1500:]
    async with db.read() as s:
        after = (await s.execute(sa.select(Schedule).where(Schedule.id == row.id))).scalar_one()
    assert after.segment == {"not": {"rfm": {"m": [4, 5]}}, "tiers": ["green"]}
    assert after.params["offer"]["reward"] == "coffee" and after.daily_time == "11:00"
    refused = await web.post(f"/console/schedules/{row.id}", data={
        "csrf": web.csrf, "updated_at": after.updated_at.isoformat(), "name": row.name, "timing": "daily",
        "daily_time": "11:00", "timezone": row.timezone, "segment_more": '{"lifecycle": "dormant"}',
        **{f"template_{lang}": text for lang, text in row.templates.items()}})
    assert refused.status_code == 422 and "must be a non-empty list" in refused.text


async def test_a_lifecycle_change_schedule_is_made_in_the_console(web, db, members):
    page = await web.get("/console/schedules/new", params={"kind": "lifecycle_change"})
    assert 'value="None"' not in page.text and 'name="param_to" value="dormant"' in page.text
    made = await web.post("/console/schedules/new", data={
        "csrf": web.csrf, "kind": "lifecycle_change", "name": "wake-up", "timezone": "Europe/Amsterdam",
        "param_to": "dormant", "param_from": "", "template_en": "We miss you, {{ name }}!"})
    assert made.status_code == 303, made.text[-1500:]
    refused = await web.post("/console/schedules/new", data={
        "csrf": web.csrf, "kind": "lifecycle_change", "name": "bad", "timezone": "Europe/Amsterdam",
        "param_to": "sleepy", "template_en": "Hi"})
    assert refused.status_code == 422 and "must be one of new, active" in refused.text
    async with db.read() as s:
        row = (await s.execute(sa.select(Schedule).where(Schedule.name == "wake-up"))).scalar_one()
    assert row.params["to"] == "dormant" and not row.params.get("from")
