"""The console in `loyalbot demo`, as the issue's walkthrough: the operator signs in with the password the demo
printed, sees charts of the demo's data, adds a reward in three languages that the member then sees in the
chat, creates a schedule, previews it as a member, test-sends it to a staff member's chat (Sam sees it on the
chat page), runs it, and the member receives it in the chat."""

from __future__ import annotations

import asyncio
import json
import re
import sqlite3
from pathlib import Path

import pytest
from playwright.async_api import async_playwright, expect

from loyalbot.chat.i18n import Translator
from tests.browser.conftest import CHROMIUM_ARGS
from tests.browser.console_site import shot
from tests.browser.test_console_programme import fill_cake, picture
from tests.browser.test_demo_page import WAIT, bubble_says, press, reply_button, say

pytestmark = pytest.mark.browser


async def member_number(store: Path, telegram_id: int) -> str:
    """The member's number, once the demo's store shows the registration (the reply may come first)."""
    for _ in range(100):
        with sqlite3.connect(store) as db:
            found = db.execute("SELECT member_no FROM members WHERE telegram_id = ?", (telegram_id,)).fetchone()
        if found:
            return str(found[0])
        await asyncio.sleep(0.2)
    raise AssertionError(f"no member {telegram_id} in {store}")


async def test_the_operator_walkthrough_in_the_demo(demo_process, chromium, tmp_path):
    demo_process.start()
    info = json.loads((tmp_path / "loyalbot-demo.console.json").read_text())
    assert info["password"] in demo_process.log()  # the demo printed it
    console = info["console"].removesuffix("/console")
    en = Translator("en")
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            chat = await (await browser.new_context()).new_page()
            await chat.goto(demo_process.url)
            await chat.get_by_test_id("identity-picker").select_option("1001")  # Ann, English
            await say(chat, "/start")
            await press(chat, "English")
            await press(chat, en.label("button.accept"))
            await press(chat, en.label("button.yes_please"))  # offers welcome
            await press(chat, en.label("button.skip"))
            await reply_button(chat, en.label("button.skip"))
            await bubble_says(chat, "Welcome to")
            member_no = await member_number(tmp_path / "loyalbot-demo.db", 1001)

            page = await (await browser.new_context()).new_page()
            await page.goto(f"{console}/console")
            await page.get_by_label("Name").fill("operator")
            await page.get_by_label("Password").fill(info["password"])
            await page.get_by_role("button", name="Sign in").click()
            await expect(page.get_by_role("heading", name="Dashboard")).to_be_visible()
            await page.wait_for_function(  # every chart drawn by the vendored Chart.js
                "() => typeof Chart !== 'undefined' && document.querySelectorAll('canvas[data-chart]').length > 0 && [...document.querySelectorAll("
                "'canvas[data-chart]')].every((c) => Chart.getChart(c))")
            with sqlite3.connect(tmp_path / "loyalbot-demo.db") as store:  # Ann, and the friends she referred
                joined = store.execute("SELECT count(*) FROM members WHERE status != 'erased'").fetchone()[0]
            assert joined >= 1
            await expect(page.get_by_text(re.compile(rf"^{joined} members? now")).first).to_be_visible()
            await shot(page, "demo-dashboard")

            await page.get_by_role("link", name="Programme").click()
            await page.get_by_role("link", name="Add a reward").click()
            await fill_cake(page, picture(tmp_path / "cake.png"), cost="120")
            await page.get_by_role("button", name="Save as a new version").click()
            await expect(page.get_by_role("status")).to_contain_text("Saved as version")
            await shot(page, "demo-reward-added")
            await reply_button(chat, en.label("menu.rewards"))  # the running bot shows it without a restart
            await bubble_says(chat, "A coffee of your choice")
            await press(chat, en.t("button.next"))  # the sixth reward: the catalogue's second page
            await bubble_says(chat, "Cheesecake slice")
            await shot(chat, "demo-member-sees-reward")

            await page.get_by_role("link", name="Schedules").click()
            await page.get_by_label("New schedule of kind").select_option("broadcast")
            await page.get_by_role("button", name="Create").click()
            await page.get_by_label("Name", exact=True).fill("Spring menu")
            await page.get_by_label("Runs").select_option("one_off")
            await page.get_by_label("Once at (UTC)").fill("2030-03-01T10:00")
            await page.get_by_role("textbox", name="English").fill("Hello {{ name }}, the spring menu is here!")
            await expect(page.locator("#preview_en")).to_contain_text("the spring menu is here")
            await page.get_by_role("button", name="Add schedule").click()
            await expect(page.get_by_role("status").filter(has_text="Schedule added")).to_be_visible()

            await page.get_by_role("link", name="Preview").click()
            await page.get_by_label("As member number").fill(member_no)
            await page.get_by_role("button", name="Show").click()
            await expect(page.locator("section.template").get_by_text("Hello Ann, the spring menu is here!")
                         ).to_be_visible()
            await shot(page, "demo-schedule-preview")
            await page.go_back()
            await page.go_back()
            await page.get_by_label("Test send: as member number").fill(member_no)
            await page.get_by_label("to the chat of").select_option("2001")
            await page.get_by_role("button", name="Send test").click()
            await expect(page.get_by_role("status").filter(has_text="Test message queued")).to_be_visible()

            await chat.get_by_test_id("identity-picker").select_option("2001")  # Sam's own chat
            await bubble_says(chat, "Hello Ann, the spring menu is here!")
            await page.get_by_role("button", name="Run now").click()
            await expect(page.get_by_role("status").filter(has_text="Run planned")).to_be_visible()
            await chat.get_by_test_id("identity-picker").select_option("1001")
            await bubble_says(chat, "Hello Ann, the spring menu is here!")
            await shot(chat, "demo-member-received")
            await page.get_by_role("link", name="Outbox").click()
            await expect(page.locator("td").filter(has_text=member_no)).to_be_visible(timeout=WAIT)
        finally:
            await browser.close()
