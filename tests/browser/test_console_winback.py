"""Issue #11's "done when" in Chromium, as the README's "A win-back campaign, step by step" says it: in `loyalbot
demo`, the operator installs the plays, opens the win-back play in the console (its offer: a coffee coupon), gives
it a control group and two variants on its campaign settings page and runs it; a lapsed regular finds the message
with a "Show my coupon" button in their chat on the demo page; Sam records their purchase at the counter; the
results page shows the conversion and the lift against the control group."""

from __future__ import annotations

import asyncio
import json
import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from playwright.async_api import async_playwright, expect

from loyalbot.bot.seed import DEMO_LAPSED
from tests.browser.conftest import CHROMIUM_ARGS
from tests.browser.console_site import shot
from tests.browser.test_demo_page import WAIT, bubble_says, press, say
from tests.scenario.test_demo_winback import HOLDOUT_PCT, OPENINGS, variants_json

pytestmark = pytest.mark.browser


def operator_cli(folder: Path, *args: str) -> str:
    """`loyalbot ...` in a second terminal in the demo's folder, as the README says."""
    env = {**os.environ, "LOYALBOT_DATABASE_URL": "sqlite:///loyalbot-demo.db", "COLUMNS": "200", "NO_COLOR": "1",
           "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    done = subprocess.run([sys.executable, "-m", "loyalbot.bot.cli", *args], cwd=folder, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


async def sent_rows(store: Path) -> list[tuple[int, str, str, str, str]]:
    """(telegram id, member no, language, variant, coupon code) of each win-back message, once all are sent."""
    query = ("SELECT m.telegram_id, m.member_no, m.language, o.variant, c.code, o.status FROM outbox o "
             "JOIN members m ON m.id = o.member_id JOIN schedules s ON s.id = o.schedule_id "
             "LEFT JOIN coupons c ON c.id = o.coupon_id WHERE s.name = 'play-winback-90' ORDER BY o.id")
    for _ in range(150):
        with sqlite3.connect(store) as db:
            rows = db.execute(query).fetchall()
        if rows and all(r[5] == "sent" for r in rows):
            return [r[:5] for r in rows]
        await asyncio.sleep(0.2)
    raise AssertionError(f"the win-back messages were not all sent: {rows}")


async def purchases_of(store: Path, member_no: str) -> int:
    with sqlite3.connect(store) as db:
        return int(db.execute("SELECT count(*) FROM purchases p JOIN members m ON m.id = p.member_id "
                              "WHERE m.member_no = ? AND p.external_id NOT LIKE 'demo-%'", (member_no,)).fetchone()[0])


async def test_a_winback_campaign_in_the_demo_from_console_to_lift(demo_process, chromium, tmp_path):
    demo_process.start()
    store = tmp_path / "loyalbot-demo.db"
    info = json.loads((tmp_path / "loyalbot-demo.console.json").read_text())
    console = info["console"].removesuffix("/console")
    assert "play-winback-90" in operator_cli(tmp_path, "campaign", "plays", "install")
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            page = await (await browser.new_context()).new_page()
            await page.goto(f"{console}/console")
            await page.get_by_label("Name").fill("operator")
            await page.get_by_label("Password").fill(info["password"])
            await page.get_by_role("button", name="Sign in").click()
            await expect(page.get_by_role("heading", name="Dashboard")).to_be_visible()

            await page.get_by_role("link", name="Schedules").click()
            await page.get_by_role("link", name="play-winback-90").click()
            await expect(page.get_by_label("Give each recipient a free coupon for")).to_have_value("coffee")  # the play's offer: a coffee coupon
            await shot(page, "winback-play")
            await page.get_by_role("link", name="Campaign settings").click()
            await page.get_by_label("Held out as the control group (%)").fill(str(HOLDOUT_PCT))
            await page.get_by_label("Variants (JSON)").fill(variants_json())
            await shot(page, "winback-campaign-settings")
            await page.get_by_role("button", name="Save").click()
            await expect(page.get_by_role("status").filter(has_text="Saved.")).to_be_visible()
            await page.get_by_role("button", name="Run now").click()
            await expect(page.get_by_role("status").filter(has_text="Run planned")).to_be_visible()

            rows = await sent_rows(store)
            with sqlite3.connect(store) as db:
                held = db.execute("SELECT count(*) FROM campaign_holdouts").fetchone()[0]
            assert held >= 1 and len(rows) + held == len(DEMO_LAPSED)
            assert {r[3] for r in rows} == {"A", "B"}
            telegram_id, member_no, language, variant, code = rows[0]
            chat = await (await browser.new_context()).new_page()
            await chat.goto(demo_process.url)
            await chat.get_by_test_id("identity-picker").select_option(str(telegram_id))
            await bubble_says(chat, OPENINGS[variant][language])
            coupon = {"en": "Show my coupon", "zh_Hans": "查看我的优惠券", "zh_Hant": "查看我的優惠券"}[language]
            await expect(chat.get_by_test_id("inline-button").filter(has_text=coupon)).to_be_visible(timeout=WAIT)
            await press(chat, coupon)
            await bubble_says(chat, code)
            await shot(chat, "winback-member-coupon")

            await chat.get_by_test_id("identity-picker").select_option("2001")  # Sam at the counter
            await say(chat, f"/award {member_no} 12.50")
            await press(chat, "Confirm")
            for _ in range(100):
                if await purchases_of(store, member_no):
                    break
                await asyncio.sleep(0.2)
            assert await purchases_of(store, member_no) == 1

            await page.get_by_role("link", name="Results").click()
            await expect(page.get_by_role("heading", name="Results: play-winback-90")).to_be_visible()
            table = page.get_by_role("table")
            treated = table.get_by_role("row").filter(has=page.get_by_role("rowheader", name="All variants"))
            control = table.get_by_role("row").filter(has=page.get_by_role("rowheader", name="Control group"))
            cells = await treated.get_by_role("cell").all_inner_texts()
            assert cells[:2] == [str(len(rows)), "1"], cells  # sent, converted
            assert cells[2].startswith(f"{100 / len(rows):.1f}%"), cells
            assert (await control.get_by_role("cell").all_inner_texts())[:2] == [str(held), "0"]
            lift = re.match(r"([\d.]+) points \((-[\d.]+) – ([\d.]+)\)", cells[-1].replace("\u2212", "-"))
            assert lift, cells
            assert float(lift.group(1)) == pytest.approx(100 / len(rows), abs=0.06)
            other = table.get_by_role("row").filter(
                has=page.get_by_role("rowheader", name=f"Variant {'A' if variant == 'B' else 'B'}"))
            other_cells = await other.get_by_role("cell").all_inner_texts()
            assert other_cells[1] == "0" and other_cells[-1] == "0.0 points (too few to tell)", other_cells
            await shot(page, "winback-results")
            assert "Traceback" not in demo_process.log()
        finally:
            await browser.close()
