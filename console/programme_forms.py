"""The programme's console forms: from form fields to a new Programme, and pydantic's errors to each field's
message in the operator's language.

A form edits one part (a tier, the rules, a reward); the whole programme is then checked by its own models
(loyalty/programme.py), so the console accepts exactly what a programme file may hold. Each error is
mapped to the form field it is about by its location or, for the programme's cross-checks, by its type.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from loyalbot.chat.languages import LANGUAGES
from loyalbot.console.pages.web import N_, gettext
from loyalbot.loyalty.programme import Programme, RewardSpec
from loyalbot.storage.clock import zone_or_utc

# pydantic's error types -> an English source string (translated when shown); ctx fills %(..)s
MESSAGES = {
    "missing": N_("This is required."),
    "greater_than": N_("Must be more than %(gt)s."),
    "greater_than_equal": N_("Must be at least %(ge)s."),
    "less_than_equal": N_("Must be at most %(le)s."),
    "less_than": N_("Must be less than %(lt)s."),
    "int_parsing": N_("Must be a whole number."),
    "int_from_float": N_("Must be a whole number."),
    "int_type": N_("Must be a whole number."),
    "decimal_parsing": N_("Must be a number."),
    "decimal_type": N_("Must be a number."),
    "decimal_max_places": N_("Too many decimal places."),
    "finite_number": N_("Must be a number."),
    "string_pattern_mismatch": N_("Use lower-case letters a–z, digits, _ or -, starting with a letter."),
    "string_too_long": N_("Too long."),
    "text_too_long": N_("At most %(limit)s characters."),
    "control_characters": N_("Control characters are not allowed."),
    "unknown_language": N_("Unknown language."),
    "window_order": N_("The end must be after the start."),
    "datetime_parsing": N_("Must be a date and time."),
    "duplicate_reward": N_("Another reward has this code."),
    "duplicate_tier": N_("Another tier has this code."),
    "unknown_tier": N_("No such tier."),
    "title_missing": N_("A title in the programme's default language is required."),
    "tiers_overlap": N_("Must be above the threshold of the tier below (%(lower_threshold)s)."),
    "first_threshold": N_("The first tier starts at 0, so that every member has a tier."),
    "bool_parsing": N_("Must be yes or no."),
    "image": N_("Only a PNG, JPEG or WebP picture of at most 1 MB."),
    "unknown_reward": N_("No such reward."),
    "week_below_day": N_("Must be at least the daily cap (%(day)s)."),
}
# cross-checks of the whole programme (no location of their own) -> the field they are about
FIELD_OF_TYPE = {"duplicate_reward": "code", "duplicate_tier": "code", "unknown_tier": "min_tier",
                 "tiers_overlap": "threshold", "first_threshold": "threshold", "window_order": "active_until",
                 "unknown_reward": "birthday_gift", "week_below_day": "max_per_week"}

TEXT_PREFIX = {"titles": "title", "descriptions": "description", "names": "name", "benefits": "benefits"}
TIER_FIELDS = ("threshold", "multiplier")
# A tier's benefits (loyalty/benefits.py); left empty: none (no discount, gift or priority; points last as long
# as [expiry] says).
TIER_BENEFIT_FIELDS = {"discount_pct": 0, "birthday_gift": None, "support_priority": 0, "points_validity_months": None}
RULE_FIELDS = ("points_per_unit", "birthday_month_multiplier", "welcome_bonus", "expiry_months", "window_months")
CAP_FIELDS = ("max_per_day", "max_per_week")  # optional: empty means no cap


@dataclass
class Problems:
    """Field name -> message, in the operator's language; `general` for what belongs to no field."""

    lang: str
    fields: dict[str, str] = field(default_factory=dict)
    general: list[str] = field(default_factory=list)

    def add(self, name: str | None, text: str) -> None:
        if name is None:
            self.general.append(text)
        else:
            self.fields.setdefault(name, text)

    def __bool__(self) -> bool:
        return bool(self.fields or self.general)


