"""Admin page: console accounts. List them, add one (a generated password shown once), give a new password (shown
once; their sessions end), change a role, lift a lockout, remove one (never yourself, never the last admin).

A password is only ever on the page that answers the post that made it: nothing keeps it to show again.
"""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from loyalbot.chat.languages import LANGUAGES
from loyalbot.console.accounts import (
    ROLES,
    AccountError,
    LastAdmin,
    UnknownOperator,
    check_name,
    create_operator,
    is_locked_now,
    list_operators,
    new_password,
    remove_operator,
    set_password,
    set_role,
    unlock,
)
from loyalbot.console.accounts import SignedIn as Who
from loyalbot.console.pages.admin_forms import AdminPost, actor, done_message, raw_field, refuse
from loyalbot.console.pages.web import N_, Admin, Deps, gettext, render

log = logging.getLogger(__name__)
router = APIRouter()
PAGE = "/console/operators"


async def _page(request: Request, console: Deps, who: Who, *, status: int = 200, errors: dict[str, str] | None = None,
                values: dict[str, str] | None = None, shown: dict[str, str] | None = None) -> Response:
    operators = await list_operators(console.db)
    return render(request, "admin/operators.html", status=status, operators=operators, roles=ROLES,
                  locked={o.name: is_locked_now(o) for o in operators}, errors=errors or {},
                  values=values or {"name": "", "role": "operator", "language": "en"}, shown=shown,
                  flash=done_message(request, who.language))


def _refused(exc: AccountError) -> Exception:
    if isinstance(exc, UnknownOperator):
        return refuse(404, N_("There is no such operator."), "unknown operator")
    if isinstance(exc, LastAdmin):
        return refuse(409, N_("This is the last admin: make another operator admin first."), "last admin")
    return refuse(400, N_("This change was refused."), type(exc).__name__)


def _target(name: str) -> str:
    try:
        return check_name(name)
    except AccountError:
        raise refuse(404, N_("There is no such operator."), "a malformed operator name") from None


@router.get(PAGE, include_in_schema=False)
async def operators_page(request: Request, console: Deps, who: Admin) -> Response:
    return await _page(request, console, who)


@router.post(PAGE, include_in_schema=False)
async def add(request: Request, console: Deps, who: AdminPost) -> Response:
    form = await request.form()
    lang = who.language
    name, name_problem = raw_field(form, "name", 64)
    role, _ = raw_field(form, "role", 16)
    language, _ = raw_field(form, "language", 16)
    errors: dict[str, str] = {}
    if name_problem:
        errors["name"] = gettext(lang, name_problem, limit=64)
    elif not name:
        errors["name"] = gettext(lang, "Enter a name.")
    else:
        try:
            name = check_name(name)
        except AccountError:
            errors["name"] = gettext(lang, "A name is 1-64 letters, digits and . _ - @ (no spaces).")
    if role not in ROLES:
        errors["role"] = gettext(lang, "Choose a role from the list.")
    if language not in LANGUAGES:
        errors["language"] = gettext(lang, "Choose a language from the list.")
    if not errors:
        password = new_password()
        try:
            await create_operator(console.db, name, password, role=role, language=language, actor=actor(who))
        except AccountError:
            errors["name"] = gettext(lang, "An operator with this name already exists.")
        else:
            log.info("console: operator %s added a console account (%s)", who.operator_id, role)
            return await _page(request, console, who, status=201, shown={"name": name, "password": password,
                                                                          "why": "added"})
    log.info("console: refused a new console account: %s", ", ".join(sorted(errors)))
    return await _page(request, console, who, status=422, errors=errors,
                       values={"name": name, "role": role, "language": language})


@router.post(PAGE + "/{name}/password", include_in_schema=False)
async def reset_password(request: Request, console: Deps, who: AdminPost, name: str) -> Response:
    password = new_password()
    try:
        done = await set_password(console.db, _target(name), password, actor=actor(who))
    except AccountError as exc:
        raise _refused(exc) from None
    log.info("console: operator %s gave operator %s a new password", who.operator_id, done.id)
    return await _page(request, console, who, shown={"name": done.name, "password": password, "why": "reset"})


@router.post(PAGE + "/{name}/role", include_in_schema=False)
async def change_role(request: Request, console: Deps, who: AdminPost, name: str) -> Response:
    role, _ = raw_field(await request.form(), "role", 16)
    if role not in ROLES:
        raise refuse(400, N_("Choose a role from the list."), "an unknown role")
    try:
        done = await set_role(console.db, _target(name), role, actor=actor(who))
    except AccountError as exc:
        raise _refused(exc) from None
    log.info("console: operator %s made operator %s %s", who.operator_id, done.id, role)
    return RedirectResponse(f"{PAGE}?done=operator_role", status_code=303)


@router.post(PAGE + "/{name}/unlock", include_in_schema=False)
async def unlock_account(console: Deps, who: AdminPost, name: str) -> Response:
    try:
        done = await unlock(console.db, _target(name), actor=actor(who))
    except AccountError as exc:
        raise _refused(exc) from None
    log.info("console: operator %s unlocked operator %s", who.operator_id, done.id)
    return RedirectResponse(f"{PAGE}?done=operator_unlocked", status_code=303)


@router.get(PAGE + "/{name}/remove", include_in_schema=False)
async def confirm_remove(request: Request, console: Deps, who: Admin, name: str) -> Response:
    target = _target(name)
    if target == who.name:
        raise refuse(409, N_("You cannot remove your own account."), "an admin tried to remove themselves")
    if target not in {o.name for o in await list_operators(console.db)}:
        raise refuse(404, N_("There is no such operator."), "unknown operator")
    return render(request, "admin/confirm.html", heading=gettext(who.language, "Remove %(name)s?", name=target),
                  text=gettext(who.language, "They are signed out at once and can no longer sign in."),
                  action=request.url.path, button=gettext(who.language, "Remove"), back=PAGE)


@router.post(PAGE + "/{name}/remove", include_in_schema=False)
async def remove(console: Deps, who: AdminPost, name: str) -> Response:
    target = _target(name)
    if target == who.name:
        raise refuse(409, N_("You cannot remove your own account."), "an admin tried to remove themselves")
    try:
        await remove_operator(console.db, target, actor=actor(who))
    except AccountError as exc:
        raise _refused(exc) from None
    log.info("console: operator %s removed a console account", who.operator_id)
    return RedirectResponse(f"{PAGE}?done=operator_removed", status_code=303)
