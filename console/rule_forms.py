"""The console's forms for bonus campaigns and stamp cards: form fields to a new Programme, and the programme's
own checks (loyalty/programme.py: BonusRule, StampCardSpec) to each field's message in the operator's language.

Lists (tiers, stores, categories, SKUs) are typed comma-separated; times of a bonus's window are the shop's
local time (a `datetime-local` field, kept without a zone, as the programme file keeps them).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import ValidationError

from loyalbot.console.pages.web import N_, gettext
from loyalbot.console.programme_forms import Problems, checked, message, per_language, text_of
from loyalbot.loyalty.programme import Programme

RULE_MESSAGES = {
    "bonus_field_missing": N_("Required for this kind of bonus."),
    "bonus_field_unused": N_("Leave this empty for this kind of bonus."),
    "bonus_window": N_("The end must be after the start."),
    "stamp_card_items": N_("Give SKUs or categories (or both)."),
    "duplicate_code": N_("Another one has this code."),
    "literal_error": N_("Choose one of the options."),
    "unknown_reward": N_("No such reward."),
    "unknown_tier": N_("No such tier."),
}
BONUS_FIELDS = ("code", "kind", "starts", "ends", "tiers", "stores", "categories", "weekday", "factor", "points",
                "threshold", "period")
CARD_FIELDS = ("code", "stamps_needed", "skus", "categories", "reward", "validity_days")
LISTS = ("tiers", "stores", "categories", "skus")
# the programme's cross-checks without a location of their own -> the field they are about
FIELD_OF = {"bonus_window": "ends", "stamp_card_items": "skus", "duplicate_code": "code", "unknown_reward": "reward",
            "unknown_tier": "tiers"}


def _list(form: Any, name: str) -> list[str]:
    return [part.strip() for part in text_of(form, name, 1000).split(",") if part.strip()][:50]


def _moment(value: str) -> datetime | str | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value[:32])
    except ValueError:
        return value[:32]  # pydantic names it


def _problems(exc: ValidationError, lang: str, fields: tuple[str, ...], default_title: str,
              problems: Problems) -> Problems:
    for err in exc.errors():
        loc = [str(p) for p in err["loc"] if not isinstance(p, int)]
        ctx = err.get("ctx") or {}
        name = next((part for part in reversed(loc) if part in fields), None)
        if err["type"] in ("bonus_field_missing", "bonus_field_unused"):
            name = str(ctx.get("field"))
        elif err["type"] == "title_missing" or (loc and loc[-1] == "titles"):
            name = f"title_{ctx['lang']}" if ctx.get("lang") else default_title
        elif name is None:
            name = FIELD_OF.get(err["type"])
        source = RULE_MESSAGES.get(err["type"])
        problems.add(name, gettext(lang, source) if source else message(lang, err))
    return problems


def _with(programme: Programme, section: str, code: str | None, spec: dict[str, Any], lang: str,
          fields: tuple[str, ...]) -> tuple[Programme | None, Problems]:
    problems = Problems(lang)
    data = programme.model_dump(mode="python")
    rules = data[section] = list(data[section])
    index = next((i for i, rule in enumerate(rules) if rule["code"] == code), None) if code else None
    if index is None:
        rules.append(spec)
    else:
        rules[index] = spec
    try:
        return checked(data), problems
    except ValidationError as exc:
        return None, _problems(exc, lang, fields, f"title_{programme.programme.default_language}", problems)


def with_bonus(programme: Programme, code: str | None, form: Any, lang: str) -> tuple[Programme | None, Problems]:
    """The programme with bonus `code` changed (or a new one added, `code` None) as the form says."""
    spec: dict[str, Any] = {"code": code or text_of(form, "code", 32), "kind": text_of(form, "kind", 16),
                            "titles": per_language(form, "title", 64),
                            "starts": _moment(text_of(form, "starts", 32)), "ends": _moment(text_of(form, "ends", 32))}
    for name in ("tiers", "stores", "categories"):
        spec[name] = _list(form, name)
    for name in ("weekday", "factor", "points", "threshold", "period"):
        spec[name] = text_of(form, name, 32) or None
    return _with(programme, "bonuses", code, spec, lang, BONUS_FIELDS)


def with_stamp_card(programme: Programme, code: str | None, form: Any, lang: str
                    ) -> tuple[Programme | None, Problems]:
    """The programme with stamp card `code` changed (or a new one added) as the form says."""
    spec: dict[str, Any] = {"code": code or text_of(form, "code", 32), "titles": per_language(form, "title", 64),
                            "stamps_needed": text_of(form, "stamps_needed", 8) or None,
                            "skus": _list(form, "skus"), "categories": _list(form, "categories"),
                            "reward": text_of(form, "reward", 64), "validity_days": text_of(form, "validity_days", 8)
                            or None}
    problems = Problems(lang)
    if spec["stamps_needed"] is None:
        problems.add("stamps_needed", gettext(lang, "This is required."))
        return None, problems
    return _with(programme, "stamp_cards", code, spec, lang, CARD_FIELDS)


__all__ = ["with_bonus", "with_stamp_card"]
