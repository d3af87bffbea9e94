"""Member-facing text in the member's language: gettext catalogues read straight from the .po files.

Catalogues live in ``locales/<lang>/LC_MESSAGES/messages.po`` (en, zh_Hans, zh_Hant). Message ids are
stable dotted keys (``points.balance``); the English catalogue holds the English text, so every
language, English included, is just a translation. Placeholders are ``{name}``. The .po files are
compiled in memory on first use, so a fresh clone needs no compile step.

Refresh the catalogues after adding keys in code::

    pybabel extract -F babel.cfg -k t -k n:1,2 -k N_ -k toast -k label -o locales/messages.pot .
    pybabel update -i locales/messages.pot -d locales -D messages --ignore-obsolete

then fill in the new entries of all three .po files (tests/handlers/test_catalogues.py names the gaps).
"""

from __future__ import annotations

import functools
import io
import logging
from datetime import date, datetime
from decimal import Decimal
from importlib import resources
from pathlib import Path
from typing import Any

from babel.dates import format_date, format_time
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.numbers import format_currency, format_decimal
from babel.support import NullTranslations, Translations
from markupsafe import Markup, escape

from loyalbot.chat.languages import FORMAT_LOCALES, LANGUAGES
from loyalbot.storage.clock import as_utc, zone_or_utc

log = logging.getLogger(__name__)

LOCALES_DIR = Path(str(resources.files("loyalbot.locales")))  # the catalogues and templates, as installed
DEFAULT_FORMAT_LOCALES = FORMAT_LOCALES
_HANT_REGIONS = ("hant", "tw", "hk", "mo")


def N_(msgid: str) -> str:
    """Mark a key for extraction where it is only looked up later (menus, ledger kinds, refusal codes)."""
    return msgid


def pick_language(telegram_language_code: str | None) -> str:
    """Our language for a Telegram language_code: zh-hant/tw/hk/mo -> zh_Hant, other zh -> zh_Hans, else en."""
    code = (telegram_language_code or "").strip().lower().replace("_", "-")
    if code in LANGUAGES or code in ("zh-hans", "zh-hant"):
        return {"zh-hans": "zh_Hans", "zh-hant": "zh_Hant"}.get(code, code)
    parts = code.split("-")
    if parts[0] != "zh":
        return "en"
    return "zh_Hant" if any(part in _HANT_REGIONS for part in parts[1:]) else "zh_Hans"


def catalogue_path(lang: str) -> Path:
    return LOCALES_DIR / lang / "LC_MESSAGES" / "messages.po"


def compile_catalogue(path: Path, lang: str, domain: str) -> NullTranslations:
    """A .po file compiled in memory (no compile step for a fresh clone); empty when the file is missing."""
    if not path.exists():
        log.error("no %s catalogue for %s at %s", domain, lang, path)
        return NullTranslations()
    with path.open("rb") as fh:
        catalog = read_po(fh, locale=lang)
    buffer = io.BytesIO()
    write_mo(buffer, catalog)
    buffer.seek(0)
    return Translations(fp=buffer, domain=domain)


@functools.lru_cache(maxsize=8)
def _translations(lang: str) -> NullTranslations:
    """The compiled catalogue of one language (cached: .po files do not change while running)."""
    return compile_catalogue(catalogue_path(lang), lang, "messages")


def translations(lang: str) -> NullTranslations:
    """A language's catalogue that falls back to English for any key it lacks."""
    primary = _translations(lang)
    if lang != "en" and primary._fallback is None:  # noqa: SLF001 - gettext's own fallback slot
        primary.add_fallback(_translations("en"))
    return primary


class Translator:
    """Text and formatting for one conversation language."""

    def __init__(self, lang: str, *, timezone: str = "UTC", format_locale: str | None = None) -> None:
        self.lang = lang if lang in LANGUAGES else "en"
        self.locale = format_locale or DEFAULT_FORMAT_LOCALES[self.lang]
        self.zone = zone_or_utc(timezone)
        self._tr = translations(self.lang)

    # --- text --------------------------------------------------------------------------------------

    def t(self, msgid: str, **params: Any) -> str:
        """The message `msgid` in this language, placeholders filled (user text HTML-escaped)."""
        return self._fill(msgid, self._tr.gettext(msgid), params)

    def label(self, msgid: str, **params: Any) -> str:
        """Plain text (button labels, toasts): placeholders filled without HTML escaping."""
        return self._fill(msgid, self._tr.gettext(msgid), params, html=False)

    def has(self, msgid: str) -> bool:
        """Whether the catalogues know `msgid` (English is the reference)."""
        return translations("en").gettext(msgid) != msgid

    def n(self, singular: str, plural: str, count: int, **params: Any) -> str:
        """The message for `count` things (`{count}` is filled in too)."""
        return self._fill(singular, self._tr.ngettext(singular, plural, count), {"count": count, **params})

    def _fill(self, msgid: str, template: str, params: dict[str, Any], *, html: bool = True) -> str:
        if not params:
            return template
        values = {key: self._value(value) if html else self._plain(value) for key, value in params.items()}
        try:
            return template.format_map(values)
        except (KeyError, ValueError, IndexError):
            # A broken translation must not break the conversation: say it in English instead.
            log.error("catalogue %s: message %s has bad placeholders", self.lang, msgid)
            try:
                return translations("en").gettext(msgid).format_map(values)
            except (KeyError, ValueError, IndexError):
                return msgid

    def _value(self, value: Any) -> str:
        if isinstance(value, Markup):
            return str(value)
        if isinstance(value, bool):
            return str(escape(str(value)))
        if isinstance(value, int | Decimal):
            return self.number(value)
        if isinstance(value, datetime):
            return self.date(value)
        if isinstance(value, date):
            return self.date(value)
        return str(escape(str(value)))

    def _plain(self, value: Any) -> str:
        return str(value) if isinstance(value, bool) or not isinstance(value, int | Decimal | date) else self._value(value)

    # --- formatting --------------------------------------------------------------------------------

    def number(self, value: int | Decimal | float) -> str:
        return format_decimal(value, locale=self.locale)

    def money(self, amount: Decimal | int | float, currency: str) -> str:
        return format_currency(amount, currency, locale=self.locale)

    def date(self, value: date | datetime) -> str:
        """A medium date ('31 Jan 2027', '2027年1月31日'); datetimes are shown in the member's time zone."""
        if isinstance(value, datetime):
            value = as_utc(value).astimezone(self.zone).date()
        return format_date(value, "medium", locale=self.locale)

    def time(self, value: datetime) -> str:
        return format_time(as_utc(value).astimezone(self.zone), "short", locale=self.locale)


__all__ = ["LANGUAGES", "Markup", "N_", "Translator", "catalogue_path", "compile_catalogue", "pick_language",
           "translations"]
