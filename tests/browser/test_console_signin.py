"""Signing in to the console in Chromium: the form, a wrong password, the lockout, the language, signing out."""

from __future__ import annotations

import pytest
from playwright.async_api import expect

from tests.browser.console_site import OPERATOR, browser_page, console_site, shot, sign_in

pytestmark = pytest.mark.browser


async def test_an_operator_signs_in_changes_language_and_signs_out(tmp_path, chromium):
    async with console_site(tmp_path) as site:
        async with browser_page(chromium) as page:
            await page.goto(f"{site.base}/console")
            await expect(page.get_by_role("heading", name="Sign in to the console")).to_be_visible()
            await shot(page, "signin")
            await page.get_by_label("Name").fill(OPERATOR[0])
            await page.get_by_label("Password").fill("not the password")
            await page.get_by_role("button", name="Sign in").click()
            await expect(page.get_by_role("alert")).to_have_text("Wrong name or password.")
            await shot(page, "signin-wrong-password")
            await sign_in(page, site.base)
            await expect(page.get_by_role("heading", name="Dashboard")).to_be_visible()
            await shot(page, "dashboard")
            await page.get_by_label("Language").select_option("zh_Hant")
            await page.get_by_role("button", name="Change").click()
            await expect(page.get_by_role("heading", name="儀表板")).to_be_visible()
            await shot(page, "dashboard-zh_Hant")
            await page.get_by_role("button", name="登出").click()
            await expect(page.get_by_role("heading", name="Sign in to the console")).to_be_visible()
            await page.goto(f"{site.base}/console")
            await expect(page.get_by_label("Password")).to_be_visible()
            assert not page.errors


async def test_repeated_wrong_passwords_lock_the_account_in_the_browser(tmp_path, chromium):
    async with console_site(tmp_path) as site:
        async with browser_page(chromium, viewport={"width": 390, "height": 844}) as page:  # a phone
            await page.goto(f"{site.base}/console/signin")
            for _ in range(5):
                await page.get_by_label("Name").fill(OPERATOR[0])
                await page.get_by_label("Password").fill("guess-guess-guess")
                await page.get_by_role("button", name="Sign in").click()
                await expect(page.get_by_role("alert")).to_be_visible()
            await page.get_by_label("Name").fill(OPERATOR[0])
            await page.get_by_label("Password").fill(OPERATOR[1])
            await page.get_by_role("button", name="Sign in").click()
            await expect(page.get_by_role("alert")).to_contain_text("locked")
            await shot(page, "signin-locked-phone")
