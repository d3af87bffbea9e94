"""The programme in Chromium: an operator adds a reward in three languages with its picture, is told what is
wrong with a bad cost, saves, sees it in the catalogue and the history, and edits a tier's benefits."""

from __future__ import annotations

import io

import pytest
from PIL import Image
from playwright.async_api import expect

from tests.browser.console_site import ADMIN, browser_page, console_site, shot, sign_in

pytestmark = pytest.mark.browser


def picture(path) -> str:
    buffer = io.BytesIO()
    img = Image.new("RGB", (96, 96), (233, 196, 106))
    for x in range(20, 76):
        for y in range(30, 66):
            img.putpixel((x, y), (180, 120, 60))
    img.save(buffer, "PNG")
    path.write_bytes(buffer.getvalue())
    return str(path)


async def fill_cake(page, image: str, cost: str) -> None:
    await page.get_by_label("Code").fill("cake")
    await page.get_by_label("Title (English)").fill("Cheesecake slice")
    await page.get_by_label("Description (English)").fill("Baked this morning.")
    await page.get_by_label("Title (简体中文)").fill("芝士蛋糕一块")
    await page.get_by_label("Description (简体中文)").fill("今早烘焙。")
    await page.get_by_label("Title (繁體中文)").fill("起司蛋糕一塊")
    await page.get_by_label("Description (繁體中文)").fill("今早烘焙。")
    await page.get_by_label("Cost (points)").fill(cost)
    await page.get_by_label("Stock left").fill("40")
    await page.get_by_label("Limit per member").fill("2")
    await page.get_by_label("Coupon valid for (days)").fill("14")
    await page.get_by_label("Lowest tier").select_option("silver")
    await page.get_by_label("On offer from").fill("2026-12-01T08:00")
    await page.get_by_label("On offer until").fill("2027-01-31T20:00")
    await page.get_by_label("Picture (PNG, JPEG or WebP, at most 1 MB)").set_input_files(image)


async def test_an_operator_adds_a_reward_and_edits_a_tier(tmp_path, chromium):
    image = picture(tmp_path / "cake.png")
    async with console_site(tmp_path) as site:
        async with browser_page(chromium) as page:
            await sign_in(page, site.base)
            await page.get_by_role("link", name="Programme").click()
            await expect(page.get_by_role("heading", name="Programme", exact=True)).to_be_visible()
            await shot(page, "programme")
            await page.get_by_role("link", name="Add a reward").click()
            await fill_cake(page, image, cost="-5")
            await page.get_by_role("button", name="Save as a new version").click()
            cost = page.get_by_label("Cost (points)")
            await expect(cost).to_have_attribute("aria-invalid", "true")
            await expect(page.locator("#e-cost")).to_have_text("Must be more than 0.")
            await expect(page.get_by_role("alert")).to_contain_text("Nothing was saved")
            await shot(page, "programme-reward-bad-cost")
            await cost.fill("180")
            await page.get_by_label("Picture (PNG, JPEG or WebP, at most 1 MB)").set_input_files(image)
            await page.get_by_role("button", name="Save as a new version").click()
            await expect(page.get_by_role("status")).to_contain_text("Saved as version 2")
            row = page.locator('tr[data-reward="cake"]')
            await expect(row).to_contain_text("Cheesecake slice")
            await expect(row).to_contain_text("180")
            await expect(row.locator("img.thumb")).to_be_visible()
            assert await row.locator("img.thumb").evaluate("img => img.naturalWidth") == 96
            await shot(page, "programme-after-reward")

            await page.get_by_role("link", name="Edit tier gold").click()
            await page.get_by_label("Benefits (English)").fill("Free upsizes and a birthday cake.")
            await page.get_by_label("Benefits (简体中文)").fill("免费升杯，生日蛋糕。")
            await page.get_by_label("Benefits (繁體中文)").fill("免費升杯，生日蛋糕。")
            await shot(page, "programme-tier")
            await page.get_by_role("button", name="Save as a new version").click()
            await expect(page.get_by_role("status")).to_contain_text("Saved as version 3")
            await expect(page.get_by_text("Free upsizes and a birthday cake.")).to_be_visible()

            await page.get_by_role("link", name="History").click()
            await expect(page.locator('tr[data-version="2"]')).to_contain_text("rewards.cake: added")
            await expect(page.locator('tr[data-version="3"]')).to_contain_text("tiers.levels.gold.benefits.en")
            await expect(page.locator('tr[data-version="3"]')).to_contain_text("mia")
            await shot(page, "programme-history")
            await page.locator('tr[data-version="2"]').get_by_role("link", name="Show TOML").click()
            await expect(page.locator("pre.toml")).to_contain_text('code = "cake"')
            await shot(page, "programme-version-toml")

            await page.get_by_label("Language").select_option("zh_Hans")
            await page.get_by_role("button", name="Change").click()
            await page.goto(f"{site.base}/console/programme")
            await expect(page.get_by_role("heading", name="会员计划", exact=True)).to_be_visible()
            await expect(page.locator('tr[data-reward="cake"]')).to_contain_text("芝士蛋糕一块")
            await shot(page, "programme-zh_Hans")
            await page.goto(f"{site.base}/console/programme/rewards/cake")
            await page.get_by_label("所需积分").fill("0")
            await page.get_by_role("button", name="保存为新版本").click()
            await expect(page.locator("#e-cost")).to_have_text("必须大于 0。")
            await shot(page, "programme-reward-zh_Hans-bad-cost")
            assert not page.errors

        async with browser_page(chromium, viewport={"width": 390, "height": 844}) as phone:
            await sign_in(phone, site.base, ADMIN)  # mia now reads the console in Chinese; ada in English
            await phone.goto(f"{site.base}/console/programme")
            await expect(phone.locator('tr[data-reward="cake"]')).to_be_attached()
            width = await phone.evaluate("document.documentElement.scrollWidth")
            assert width <= 390, f"the programme page is {width}px wide on a 390px phone"
            await shot(phone, "programme-phone")
            await phone.goto(f"{site.base}/console/programme/rewards/cake")
            await expect(phone.get_by_label("Cost (points)")).to_have_value("180")
            width = await phone.evaluate("document.documentElement.scrollWidth")
            assert width <= 390, f"the reward form is {width}px wide on a 390px phone"
            await shot(phone, "programme-reward-phone")
            assert not phone.errors
