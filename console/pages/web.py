"""What every console page stands on: who is signed in, the CSRF check, rendering in the operator's language.

A page module is an `APIRouter` with routes under /console; it takes its visitor from `Operator` (anyone
signed in) or `Admin`, and its form posts check `Csrf` (a hidden `csrf` field, or the `X-CSRF-Token`
header for htmx) before anything changes. `render` fills a template from console/templates/console with
the operator's language (gettext catalogue `locales/<lang>/LC_MESSAGES/console.po`, English source
strings as ids), Babel's formatting in that language and the shop's time zone, and the navigation.

Pages read `ConsoleDeps` from `request.app.state.console`: the store, the Loyalty facade, the sessions.
"""

from __future__ import annotations

import functools
import io
import logging
import secrets
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from importlib import resources
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

import jinja2
from babel.dates import format_date, format_datetime
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.numbers import format_decimal, format_percent
from babel.support import NullTranslations, Translations
from fastapi import Depends, Request
from fastapi.responses import HTMLResponse
from starlette.exceptions import HTTPException

from loyalbot.chat.languages import FORMAT_LOCALES, LANGUAGES
from loyalbot.console.accounts import COOKIE, Sessions, SignedIn
from loyalbot.loyalty import Loyalty
from loyalbot.storage import Db, as_utc
from loyalbot.storage.clock import zone_or_utc

log = logging.getLogger(__name__)

TEMPLATES = Path(str(resources.files("loyalbot.console"))) / "templates"
LOCALES = Path(str(resources.files("loyalbot.locales")))
LANGUAGE_NAMES = {"en": "English", "zh_Hans": "简体中文", "zh_Hant": "繁體中文"}
HTML_LANG = {"en": "en", "zh_Hans": "zh-Hans", "zh_Hant": "zh-Hant"}


@dataclass
class NavItem:
    """One entry of the console's navigation; `admin` entries are shown to admins only."""

    path: str
    label: str  # an English source string, translated when shown
    admin: bool = False


@dataclass
class ConsoleDeps:
    """What console pages work with; one per app, at `app.state.console`."""

    db: Db
    loyalty: Loyalty
    sessions: Sessions
    secure_cookies: bool = False
    bootstrap_password: str | None = None  # LOYALBOT_CONSOLE_PASSWORD: the first admin `operator`, if none exists
    nav: list[NavItem] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)  # services that pages add (scheduler, sender, ...)


class SignInRequired(HTTPException):
    """No valid session: the handler sends a browser to the sign-in page (and an htmx call a 401)."""

    def __init__(self, next_path: str = "/console") -> None:
        super().__init__(401, detail="sign in first")
        self.next_path = next_path


class ConsoleRefusal(HTTPException):
    """A refused console request (403 no right, 400 bad CSRF token, 404 nothing there): a page saying why."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(status, detail=detail)


def deps(request: Request) -> ConsoleDeps:
    found: ConsoleDeps = request.app.state.console
    return found


Deps = Annotated[ConsoleDeps, Depends(deps)]


async def signed_in(request: Request, console: Deps) -> SignedIn:
    who = await console.sessions.find(request.cookies.get(COOKIE))
    if who is None:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise SignInRequired(target if request.method == "GET" else "/console")
    request.state.operator = who
    return who


async def admin(who: Annotated[SignedIn, Depends(signed_in)]) -> SignedIn:
    if not who.is_admin:
        log.info("console: operator %s refused an admin page", who.operator_id)
        raise ConsoleRefusal(403, "Only an admin may do this.")
    return who


async def csrf(request: Request, who: Annotated[SignedIn, Depends(signed_in)]) -> SignedIn:
    """A form post carries the session's CSRF token (field `csrf` or header X-CSRF-Token), or it changes nothing."""
    token = request.headers.get("x-csrf-token")
    if token is None:
        form = await request.form()
        value = form.get("csrf")
        token = value if isinstance(value, str) else None
    if not token or not secrets.compare_digest(token.encode(), who.csrf.encode()):
        log.warning("console: refused a %s to %s without a valid CSRF token", request.method, request.url.path)
        raise ConsoleRefusal(400, "This form has expired or did not come from the console. Reload the page and "
                                  "try again.")
    return who


Operator = Annotated[SignedIn, Depends(signed_in)]
Admin = Annotated[SignedIn, Depends(admin)]
Csrf = Annotated[SignedIn, Depends(csrf)]


# --- text and formatting in the operator's language ----------------------------------------------------


