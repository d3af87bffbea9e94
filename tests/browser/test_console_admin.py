"""The admin pages in Chromium: an admin adds an operator who signs in with the password shown once, an operator is
refused the admin pages, an API key works for a shop system until it is revoked, staff added in the console can
serve at the counter; each page saved as a screenshot in English, Chinese and at phone width."""

from __future__ import annotations

import re

import httpx
import pytest
from playwright.async_api import expect

from loyalbot.loyalty.staff import StaffRoles
from tests.browser.console_site import ADMIN, OPERATOR, browser_page, console_site, shot, sign_in

pytestmark = pytest.mark.browser
PHONE = {"width": 390, "height": 844}


async def choose_language(page, code: str, button: str = "Change") -> None:
    await page.get_by_label("Language", exact=True).first.select_option(code)
    await page.get_by_role("button", name=button, exact=True).first.click()


async def test_an_admin_adds_an_operator_who_signs_in_with_the_password_shown_once(tmp_path, chromium):
    async with console_site(tmp_path) as site:
        async with browser_page(chromium) as page:
            await sign_in(page, site.base, ADMIN)
            await page.get_by_role("link", name="Operators").click()
            await expect(page.get_by_role("heading", name="Operators", exact=True)).to_be_visible()
            await shot(page, "operators")
            await page.get_by_label("Name", exact=True).fill("a b")
            await page.get_by_role("button", name="Add operator").click()
            await expect(page.locator("#op-name-error")).to_contain_text("1-64 letters")
            await expect(page.get_by_label("Name", exact=True)).to_have_attribute("aria-invalid", "true")
            await shot(page, "operators-add-refused")
            await page.get_by_label("Name", exact=True).fill("li.wei")
            await page.locator("#op-role").select_option("operator")
            await page.locator("#op-language").select_option("zh_Hans")
            await page.get_by_role("button", name="Add operator").click()
            await expect(page.get_by_role("heading", name="li.wei can now sign in")).to_be_visible()
            password = (await page.locator("#secret-text").text_content() or "").strip()
            assert len(password) >= 16
            await expect(page.get_by_role("button", name="Copy")).to_be_visible()
            await shot(page, "operators-password-shown-once")
            await page.get_by_role("link", name="Operators").click()
            assert password not in await page.content(), "shown once only"
            assert not page.errors
        async with browser_page(chromium) as page:
            await sign_in(page, site.base, ("li.wei", password))
            await expect(page.get_by_role("heading", name="仪表板")).to_be_visible()
            nav = page.get_by_role("navigation")
            await expect(nav.locator('a[href="/console"]')).to_have_count(1)
            for admin_page in ("/console/staff", "/console/operators", "/console/apikeys"):  # not offered
                await expect(nav.locator(f'a[href="{admin_page}"]')).to_have_count(0)
            await page.goto(f"{site.base}/console/operators")
            await expect(page.get_by_role("alert")).to_have_text("只有管理员可以执行此操作。")
            await shot(page, "operators-refused-zh_Hans")


async def test_an_operator_is_refused_every_admin_page(tmp_path, chromium):
    async with console_site(tmp_path) as site:
        async with browser_page(chromium) as page:
            await sign_in(page, site.base, OPERATOR)
            for path in ("/console/staff", "/console/operators", "/console/apikeys", "/console/staff/1/remove"):
                response = await page.goto(f"{site.base}{path}")
                assert response is not None and response.status == 403, path
                await expect(page.get_by_role("alert")).to_have_text("Only an admin may do this.")
            await shot(page, "admin-refused")
            # A forged post carrying a valid token is refused for the role, too.
            token = await page.locator("body").get_attribute("data-csrf")
            refused = await page.request.post(f"{site.base}/console/apikeys", form={"csrf": token or "", "name": "x"})
            assert refused.status == 403


