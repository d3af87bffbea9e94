"""The console's page for pending points, referrals and the expiry mode: a save is a new version the running
services follow; a wrong field is named beside it, in the operator's language, and nothing is saved."""

from __future__ import annotations

import httpx
import pytest

from loyalbot.console.accounts import add_operator
from loyalbot.console.api import HttpLimits, create_app
from loyalbot.storage.throttle import SqlThrottle
from tests.console.test_programme_console import field_errors, versions
from tests.console.test_signin import PASSWORD, csrf_of, sign_in


@pytest.fixture
async def console(db, loyalty):
    await add_operator(db, "mia", PASSWORD, role="operator")
    app = create_app(db, loyalty, throttle=SqlThrottle(db), limits=HttpLimits(auth_failures=50))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app, client=("198.51.100.9", 4000)),
                                 base_url="http://console") as web:
        await sign_in(web)
        yield web


def form(csrf: str, **fields: str) -> dict[str, str]:
    return {"csrf": csrf, "based_on": "1", "return_window_days": "14", "tier_spend_waits": "on",
            "referrals_enabled": "on", "referrer_points": "120", "friend_points": "60",
            "referral_min_purchase": "15", "referral_milestones": "3=300, 5=tote", "expiry_mode": "yearly_reset",
            "extend_months": "12", "reset_month_day": "04-01", "carry_over_pct": "20", **fields}


async def test_an_operator_sets_the_return_window_referrals_and_a_yearly_reset(console, loyalty):
    page = await console.get("/console/programme/points")
    assert page.status_code == 200 and 'name="return_window_days"' in page.text
    saved = await console.post("/console/programme/points", data=form(csrf_of(page)))
    assert saved.status_code == 303
    programme = loyalty.programme
    assert programme.pending.return_window_days == 14 and programme.pending.tier_spend_waits
    assert (programme.referrals.referrer_points, programme.referrals.friend_points) == (120, 60)
    assert [(m.friends, m.points, m.reward) for m in programme.referrals.milestones] == [(3, 300, None),
                                                                                         (5, None, "tote")]
    assert (programme.expiry.mode, programme.expiry.reset_month_day, programme.expiry.carry_over_pct) == (
        "yearly_reset", "04-01", 20)
    history = (await console.get("/console/programme/history")).text
    assert "pending.return_window_days: 0 → 14" in history
    again = await console.get("/console/programme/points")
    assert 'value="3=300, 5=tote"' in again.text


@pytest.mark.parametrize(("fields", "errors"), [
    ({"reset_month_day": "02-30"}, {"reset_month_day": "02-30 is not a day of every year."}),
    ({"reset_month_day": "1 April"}, {"reset_month_day": "Give the day as MM-DD, e.g. 01-01."}),
    ({"referral_milestones": "three friends"},
     {"referral_milestones": "Write each milestone as friends=points or friends=reward code, separated by commas."}),
    ({"referral_milestones": "3=yacht"}, {"referral_milestones": "No such reward."}),
    ({"referral_milestones": "3=10, 3=20"}, {"referral_milestones": "Two milestones for the same number of friends."}),
    ({"expiry_mode": "monthly"}, {"expiry_mode": "Choose one of the options."}),
    ({"return_window_days": "-1", "carry_over_pct": "150"},
     {"return_window_days": "Must be at least 0.", "carry_over_pct": "Must be at most 100."}),
])
async def test_wrong_fields_are_named_and_nothing_is_saved(console, db, loyalty, fields, errors):
    token = csrf_of(await console.get("/console/programme/points"))
    refused = await console.post("/console/programme/points", data=form(token, **fields))
    assert refused.status_code == 422 and field_errors(refused) == errors
    assert await versions(db) == 1 and loyalty.programme.pending.return_window_days == 0


async def test_field_messages_come_in_the_operators_language(console):
    page = await console.get("/console/programme/points")
    csrf = csrf_of(page)
    await console.post("/console/language", data={"language": "zh_Hans", "csrf": csrf, "next": "/console"})
    refused = await console.post("/console/programme/points", data=form(csrf, reset_month_day="1 April"))
    assert field_errors(refused) == {"reset_month_day": "请按 MM-DD 填写日期，例如 01-01。"}