def message(lang: str, err: Any) -> str:
    ctx = {k: str(v) for k, v in (err.get("ctx") or {}).items() if k != "lang"}
    source = MESSAGES.get(err["type"])
    if source is None:
        return str(err["msg"])
    try:
        return gettext(lang, source, **ctx) if "%(" in source else gettext(lang, source)
    except (KeyError, ValueError):
        return gettext(lang, source.split(" %(")[0])


def field_of(err: Any, names: dict[str, str], default_title: str) -> str | None:
    """The form field an error is about: its location (mapped by `names`), else its type."""
    loc = [str(p) for p in err["loc"] if not isinstance(p, int)]
    if err["type"] == "title_missing":
        return default_title
    lang = (err.get("ctx") or {}).get("lang")
    if lang in LANGUAGES and loc and loc[-1] in TEXT_PREFIX:  # a text in one language: its own field
        return f"{TEXT_PREFIX[loc[-1]]}_{lang}"
    for part in reversed(loc):
        if part in names:
            return names[part]
    return FIELD_OF_TYPE.get(err["type"])


def collect(exc: ValidationError, lang: str, names: dict[str, str], default_title: str,
            problems: Problems) -> Problems:
    for err in exc.errors():
        problems.add(field_of(err, names, default_title), message(lang, err))
    return problems


def text_of(form: Any, name: str, limit: int = 2000) -> str:
    value = form.get(name)
    return value.strip()[: limit + 1] if isinstance(value, str) else ""


def per_language(form: Any, prefix: str, limit: int) -> dict[str, str]:
    return {lang: text for lang in LANGUAGES if (text := text_of(form, f"{prefix}_{lang}", limit))}


def local_moment(value: str, timezone: str) -> datetime | str | None:
    """A `datetime-local` field in the shop's zone, as an aware datetime (or the text, for pydantic to refuse)."""
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value[:32])
    except ValueError:
        return value[:32]
    return moment if moment.tzinfo else moment.replace(tzinfo=zone_or_utc(timezone))


def _data(programme: Programme) -> dict[str, Any]:
    return programme.model_dump(mode="python")


def checked(data: dict[str, Any]) -> Programme:
    return Programme.model_validate(data)


def with_tier(programme: Programme, code: str, form: Any, lang: str) -> tuple[Programme | None, Problems]:
    """The programme with tier `code` changed as the form says."""
    problems = Problems(lang)
    data = _data(programme)
    levels = data["tiers"]["levels"] = list(data["tiers"]["levels"])
    index = next(i for i, level in enumerate(levels) if level["code"] == code)
    level = dict(levels[index])
    level["names"] = per_language(form, "name", 32)
    level["benefits"] = per_language(form, "benefits", 500)
    for name in TIER_FIELDS:
        level[name] = text_of(form, name, 32) or None
        if level[name] is None:
            problems.add(name, gettext(lang, MESSAGES["missing"]))
    for name, empty in TIER_BENEFIT_FIELDS.items():
        level[name] = text_of(form, name, 64) or empty
    levels[index] = level
    names = {"threshold": "threshold", "multiplier": "multiplier", "names": f"name_{LANGUAGES[0]}",
             "benefits": f"benefits_{LANGUAGES[0]}", **{name: name for name in TIER_BENEFIT_FIELDS}}
    if problems:
        return None, problems
    try:
        return checked(data), problems
    except ValidationError as exc:
        # a cross-check of the tiers (overlap) is about this tier only when it names it
        return None, collect(exc, lang, names, "name_en", problems)


def with_rules(programme: Programme, form: Any, lang: str) -> tuple[Programme | None, Problems]:
    """The programme with the earning rules, the expiry and the tier window as the form says."""
    problems = Problems(lang)
    data = _data(programme)
    values = {name: text_of(form, name, 32) for name in RULE_FIELDS}
    for name, value in values.items():
        if not value:
            problems.add(name, gettext(lang, MESSAGES["missing"]))
    if problems:
        return None, problems
    data["earning"] = {**data["earning"], "points_per_unit": values["points_per_unit"],
                       "birthday_month_multiplier": values["birthday_month_multiplier"],
                       "welcome_bonus": values["welcome_bonus"]}
    data["expiry"] = {**data["expiry"], "months": values["expiry_months"]}
    data["tiers"] = {**data["tiers"], "window_months": values["window_months"]}
    data["campaigns"] = {name: text_of(form, name, 32) or None for name in CAP_FIELDS}
    names = {"points_per_unit": "points_per_unit", "birthday_month_multiplier": "birthday_month_multiplier",
             "welcome_bonus": "welcome_bonus", "months": "expiry_months", "window_months": "window_months",
             "max_per_day": "max_per_day", "max_per_week": "max_per_week"}
    try:
        return checked(data), problems
    except ValidationError as exc:
        return None, collect(exc, lang, names, "points_per_unit", problems)


