"""Signing in and out, and the operator's language.

Sign-in is refused, with the same words, for a wrong name or a wrong password; five wrong passwords in a
row lock the account for 15 minutes (console/accounts.py), and every client address is held to the HTTP
side's failure limit as well (429 with Retry-After), so neither one account nor many can be guessed at.
"""

from __future__ import annotations

import logging
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response

from loyalbot.chat.languages import LANGUAGES
from loyalbot.console.accounts import COOKIE, SESSION_FOR, add_operator, has_operators, is_locked, sign_in
from loyalbot.console.pages.web import Csrf, Deps, form_text, gettext, render, visitor_language
from loyalbot.storage.throttle import FailureLimit

log = logging.getLogger(__name__)
router = APIRouter()
BOOTSTRAP_NAME = "operator"  # the first admin's name when LOYALBOT_CONSOLE_PASSWORD makes it


def _safe_next(value: str | None) -> str:
    """Only a path inside the console: never another site (an open redirect)."""
    if not value or not value.startswith("/console") or urlsplit(value).netloc or "\\" in value:
        return "/console"
    return value


def _client(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def signin_limit(request: Request) -> FailureLimit:
    limit: FailureLimit = request.app.state.console_signin_limit
    return limit


@router.get("/console/signin", include_in_schema=False)
async def signin_page(request: Request, console: Deps) -> Response:
    who = await console.sessions.find(request.cookies.get(COOKIE))
    if who is not None:
        return RedirectResponse(_safe_next(request.query_params.get("next")), status_code=303)
    return render(request, "signin.html", next=_safe_next(request.query_params.get("next")), error=None, name="")


@router.post("/console/signin", include_in_schema=False)
async def signin(request: Request, console: Deps,
                 limit: Annotated[FailureLimit, Depends(signin_limit)]) -> Response:
    lang = visitor_language(request)
    form = await request.form()
    name, password = form_text(form, "name", limit=64), form.get("password")
    target = _safe_next(form_text(form, "next", limit=500))
    client = _client(request)
    if wait := await limit.locked(client):
        log.warning("console: refused a sign-in from %s: too many wrong passwords", client)
        seconds = max(1, int(wait + 0.999))
        refused = render(request, "signin.html", status=429, next=target, name=name,
                         error=gettext(lang, "Too many wrong passwords from this address. Try again in %(seconds)s s.",
                                       seconds=seconds))
        refused.headers["Retry-After"] = str(seconds)
        return refused
    if console.bootstrap_password and not await has_operators(console.db):
        await add_operator(console.db, BOOTSTRAP_NAME, console.bootstrap_password, role="admin")
        log.info("console: made the first admin from LOYALBOT_CONSOLE_PASSWORD")
    found = await sign_in(console.db, name, password) if isinstance(password, str) and name else None
    if found is None:
        await limit.failed(client)
        locked = bool(name) and await is_locked(console.db, name)
        log.warning("console: refused a sign-in from %s%s", client, " (account locked)" if locked else "")
        error = (gettext(lang, "This account is locked after too many wrong passwords. Try again in 15 minutes, "
                               "or ask an admin to set a new password.") if locked
                 else gettext(lang, "Wrong name or password."))
        return render(request, "signin.html", status=401, next=target, name=name, error=error)
    cookie, _who = await console.sessions.open(found)
    log.info("console: operator %s signed in", found.id)
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(COOKIE, cookie, max_age=int(SESSION_FOR.total_seconds()), httponly=True, samesite="strict",
                        secure=console.secure_cookies, path="/console")
    return response


@router.post("/console/signout", include_in_schema=False)
async def signout(console: Deps, who: Csrf) -> Response:
    await console.sessions.close(who.session_id)
    log.info("console: operator %s signed out", who.operator_id)
    response = RedirectResponse("/console/signin", status_code=303)
    response.delete_cookie(COOKIE, path="/console")
    return response


@router.post("/console/language", include_in_schema=False)
async def language(request: Request, console: Deps, who: Csrf) -> Response:
    form = await request.form()
    chosen = form_text(form, "language", limit=16)
    if chosen in LANGUAGES:
        await console.sessions.set_language(who.operator_id, chosen)
    return RedirectResponse(_safe_next(form_text(form, "next", limit=500)), status_code=303)
