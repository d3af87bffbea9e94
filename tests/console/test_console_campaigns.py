"""A campaign's results page: each variant and the control group with their intervals, in the operator's language."""

from __future__ import annotations

import html
import json
import re
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import sqlalchemy as sa

from loyalbot.console.accounts import add_operator
from loyalbot.console.api import create_app
from loyalbot.scheduler import editing
from loyalbot.scheduler.planner import Planner
from loyalbot.storage.models import CampaignHoldout, Operator, Outbox, Schedule
from loyalbot.storage.throttle import SqlThrottle

PASSWORD = "correct horse battery"
SENT = datetime(2030, 3, 1, 10, 0, tzinfo=UTC)
VARIANTS = [{"name": "A", "weight": 1, "templates": {"en": "Spring A, {{ name }}"}},
            {"name": "B", "weight": 1, "templates": {"en": "Spring B, {{ name }}"}}]


@pytest.fixture
async def campaign(db, loyalty) -> Schedule:
    for n in range(24):
        await loyalty.register_member(telegram_id=500 + n, first_name=f"M{n}", terms_accepted=True,
                                      marketing_consent=True, now=SENT - timedelta(days=30))
    row = await editing.add(loyalty, Schedule(name="Spring", kind="broadcast", one_off_at=SENT,
                                              templates={"en": "Spring, {{ name }}"},
                                              params={"holdout_pct": 25, "variants": VARIANTS}),
                            actor="test", now=SENT - timedelta(days=1))
    await Planner(loyalty).run(row, now=SENT)
    async with db.transaction() as tx:
        await tx.execute(sa.update(Outbox).where(Outbox.schedule_id == row.id).values(status="sent", sent_at=SENT))
    async with db.read() as s:
        members = list((await s.execute(sa.select(Outbox.member_id).where(Outbox.schedule_id == row.id)
                                        .order_by(Outbox.id))).scalars())
    for member in members[:4]:
        await loyalty.award_purchase(member, external_id=f"p{member}", amount="30.00",
                                     occurred_at=SENT + timedelta(days=1), now=SENT + timedelta(days=1))
    return row


async def page(db, loyalty, path: str, language: str) -> httpx.Response:
    await add_operator(db, "mia", PASSWORD, language=language)
    async with db.transaction() as tx:
        await tx.execute(sa.update(Operator).where(Operator.name == "mia").values(language=language))
    app = create_app(db, loyalty, throttle=SqlThrottle(db))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://console") as client:
        await client.post("/console/signin", data={"name": "mia", "password": PASSWORD})
        return await client.get(path)


async def test_the_results_page_shows_each_variant_the_control_group_and_the_lift(db, loyalty, campaign):
    listing = await page(db, loyalty, "/console/schedules", "en")
    assert f'href="/console/schedules/{campaign.id}/results"' in listing.text
    shown = await page(db, loyalty, f"/console/schedules/{campaign.id}/results", "en")
    assert shown.status_code == 200
    text = html.unescape(shown.text)
    assert "Variant A" in text and "Variant B" in text and "All variants" in text and "Control group" in text
    assert "within 7 days" in text and "120.00" in text  # four purchases of 30.00
    async with db.read() as s:
        held = (await s.execute(sa.select(sa.func.count()).select_from(CampaignHoldout))).scalar_one()
    sent = 24 - held
    assert f"{4 / sent:.1%}" in text  # all variants' conversion, e.g. 22.2%
    assert "points" in text  # the lift, in percentage points


@pytest.mark.parametrize(("language", "words"), [("zh_Hans", ("对照组", "版本 A", "转化率")),
                                                 ("zh_Hant", ("對照組", "版本 A", "轉換率"))])
async def test_the_results_page_speaks_the_operators_language(db, loyalty, campaign, language, words):
    shown = await page(db, loyalty, f"/console/schedules/{campaign.id}/results", language)
    assert shown.status_code == 200 and all(word in shown.text for word in words)


async def test_results_of_no_such_schedule_are_a_404(db, loyalty):
    shown = await page(db, loyalty, "/console/schedules/999/results", "en")
    assert shown.status_code == 404


async def test_saving_a_campaign_in_the_form_keeps_its_holdout_and_variants(db, loyalty, campaign):
    await add_operator(db, "mia", PASSWORD)
    app = create_app(db, loyalty, throttle=SqlThrottle(db))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://console") as client:
        await client.post("/console/signin", data={"name": "mia", "password": PASSWORD})
        shown = await client.get(f"/console/schedules/{campaign.id}")
        csrf = re.search(r'name="csrf" value="([^"]+)"', shown.text).group(1)
        stamp = re.search(r'name="updated_at" value="([^"]+)"', shown.text).group(1)
        saved = await client.post(f"/console/schedules/{campaign.id}", data={
            "csrf": csrf, "updated_at": html.unescape(stamp), "name": "Spring", "timing": "one_off",
            "one_off_at": "2030-03-01T10:00", "timezone": "UTC", "template_en": "Spring again, {{ name }}"})
        assert saved.status_code == 303, saved.text[-1500:]
    row = await editing.get(loyalty, campaign.id)
    assert row.templates["en"] == "Spring again, {{ name }}"
    assert row.params["holdout_pct"] == 25 and [v["name"] for v in row.params["variants"]] == ["A", "B"]


