"""A person in a real browser on the demo page: joins, redeems, follows the chat, edits, restarts the demo.

Each test runs `loyalbot demo` as a newcomer would (a subprocess in an empty folder) and drives
Chromium with Playwright (see conftest.py: skipped with a reason outside CI when there is no
Chromium). Every page state a test checks is saved as a PNG under the test's tmp dir (screenshots/).
"""

from __future__ import annotations

import contextlib
import re
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from playwright.async_api import Browser, Page, async_playwright, expect
from playwright.async_api import TimeoutError as PlaywrightTimeout

from loyalbot.bot.local_api import LocalApiControl
from loyalbot.chat.i18n import Translator
from tests.browser.conftest import CHROMIUM_ARGS, DemoProcess

pytestmark = pytest.mark.browser
EN = Translator("en")
WAIT = 20_000  # ms: how long a page may take to show what the bot answered


class Browsing:
    def __init__(self, browser: Browser, page: Page, shots: Path) -> None:
        self.browser, self.page, self.shots = browser, page, shots
        self.count = 0

    async def shot(self, name: str) -> Path:
        self.count += 1
        path = self.shots / f"{self.count:02d}-{name}.png"
        await self.page.screenshot(path=str(path))
        return path


async def open_browser(pw, chromium: str, shots: Path, **context) -> Browsing:  # type: ignore[no-untyped-def]
    browser = await pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
    page = await (await browser.new_context(**context)).new_page()
    return Browsing(browser, page, shots)


async def say(page: Page, text: str) -> None:
    await page.get_by_test_id("message-input").fill(text)
    await page.get_by_test_id("send-button").click()


async def press(page: Page, label: str) -> None:
    await page.get_by_test_id("inline-button").filter(has_text=label).last.click()


async def reply_button(page: Page, label: str) -> None:
    await page.get_by_test_id("reply-button").filter(has_text=label).click()


async def bubble_says(page: Page, text: str, list_id: str = "message-list") -> None:
    await expect(page.get_by_test_id(list_id).get_by_test_id("message-bubble").filter(has_text=text).last
                 ).to_be_visible(timeout=WAIT)


async def bubbles(page: Page) -> int:
    return await page.get_by_test_id("message-list").get_by_test_id("message-bubble").count()


async def newest_is_in_sight(page: Page, list_id: str = "message-list") -> dict:
    """Wait until the list is scrolled to its end, then report where its newest bubble is."""
    selector = f'[data-testid="{list_id}"]'
    with contextlib.suppress(PlaywrightTimeout):  # not there in 5 s: report how far off it is
        await page.wait_for_function(
            """sel => { const box = document.querySelector(sel);
                        return box.scrollHeight - box.scrollTop - box.clientHeight <= 2; }""",
            arg=selector, timeout=5_000)
    return await page.evaluate(
        """sel => { const box = document.querySelector(sel); const rows = box.querySelectorAll('.row');
                    const last = rows[rows.length - 1].getBoundingClientRect(), list = box.getBoundingClientRect();
                    return {hidden: box.scrollHeight - box.scrollTop - box.clientHeight,
                            bottom: last.bottom, list_bottom: list.bottom, top: last.top, list_top: list.top}; }""",
        selector)


async def new_identity(page: Page, name: str, language: str) -> int:
    await expect(page.get_by_test_id("identity-option")).not_to_have_count(0)
    before = set(await page.get_by_test_id("identity-option").evaluate_all("os => os.map(o => o.value)"))
    await page.get_by_test_id("new-identity-toggle").click()
    await page.get_by_test_id("new-identity-name").fill(name)
    await page.get_by_test_id("new-identity-language").fill(language)
    await page.get_by_test_id("new-identity-create").click()
    await expect(page.get_by_test_id("identity-picker")).to_have_value(re.compile(r"^\d+$"))
    await expect(page.get_by_test_id("new-identity-form")).to_be_hidden()
    values = set(await page.get_by_test_id("identity-option").evaluate_all("os => os.map(o => o.value)"))
    await expect(page.get_by_test_id("identity-option")).to_have_count(len(before) + 1)
    values = set(await page.get_by_test_id("identity-option").evaluate_all("os => os.map(o => o.value)"))
    (created,) = values - before
    return int(created)


