"""The operator console's pages: one module per area, each an APIRouter under /console.

`mount_console` adds them to the HTTP app with what they share (`ConsoleDeps`), the navigation, and the
answers to refusals (the sign-in page for a visitor without a session, a page saying why for the rest).
Add an area by writing its module, including its router here and adding its navigation entry.
"""

from __future__ import annotations

import logging
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from loyalbot.console.accounts import Sessions
from loyalbot.console.pages import (
    apikeys,
    auth,
    campaigns,
    feedback,
    home,
    members,
    operators,
    programme,
    schedules,
    segments,
    staff,
    support,
    surveys,
)
from loyalbot.console.pages.web import TEMPLATES, ConsoleDeps, ConsoleRefusal, NavItem, SignInRequired, render
from loyalbot.loyalty import Loyalty
from loyalbot.storage import Db
from loyalbot.storage.throttle import FailureLimit

log = logging.getLogger(__name__)

NAV = [
    NavItem("/console", "Dashboard"),
    NavItem("/console/members", "Members"),
    NavItem("/console/programme", "Programme"),
    NavItem("/console/schedules", "Schedules"),
    NavItem("/console/segments", "Segments"),
    NavItem("/console/feedback", "Feedback"),
    NavItem("/console/surveys", "Surveys"),
    NavItem("/console/support", "Support"),
    NavItem("/console/staff", "Staff", admin=True),
    NavItem("/console/operators", "Operators", admin=True),
    NavItem("/console/apikeys", "API keys", admin=True),
]


def mount_console(app: FastAPI, db: Db, loyalty: Loyalty, *, sessions: Sessions, signin_limit: FailureLimit,
                  secure_cookies: bool = False) -> ConsoleDeps:
    console = ConsoleDeps(db=db, loyalty=loyalty, sessions=sessions, secure_cookies=secure_cookies, nav=list(NAV))
    app.state.console = console
    app.state.console_signin_limit = signin_limit
    app.mount("/console/static", StaticFiles(directory=TEMPLATES.parent / "static"), name="console-static")
    for module in (auth, home, schedules, segments, campaigns, staff, operators, apikeys, members, feedback, surveys,
                   support, programme):
        app.include_router(module.router)

    @app.exception_handler(SignInRequired)
    async def to_signin(request: Request, exc: SignInRequired) -> Response:
        if request.headers.get("hx-request"):
            return Response(status_code=401, headers={"HX-Redirect": "/console/signin"})
        return RedirectResponse(f"/console/signin?next={quote(exc.next_path, safe='/')}", status_code=303)

    @app.exception_handler(ConsoleRefusal)
    async def refused(request: Request, exc: ConsoleRefusal) -> Response:
        return render(request, "refused.html", status=exc.status_code, detail=exc.detail)

    return console


__all__ = ["ConsoleDeps", "NavItem", "mount_console"]