REWARD_NAMES = {"code": "code", "cost": "cost", "stock": "stock", "per_member_limit": "per_member_limit",
                "validity_days": "validity_days", "min_tier": "min_tier", "active_from": "active_from",
                "active_until": "active_until", "active": "active", "titles": "title_en",
                "descriptions": "description_en", "image": "image"}


def with_reward(programme: Programme, code: str | None, form: Any, lang: str, *, stock_left: int | None,
                image: str | None) -> tuple[Programme | None, Problems]:
    """The programme with reward `code` changed (or a new one added, `code` None) as the form says.

    The stock field shows what is left in the store (`stock_left`); a change of it moves the programme's stock
    by the same amount, so redemptions made while the form was open stay counted (loyalty/rewards.py)."""
    problems = Problems(lang)
    data = _data(programme)
    rewards = data["rewards"] = list(data["rewards"])
    index = next((i for i, r in enumerate(rewards) if r["code"] == code), None) if code else None
    before = dict(rewards[index]) if index is not None else {}
    default = programme.programme.default_language
    spec: dict[str, Any] = dict(before)
    spec["code"] = code or text_of(form, "code", 64)
    spec["titles"] = per_language(form, "title", 64)
    spec["descriptions"] = per_language(form, "description", 500)
    if default not in spec["titles"]:
        problems.add(f"title_{default}", gettext(lang, MESSAGES["title_missing"]))
    for name in ("cost", "validity_days"):
        spec[name] = text_of(form, name, 32) or None
        if spec[name] is None:
            problems.add(name, gettext(lang, MESSAGES["missing"]))
    for name in ("per_member_limit",):
        spec[name] = text_of(form, name, 32) or None
    spec["min_tier"] = text_of(form, "min_tier", 32) or None
    zone = programme.programme.timezone
    spec["active_from"] = local_moment(text_of(form, "active_from", 32), zone)
    spec["active_until"] = local_moment(text_of(form, "active_until", 32), zone)
    spec["active"] = form.get("active") == "on"
    spec["image"] = image
    typed_stock = text_of(form, "stock", 32) or None
    spec["stock"] = typed_stock
    if typed_stock is not None and typed_stock.lstrip("-").isdigit() and int(typed_stock) < 0:
        problems.add("stock", gettext(lang, MESSAGES["greater_than_equal"], ge=0))
    if typed_stock is not None and before.get("stock") is not None and stock_left is not None:
        try:  # the programme's stock moves by what the operator added to (or took from) what is left
            spec["stock"] = int(before["stock"]) + int(typed_stock) - stock_left
        except ValueError:
            spec["stock"] = typed_stock  # pydantic names the problem
        if isinstance(spec["stock"], int) and spec["stock"] < 0:
            spec["stock"] = 0
    try:
        RewardSpec.model_validate(spec)
    except ValidationError as exc:
        collect(exc, lang, REWARD_NAMES, f"title_{default}", problems)
    if problems:
        return None, problems
    if index is None:
        rewards.append(spec)
    else:
        rewards[index] = spec
    try:
        return checked(data), problems
    except ValidationError as exc:
        return None, collect(exc, lang, REWARD_NAMES, f"title_{default}", problems)


# --- pending points, referrals and the expiry mode (loyalty/pending.py, referrals.py, expiry.py) ---------

POINTS_FIELDS = ("expiry_mode", "carry_over_pct", "reset_month_day", "extend_months", "return_window_days",
                 "referrer_points", "friend_points", "referral_min_purchase", "referral_milestones")