async def test_an_api_key_works_for_a_shop_until_the_admin_revokes_it(tmp_path, chromium):
    member_no: list[str] = []

    async def prepare(_db, loyalty) -> None:
        ann = await loyalty.register_member(telegram_id=31, first_name="Ann", terms_accepted=True)
        member_no.append(ann.member_no)

    async with console_site(tmp_path, prepare) as site:
        async with browser_page(chromium) as page:
            await sign_in(page, site.base, ADMIN)
            await page.get_by_role("link", name="API keys").click()
            await shot(page, "apikeys-empty")
            await page.get_by_role("button", name="Create key").click()
            await expect(page.locator("#key-name-error")).to_be_visible()
            await page.get_by_label("Which shop system is it for?").fill("till 1")
            await page.get_by_role("button", name="Create key").click()
            key = (await page.locator("#secret-text").text_content() or "").strip()
            assert key.startswith("lb_")
            await expect(page.get_by_role("button", name="Copy")).to_be_visible()
            await shot(page, "apikeys-shown-once")
            purchase = {"member_no": member_no[0], "external_id": "till-1-0001", "amount": "12.50"}
            async with httpx.AsyncClient(base_url=site.base, headers={"Authorization": f"Bearer {key}"}) as shop:
                assert (await shop.post("/api/v1/purchases", json=purchase)).status_code == 201
                await page.get_by_role("link", name="API keys").click()
                row = page.get_by_role("row").filter(has_text="till 1")
                await expect(row).to_contain_text(key[:10])
                await row.get_by_role("link", name="Revoke the key till 1").click()
                await expect(page.get_by_role("heading", name=re.compile("Revoke the key"))).to_be_visible()
                await shot(page, "apikeys-revoke-confirm")
                await page.get_by_role("button", name="Revoke").click()
                await expect(page.get_by_role("status")).to_contain_text("The key was revoked")
                await expect(row).to_contain_text("revoked")
                await shot(page, "apikeys-revoked")
                refused = await shop.post("/api/v1/purchases", json={**purchase, "external_id": "till-1-0002"})
                assert refused.status_code == 401
            await choose_language(page, "zh_Hans")
            await expect(page.get_by_role("heading", name="API 密钥", exact=True)).to_be_visible()
            await shot(page, "apikeys-zh_Hans")
            assert not page.errors


async def test_staff_added_in_the_console_may_serve_at_the_counter(tmp_path, chromium):
    async with console_site(tmp_path) as site:
        async with browser_page(chromium) as page:
            await sign_in(page, site.base, ADMIN)
            await page.get_by_role("link", name="Staff").click()
            await shot(page, "staff-empty")
            await page.get_by_label("Telegram user id").fill("12ab")
            await page.get_by_role("button", name="Add staff").click()
            await expect(page.locator("#staff-id-error")).to_contain_text("whole number")
            await shot(page, "staff-add-refused")
            await page.get_by_label("Telegram user id").fill("424242")
            await page.locator("#staff-role").select_option("agent")
            await page.get_by_label("Name shown to colleagues (optional)").fill("Sam")
            await page.get_by_role("button", name="Add staff").click()
            await expect(page.get_by_role("status")).to_have_text("The staff list was saved.")
            await shot(page, "staff")
            db = site.db()
            try:
                assert await StaffRoles(db).require_staff(424242) == "agent"  # the counter's check
                await page.get_by_label("Role of 424242", exact=True).select_option("operator")
                await page.get_by_role("button", name="Change the role of 424242").click()
                await expect(page.get_by_role("status")).to_be_visible()
                assert await StaffRoles(db).staff_role(424242) == "operator"
                await page.get_by_role("link", name="Remove 424242 from the staff").click()
                await shot(page, "staff-remove-confirm")
                await page.get_by_role("button", name="Remove").click()
                await expect(page.get_by_role("status")).to_have_text("They are no longer staff.")
                assert await StaffRoles(db).staff_role(424242) is None
            finally:
                await db.dispose()
            await choose_language(page, "zh_Hans")
            await expect(page.get_by_role("heading", name="员工", exact=True)).to_be_visible()
            await shot(page, "staff-zh_Hans")
            await page.get_by_role("link", name="运营人员").click()
            await shot(page, "operators-zh_Hans")
            assert not page.errors


async def test_the_admin_pages_work_on_a_phone_with_the_folded_menu(tmp_path, chromium):
    async with console_site(tmp_path) as site:
        async with browser_page(chromium, viewport=PHONE) as page:
            await sign_in(page, site.base, ADMIN)
            menu = page.get_by_role("button", name="Menu")
            await expect(menu).to_be_visible()
            await expect(page.get_by_role("link", name="Operators")).to_be_hidden()
            await shot(page, "phone-menu-closed")
            await menu.click()
            await expect(menu).to_have_attribute("aria-expanded", "true")
            await shot(page, "phone-menu-open")
            await page.get_by_role("link", name="Operators").click()
            await expect(page.get_by_role("heading", name="Operators", exact=True)).to_be_visible()
            width = await page.evaluate("document.documentElement.scrollWidth")
            assert width <= PHONE["width"], "nothing but the tables scrolls sideways"
            await shot(page, "phone-operators")
            await page.goto(f"{site.base}/console/apikeys")
            await shot(page, "phone-apikeys")
            await page.goto(f"{site.base}/console/staff")
            await shot(page, "phone-staff")
            # By keyboard: the first Tab reaches the skip link, the next the menu button, which Enter opens.
            await page.keyboard.press("Tab")
            await expect(page.get_by_role("link", name="Skip to content")).to_be_focused()
            await page.keyboard.press("Tab")
            await page.keyboard.press("Tab")
            await expect(menu).to_be_focused()
            await page.keyboard.press("Enter")
            await expect(page.get_by_role("link", name="Staff")).to_be_visible()
            await page.keyboard.press("Escape")
            await expect(page.get_by_role("link", name="Staff")).to_be_hidden()
            assert not page.errors