async def test_the_preview_says_how_many_would_be_held_out(db, loyalty):
    for n in range(20):
        await loyalty.register_member(telegram_id=700 + n, first_name=f"P{n}", terms_accepted=True,
                                      marketing_consent=True)
    row = await editing.add(loyalty, Schedule(name="Later", kind="broadcast", one_off_at=SENT,
                                              templates={"en": "Later, {{ name }}"}, params={"holdout_pct": 50}),
                            actor="test")
    shown = await page(db, loyalty, f"/console/schedules/{row.id}/preview", "en")
    text = html.unescape(shown.text)
    found = re.search(r"(\d+) would be held out as the campaign's control group", text)
    assert found is not None and 0 < int(found.group(1)) < 20


# --- campaign settings ----------------------------------------------------------------------------------


@pytest.fixture
async def settings_client(db, loyalty):
    await add_operator(db, "mia", PASSWORD)
    app = create_app(db, loyalty, throttle=SqlThrottle(db))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://console") as client:
        await client.post("/console/signin", data={"name": "mia", "password": PASSWORD})
        yield client


async def settings_form(client, schedule_id: int, **fields) -> dict[str, str]:
    shown = await client.get(f"/console/campaigns/{schedule_id}")
    assert shown.status_code == 200
    csrf = re.search(r'name="csrf" value="([^"]+)"', shown.text).group(1)
    stamp = html.unescape(re.search(r'name="updated_at" value="([^"]+)"', shown.text).group(1))
    return {"csrf": csrf, "updated_at": stamp, "metric": "conversion", **fields}


async def plain_schedule(loyalty) -> Schedule:
    await loyalty.register_member(telegram_id=801, first_name="Q", terms_accepted=True, marketing_consent=True)
    return await editing.add(loyalty, Schedule(name="Plain", kind="broadcast", one_off_at=SENT,
                                               templates={"en": "Plain, {{ name }}"}, params={"when_capped": "skip"}),
                             actor="test")


async def test_campaign_settings_are_saved_from_the_form_and_other_params_kept(db, loyalty, settings_client):
    row = await plain_schedule(loyalty)
    data = await settings_form(settings_client, row.id, holdout_pct="15", window_days="10", after_sends="100",
                               below_pct="5", variants=json.dumps(VARIANTS))
    saved = await settings_client.post(f"/console/campaigns/{row.id}", data=data)
    assert saved.status_code == 303, saved.text[-1500:]
    params = (await editing.get(loyalty, row.id)).params
    assert params == {"when_capped": "skip", "holdout_pct": 15, "window_days": 10, "variants": VARIANTS,
                      "stop_loss": {"after_sends": 100, "metric": "conversion", "below_pct": 5}}
    # Emptied again: the campaign settings go, the rest stays.
    cleared = await settings_client.post(f"/console/campaigns/{row.id}", data=await settings_form(
        settings_client, row.id))
    assert cleared.status_code == 303
    assert (await editing.get(loyalty, row.id)).params == {"when_capped": "skip"}


@pytest.mark.parametrize(("fields", "field", "words"), [
    ({"holdout_pct": "80"}, "holdout_pct", "a whole number from 0 to 50"),
    ({"variants": "[{name: A}"}, "variants", "the variants are JSON"),
    ({"variants": json.dumps(VARIANTS[:1])}, "variants", "2 to 4 variants"),
    ({"after_sends": "100"}, "below_pct", "needs both the number of messages and the threshold"),
])
async def test_bad_campaign_settings_are_named_and_nothing_is_saved(db, loyalty, settings_client, fields, field,
                                                                    words):
    row = await plain_schedule(loyalty)
    refused = await settings_client.post(f"/console/campaigns/{row.id}",
                                         data=await settings_form(settings_client, row.id, **fields))
    assert refused.status_code == 422
    assert f'id="{field}-error"' in refused.text and words in html.unescape(refused.text)
    assert (await editing.get(loyalty, row.id)).params == {"when_capped": "skip"}


async def test_campaign_settings_without_csrf_change_nothing(db, loyalty, settings_client):
    row = await plain_schedule(loyalty)
    data = await settings_form(settings_client, row.id, holdout_pct="10")
    del data["csrf"]
    refused = await settings_client.post(f"/console/campaigns/{row.id}", data=data)
    assert refused.status_code == 400
    assert (await editing.get(loyalty, row.id)).params == {"when_capped": "skip"}
