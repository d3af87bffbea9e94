"""Message templates for scheduled messages: Jinja2's sandbox, only documented variables, Babel formatting.

Operators edit templates, so they run in `SandboxedEnvironment` with `StrictUndefined` and HTML
autoescaping (messages go out in Telegram's HTML parse mode, so a member called "<b>" stays text).
A template may use only the variables in `VARIABLES`; `check_template` says which unknown name it
uses, or why it does not render, before anything is saved. Dates, numbers and money go through
Babel filters bound to the member's language: ``{{ points|number }}``, ``{{ expiry_date|date }}``,
``{{ amount|money }}``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from babel.dates import format_date
from babel.numbers import format_currency, format_decimal
from jinja2 import StrictUndefined, TemplateError, meta, pass_context
from jinja2.runtime import Context
from jinja2.sandbox import SandboxedEnvironment

from loyalbot.chat.languages import FORMAT_LOCALES, LANGUAGES
from loyalbot.chat.limits import TEXT_LIMIT

LOCALES_DIR = Path(str(resources.files("loyalbot.locales")))  # the catalogues and templates, as installed
# Same formats as the chat: "31 January 2027", not "January 31".
BABEL_LOCALES = FORMAT_LOCALES

# The documented variables, with what they mean (shown by `loyalbot schedule add --help` and the console).
VARIABLES: dict[str, str] = {
    "name": "the member's first name (or a friendly fallback)",
    "member_no": "the member number",
    "points": "the points balance (use |number)",
    "tier": "the tier code, e.g. silver",
    "tier_name": "the tier's name in the member's language",
    "expiring_points": "points about to expire (points_expiry)",
    "expiry_date": "when those points expire, a date (use |date)",
    "coupon_title": "the coupon's reward title (coupon_expiry)",
    "coupon_code": "the coupon code (coupon_expiry)",
    "coupon_expiry": "when the coupon expires, a date (use |date)",
    "birthday_multiplier": "the birthday-month points multiplier, or none when the programme has none",
    "years": "whole years of membership (anniversary)",
    "gift_title": "the tier's birthday gift, or none when the tier gives none (birthday)",
    "gift_code": "the birthday gift's coupon code (birthday)",
    "programme": "the programme's name",
    "offer": "a campaign's coupon: offer.title, offer.code, offer.expires (a date, use |date); only with an offer",
}

# Every kind may use these; the kind-specific ones below only make sense for their kind.
COMMON_VARIABLES = ("name", "member_no", "points", "tier", "tier_name", "birthday_multiplier", "programme", "offer")
KIND_VARIABLES: dict[str, tuple[str, ...]] = {
    "points_expiry": ("expiring_points", "expiry_date"),
    "coupon_expiry": ("coupon_title", "coupon_code", "coupon_expiry"),
    "anniversary": ("years",),
    "birthday": ("gift_title", "gift_code"),
}

FALLBACK_NAME = {"en": "friend", "zh_Hans": "朋友", "zh_Hant": "朋友"}


def variables_for(kind: str) -> tuple[str, ...]:
    """The variables a template of this kind may use."""
    return COMMON_VARIABLES + KIND_VARIABLES.get(kind, ())


class TemplateProblem(ValueError):
    """A template cannot be used; the message says which language and why."""


def _babel_locale(ctx: Context) -> str:
    return BABEL_LOCALES.get(ctx.get("_language", "en"), "en")


@lru_cache(maxsize=65536)
def _format_number(value: int | Decimal, locale: str) -> str:
    return format_decimal(value, locale=locale)


@pass_context
def _number(ctx: Context, value: Any) -> str:
    # Balances repeat a lot across a run; Babel's formatting is the slowest step of rendering.
    if isinstance(value, int | Decimal) and not isinstance(value, bool):
        return _format_number(value, _babel_locale(ctx))
    return format_decimal(value, locale=_babel_locale(ctx))


@pass_context
def _date(ctx: Context, value: Any, style: str = "long") -> str:
    if isinstance(value, datetime):
        value = value.date()
    if not isinstance(value, date):
        raise TemplateError(f"|date needs a date, not {type(value).__name__}")
    return format_date(value, style if style in ("short", "medium", "long", "full") else "long",
                       locale=_babel_locale(ctx))


@pass_context
def _money(ctx: Context, value: Any, currency: str | None = None) -> str:
    return format_currency(Decimal(str(value)), currency or ctx.get("_currency", "EUR"), locale=_babel_locale(ctx))


def make_environment() -> SandboxedEnvironment:
    """The sandbox every scheduled message is rendered in."""
    env = SandboxedEnvironment(undefined=StrictUndefined, autoescape=True, trim_blocks=True, lstrip_blocks=True,
                               keep_trailing_newline=False)
    env.filters.update(number=_number, date=_date, money=_money)
    return env


def default_template(kind: str, language: str) -> str:
    """The shipped template for a kind in a language (locales/<language>/templates/<kind>.j2)."""
    path = LOCALES_DIR / language / "templates" / f"{kind}.j2"
    try:
        return path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise TemplateProblem(f"no shipped template for {kind!r} in {language}") from None


def default_templates(kind: str) -> dict[str, str]:
    return {lang: default_template(kind, lang) for lang in LANGUAGES}


def sample_variables(language: str, kind: str | None = None) -> dict[str, Any]:
    """Plausible values for the variables a kind may use, to try a template before saving it."""
    values = {
        "name": "Ann", "member_no": "LB12345678", "points": 1234, "tier": "silver", "tier_name": "Silver",
        "expiring_points": 150, "expiry_date": date(2030, 1, 31), "coupon_title": "A coffee",
        "coupon_code": "ABCD-EFGH-JKLM", "coupon_expiry": date(2030, 1, 31), "birthday_multiplier": 2,
        "years": 2, "programme": "Lumen Café Rewards", "gift_title": "A pastry", "gift_code": "ABCD-EFGH-JKLM",
        "offer": {"title": "A coffee", "code": "7KQ2-M9XD-4H0P-RT3C", "expires": date(2030, 1, 31)},
    }
    allowed = variables_for(kind) if kind else tuple(values)
    return {**{k: v for k, v in values.items() if k in allowed}, "_language": language, "_currency": "EUR"}


@dataclass(frozen=True)
class CompiledTemplates:
    """A schedule's templates, compiled once per run; renders in the member's language."""

    templates: dict[str, Any]
    fallback: str
    _globals: dict[str, dict[str, Any]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Template.render copies the variables twice and merges the environment's globals (a ChainMap)
        # into them on every call, a third of the cost of a short message; they are merged once here.
        object.__setattr__(self, "_globals", {lang: dict(t.globals) for lang, t in self.templates.items()})

    def render(self, language: str, variables: dict[str, Any]) -> str:
        """The member's message: the template in their language (or the fallback) with `variables`."""
        lang = language if language in self.templates else self.fallback
        template = self.templates[lang]
        # What Template.render does, minus the copies: globals first, so the variables win as there.
        context = template.new_context({**self._globals[lang], **variables, "_language": lang}, shared=True)
        text: str = template.environment.concat(template.root_render_func(context))  # concat is "".join
        return text.strip()[:TEXT_LIMIT]


