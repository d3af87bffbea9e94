"""Admin page: the staff list (who may serve at the counter and in the staff group, loyalty/staff.py). Add someone
by their numeric Telegram user id with a role, change a role, remove someone; the loyalty service audits each."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from loyalbot.console.accounts import SignedIn as Who
from loyalbot.console.pages.admin_forms import AdminPost, actor, done_message, raw_field, refuse
from loyalbot.console.pages.web import N_, Admin, Deps, gettext, render
from loyalbot.loyalty.staff import STAFF_ROLES

log = logging.getLogger(__name__)
router = APIRouter()
PAGE = "/console/staff"
MAX_TELEGRAM_ID = 2**53  # Telegram's user ids fit in 52 bits; anything larger is not one
NAME_LIMIT = 128
ROLE_HELP = {"agent": N_("serves members: the counter and support conversations"),
             "operator": N_("as an agent, and may also undo purchases a colleague recorded"),
             "admin": N_("as an operator, for the shop's managers")}


async def _page(request: Request, console: Deps, who: Who, *, status: int = 200, errors: dict[str, str] | None = None,
                values: dict[str, str] | None = None) -> Response:
    return render(request, "admin/staff.html", status=status, staff=await console.loyalty.list_staff(),
                  roles=STAFF_ROLES, role_help=ROLE_HELP, errors=errors or {},
                  values=values or {"telegram_id": "", "role": "agent", "name": ""},
                  flash=done_message(request, who.language))


def telegram_id_of(text: str) -> int | None:
    """A positive Telegram user id written in ASCII digits, or None."""
    if not text.isascii() or not text.isdigit() or len(text) > 16:
        return None
    value = int(text)
    return value if 0 < value < MAX_TELEGRAM_ID else None


@router.get(PAGE, include_in_schema=False)
async def staff_page(request: Request, console: Deps, who: Admin) -> Response:
    return await _page(request, console, who)


@router.post(PAGE, include_in_schema=False)
async def add(request: Request, console: Deps, who: AdminPost) -> Response:
    form = await request.form()
    lang = who.language
    raw_id, id_problem = raw_field(form, "telegram_id", 32)
    role, _ = raw_field(form, "role", 16)
    name, name_problem = raw_field(form, "name", NAME_LIMIT)
    errors: dict[str, str] = {}
    telegram_id = None if id_problem else telegram_id_of(raw_id)
    if telegram_id is None:
        errors["telegram_id"] = gettext(lang, "A Telegram user id is a whole number above zero, e.g. 123456789.")
    if role not in STAFF_ROLES:
        errors["role"] = gettext(lang, "Choose a role from the list.")
    if name_problem:
        errors["name"] = gettext(lang, name_problem, limit=NAME_LIMIT)
    if errors or telegram_id is None:
        log.info("console: refused a staff entry: %s", ", ".join(sorted(errors)))
        return await _page(request, console, who, status=422, errors=errors,
                           values={"telegram_id": raw_id, "role": role, "name": name})
    await console.loyalty.add_staff(telegram_id, role, name=name or None, actor=actor(who))
    log.info("console: operator %s saved a staff entry (%s)", who.operator_id, role)
    return RedirectResponse(f"{PAGE}?done=staff_saved", status_code=303)


def _member_of_staff(raw: str) -> int:
    telegram_id = telegram_id_of(raw)
    if telegram_id is None:
        raise refuse(404, N_("There is no such staff member."), "a malformed Telegram id")
    return telegram_id


@router.post(PAGE + "/{telegram_id}/role", include_in_schema=False)
async def change_role(request: Request, console: Deps, who: AdminPost, telegram_id: str) -> Response:
    staff_id = _member_of_staff(telegram_id)
    role, _ = raw_field(await request.form(), "role", 16)
    if role not in STAFF_ROLES:
        raise refuse(400, N_("Choose a role from the list."), "an unknown staff role")
    if await console.loyalty.staff_role(staff_id) is None:
        raise refuse(404, N_("There is no such staff member."), "an unknown staff id")
    await console.loyalty.add_staff(staff_id, role, actor=actor(who))
    log.info("console: operator %s changed a staff role to %s", who.operator_id, role)
    return RedirectResponse(f"{PAGE}?done=staff_saved", status_code=303)


@router.get(PAGE + "/{telegram_id}/remove", include_in_schema=False)
async def confirm_remove(request: Request, console: Deps, who: Admin, telegram_id: str) -> Response:
    staff_id = _member_of_staff(telegram_id)
    if await console.loyalty.staff_role(staff_id) is None:
        raise refuse(404, N_("There is no such staff member."), "an unknown staff id")
    return render(request, "admin/confirm.html",
                  heading=gettext(who.language, "Remove %(id)s from the staff?", id=staff_id),
                  text=gettext(who.language, "They can no longer use the counter or the staff group's commands."),
                  action=request.url.path, button=gettext(who.language, "Remove"), back=PAGE)


@router.post(PAGE + "/{telegram_id}/remove", include_in_schema=False)
async def remove(console: Deps, who: AdminPost, telegram_id: str) -> Response:
    staff_id = _member_of_staff(telegram_id)
    if not await console.loyalty.remove_staff(staff_id, actor=actor(who)):
        raise refuse(404, N_("There is no such staff member."), "an unknown staff id")
    log.info("console: operator %s removed a staff entry", who.operator_id)
    return RedirectResponse(f"{PAGE}?done=staff_removed", status_code=303)
