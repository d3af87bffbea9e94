"""The console's member tasks in Chromium: find a member by phone, adjust points with a reason, void a coupon,
answer a feedback item, erase a member; survey results and support conversations; in English, Chinese and
at phone width, with a screenshot of each page."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.async_api import expect

from tests.browser.console_site import ADMIN, browser_page, console_site, shot, sign_in
from tests.console.members_world import World, build_world

pytestmark = pytest.mark.browser


def world_holder() -> tuple[dict[str, World], Any]:
    held: dict[str, World] = {}

    async def prepare(db: Any, loyalty: Any) -> None:
        held["world"] = await build_world(db, loyalty)

    return held, prepare


async def test_an_operator_finds_a_member_adjusts_points_voids_a_coupon_and_answers_feedback(tmp_path, chromium):
    held, prepare = world_holder()
    async with console_site(tmp_path, prepare) as site:
        world = held["world"]
        async with browser_page(chromium) as page:
            await sign_in(page, site.base)
            await page.get_by_role("link", name="Members").click()
            await page.get_by_label("Member number, phone or name").fill("06 1234 5678")
            await page.get_by_role("button", name="Search").click()
            await expect(page.get_by_role("link", name=world.ann_no)).to_be_visible()
            await shot(page, "members-search")
            await page.get_by_role("link", name=world.ann_no).click()
            await expect(page.get_by_role("heading", name=f"Member {world.ann_no}")).to_be_visible()
            balance = int((await page.get_by_test_id("balance").inner_text()).replace(",", ""))
            await shot(page, "member")

            await page.get_by_label("Points (+ adds, − takes)").fill("40")
            await page.get_by_role("button", name="Adjust", exact=True).click()
            reason = page.get_by_label("Reason")
            await expect(reason).to_have_attribute("aria-invalid", "true")
            await expect(page.locator("#adjust-reason-error")).to_contain_text("Say why")
            await shot(page, "member-adjust-refused")
            await reason.fill("Cold coffee twice")
            await page.get_by_role("button", name="Adjust", exact=True).click()
            await expect(page.get_by_role("status")).to_have_text("The points were adjusted.")
            await expect(page.get_by_test_id("balance")).to_have_text(f"{balance + 40:,}")
            await expect(page.get_by_role("cell", name="Cold coffee twice")).to_be_visible()

            await page.get_by_role("button", name=f"Void coupon {world.coupon_code}").click()
            await expect(page.get_by_role("status")).to_have_text("The coupon was voided.")
            await expect(page.get_by_role("button", name=f"Void coupon {world.coupon_code}")).to_have_count(0)
            await shot(page, "member-after-void")

            await page.get_by_role("link", name="Feedback", exact=True).first.click()
            await expect(page.get_by_role("heading", name="Feedback")).to_be_visible()
            await shot(page, "feedback-inbox")
            await page.get_by_role("link", name=f"#{world.feedback_id}").click()
            await expect(page.get_by_test_id("feedback-text")).to_have_text("The oat latte was cold <b>twice</b>.")
            await page.get_by_label("Your reply (sent by the bot in the member's chat)").fill(
                "Sorry about that! Your next oat latte is on us.")
            await shot(page, "feedback-item")
            await page.get_by_role("button", name="Send reply").click()
            await expect(page.get_by_role("status")).to_have_text("Your reply is on its way to the member.")
            await expect(page.get_by_text("Sorry about that! Your next oat latte is on us.")).to_be_visible()
            await shot(page, "feedback-answered")

            await page.get_by_role("link", name="Surveys").click()
            await expect(page.get_by_text("Friendly staff, slow queue.")).to_be_visible()
            await shot(page, "surveys")
            await page.get_by_role("link", name="Support").click()
            await page.get_by_role("link", name=f"#{world.conversation_id}").click()
            await expect(page.get_by_text("Where is my coupon?")).to_be_visible()
            await shot(page, "support-conversation")
            await page.go_back()
            await shot(page, "support")
            assert not page.errors


async def test_an_admin_erases_a_member_in_chinese(tmp_path, chromium):
    held, prepare = world_holder()
    async with console_site(tmp_path, prepare) as site:
        world = held["world"]
        async with browser_page(chromium) as page:
            await sign_in(page, site.base, ADMIN)
            await page.get_by_label("Language").select_option("zh_Hans")
            await page.get_by_role("button", name="Change").click()
            await page.goto(f"{site.base}/console/members?q=smith")
            await shot(page, "members-search-zh_Hans")
            await page.get_by_role("link", name=world.ann_no).click()
            await expect(page.get_by_role("heading", name=f"会员 {world.ann_no}")).to_be_visible()
            await shot(page, "member-zh_Hans")
            await page.get_by_role("link", name="清除此会员…").click()
            confirm = page.get_by_label(f"请输入会员编号 {world.ann_no} 以确认")
            await confirm.fill(world.bob_no)
            await page.get_by_role("button", name="清除此会员").click()
            await expect(page.locator("#confirm-error")).to_contain_text(world.ann_no)
            await shot(page, "member-erase-refused-zh_Hans")
            await page.get_by_label(f"请输入会员编号 {world.ann_no} 以确认").fill(world.ann_no)
            await page.get_by_role("button", name="清除此会员").click()
            await expect(page.get_by_role("status").first).to_contain_text("已清除")
            body = await page.locator("main").inner_text()
            for personal in ("Annabel", "Smith", "612345678", "oat latte", "Friendly staff"):
                assert personal not in body, personal
            await shot(page, "member-erased-zh_Hans")
            for path, name in (("/console/feedback?state=all", "feedback-inbox-zh_Hans"),
                               ("/console/surveys", "surveys-zh_Hans"), ("/console/support", "support-zh_Hans"),
                               (f"/console/support/{world.conversation_id}", "support-conversation-zh_Hans")):
                await page.goto(f"{site.base}{path}")
                await shot(page, name)
            assert not page.errors


async def test_the_member_pages_at_phone_width(tmp_path, chromium):
    held, prepare = world_holder()
    async with console_site(tmp_path, prepare) as site:
        world = held["world"]
        async with browser_page(chromium, viewport={"width": 390, "height": 844}) as page:
            await sign_in(page, site.base)
            await page.goto(f"{site.base}/console/members?q=quist")
            await expect(page.get_by_role("link", name=world.bob_no)).to_be_visible()
            await shot(page, "members-search-phone")
            for path, name in ((f"/console/members/{world.ann_id}", "member-phone"),
                               (f"/console/feedback/{world.feedback_id}", "feedback-item-phone"),
                               ("/console/feedback", "feedback-inbox-phone"), ("/console/surveys", "surveys-phone"),
                               ("/console/support", "support-phone")):
                await page.goto(f"{site.base}{path}")
                await shot(page, name)
                width = await page.evaluate("document.documentElement.scrollWidth")
                assert width <= 390, f"{path} scrolls sideways at phone width ({width}px)"
            assert not page.errors