class TemplateBook:
    """Compiles and checks templates; compiled templates are cached by their text."""

    def __init__(self) -> None:
        self.env = make_environment()
        self._cache: dict[str, Any] = {}

    def compile(self, source: str) -> Any:
        key = hashlib.sha256(source.encode()).hexdigest()
        if (template := self._cache.get(key)) is None:
            template = self._cache[key] = self.env.from_string(source)
        return template

    def check(self, language: str, source: str, kind: str) -> None:
        """Raise TemplateProblem if the template uses a variable its kind lacks, or does not render."""
        if not source or not source.strip():
            raise TemplateProblem(f"{language}: the template is empty")
        try:
            parsed = self.env.parse(source)
        except TemplateError as exc:
            raise TemplateProblem(f"{language}: not a valid template: {exc}") from None
        allowed = variables_for(kind)
        unknown = sorted(meta.find_undeclared_variables(parsed) - set(allowed))
        if unknown:
            raise TemplateProblem(f"{language}: unknown variable {unknown[0]!r} for a {kind} message; "
                                  f"use only: {', '.join(allowed)}")
        samples = sample_variables(language, kind)
        for values in (samples, {**samples, "birthday_multiplier": None}):
            try:
                text = self.compile(source).render(values).strip()
            except Exception as exc:  # the sandbox raises SecurityError, TypeError, ... for a bad template
                raise TemplateProblem(f"{language}: the template does not render: {type(exc).__name__}: {exc}"
                                      ) from None
            if not text:
                raise TemplateProblem(f"{language}: the template renders to nothing")

    def check_all(self, templates: dict[str, str], kind: str, *, default_language: str = "en") -> None:
        unknown = sorted(set(templates) - set(LANGUAGES))
        if unknown:
            raise TemplateProblem(f"unknown language {unknown[0]!r}; use {', '.join(LANGUAGES)}")
        if default_language not in templates:
            raise TemplateProblem(f"a template in {default_language} (the programme's default language) is needed")
        for language, source in templates.items():
            self.check(language, source, kind)

    def compiled(self, templates: dict[str, str], *, kind: str, default_language: str = "en") -> CompiledTemplates:
        """The schedule's templates (shipped defaults fill missing languages), compiled."""
        given = {lang: templates.get(lang) or _safe_default(kind, lang) for lang in LANGUAGES}
        sources = {lang: src for lang, src in given.items() if src}
        fallback = default_language if default_language in sources else next(iter(sources))
        return CompiledTemplates({lang: self.compile(src) for lang, src in sources.items()}, fallback)


def _safe_default(kind: str, language: str) -> str | None:
    try:
        return default_template(kind, language)
    except TemplateProblem:
        return None
