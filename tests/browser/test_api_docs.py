"""/api/docs renders in a real Chromium offline, from the files shipped in the package, under the CSP."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.async_api import async_playwright, expect

from tests.console.test_process import start_api, stop_api

pytestmark = pytest.mark.browser
CHROMIUM = "/usr/bin/chromium"


@pytest.fixture
def served(tmp_path: Path):
    assert Path(CHROMIUM).exists(), "Debian's chromium is needed (apt-get install chromium; .ci/run does it)"
    base, process = start_api(f"sqlite+aiosqlite:///{tmp_path / 'docs.db'}", tmp_path)
    try:
        yield base
    finally:
        stop_api(process)


async def test_the_api_docs_page_renders_without_any_other_host(served: str):
    base = served
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"])
        try:
            page = await browser.new_page()
            hosts, problems = set(), []
            page.on("request", lambda r: hosts.add(r.url.split("/")[2]))
            page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
            await page.goto(f"{base}/api/docs")
            await expect(page.locator(".swagger-ui .info .title")).to_contain_text("loyalbot API", timeout=15_000)
            await expect(page.get_by_text("/api/v1/purchases").first).to_be_visible()
        finally:
            await browser.close()
    assert hosts == {base.removeprefix("http://")}  # nothing from a CDN
    assert not [p for p in problems if "Content Security Policy" in p], problems