POINTS_NAMES = {"mode": "expiry_mode", "carry_over_pct": "carry_over_pct", "reset_month_day": "reset_month_day",
                "extend_months": "extend_months", "return_window_days": "return_window_days",
                "referrer_points": "referrer_points", "friend_points": "friend_points",
                "min_purchase": "referral_min_purchase", "milestones": "referral_milestones"}
POINTS_MESSAGES = {
    "literal_error": N_("Choose one of the options."),
    "reset_day": N_("%(value)s is not a day of every year."),
    "reset_format": N_("Give the day as MM-DD, e.g. 01-01."),
    "milestone_format": N_("Write each milestone as friends=points or friends=reward code, separated by commas."),
    "milestone_gift": N_("A milestone gives either points or a reward."),
    "duplicate_milestone": N_("Two milestones for the same number of friends."),
    "unknown_reward": N_("No such reward."),
}
RESET_DAY = re.compile(r"^\d\d-\d\d$")
MILESTONE = re.compile(r"^\s*(\d{1,5})\s*=\s*(\d{1,7}|[a-z][a-z0-9_-]{0,63})\s*$")


def milestones_of(text: str) -> list[dict[str, Any]] | None:
    """"3=300, 5=tote" -> milestones (points for a number, a reward for a code); None when it cannot be read."""
    found: list[dict[str, Any]] = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        match = MILESTONE.match(part)
        if match is None:
            return None
        friends, gift = match.groups()
        found.append({"friends": friends, "points": gift} if gift.isdigit() else {"friends": friends, "reward": gift})
    return found


def milestones_text(programme: Programme) -> str:
    """The programme's milestones as the form writes them."""
    return ", ".join(f"{m.friends}={m.points if m.points is not None else m.reward}"
                     for m in programme.referrals.milestones)


def _points_message(lang: str, err: Any) -> str:
    source = POINTS_MESSAGES.get(err["type"])
    if source is None:
        return message(lang, err)
    ctx = {k: str(v) for k, v in (err.get("ctx") or {}).items()}
    return gettext(lang, source, **ctx) if "%(" in source else gettext(lang, source)


def with_points_rules(programme: Programme, form: Any, lang: str) -> tuple[Programme | None, Problems]:
    """The programme with the return window, the referral rules and the expiry mode as the form says."""
    problems = Problems(lang)
    values = {name: text_of(form, name, 2000 if name == "referral_milestones" else 32) for name in POINTS_FIELDS}
    for name, value in values.items():
        if not value and name != "referral_milestones":
            problems.add(name, gettext(lang, MESSAGES["missing"]))
    if values["reset_month_day"] and not RESET_DAY.match(values["reset_month_day"]):
        problems.add("reset_month_day", gettext(lang, POINTS_MESSAGES["reset_format"]))
    milestones = milestones_of(values["referral_milestones"])
    if milestones is None:
        problems.add("referral_milestones", gettext(lang, POINTS_MESSAGES["milestone_format"]))
    if problems:
        return None, problems
    data = _data(programme)
    data["expiry"] = {**data["expiry"], "mode": values["expiry_mode"], "carry_over_pct": values["carry_over_pct"],
                      "reset_month_day": values["reset_month_day"], "extend_months": values["extend_months"]}
    data["pending"] = {**data["pending"], "return_window_days": values["return_window_days"],
                       "tier_spend_waits": form.get("tier_spend_waits") == "on"}
    data["referrals"] = {**data["referrals"], "enabled": form.get("referrals_enabled") == "on",
                         "referrer_points": values["referrer_points"], "friend_points": values["friend_points"],
                         "min_purchase": values["referral_min_purchase"], "milestones": milestones}
    try:
        return checked(data), problems
    except ValidationError as exc:
        for err in exc.errors():
            where: str | None
            if err["type"] in ("unknown_reward", "duplicate_milestone", "milestone_gift"):
                where = "referral_milestones"  # the checks of the milestones as a whole (this page's only rewards)
            else:
                where = field_of(err, POINTS_NAMES, "referral_milestones")
            problems.add(where, _points_message(lang, err))
        return None, problems


__all__ = ["MESSAGES", "Problems", "milestones_text", "per_language", "with_points_rules", "with_reward",
           "with_rules", "with_tier"]