async def register_in_english(b: Browsing, *, check_scroll: bool = False) -> None:
    """Start -> English -> I accept -> No, thanks -> Skip (birthday) -> Skip (phone), as the bug report did."""
    page = b.page
    steps = [
        ("start", lambda: page.get_by_test_id("start-button").click(), EN.label("start.choose_language")[:20]),
        ("language", lambda: press(page, "English"), EN.label("button.accept")),
        ("consent", lambda: press(page, EN.label("button.accept")), EN.label("button.no_thanks")),
        ("marketing", lambda: press(page, EN.label("button.no_thanks")), EN.label("button.skip")),
        ("birthday", lambda: press(page, EN.label("button.skip")), None),
        ("phone", lambda: reply_button(page, EN.label("button.skip")), "Welcome to"),
    ]
    for name, act, expected in steps:
        count = await bubbles(page)
        await act()
        await expect(page.get_by_test_id("message-list").get_by_test_id("message-bubble")).not_to_have_count(
            count, timeout=WAIT)
        if expected:
            await bubble_says(page, expected)
        if name == "birthday":
            await expect(page.get_by_test_id("reply-keyboard")).to_be_visible(timeout=WAIT)
        if check_scroll:
            where = await newest_is_in_sight(page)
            await b.shot(f"register-{name}")
            assert where["hidden"] <= 2, f"after {name}: the newest message is {where['hidden']} px below the fold"
            assert where["bottom"] <= where["list_bottom"] + 1, f"after {name}: {where}"


async def test_the_newest_answer_stays_in_sight_while_the_reply_keyboard_comes_and_goes(demo_process, chromium,
                                                                                         shots):
    demo_process.start()
    async with async_playwright() as pw:
        b = await open_browser(pw, chromium, shots, viewport={"width": 1000, "height": 640})
        try:
            page = b.page
            await page.goto(demo_process.url)
            await new_identity(page, "Nora", "en")
            await register_in_english(b, check_scroll=True)
            for label in (EN.label("menu.points"), EN.label("menu.card"), EN.label("menu.points")):
                count = await bubbles(page)
                await reply_button(page, label)
                await expect(page.get_by_test_id("message-list").get_by_test_id("message-bubble")).not_to_have_count(
                    count, timeout=WAIT)
                await page.wait_for_function(
                    "() => [...document.querySelectorAll('#messages img')].every(i => i.complete)", timeout=WAIT)
                where = await newest_is_in_sight(page)
                await b.shot(f"menu-{label.split()[-1].lower()}")
                assert where["hidden"] <= 2 and where["bottom"] <= where["list_bottom"] + 1, (label, where)
            # Someone who scrolled up to read keeps their place when the bot writes.
            await page.get_by_test_id("message-list").hover()
            await page.mouse.wheel(0, -5000)  # as a person scrolls up to read
            await page.wait_for_function(
                "() => document.querySelector('[data-testid=\"message-list\"]').dataset.stick === 'false'", timeout=WAIT)
            count = await bubbles(page)
            await say(page, "/points")  # sending brings the chat back to the newest, as Telegram does
            await expect(page.get_by_test_id("message-list").get_by_test_id("message-bubble")).not_to_have_count(
                count, timeout=WAIT)
            where = await newest_is_in_sight(page)
            assert where["hidden"] <= 2
        finally:
            await b.browser.close()


