"""The operator's dashboard and metrics: right figures, behind a password, no personal data."""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest

from loyalbot.console.api import create_app
from loyalbot.console.dashboard import build_dashboard
from loyalbot.storage import utcnow


@pytest.fixture
async def programme_in_use(loyalty):
    now = utcnow()
    ann = await loyalty.register_member(telegram_id=1, first_name="Ann", phone="+31600000001", terms_accepted=True,
                                        language="zh_Hans", now=now - timedelta(days=3))
    ben = await loyalty.register_member(telegram_id=2, first_name="Ben", terms_accepted=True, now=now)
    await loyalty.award_purchase(ann.id, external_id="p1", amount="400", now=now)
    coffee = next(i.reward for i in await loyalty.catalogue(ann.id, now=now) if i.reward.code == "coffee")
    await loyalty.redeem_reward(ann.id, coffee.id, request_id="r1", now=now)
    survey = await loyalty.open_survey(ben.id, "csat", trigger="coupon", now=now)
    await loyalty.record_survey_answer(ben.id, survey.id, 5, now=now)
    return ann, ben


async def test_the_dashboard_adds_up(loyalty, programme_in_use):
    board = await build_dashboard(loyalty)
    assert board.members["total"] == 2 and board.members["by_tier"] == {"silver": 1, "green": 1}
    assert board.members["by_language"] == {"zh_Hans": 1, "en": 1}
    assert board.points["outstanding"] == 250 and board.points["earn"] == 400 and board.points["redeem"] == -150
    assert board.coupons == {"issued": 1, "used": 0, "active": 1}
    assert board.satisfaction["csat"] == {"value": 100.0, "answers": 1}


async def test_the_dashboard_page_and_metrics_show_aggregates_only(db, loyalty, programme_in_use):
    app = create_app(db, loyalty, console_password="s3cret-pass")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://console") as web:
        assert (await web.get("/console")).status_code == 303  # to the sign-in page
        signed = await web.post("/console/signin", data={"name": "operator", "password": "s3cret-pass"})
        assert signed.status_code == 303
        page = await web.get("/console")
        assert page.status_code == 200 and "Lumen" in page.text and "250" in page.text
        metrics = (await web.get("/metrics")).text
        assert "loyalbot_points_outstanding 250" in metrics and 'loyalbot_members_by_tier{tier="silver"} 1' in metrics
        for personal in ("Ann", "+31600000001"):
            assert personal not in page.text and personal not in metrics