@functools.lru_cache(maxsize=8)
def console_translations(lang: str) -> NullTranslations:
    path = LOCALES / lang / "LC_MESSAGES" / "console.po"
    if not path.exists():
        return NullTranslations()
    with path.open("rb") as fh:
        catalog = read_po(fh, locale=lang)
    buffer = io.BytesIO()
    write_mo(buffer, catalog)
    buffer.seek(0)
    return Translations(fp=buffer, domain="console")


class Formats:
    """Babel's dates and numbers in one language and the shop's zone, for templates (`fmt.date(x)`)."""

    def __init__(self, lang: str, timezone: str) -> None:
        self.lang = lang if lang in LANGUAGES else "en"
        self.locale = FORMAT_LOCALES[self.lang]
        self.zone = zone_or_utc(timezone)
        self.timezone = timezone

    def number(self, value: int | float | Decimal | None, digits: int | None = None) -> str:
        if value is None:
            return "–"
        if digits is not None:
            return format_decimal(value, format=f"#,##0.{'0' * digits}" if digits else "#,##0", locale=self.locale)
        return format_decimal(value, locale=self.locale)

    def percent(self, value: float | None) -> str:
        return "–" if value is None else format_percent(value, format="#,##0.0%", locale=self.locale)

    def date(self, value: date | datetime | None) -> str:
        if value is None:
            return "–"
        if isinstance(value, datetime):
            value = as_utc(value).astimezone(self.zone).date()
        return format_date(value, "medium", locale=self.locale)

    def when(self, value: datetime | None) -> str:
        """A date and time ('2 Dec 2026, 14:05:00') in the shop's zone."""
        if value is None:
            return "–"
        return format_datetime(as_utc(value).astimezone(self.zone), "medium", locale=self.locale)

    def local(self, value: datetime) -> datetime:
        """The moment in the shop's zone (for `<input type=datetime-local>` values and day buckets)."""
        return as_utc(value).astimezone(self.zone)


@functools.lru_cache(maxsize=8)
def _environment(lang: str) -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES / "console"), autoescape=True,
                             extensions=["jinja2.ext.i18n"], undefined=jinja2.StrictUndefined)
    env.install_gettext_translations(console_translations(lang), newstyle=True)  # type: ignore[attr-defined]
    env.filters["urlquote"] = lambda value: quote(str(value), safe="")
    return env


def gettext(lang: str, text: str, **params: Any) -> str:
    """An English source string in `lang`, for Python code (flash messages, refusals)."""
    translated = console_translations(lang).gettext(text)
    return translated % params if params else translated


def render(request: Request, template: str, *, status: int = 200, **values: Any) -> HTMLResponse:
    """A console page in the visitor's language (English before sign-in unless ?lang= or the browser says)."""
    console = deps(request)
    who: SignedIn | None = getattr(request.state, "operator", None)
    lang = who.language if who else visitor_language(request)
    timezone = console.loyalty.programme.programme.timezone
    nav = [item for item in console.nav if who and (who.is_admin or not item.admin)]
    values.setdefault("flash", None)
    html = _environment(lang).get_template(template).render(
        request=request, who=who, lang=lang, html_lang=HTML_LANG[lang], languages=LANGUAGE_NAMES, nav=nav,
        fmt=Formats(lang, timezone), programme_name=console.loyalty.programme.programme.name,
        path=request.url.path, csrf_token=who.csrf if who else "", **values)
    return HTMLResponse(html, status_code=status)


def visitor_language(request: Request) -> str:
    asked = request.query_params.get("lang") or request.cookies.get("loyalbot_lang")
    if asked in LANGUAGES:
        return str(asked)
    accept = request.headers.get("accept-language", "").lower()
    if "zh-tw" in accept or "zh-hk" in accept or "zh-hant" in accept:
        return "zh_Hant"
    if accept.startswith("zh") or "zh-cn" in accept or "zh-hans" in accept:
        return "zh_Hans"
    return "en"


def form_text(form: Any, name: str, *, limit: int = 2000) -> str:
    """A form field as text: stripped, control characters refused by the caller's checks, at most `limit`."""
    value = form.get(name)
    return value.strip()[:limit] if isinstance(value, str) else ""


def N_(text: str) -> str:
    """Mark an English source string for extraction where it is only translated later (in a template)."""
    return text


# Words that templates translate from data: ledger kinds, outbox statuses, roles.
WORDS = (N_("earn"), N_("bonus"), N_("redeem"), N_("expire"), N_("refund"), N_("adjust"), N_("sent"), N_("pending"),
         N_("sending"), N_("failed"), N_("skipped"), N_("operator"), N_("admin"))
