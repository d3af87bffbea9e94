"""Admin page: keys for shop systems. Make one (the key is shown once, on the answer to the post that made it: only
its hash is kept), list them (name, prefix, created, last used, revoked), revoke one after a confirmation."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from loyalbot.console.accounts import SignedIn as Who
from loyalbot.console.apikeys import NAME_LIMIT, create_api_key, list_api_keys, revoke_api_key_by_id
from loyalbot.console.pages.admin_forms import AdminPost, actor, done_message, raw_field, refuse
from loyalbot.console.pages.web import N_, Admin, Deps, gettext, render

log = logging.getLogger(__name__)
router = APIRouter()
PAGE = "/console/apikeys"


async def _page(request: Request, console: Deps, who: Who, *, status: int = 200, errors: dict[str, str] | None = None,
                name: str = "", shown: dict[str, str] | None = None) -> Response:
    return render(request, "admin/apikeys.html", status=status, keys=await list_api_keys(console.db),
                  errors=errors or {}, name=name, shown=shown, flash=done_message(request, who.language))


def _key_id(raw: str) -> int:
    if not raw.isascii() or not raw.isdigit() or len(raw) > 12:
        raise refuse(404, N_("There is no such key."), "a malformed key id")
    return int(raw)


@router.get(PAGE, include_in_schema=False)
async def keys_page(request: Request, console: Deps, who: Admin) -> Response:
    return await _page(request, console, who)


@router.post(PAGE, include_in_schema=False)
async def create(request: Request, console: Deps, who: AdminPost) -> Response:
    name, problem = raw_field(await request.form(), "name", NAME_LIMIT)
    if problem or not name:
        error = (gettext(who.language, problem, limit=NAME_LIMIT) if problem
                 else gettext(who.language, "Name the shop system the key is for, e.g. “till 1”."))
        log.info("console: refused a new API key: bad name")
        return await _page(request, console, who, status=422, errors={"name": error}, name=name)
    key = await create_api_key(console.db, name, actor=actor(who))
    log.info("console: operator %s made an API key", who.operator_id)
    return await _page(request, console, who, status=201, shown={"name": name, "key": key})


@router.get(PAGE + "/{key_id}/revoke", include_in_schema=False)
async def confirm_revoke(request: Request, console: Deps, who: Admin, key_id: str) -> Response:
    found = next((k for k in await list_api_keys(console.db) if k.id == _key_id(key_id)), None)
    if found is None:
        raise refuse(404, N_("There is no such key."), "an unknown key id")
    return render(request, "admin/confirm.html",
                  heading=gettext(who.language, "Revoke the key “%(name)s” (%(prefix)s…)?", name=found.name,
                                  prefix=found.prefix),
                  text=gettext(who.language, "Every call made with it is refused from then on. This cannot be undone: "
                                             "the shop system needs a new key."),
                  action=request.url.path, button=gettext(who.language, "Revoke"), back=PAGE)


@router.post(PAGE + "/{key_id}/revoke", include_in_schema=False)
async def revoke(console: Deps, who: AdminPost, key_id: str) -> Response:
    found = await revoke_api_key_by_id(console.db, _key_id(key_id), actor=actor(who))
    if found is None:
        raise refuse(404, N_("There is no such key."), "an unknown key id")
    log.info("console: operator %s revoked API key %s", who.operator_id, found.id)
    return RedirectResponse(f"{PAGE}?done=key_revoked", status_code=303)
