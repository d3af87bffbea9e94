"""The members pages: search by member number, phone or name; a member's page with everything held about them;
adjusting points, voiding a coupon, exporting their data and erasing them.

Every change is a Loyalty service call with the operator as actor ("console:<name>"), which audits it; a form
with something wrong in it is shown again with the reason next to the field (422) and changes nothing.
Erasure, which cannot be undone, is for admins, behind a page that asks for the member number typed out.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from loyalbot.console.members_queries import PAGE, SECTIONS, member_file, page_number
from loyalbot.console.pages.web import (
    N_,
    Admin,
    ConsoleRefusal,
    Csrf,
    Deps,
    Operator,
    form_text,
    gettext,
    render,
)
from loyalbot.loyalty import errors
from loyalbot.loyalty.points import MAX_ADJUSTMENT
from loyalbot.storage import utcnow

log = logging.getLogger(__name__)
router = APIRouter()

MAX_QUERY = 64
MAX_REASON = 500
_POINTS = re.compile(r"^[+-]?[0-9]{1,9}$", re.ASCII)
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")

# What a redirect after a change says (?done=<code>): fixed messages, never text from the query string.
DONE = {
    "adjusted": N_("The points were adjusted."),
    "voided": N_("The coupon was voided."),
    "already_void": N_("The coupon was already void."),
    "erased": N_("The member's personal data was erased."),
}

# Words that templates translate from data: member statuses, message kinds, coupon statuses.
WORDS = (N_("active"), N_("unreachable"), N_("erased"), N_("care"), N_("reminders"), N_("surveys"), N_("offers"),
         N_("activity"), N_("used"), N_("expired"), N_("void"))


def actor_of(who: Any) -> str:
    return f"console:{who.name}"[:64]


def record_id(value: str) -> int:
    """A row id from the path; anything else is a 404 page (and logged), not a validation dump."""
    if not value.isascii() or not value.isdigit() or len(value) > 12:
        log.info("console: refused a malformed id in a path")
        raise ConsoleRefusal(404, "There is nothing here.")
    return int(value)


def has_controls(text: str) -> bool:
    return bool(_CONTROL.search(text))


def flash(request: Request, lang: str) -> str | None:
    code = request.query_params.get("done")
    return gettext(lang, DONE[code]) if code in DONE else None


@router.get("/console/members", include_in_schema=False)
async def search(request: Request, console: Deps, who: Operator) -> Response:
    raw = request.query_params.get("q", "")
    query = " ".join(raw.split())[:MAX_QUERY]
    number = page_number(request.query_params.get("page", "1"))
    error = None
    found: list[Any] = []
    if has_controls(raw) or len(raw) > 200:
        log.info("console: refused a member search with control characters or too long")
        error = gettext(who.language, "Type a member number, a phone number or at least two letters of a name.")
        query = ""
    elif query:
        found = await console.loyalty.search_members(query, offset=(number - 1) * PAGE, limit=PAGE + 1)
        if not found and len(query) < 2:
            error = gettext(who.language, "Type a member number, a phone number or at least two letters of a name.")
    more = len(found) > PAGE
    return render(request, "members/search.html", status=422 if error else 200, q=query, members=found[:PAGE],
                  page=number, more=more, error=error)


async def _member_page(request: Request, console: Deps, who: Any, member_id: int, *, status: int = 200,
                       **values: Any) -> Response:
    section = request.query_params.get("section")
    found = await member_file(console.db, member_id, section=section if section in SECTIONS else None,
                              page=page_number(request.query_params.get("page", "1")), now=utcnow())
    if found is None:
        raise ConsoleRefusal(404, "There is no such member.")
    programme = console.loyalty.programme
    tier_names = {t.code: t.names.get(who.language) or t.names.get("en") or t.code for t in programme.tiers.levels}
    tier_name = tier_names.get(found.member.tier, found.member.tier or "–")
    values.setdefault("form", {})
    values.setdefault("errors", {})
    values.setdefault("flash", flash(request, who.language))
    return render(request, "members/member.html", status=status, file=found, m=found.member, tier_name=tier_name,
                  tier_names=tier_names,
                  currency=programme.programme.currency, **values)


@router.get("/console/members/{member_id}", include_in_schema=False)
async def member_page(request: Request, console: Deps, who: Operator, member_id: str) -> Response:
    return await _member_page(request, console, who, record_id(member_id))


@router.post("/console/members/{member_id}/adjust", include_in_schema=False)
async def adjust(request: Request, console: Deps, who: Csrf, member_id: str) -> Response:
    mid = record_id(member_id)
    form = await request.form()
    points_text, reason = form_text(form, "points", limit=40), form_text(form, "reason", limit=MAX_REASON + 1)
    problems: dict[str, str] = {}
    lang = who.language
    points = 0
    if not _POINTS.fullmatch(points_text) or not 0 < abs(int(points_text)) <= MAX_ADJUSTMENT:
        problems["points"] = gettext(lang, "Type a whole number of points, not zero, at most %(limit)s either way "
                                           "(a minus sign takes points).", limit=f"{MAX_ADJUSTMENT:,}")
    else:
        points = int(points_text)
    if not reason:
        problems["reason"] = gettext(lang, "Say why: the reason is kept with the change.")
    elif len(reason) > MAX_REASON or has_controls(reason):
        problems["reason"] = gettext(lang, "The reason must be plain text of at most %(limit)s characters.",
                                     limit=MAX_REASON)
    if not problems:
        try:
            await console.loyalty.adjust_points(mid, points, reason=reason, actor=actor_of(who))
        except errors.NotEnoughPoints as exc:
            problems["points"] = gettext(lang, "The member holds only %(balance)s points; a balance never goes "
                                               "below zero.", balance=exc.params.get("balance", 0))
        except (errors.MemberErased, errors.UnknownMember):
            raise ConsoleRefusal(409, "This member was erased; their points cannot change.") from None
    if problems:
        log.info("console: refused a points adjustment (%s)", ", ".join(sorted(problems)))
        return await _member_page(request, console, who, mid, status=422, errors=problems,
                                  form={"points": points_text, "reason": reason[:MAX_REASON]})
    return RedirectResponse(f"/console/members/{mid}?done=adjusted#points", status_code=303)


@router.post("/console/members/{member_id}/coupons/{coupon_id}/void", include_in_schema=False)
async def void(request: Request, console: Deps, who: Csrf, member_id: str, coupon_id: str) -> Response:
    mid, cid = record_id(member_id), record_id(coupon_id)
    try:
        _coupon, repeated = await console.loyalty.void_coupon(cid, actor=actor_of(who), member_id=mid)
    except errors.UnknownCoupon:
        log.info("console: refused voiding a coupon that is not this member's")
        raise ConsoleRefusal(404, "This member has no such coupon.") from None
    except errors.CouponAlreadyUsed:
        raise ConsoleRefusal(409, "This coupon was already used at the counter; it cannot be voided.") from None
    except errors.CouponExpired:
        raise ConsoleRefusal(409, "This coupon has expired; there is nothing to void.") from None
    return RedirectResponse(f"/console/members/{mid}?done={'already_void' if repeated else 'voided'}#coupons",
                            status_code=303)


@router.post("/console/members/{member_id}/export", include_in_schema=False)
async def export(request: Request, console: Deps, who: Csrf, member_id: str) -> Response:
    mid = record_id(member_id)
    try:
        data = await console.loyalty.export_member_data(mid, actor=actor_of(who))
    except errors.MemberErased:
        raise ConsoleRefusal(410, "This member was erased; nothing personal is left to export.") from None
    except errors.UnknownMember:
        raise ConsoleRefusal(404, "There is no such member.") from None
    name = f"member-{data['member']['member_no']}.json"
    return Response(json.dumps(data, ensure_ascii=False, indent=2), media_type="application/json",
                    headers={"Content-Disposition": f'attachment; filename="{name}"', "Cache-Control": "no-store"})


async def _erase_page(request: Request, console: Deps, member_id: int, *, status: int = 200,
                      error: str | None = None) -> Response:
    found = await member_file(console.db, member_id, now=utcnow())
    if found is None:
        raise ConsoleRefusal(404, "There is no such member.")
    if found.member.status == "erased":
        return RedirectResponse(f"/console/members/{member_id}", status_code=303)
    return render(request, "members/erase.html", status=status, m=found.member, error=error)


@router.get("/console/members/{member_id}/erase", include_in_schema=False)
async def erase_form(request: Request, console: Deps, _who: Admin, member_id: str) -> Response:
    return await _erase_page(request, console, record_id(member_id))


@router.post("/console/members/{member_id}/erase", include_in_schema=False)
async def erase(request: Request, console: Deps, who: Csrf, _admin: Admin, member_id: str) -> Response:
    mid = record_id(member_id)
    form = await request.form()
    typed = form_text(form, "confirm", limit=40).upper().removeprefix("LBM:")
    found = await member_file(console.db, mid, now=utcnow())
    if found is None:
        raise ConsoleRefusal(404, "There is no such member.")
    if found.member.status == "erased":
        return RedirectResponse(f"/console/members/{mid}?done=erased", status_code=303)
    if typed != found.member.member_no:
        log.info("console: refused an erasure without the member number typed")
        error = gettext(who.language, "Type the member number %(number)s exactly to confirm.",
                        number=found.member.member_no)
        return await _erase_page(request, console, mid, status=422, error=error)
    await console.loyalty.erase_member(mid, actor=actor_of(who))
    return RedirectResponse(f"/console/members/{mid}?done=erased", status_code=303)
