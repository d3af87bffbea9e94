"""The operator console in a real Chromium: `loyalbot api` on a store of the test's own, accounts for an admin
and an operator, signing in through the form, and a screenshot of each page for review.

Screenshots go to $LOYALBOT_SCREENSHOTS, else .screenshots/console/ in the checkout (git ignores it): after a
run, open them to see every console page as an operator does.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from loyalbot.console.accounts import add_operator
from loyalbot.loyalty import Loyalty, load_programme
from loyalbot.storage import Db
from loyalbot.storage.migrate import upgrade_async
from tests.browser.conftest import CHROMIUM_ARGS, ROOT
from tests.console.test_process import start_api, stop_api

ADMIN, OPERATOR = ("ada", "ada-admin-pass-1"), ("mia", "mia-operator-pass")
SHOTS = Path(os.environ.get("LOYALBOT_SCREENSHOTS") or ROOT / ".screenshots" / "console")
SHOTS.mkdir(parents=True, exist_ok=True)


@dataclass
class ConsoleSite:
    base: str
    store_url: str
    process: Any

    def db(self) -> Db:
        return Db(self.store_url)


async def prepare_store(store_url: str, prepare: Callable[[Db, Loyalty], Awaitable[None]] | None = None) -> None:
    db = Db(store_url)
    try:
        loyalty = Loyalty(db, load_programme())
        await loyalty.sync_programme()
        await add_operator(db, ADMIN[0], ADMIN[1], role="admin")
        await add_operator(db, OPERATOR[0], OPERATOR[1], role="operator")
        if prepare is not None:
            await prepare(db, loyalty)
    finally:
        await db.dispose()


@contextlib.asynccontextmanager
async def console_site(tmp_path: Path, prepare: Callable[[Db, Loyalty], Awaitable[None]] | None = None,
                       **settings: str) -> AsyncIterator[ConsoleSite]:
    """`loyalbot api` (console included) on a fresh SQLite store with the two accounts and `prepare`'s data."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'console.db'}"
    await upgrade_async(url)
    await prepare_store(url, prepare)
    base, process = await asyncio.to_thread(start_api, url, tmp_path, **settings)
    try:
        yield ConsoleSite(base, url, process)
    finally:
        stop_api(process)


@contextlib.asynccontextmanager
async def browser_page(chromium: str, *, viewport: dict[str, int] | None = None) -> AsyncIterator[Any]:
    """A Chromium page that fails the test on a page error or a request to any other host."""
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page(viewport=viewport or {"width": 1280, "height": 900})
            page.errors = []  # type: ignore[attr-defined]
            page.on("pageerror", lambda exc: page.errors.append(str(exc)))  # type: ignore[attr-defined]
            yield page
        finally:
            await browser.close()


async def sign_in(page: Any, base: str, who: tuple[str, str] = OPERATOR) -> None:
    await page.goto(f"{base}/console/signin")
    await page.get_by_label("Name").fill(who[0])
    await page.get_by_label("Password").fill(who[1])
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_url(f"{base}/console**")


async def shot(page: Any, name: str) -> Path:
    """Save the whole page as .screenshots/console/<name>.png (for review) and return the path."""
    path = SHOTS / f"{name}.png"  # the folder is made at import
    await page.screenshot(path=str(path), full_page=True)
    return path


@pytest.fixture
def screenshots() -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    return SHOTS