async def test_chinese_members_get_the_page_in_their_language_with_shop_times(tmp_path, chromium, shots):
    demo = DemoProcess(tmp_path, env={"LOYALBOT_TIMEZONE": "Asia/Shanghai"})
    demo.start()
    try:
        async with async_playwright() as pw:
            # The browser sits in Los Angeles with a 12-hour clock; the shop is in Shanghai.
            b = await open_browser(pw, chromium, shots, timezone_id="America/Los_Angeles", locale="en-US",
                                   viewport={"width": 1100, "height": 700})
            try:
                page = b.page
                await page.goto(demo.url)
                expected = {
                    "1002": {"you": "您是", "message": "消息", "new": "+ 新建", "lang": "zh-CN"},
                    "1003": {"you": "您是", "message": "訊息", "new": "+ 新增", "lang": "zh-TW"},
                    "1001": {"you": "You are", "message": "Message", "new": "+ New", "lang": "en-GB"},
                }
                for identity, words in expected.items():
                    await page.get_by_test_id("identity-picker").select_option(identity)
                    await expect(page.locator("html")).to_have_attribute("lang", words["lang"])
                    await expect(page.locator(".who-label")).to_have_text(words["you"])
                    await expect(page.get_by_test_id("message-input")).to_have_attribute("placeholder", words["message"])
                    await expect(page.get_by_test_id("new-identity-toggle")).to_have_text(words["new"])
                    await say(page, "/start")
                    await expect(page.get_by_test_id("message-list").get_by_test_id("message-time").last
                                 ).to_be_visible(timeout=WAIT)
                    await b.shot(f"language-{identity}")
                    times = await page.get_by_test_id("message-list").get_by_test_id("message-time").evaluate_all(
                        "ts => ts.map(t => [t.textContent, t.dateTime])")
                    for shown, iso in times:
                        moment = datetime.fromisoformat(iso.replace("Z", "+00:00")).astimezone(UTC)
                        assert shown == moment.astimezone(ZoneInfo("Asia/Shanghai")).strftime("%H:%M"), (shown, iso)
                    if identity == "1002":
                        assert await page.get_by_test_id("tab-private").text_content() == "与机器人聊天"
                # The picker shows each whole label, the longest one included.
                for identity in ("1001", "1002", "1003", "2001", "2002"):
                    await page.get_by_test_id("identity-picker").select_option(identity)
                    cut = await page.get_by_test_id("identity-picker").evaluate(
                        """sel => { const label = sel.options[sel.selectedIndex].text, style = getComputedStyle(sel);
                                    const ctx = document.createElement('canvas').getContext('2d');
                                    ctx.font = `${style.fontSize} ${style.fontFamily}`;
                                    const room = sel.clientWidth - parseFloat(style.paddingLeft)
                                                 - parseFloat(style.paddingRight) - 16;  // the arrow
                                    return {label, text: ctx.measureText(label).width, room,
                                            scroll: sel.scrollWidth, client: sel.clientWidth}; }""")
                    assert cut["text"] <= cut["room"] and cut["scroll"] <= cut["client"], cut
                await b.shot("picker-sam")
                # Nothing on the page means something by an emoji alone.
                unnamed = await page.evaluate(
                    """() => [...document.querySelectorAll('button, label, a, select, input, [role=button]')]
                        .filter(n => !n.closest('.inline-keyboard, .reply-keyboard, .messages .text'))
                        .map(n => [n.outerHTML.slice(0, 120),
                                   (n.getAttribute('aria-label') || '') + ' ' + (n.textContent || '') + ' '
                                   + (n.title || '') + ' ' + (n.placeholder || '')])
                        .filter(([, name]) => !/\\p{L}/u.test(name))""")
                assert unnamed == [], unnamed
            finally:
                await b.browser.close()
    finally:
        demo.stop()


async def test_staff_edit_a_reply_and_topics_show_initials_not_numbers(demo_process, chromium, shots):
    demo_process.start()
    async with async_playwright() as pw:
        b = await open_browser(pw, chromium, shots, viewport={"width": 1100, "height": 720})
        try:
            page = b.page
            await page.goto(demo_process.url)
            await page.get_by_test_id("identity-picker").select_option("1001")  # Ann
            await register_in_english(b)
            await reply_button(page, EN.label("menu.support"))
            await say(page, "Where is my coupon?")
            await bubble_says(page, "Where is my coupon?")

            await page.get_by_test_id("identity-picker").select_option("2001")  # Sam
            await page.get_by_test_id("tab-group").click()
            topic = page.get_by_test_id("topic-item").filter(has_text="Ann")
            await expect(topic).to_be_visible(timeout=WAIT)
            icon = (await topic.get_by_test_id("topic-icon").text_content()) or ""
            assert not re.search(r"\d", icon), f"topic icon {icon!r} reads like an unread count"
            assert icon == "A"
            await topic.click()
            await bubble_says(page, "Where is my coupon?", "topic-message-list")
            await page.get_by_test_id("topic-message-list").get_by_test_id("inline-button").filter(
                has_text=Translator("en").label("support.button.take")).last.click()
            await page.get_by_test_id("topic-input").fill("Hello Ann, let me look")
            await page.get_by_test_id("topic-send-button").click()
            mine = page.get_by_test_id("topic-message-list").get_by_test_id("message-bubble").filter(
                has_text="Hello Ann, let me look")
            await expect(mine).to_be_visible(timeout=WAIT)
            await b.shot("staff-topic")
            # The relay copies it to Ann before the edit, so the edit has something to change.
            async with LocalApiControl(demo_process.url) as tg:
                await tg.wait_for_bot_message(1001, contains="Hello Ann, let me look", timeout=20)
            await mine.hover()
            await mine.get_by_test_id("edit-button").click()
            await expect(page.get_by_test_id("topic-input")).to_have_value("Hello Ann, let me look")
            await page.get_by_test_id("topic-input").fill("Hello Ann, found it: it is in /coupons")
            await page.get_by_test_id("topic-send-button").click()
            edited = page.get_by_test_id("topic-message-list").get_by_test_id("message-bubble").filter(
                has_text="found it")
            await expect(edited.get_by_test_id("edited-mark")).to_be_visible(timeout=WAIT)
            await b.shot("staff-edited")

            await page.get_by_test_id("identity-picker").select_option("1001")  # Ann sees the corrected answer
            await expect(page.get_by_test_id("message-list").get_by_test_id("message-bubble").filter(
                has_text="found it: it is in /coupons")).to_be_visible(timeout=WAIT)
            await b.shot("member-sees-edit")
            async with LocalApiControl(demo_process.url) as tg:
                sam = [m for m in await tg.transcript(demo_process_group(demo_process)) if m["from_id"] == 2001]
            assert sam[-1]["edited"] and sam[-1]["edits"][0]["text"] == "Hello Ann, let me look"
        finally:
            await b.browser.close()


