"""The dashboard in Chromium: the charts draw from the page's own files, the range changes, a bad range is
refused in place, a chart's numbers download as CSV; in English, traditional Chinese and at phone width."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import urlsplit

import pytest
from playwright.async_api import expect

from loyalbot.console.dashboard_stats import CHART_KEYS
from loyalbot.storage import utcnow
from tests.browser.console_site import browser_page, console_site, shot, sign_in

pytestmark = pytest.mark.browser


async def two_months(db, loyalty) -> None:
    now = utcnow()
    for n in range(12):
        joined = now - timedelta(days=60 - 5 * n, hours=3)
        member = await loyalty.register_member(telegram_id=100 + n, first_name=f"Member{n}", terms_accepted=True,
                                               now=joined)
        for visit in range(n % 4 + 1):
            moment = joined + timedelta(days=2 * visit + 1)
            if moment < now:
                await loyalty.award_purchase(member.id, external_id=f"b{n}-{visit}", amount=str(20 + 40 * visit),
                                             occurred_at=moment, now=moment)
        survey = await loyalty.open_survey(member.id, "csat" if n % 2 else "nps", trigger="coupon", now=joined)
        await loyalty.record_survey_answer(member.id, survey.id, 4 + n % 2 if n % 2 else 5 + n % 6, now=joined)


async def charts_drawn(page) -> int:
    return await page.evaluate(
        "() => [...document.querySelectorAll('canvas[data-chart]')].filter((c) => Chart.getChart(c)).length")


async def test_an_operator_reads_the_charts_changes_the_range_and_downloads_a_csv(tmp_path, chromium):
    async with console_site(tmp_path, prepare=two_months) as site:
        async with browser_page(chromium) as page:
            elsewhere: list[str] = []
            page.on("request", lambda request: elsewhere.append(request.url)
                    if urlsplit(request.url).hostname not in ("127.0.0.1", "localhost") else None)
            await sign_in(page, site.base)
            await expect(page.get_by_role("heading", name="Members over time")).to_be_visible()
            assert await charts_drawn(page) == len(CHART_KEYS)
            await expect(page.get_by_text("12 members now")).to_be_visible()
            await shot(page, "dashboard")
            await page.get_by_role("link", name="90 days").click()
            await page.wait_for_url("**/console?days=90")
            assert await charts_drawn(page) == len(CHART_KEYS)
            await page.get_by_role("heading", name="Repeat-purchase rate").scroll_into_view_if_needed()
            card = page.get_by_test_id("chart-repeat")
            await card.get_by_text("Show the numbers").click()
            await expect(card.get_by_role("table")).to_be_visible()
            await shot(page, "dashboard-90-days-table")
            await page.get_by_label("From", exact=True).fill("2026-01-10")
            await page.get_by_label("To", exact=True).fill("2026-01-01")
            await page.get_by_role("button", name="Show").click()
            await expect(page.locator("#range-to-error")).to_have_text("The end comes before the start.")
            await expect(page.get_by_label("To", exact=True)).to_have_attribute("aria-describedby", "range-to-error")
            await shot(page, "dashboard-bad-range")
            await page.get_by_role("link", name="30 days").click()
            async with page.expect_download() as waiting:
                await page.get_by_test_id("chart-points").get_by_role("link", name="Download CSV").click()
            download = await waiting.value
            saved = tmp_path / download.suggested_filename
            await download.save_as(saved)
            lines = saved.read_text().splitlines()
            assert download.suggested_filename.startswith("loyalbot-points-")
            assert lines[0] == "day,issued,redeemed,expired,outstanding" and len(lines) == 31
            assert "Member" not in saved.read_text()
            await page.get_by_label("Language").select_option("zh_Hant")
            await page.get_by_role("button", name="Change").click()
            await expect(page.get_by_role("heading", name="會員趨勢")).to_be_visible()
            assert await charts_drawn(page) == len(CHART_KEYS)
            await shot(page, "dashboard-zh_Hant")
            assert not page.errors and not elsewhere


async def test_the_dashboard_at_phone_width(tmp_path, chromium):
    async with console_site(tmp_path, prepare=two_months) as site:
        async with browser_page(chromium, viewport={"width": 390, "height": 844}) as page:
            await sign_in(page, site.base)
            await expect(page.get_by_role("heading", name="Points issued, redeemed and expired")).to_be_visible()
            assert await charts_drawn(page) == len(CHART_KEYS)
            wide = await page.evaluate("() => document.documentElement.scrollWidth")
            assert wide <= 390
            await shot(page, "dashboard-phone")
            assert not page.errors
