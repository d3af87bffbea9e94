"""Operators sign in with a name and password, stay signed in by a signed cookie, and sign out; forms need
their CSRF token; wrong passwords lock the account; nothing is said about which names exist."""

from __future__ import annotations

import re

import httpx
import pytest
import sqlalchemy as sa

from loyalbot.console.accounts import COOKIE, LOCK_AFTER, AccountError, add_operator
from loyalbot.console.api import HttpLimits, create_app
from loyalbot.storage.models import ConsoleSession, Operator
from loyalbot.storage.throttle import SqlThrottle

PASSWORD = "correct horse battery"


@pytest.fixture
async def console(db, loyalty):
    await add_operator(db, "mia", PASSWORD, role="operator")
    await add_operator(db, "root", PASSWORD + "!", role="admin")
    app = create_app(db, loyalty, throttle=SqlThrottle(db), limits=HttpLimits(auth_failures=50))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app, client=("198.51.100.9", 4000)),
                                 base_url="http://console") as web:
        yield web


def csrf_of(page: httpx.Response) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert found, "the page has no CSRF token in its forms"
    return found.group(1)


async def sign_in(web: httpx.AsyncClient, name: str = "mia", password: str = PASSWORD) -> httpx.Response:
    return await web.post("/console/signin", data={"name": name, "password": password, "next": "/console"})


async def test_a_visitor_is_sent_to_sign_in_and_back_to_the_page_they_asked_for(console):
    asked = await console.get("/console?days=7")
    assert asked.status_code == 303 and asked.headers["location"].startswith("/console/signin?next=/console")
    form = await console.get(asked.headers["location"])
    assert form.status_code == 200 and 'name="password"' in form.text and 'autocomplete="current-password"' in form.text
    signed = await console.post("/console/signin", data={"name": "mia", "password": PASSWORD, "next": "/console?days=7"})
    assert signed.status_code == 303 and signed.headers["location"] == "/console?days=7"
    cookie = signed.headers["set-cookie"]
    assert f"{COOKIE}=" in cookie and "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict")
    assert PASSWORD not in cookie
    home = await console.get("/console?days=7")
    assert home.status_code == 200 and "mia" in home.text and "Sign out" in home.text


async def test_next_never_leads_off_the_console(console):
    for target in ("https://evil.example/", "//evil.example/x", "/console\\@evil", "javascript:alert(1)"):
        signed = await console.post("/console/signin", data={"name": "mia", "password": PASSWORD, "next": target})
        assert signed.headers["location"] == "/console"


async def test_wrong_password_and_unknown_name_get_the_same_answer(console):
    wrong = await sign_in(console, password="not the password")
    unknown = await sign_in(console, name="nobody")
    assert wrong.status_code == unknown.status_code == 401
    assert "Wrong name or password." in wrong.text and "Wrong name or password." in unknown.text
    assert COOKIE not in wrong.headers.get("set-cookie", "")
    assert (await console.get("/console")).status_code == 303


async def test_repeated_wrong_passwords_lock_the_account_even_for_the_right_one(console, db):
    for _ in range(LOCK_AFTER):
        assert (await sign_in(console, password="guess guess guess")).status_code == 401
    locked = await sign_in(console)
    assert locked.status_code == 401 and "locked" in locked.text
    assert (await console.get("/console")).status_code == 303
    async with db.read() as s:
        until = (await s.execute(sa.select(Operator.locked_until).where(Operator.name == "mia"))).scalar_one()
    assert until is not None
    await add_operator(db, "mia", PASSWORD)  # an admin sets a new password: unlocked
    assert (await sign_in(console)).status_code == 303


async def test_too_many_failures_from_one_address_are_throttled(db, loyalty):
    await add_operator(db, "mia", PASSWORD)
    app = create_app(db, loyalty, throttle=SqlThrottle(db), limits=HttpLimits(auth_failures=3, auth_window=300))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app, client=("203.0.113.50", 1)),
                                 base_url="http://console") as web:
        for name in ("a1", "a2", "a3"):
            await sign_in(web, name=name, password="x" * 12)
        refused = await sign_in(web)
        assert refused.status_code == 429 and int(refused.headers["retry-after"]) > 0


async def test_a_post_without_its_csrf_token_changes_nothing(console, db):
    await sign_in(console)
    page = await console.get("/console")
    token = csrf_of(page)
    forged = await console.post("/console/language", data={"language": "zh_Hans"})
    assert forged.status_code == 400 and "did not come from the console" in forged.text
    wrong = await console.post("/console/language", data={"language": "zh_Hans", "csrf": token[:-2] + "xx"})
    assert wrong.status_code == 400
    async with db.read() as s:
        assert (await s.execute(sa.select(Operator.language).where(Operator.name == "mia"))).scalar_one() == "en"
    done = await console.post("/console/language", data={"language": "zh_Hans", "csrf": token, "next": "/console"})
    assert done.status_code == 303
    assert "仪表板" in (await console.get("/console")).text


async def test_signing_out_revokes_the_session_even_for_a_copied_cookie(console, db):
    await sign_in(console)
    copied = console.cookies.get(COOKIE)
    token = csrf_of(await console.get("/console"))
    out = await console.post("/console/signout", data={"csrf": token})
    assert out.status_code == 303 and out.headers["location"] == "/console/signin"
    console.cookies.clear()
    console.cookies.set(COOKIE, copied, path="/console")
    assert (await console.get("/console")).status_code == 303
    async with db.read() as s:
        assert (await s.execute(sa.select(ConsoleSession.revoked_at))).scalar_one() is not None


async def test_a_forged_or_altered_cookie_is_not_a_session(console):
    console.cookies.set(COOKIE, "abc.def.ghi", path="/console")
    assert (await console.get("/console")).status_code == 303
    console.cookies.clear()
    await sign_in(console)
    good = console.cookies.get(COOKIE)
    console.cookies.clear()
    console.cookies.set(COOKIE, good[:-3] + ("AAA" if not good.endswith("AAA") else "BBB"), path="/console")
    assert (await console.get("/console")).status_code == 303


async def test_bootstrap_password_makes_the_first_admin_only_when_there_is_none(db, loyalty):
    app = create_app(db, loyalty, console_password="first-admin-pass")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://console") as web:
        assert (await sign_in(web, name="operator", password="first-admin-pass")).status_code == 303
    async with db.read() as s:
        assert (await s.execute(sa.select(Operator.role).where(Operator.name == "operator"))).scalar_one() == "admin"


async def test_weak_passwords_and_odd_names_are_refused(db):
    with pytest.raises(AccountError, match="at least"):
        await add_operator(db, "mia", "short")
    with pytest.raises(AccountError, match="letters"):
        await add_operator(db, "mia\x00", PASSWORD)
    with pytest.raises(AccountError, match="role"):
        await add_operator(db, "mia", PASSWORD, role="root")
