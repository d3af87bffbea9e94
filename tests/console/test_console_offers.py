"""Offers and frequency caps in the console: the schedule form's offer and when-capped choice, the programme's caps."""

from __future__ import annotations

import html

from loyalbot.scheduler.editing import get
from tests.console.test_console_schedules import form, members, schedules, web  # noqa: F401 - fixtures
from tests.console.test_programme_console import console, csrf_of, field_errors  # noqa: F401 - fixtures


async def test_a_schedule_gets_an_offer_and_a_when_capped_choice_from_the_form(web, db, loyalty, members):  # noqa: F811
    page = await web.get("/console/schedules/new?kind=broadcast")
    assert 'name="offer_reward"' in page.text and "A coffee of your choice" in page.text
    assert 'name="when_capped"' in page.text
    made = await web.post("/console/schedules/new", data=form(
        web, offer_reward="coffee", offer_valid_days="5", offer_remind_days="2", when_capped="delay",
        template_en="Hello {{ name }}, your {{ offer.title }}: {{ offer.code }}"))
    assert made.status_code == 303, made.text[-2000:]
    [row] = await schedules(db)
    assert row.params == {"offer": {"reward": "coffee", "valid_days": 5, "remind_days_before": 2},
                          "when_capped": "delay"}
    shown = await web.get(made.headers["location"])
    assert '<option value="coffee" selected>' in shown.text and '<option value="delay" selected>' in shown.text
    stamp = shown.text.split('name="updated_at" value="')[1].split('"')[0]
    cleared = await web.post(f"/console/schedules/{row.id}", data=form(
        web, updated_at=stamp, offer_reward="", when_capped="skip"))
    assert cleared.status_code == 303
    assert (await get(loyalty, row.id)).params == {"when_capped": "skip"}


async def test_a_bad_offer_is_named_beside_its_field(web, db, members):  # noqa: F811
    refused = await web.post("/console/schedules/new", data=form(
        web, offer_reward="coffee", offer_valid_days="3", offer_remind_days="3"))
    assert refused.status_code == 422 and 'id="offer-error"' in refused.text
    assert "remind_days_before" in html.unescape(refused.text)
    unknown = await web.post("/console/schedules/new", data=form(web, offer_reward="caviar"))
    assert unknown.status_code == 422 and "not in the reward catalogue" in html.unescape(unknown.text)
    assert await schedules(db) == []


async def test_the_programme_page_shows_and_edits_the_caps(console, db, loyalty):  # noqa: F811
    index = await console.get("/console/programme")
    assert "Marketing messages per member per day" in index.text and "no cap" in index.text
    token = csrf_of(await console.get("/console/programme/rules"))
    rules = {"csrf": token, "based_on": "1", "points_per_unit": "1", "birthday_month_multiplier": "2",
             "welcome_bonus": "0", "expiry_months": "12", "window_months": "12"}
    refused = await console.post("/console/programme/rules", data={**rules, "max_per_day": "3", "max_per_week": "2"})
    assert refused.status_code == 422 and field_errors(refused) == {"max_per_week": "Must be at least the daily cap (3)."}
    saved = await console.post("/console/programme/rules", data={**rules, "max_per_day": "1", "max_per_week": "3"})
    assert saved.status_code == 303
    assert (loyalty.programme.campaigns.max_per_day, loyalty.programme.campaigns.max_per_week) == (1, 3)
    index = await console.get("/console/programme")
    assert "no cap" not in index.text