def demo_process_group(demo: DemoProcess) -> int:
    import httpx

    return int(httpx.get(demo.url + "/control/demo-config", timeout=5).json()["staff_group"]["id"])


async def test_a_restart_keeps_identities_chats_and_never_reuses_an_id(demo_process, chromium, shots, tmp_path):
    demo_process.start()
    async with async_playwright() as pw:
        b = await open_browser(pw, chromium, shots, viewport={"width": 1000, "height": 680})
        try:
            page = b.page
            await page.goto(demo_process.url)
            aiko = await new_identity(page, "Aiko", "en")
            await register_in_english(b)
            await b.shot("aiko-registered")

            demo_process.stop()
            await expect(page.get_by_test_id("offline-banner")).to_be_visible(timeout=WAIT)
            demo_process.start()
            await expect(page.get_by_test_id("offline-banner")).to_be_hidden(timeout=WAIT)
            # The open page carries on: Aiko is still there, with her chat.
            await expect(page.get_by_test_id("identity-picker")).to_have_value(str(aiko))
            await bubble_says(page, "Welcome to")
            await b.shot("after-restart")

            bruno = await new_identity(page, "Bruno", "en")
            assert bruno != aiko
            await page.get_by_test_id("start-button").click()
            await bubble_says(page, EN.label("start.choose_language")[:20])
            said = await page.get_by_test_id("message-list").inner_text()
            assert "Aiko" not in said and "Welcome back" not in said, said
            await b.shot("bruno-is-new")
        finally:
            await b.browser.close()
    with sqlite3.connect(tmp_path / "loyalbot-demo.db") as store:
        names = dict(store.execute("SELECT telegram_id, first_name FROM members"))
    assert names.get(aiko) == "Aiko" and names.get(bruno, "Bruno") == "Bruno"


async def test_join_in_chinese_redeem_and_staff_use_the_coupon(demo_process, chromium, shots, tmp_path):
    demo_process.start()
    t = Translator("zh_Hans")
    async with async_playwright() as pw:
        b = await open_browser(pw, chromium, shots)
        try:
            page = b.page
            await page.goto(demo_process.url)
            await page.get_by_test_id("identity-picker").select_option("1002")  # 小明, zh-hans

            await say(page, "/start")
            await press(page, "✓")  # the language Telegram reported is preselected
            await press(page, t.label("button.accept"))
            await press(page, t.label("button.yes_please"))
            await press(page, t.label("button.skip"))  # no birthday
            await reply_button(page, t.label("button.share_phone"))
            await bubble_says(page, "欢迎加入")

            await reply_button(page, t.label("menu.card"))
            card = page.get_by_test_id("message-bubble").filter(has=page.locator("img")).last
            await expect(card).to_be_visible(timeout=WAIT)
            assert await card.locator("img").evaluate("img => img.complete && img.naturalWidth > 0")
            await b.shot("card")

            await reply_button(page, t.label("menu.rewards"))
            await press(page, "任选咖啡一杯")
            await press(page, t.label("button.confirm"))
            coupon = page.get_by_test_id("message-bubble").filter(has=page.locator("img")).last
            await expect(coupon).to_contain_text(re.compile(r"[0-9A-Z]{4}-[0-9A-Z]{4}-[0-9A-Z]{4}-[0-9A-Z]{4}"),
                                                 timeout=WAIT)
            code = re.search(r"[0-9A-Z]{4}(?:-[0-9A-Z]{4}){3}", await coupon.inner_text()).group(0)
            await b.shot("coupon")

            await page.get_by_test_id("identity-picker").select_option("2001")  # Sam at the counter
            await say(page, f"/use {code}")
            await press(page, EN.label("button.confirm"))
            await bubble_says(page, code)
            async with LocalApiControl(demo_process.url) as telegram:
                said = [m.get("text") or "" for m in await telegram.transcript(2001) if m["direction"] != "in"]
            assert code in said[-1]
        finally:
            await b.browser.close()
    with sqlite3.connect(tmp_path / "loyalbot-demo.db") as store:
        assert store.execute("SELECT status, used_by FROM coupons WHERE code = ?", (code,)).fetchone() == ("used", 2001)
