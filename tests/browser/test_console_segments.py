"""Segments in the console, in Chromium: a live audience count while the definition is typed, a mistake named in
place, a saved segment listed with its count, members scored with the button, plays installed paused."""

from __future__ import annotations

import pytest
from playwright.async_api import expect

from tests.browser.console_site import browser_page, console_site, shot, sign_in

pytestmark = pytest.mark.browser


async def prepare(db, loyalty) -> None:
    await loyalty.register_member(telegram_id=31, first_name="Ann", terms_accepted=True, marketing_consent=True)
    await loyalty.register_member(telegram_id=32, first_name="Ben", terms_accepted=True)


async def test_an_operator_saves_a_segment_with_a_live_count_and_scores_members(tmp_path, chromium):
    async with console_site(tmp_path, prepare) as site:
        async with browser_page(chromium) as page:
            await sign_in(page, site.base)
            await page.get_by_role("link", name="Segments").click()
            await expect(page.get_by_role("heading", name="Segments", exact=True)).to_be_visible()
            await page.get_by_role("button", name="Score members now").click()
            await expect(page.get_by_role("status").filter(has_text="Scored 2 members")).to_be_visible()
            await shot(page, "segments-scored")

            await page.get_by_role("link", name="New segment").click()
            await page.get_by_label("Name", exact=True).fill("consenting")
            definition = page.get_by_label("Definition (JSON)")
            await definition.fill('{"lifecycle": ["sleepy"]}')
            await expect(page.locator("#audience")).to_contain_text("'sleepy' is not one of")
            await shot(page, "segment-problem")
            await definition.fill('{"marketing_consent": true, "lifecycle": ["new"]}')
            await expect(page.locator("#audience")).to_contain_text("1 member in this segment")
            await page.get_by_role("button", name="Save segment").click()
            await expect(page.get_by_role("status").filter(has_text="Segment saved.")).to_be_visible()
            await expect(page.get_by_role("cell", name="1 member in this segment")).to_be_visible()
            await shot(page, "segments-saved")

            await page.get_by_role("button", name="Install the plays").click()
            await expect(page.get_by_role("status").filter(has_text="Plays installed")).to_be_visible()
            await expect(page.locator("li").filter(has_text="play-birthday")).to_contain_text("paused")
            assert not page.errors
