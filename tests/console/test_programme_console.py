"""The programme in the console: tiers, rules and rewards edited through forms, each save a version with its
author and changes; field messages in the operator's language; no lost update; refusals change nothing."""

from __future__ import annotations

import html
import io
import re

import httpx
import pytest
import sqlalchemy as sa
from PIL import Image

from loyalbot.console.accounts import add_operator
from loyalbot.console.api import HttpLimits, create_app
from loyalbot.loyalty import Loyalty, load_programme
from loyalbot.storage.models import AuditLog, ProgrammeVersion, Reward
from loyalbot.storage.throttle import SqlThrottle
from tests.console.test_signin import PASSWORD, csrf_of, sign_in


@pytest.fixture
async def console(db, loyalty):
    await add_operator(db, "mia", PASSWORD, role="operator")
    app = create_app(db, loyalty, throttle=SqlThrottle(db), limits=HttpLimits(auth_failures=50))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app, client=("198.51.100.9", 4000)),
                                 base_url="http://console") as web:
        await sign_in(web)
        yield web


def png(size=(40, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, "orange").save(buffer, "PNG")
    return buffer.getvalue()


def field_errors(page: httpx.Response) -> dict[str, str]:
    return {name: html.unescape(text)
            for name, text in re.findall(r'class="field-error" id="e-([^"]+)">([^<]+)<', page.text)}


def cake(csrf: str, based_on: int = 1, **fields: str) -> dict[str, str]:
    return {"csrf": csrf, "based_on": str(based_on), "code": "cake", "title_en": "Cheesecake slice",
            "title_zh_Hans": "芝士蛋糕一块", "title_zh_Hant": "起司蛋糕一塊", "description_en": "Baked today.",
            "description_zh_Hans": "当天烘焙。", "description_zh_Hant": "當天烘焙。", "cost": "180", "stock": "40",
            "per_member_limit": "2", "validity_days": "14", "min_tier": "silver",
            "active_from": "2026-12-01T08:00", "active_until": "2027-01-31T20:00", "active": "on", **fields}


async def versions(db) -> int:
    async with db.read() as s:
        return int((await s.execute(sa.select(sa.func.count()).select_from(ProgrammeVersion))).scalar_one())


async def test_an_operator_adds_a_reward_in_three_languages_with_a_picture(console, db, loyalty):
    token = csrf_of(await console.get("/console/programme/rewards/new"))
    saved = await console.post("/console/programme/rewards/new", data=cake(token),
                               files={"image": ("cake.png", png(), "image/png")})
    assert saved.status_code == 303 and saved.headers["location"] == "/console/programme?saved=2"
    page = await console.get(saved.headers["location"])
    assert "Saved as version 2" in page.text and "Cheesecake slice" in page.text
    async with db.read() as s:
        row = (await s.execute(sa.select(Reward).where(Reward.code == "cake"))).scalar_one()
        audit = (await s.execute(sa.select(AuditLog).where(AuditLog.action == "programme_edit"))).scalar_one()
    assert (row.cost, row.stock, row.per_member_limit, row.validity_days, row.min_tier) == (180, 40, 2, 14, "silver")
    assert row.titles == {"en": "Cheesecake slice", "zh_Hans": "芝士蛋糕一块", "zh_Hant": "起司蛋糕一塊"}
    assert row.active_from.isoformat() == "2026-12-01T07:00:00+00:00"  # 08:00 in Amsterdam
    assert audit.actor == "console:mia" and audit.details["changes"] == ["rewards.cake: added"]
    picture = re.search(r'src="(/console/programme/images/[0-9a-f]{64})"', page.text).group(1)
    served = await console.get(picture)
    assert served.status_code == 200 and served.headers["content-type"] == "image/png" and served.content == png()
    history = await console.get("/console/programme/history")
    assert "console:mia" in history.text and "rewards.cake: added" in history.text
    toml = await console.get("/console/programme/versions/2")
    assert 'code = &#34;cake&#34;' in toml.text


async def test_a_bad_cost_is_named_beside_its_field_and_nothing_is_saved(console, db):
    token = csrf_of(await console.get("/console/programme/rewards/new"))
    refused = await console.post("/console/programme/rewards/new",
                                 data=cake(token, cost="-5", validity_days="lots", title_en=""))
    assert refused.status_code == 422
    assert field_errors(refused) == {"cost": "Must be more than 0.", "validity_days": "Must be a whole number.",
                                     "title_en": "A title in the programme's default language is required."}
    assert 'aria-describedby="e-cost"' in refused.text and 'value="-5"' in refused.text
    assert await versions(db) == 1
    await console.post("/console/language", data={"language": "zh_Hans", "csrf": token, "next": "/console"})
    chinese = await console.post("/console/programme/rewards/new", data=cake(token, cost="0"))
    assert chinese.status_code == 422 and field_errors(chinese) == {"cost": "必须大于 0。"}


async def test_a_save_based_on_an_older_version_is_refused(console, db, loyalty):
    token = csrf_of(await console.get("/console/programme/rewards/new"))
    other = Loyalty(db, load_programme())  # someone else saves meanwhile
    await other.sync_programme()
    await other.save_programme(other.programme.model_copy(update={"earning": other.programme.earning.model_copy(
        update={"welcome_bonus": 25})}), author="console:ada", based_on=1)
    late = await console.post("/console/programme/rewards/new", data=cake(token, based_on=1))
    assert late.status_code == 409 and "Someone saved the programme after you opened this form" in late.text
    assert await versions(db) == 2
    async with db.read() as s:
        assert (await s.execute(sa.select(Reward).where(Reward.code == "cake"))).scalar_one_or_none() is None


async def test_a_post_without_its_csrf_token_changes_nothing(console, db):
    await console.get("/console/programme")
    for path, data in (("/console/programme/rewards/new", cake("")), ("/console/programme/rules", {}),
                       ("/console/programme/tiers/gold", {"threshold": "5"})):
        forged = await console.post(path, data={k: v for k, v in data.items() if k != "csrf"})
        assert forged.status_code == 400, path
    assert await versions(db) == 1


async def test_hostile_input_is_refused_with_a_reason(console, db):
    token = csrf_of(await console.get("/console/programme/rewards/new"))
    cases = [({"title_zh_Hans": "蛋糕\x07"}, "title_zh_Hans", "Control characters are not allowed."),
             ({"min_tier": "platinum"}, "min_tier", "No such tier."),
             ({"code": "Cake!"}, "code", "Use lower-case letters a–z, digits, _ or -, starting with a letter."),
             ({"code": "coffee"}, "code", "Another reward has this code."),
             ({"title_en": "x" * 5000}, "title_en", "At most 64 characters."),
             ({"active_until": "2026-11-01T08:00"}, "active_until", "The end must be after the start."),
             ({"stock": "-3"}, "stock", "Must be at least 0.")]
    for fields, name, text in cases:
        refused = await console.post("/console/programme/rewards/new", data=cake(token, **fields))
        assert refused.status_code == 422 and field_errors(refused).get(name) == text, (fields, field_errors(refused))
    fake = await console.post("/console/programme/rewards/new", data=cake(token),
                              files={"image": ("cake.png", b"<svg onload=alert(1)></svg>", "image/png")})
    assert fake.status_code == 422 and "PNG, JPEG or WebP" in field_errors(fake)["image"]
    assert (await console.get("/console/programme/rewards/nope")).status_code == 404
    assert (await console.get("/console/programme/images/" + "0" * 64)).status_code == 404
    assert (await console.get("/console/programme/versions/99")).status_code == 404
    assert await versions(db) == 1


async def test_editing_a_tier_and_the_rules(console, db, loyalty):
    page = await console.get("/console/programme/tiers/gold")
    token = csrf_of(page)
    form = {"csrf": token, "based_on": "1", "threshold": "1000", "multiplier": "1.5", "name_en": "Gold",
            "name_zh_Hans": "金卡", "name_zh_Hant": "金卡", "benefits_en": "Free upsizes, a birthday cake.",
            "benefits_zh_Hans": "免费升杯，生日蛋糕。", "benefits_zh_Hant": "免費升杯，生日蛋糕。"}
    overlap = await console.post("/console/programme/tiers/gold", data={**form, "threshold": "100"})
    assert overlap.status_code == 422 and field_errors(overlap) == {
        "threshold": "Must be above the threshold of the tier below (300)."}
    saved = await console.post("/console/programme/tiers/gold", data=form)
    assert saved.status_code == 303
    assert loyalty.programme.tier("gold").benefits["zh_Hant"] == "免費升杯，生日蛋糕。"
    rules = await console.post("/console/programme/rules", data={
        "csrf": token, "based_on": "2", "points_per_unit": "2", "birthday_month_multiplier": "0.5",
        "welcome_bonus": "10", "expiry_months": "0", "window_months": "12"})
    assert rules.status_code == 422 and field_errors(rules) == {"birthday_month_multiplier": "Must be at least 1.",
                                                               "expiry_months": "Must be at least 1."}
    ok = await console.post("/console/programme/rules", data={
        "csrf": token, "based_on": "2", "points_per_unit": "2", "birthday_month_multiplier": "2",
        "welcome_bonus": "10", "expiry_months": "6", "window_months": "12"})
    assert ok.status_code == 303 and loyalty.programme.earning.points_per_unit == 2
    history = (await console.get("/console/programme/history")).text
    assert "earning.points_per_unit: 1 → 2" in history and "expiry.months: 12 → 6" in history


async def test_a_visitor_without_a_session_is_sent_to_sign_in(db, loyalty):
    app = create_app(db, loyalty, throttle=SqlThrottle(db))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://console") as web:
        assert (await web.get("/console/programme")).status_code == 303
        assert (await web.post("/console/programme/rules", data={"csrf": "x"})).status_code == 303
    assert await versions(db) == 1


async def test_an_operator_edits_a_tiers_benefits_and_a_wrong_gift_is_named(console, db, loyalty):
    page = await console.get("/console/programme/tiers/silver")
    assert 'name="discount_pct" type="text" value="5"' in page.text
    form = {"csrf": csrf_of(page), "based_on": "1", "threshold": "300", "multiplier": "1.25", "name_en": "Silver",
            "discount_pct": "7.5", "birthday_gift": "cake", "support_priority": "1", "points_validity_months": "18"}
    wrong = await console.post("/console/programme/tiers/silver", data=form)
    assert wrong.status_code == 422 and field_errors(wrong) == {"birthday_gift": "No such reward."}
    bad = await console.post("/console/programme/tiers/silver", data={**form, "birthday_gift": "coffee",
                                                                       "discount_pct": "120"})
    assert bad.status_code == 422 and field_errors(bad) == {"discount_pct": "Must be less than 100."}
    assert await versions(db) == 1
    saved = await console.post("/console/programme/tiers/silver", data={**form, "birthday_gift": "coffee"})
    assert saved.status_code == 303
    silver = loyalty.programme.tier("silver")
    assert (str(silver.discount_pct), silver.birthday_gift, silver.support_priority,
            silver.points_validity_months) == ("7.5", "coffee", 1, 18)


async def test_an_operator_adds_a_bonus_campaign_and_each_wrong_field_is_named(console, db, loyalty):
    page = await console.get("/console/programme/bonuses/new")
    token = csrf_of(page)
    form = {"csrf": token, "based_on": "1", "code": "spend-500", "kind": "threshold", "threshold": "500",
            "period": "", "points": "50", "stores": "centraal", "tiers": "platinum", "title_zh_Hans": "满 500 送 50"}
    wrong = await console.post("/console/programme/bonuses/new", data=form)
    assert wrong.status_code == 422
    assert field_errors(wrong) == {"period": "Required for this kind of bonus."}
    wrong = await console.post("/console/programme/bonuses/new", data={**form, "period": "month"})
    assert field_errors(wrong) == {"stores": "Leave this empty for this kind of bonus."}
    wrong = await console.post("/console/programme/bonuses/new", data={**form, "period": "month", "stores": ""})
    assert field_errors(wrong) == {"title_en": "A title in the programme's default language is required."}
    wrong = await console.post("/console/programme/bonuses/new", data={**form, "period": "month", "stores": "",
                                                                        "title_en": "Spend 500, get 50"})
    assert field_errors(wrong) == {"tiers": "No such tier."}
    assert await versions(db) == 1
    saved = await console.post("/console/programme/bonuses/new", data={
        **form, "period": "month", "stores": "", "tiers": "silver, gold", "title_en": "Spend 500, get 50"})
    assert saved.status_code == 303
    [bonus] = loyalty.programme.bonuses
    assert (bonus.kind, bonus.tiers, bonus.points, bonus.period) == ("threshold", ("silver", "gold"), 50, "month")
    overview = await console.get("/console/programme")
    assert 'data-bonus="spend-500"' in overview.text and "Spend 500, get 50" in overview.text
    weekend = await console.post("/console/programme/bonuses/spend-500", data={
        "csrf": token, "based_on": "2", "kind": "multiplier", "factor": "2", "starts": "2026-12-05T00:00",
        "ends": "2026-12-04T00:00", "title_en": "Double weekend"})
    assert field_errors(weekend) == {"ends": "The end must be after the start."}


async def test_an_operator_edits_a_stamp_card(console, db, loyalty):
    page = await console.get("/console/programme/stamp-cards/coffee")
    assert 'value="10"' in page.text
    form = {"csrf": csrf_of(page), "based_on": "1", "stamps_needed": "8", "skus": "", "categories": "",
            "reward": "cake", "title_en": "Coffee card", "title_zh_Hans": "咖啡集章卡"}
    wrong = await console.post("/console/programme/stamp-cards/coffee", data=form)
    assert wrong.status_code == 422 and field_errors(wrong) == {"skus": "Give SKUs or categories (or both)."}
    wrong = await console.post("/console/programme/stamp-cards/coffee", data={**form, "categories": "coffee"})
    assert field_errors(wrong) == {"reward": "No such reward."}
    saved = await console.post("/console/programme/stamp-cards/coffee", data={
        **form, "categories": "coffee, tea", "reward": "pastry"})
    assert saved.status_code == 303
    [card] = loyalty.programme.stamp_cards
    assert (card.stamps_needed, card.categories, card.reward) == (8, ("coffee", "tea"), "pastry")
    assert (await console.get("/console/programme/stamp-cards/tea")).status_code == 404
