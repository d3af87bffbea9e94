"""A person in a real browser: opens the demo page, joins in Chinese, redeems a coffee, and staff use the coupon.

Runs `loyalbot demo` as a newcomer would (a subprocess in an empty folder) and drives Debian's
Chromium with Playwright. Fails, never skips, when Chromium is missing: .ci/run installs it.
"""

from __future__ import annotations

import os
import re
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from playwright.async_api import Page, async_playwright, expect

from bot.local_api import LocalApiControl
from handlers.i18n import Translator

CHROMIUM = "/usr/bin/chromium"
ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.browser


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def demo(tmp_path):
    assert Path(CHROMIUM).exists(), "Debian's chromium is needed (apt-get install chromium; .ci/run does it)"
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOYALBOT_")} | {"PYTHONPATH": str(ROOT)}
    log = (tmp_path / "demo.log").open("w")
    process = subprocess.Popen([sys.executable, "-m", "bot.cli", "demo", "--port", str(port)], cwd=tmp_path,
                               env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"demo exited: {(tmp_path / 'demo.log').read_text()[-2000:]}")
        try:
            if httpx.get(url + "/control/health", timeout=1).status_code == 200 and "running" in (
                    tmp_path / "demo.log").read_text():
                break
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    else:
        raise AssertionError("the demo did not come up within 60 s")
    yield url
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
    assert process.returncode in (0, -15), (tmp_path / "demo.log").read_text()[-2000:]


async def say(page: Page, text: str) -> None:
    await page.get_by_test_id("message-input").fill(text)
    await page.get_by_test_id("send-button").click()


async def press(page: Page, label: str) -> None:
    await page.get_by_test_id("inline-button").filter(has_text=label).last.click()


async def last_bubble_says(page: Page, text: str) -> None:
    await expect(page.get_by_test_id("message-bubble").filter(has_text=text).last).to_be_visible(timeout=15_000)


async def test_join_in_chinese_redeem_and_staff_use_the_coupon(demo, tmp_path):
    demo_db = tmp_path / "loyalbot-demo.db"
    t = Translator("zh_Hans")
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync"])
        try:
            page = await browser.new_page()
            await page.goto(demo)
            await page.get_by_test_id("identity-picker").select_option("1002")  # 小明, zh-hans

            await say(page, "/start")
            await press(page, "✓")  # the language Telegram reported is preselected
            await press(page, t.label("button.accept"))
            await press(page, t.label("button.yes_please"))
            await press(page, t.label("button.skip"))  # no birthday
            await page.get_by_test_id("reply-button").filter(has_text=t.label("button.share_phone")).click()
            await last_bubble_says(page, "欢迎加入")

            await page.get_by_test_id("reply-button").filter(has_text=t.label("menu.card")).click()
            card = page.get_by_test_id("message-bubble").filter(has=page.locator("img")).last
            await expect(card).to_be_visible(timeout=15_000)
            assert await card.locator("img").evaluate("img => img.complete && img.naturalWidth > 0")

            await page.get_by_test_id("reply-button").filter(has_text=t.label("menu.rewards")).click()
            await press(page, "任选咖啡一杯")
            await press(page, t.label("button.confirm"))
            coupon = page.get_by_test_id("message-bubble").filter(has=page.locator("img")).last
            await expect(coupon).to_contain_text(re.compile(r"[0-9A-Z]{4}-[0-9A-Z]{4}-[0-9A-Z]{4}-[0-9A-Z]{4}"),
                                                 timeout=15_000)
            code = re.search(r"[0-9A-Z]{4}(?:-[0-9A-Z]{4}){3}", await coupon.inner_text()).group(0)

            await page.get_by_test_id("identity-picker").select_option("2001")  # Sam at the counter
            await say(page, f"/use {code}")
            await press(page, Translator("en").label("button.confirm"))
            await last_bubble_says(page, code)
            async with LocalApiControl(demo) as telegram:
                said = [m.get("text") or "" for m in await telegram.transcript(2001) if m["direction"] != "in"]
            assert code in said[-1]
        finally:
            await browser.close()
    with sqlite3.connect(demo_db) as store:
        assert store.execute("SELECT status, used_by FROM coupons WHERE code = ?", (code,)).fetchone() == ("used", 2001)
