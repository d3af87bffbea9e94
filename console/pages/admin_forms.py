"""What the admin pages (staff, operators, API keys) share: the admin check on their form posts, the audit actor,
refusing hostile text, and the short confirmation after a change (Post/Redirect/Get with `?done=`)."""

from __future__ import annotations

import logging
import unicodedata
from typing import Annotated, Any

from fastapi import Depends, Request

from loyalbot.console.accounts import SignedIn
from loyalbot.console.pages.web import N_, ConsoleRefusal, Csrf, admin, gettext

log = logging.getLogger(__name__)


async def admin_post(who: Csrf) -> SignedIn:
    """A form post of an admin page: a valid CSRF token (checked first) and the admin role."""
    return await admin(who)


AdminPost = Annotated[SignedIn, Depends(admin_post)]


def actor(who: SignedIn) -> str:
    """Who the audit log names for a change made in the console."""
    return f"console:{who.name}"[:64]


def control_character(text: str) -> str | None:
    """The first control (or unpaired surrogate, format) character in `text`, as U+XXXX, or None."""
    bad = next((c for c in text if unicodedata.category(c) in ("Cc", "Cs", "Cf")), None)
    return None if bad is None else f"U+{ord(bad):04X}"


def raw_field(form: Any, name: str, limit: int) -> tuple[str, str | None]:
    """A form field (stripped) and why it is refused as it came: too long, or with a control character."""
    value = form.get(name)
    if value is None:
        return "", None
    if not isinstance(value, str):
        return "", N_("This field takes text.")
    value = value.strip()
    if len(value) > limit:
        return value[:limit], N_("Too long: at most %(limit)s characters.")
    if control_character(value):
        return value, N_("Control characters are not allowed.")
    return value, None


# The confirmations a page shows after a change (`?done=<key>`): fixed texts, so a link cannot make the page
# say anything else.
DONE = {
    "staff_saved": N_("The staff list was saved."),
    "staff_removed": N_("They are no longer staff."),
    "operator_role": N_("The role was changed."),
    "operator_unlocked": N_("The account was unlocked."),
    "operator_removed": N_("The account was removed; its sessions have ended."),
    "key_revoked": N_("The key was revoked: calls made with it are refused from now on."),
}


def done_message(request: Request, lang: str) -> str | None:
    key = request.query_params.get("done")
    return gettext(lang, DONE[key]) if key in DONE else None


def refuse(status: int, detail: str, why: str) -> ConsoleRefusal:
    """A refusal page, logged without personal data (`why` names no person)."""
    log.warning("console: refused an admin change: %s", why)
    return ConsoleRefusal(status, detail)
