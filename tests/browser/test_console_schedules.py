"""Schedules in the console, in Chromium: create one with the live template preview, see a mistake named in
place, preview it as a member in three languages, test-send it to a staff chat, pause it; at phone width too."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from playwright.async_api import expect

from loyalbot.storage.models import Outbox
from tests.browser.console_site import browser_page, console_site, shot, sign_in

pytestmark = pytest.mark.browser
MEMBER: dict[str, str] = {}


async def prepare(db, loyalty) -> None:
    ann = await loyalty.register_member(telegram_id=21, first_name="Ann", terms_accepted=True, language="zh_Hans",
                                        marketing_consent=True)
    MEMBER["no"] = ann.member_no
    await loyalty.add_staff(901, "agent", name="Sam")


async def test_an_operator_creates_previews_and_test_sends_a_schedule(tmp_path, chromium):
    async with console_site(tmp_path, prepare) as site:
        async with browser_page(chromium) as page:
            await sign_in(page, site.base)
            await page.get_by_role("link", name="Schedules").click()
            await expect(page.get_by_role("heading", name="Schedules")).to_be_visible()
            await shot(page, "schedules-empty")
            await page.get_by_label("New schedule of kind").select_option("broadcast")
            await page.get_by_role("button", name="Create").click()
            await page.get_by_label("Name", exact=True).fill("Spring menu")
            await page.get_by_label("Runs").select_option("one_off")
            await page.get_by_label("Once at (UTC)").fill("2030-03-01T10:00")
            english = page.get_by_role("textbox", name="English")
            await english.fill("Hello {{ nickname }}")
            await expect(page.locator("#preview_en")).to_contain_text("unknown variable 'nickname'")
            await shot(page, "schedule-template-problem")
            await english.fill("Hello {{ name }}, the <b>spring menu</b> is here!")
            await expect(page.locator("#preview_en b")).to_have_text("spring menu")
            await page.get_by_role("textbox", name="简体中文").fill("{{ name }}，您好！春季菜单上线了。")
            await expect(page.locator("#preview_zh_Hans")).to_contain_text("春季菜单上线了")
            await expect(page.locator("#audience")).to_contain_text("1 member in this segment")
            await shot(page, "schedule-new")
            await page.get_by_role("button", name="Add schedule").click()
            await expect(page.get_by_role("status").filter(has_text="Schedule added")).to_be_visible()
            await shot(page, "schedule-saved")

            await page.get_by_role("link", name="Preview").click()
            await page.get_by_label("As member number").fill(MEMBER["no"])
            await page.get_by_role("button", name="Show").click()
            previews = page.locator("section.template")
            await expect(previews.get_by_text("Ann，您好！春季菜单上线了。")).to_be_visible()
            await expect(previews.get_by_text("Hello Ann, the spring menu is here!")).to_be_visible()
            await shot(page, "schedule-preview-as-member")

            await page.go_back()
            await page.go_back()
            await page.get_by_label("Test send: as member number").fill(MEMBER["no"])
            await page.get_by_label("to the chat of").select_option("901")
            await page.get_by_role("button", name="Send test").click()
            await expect(page.get_by_role("status").filter(has_text="Test message queued")).to_be_visible()
            await page.get_by_role("button", name="Pause").click()
            await expect(page.get_by_role("status").filter(has_text="Paused")).to_be_visible()
            await shot(page, "schedule-paused")
            assert not page.errors
        async with browser_page(chromium, viewport={"width": 390, "height": 844}) as phone:
            await sign_in(phone, site.base)
            await phone.goto(f"{site.base}/console/schedules")
            await expect(phone.get_by_role("link", name="Spring menu")).to_be_visible()
            await shot(phone, "schedules-phone")
            await phone.get_by_role("button", name="Menu").click()  # on a phone the header folds behind it
            await phone.get_by_label("Language").select_option("zh_Hant")
            await phone.get_by_role("button", name="Change").click()
            await expect(phone.get_by_role("heading", name="排程")).to_be_visible()
            await shot(phone, "schedules-phone-zh_Hant")
    db = site.db()
    try:
        async with db.read() as s:
            rows = (await s.execute(sa.select(Outbox.chat_id, Outbox.kind, Outbox.text))).all()
    finally:
        await db.dispose()
    assert [(r.chat_id, r.kind) for r in rows] == [(901, "test")] and "春季菜单" in rows[0].text
