"""What joining (/start) and /settings both ask of a member: their language and their birthday.

Both conversations import this; neither imports the other.
"""

from __future__ import annotations

from datetime import date

from loyalbot.chat.callbacks import encode
from loyalbot.chat.i18n import LANGUAGES, N_, Translator
from loyalbot.chat.port import Button, Reply
from loyalbot.handlers.birthdays import Unreadable, format_birthday, read_birthday
from loyalbot.handlers.turn import Turn
from loyalbot.loyalty.errors import InvalidBirthday
from loyalbot.loyalty.members import check_birthday
from loyalbot.loyalty.programme import BIRTHDAY_YEAR_UNKNOWN
from loyalbot.storage.rows import stored_id

LANGUAGE_NAMES = {"en": "English", "zh_Hans": "简体中文", "zh_Hant": "繁體中文"}
_SKIP_WORDS = {"skip", "跳过", "跳過", "-", "no", "none"}
# What a member is told when a typed birthday cannot be read (handlers.birthdays.Unreadable.reason).
UNREADABLE = {"format": N_("birthday.format"), "no_such_day": N_("birthday.no_such_day"),
              "ambiguous": N_("birthday.ambiguous"), "year_needed": N_("birthday.year_needed")}


def language_buttons(current: str) -> list[list[Button]]:
    """One button per language, the current one ticked."""
    return [[Button(("✓ " if code == current else "") + LANGUAGE_NAMES[code], encode("lg", code))]
            for code in LANGUAGES]


def typed_birthday(turn: Turn, text: str) -> tuple[date | None, str | None]:
    """(the birthday to store, None), or (None, why not in the member's words) for a typed birthday."""
    year_required = turn.loyalty.programme.programme.birthday_year_required
    found = read_birthday(text, turn.tr.locale, year_required=year_required)
    if isinstance(found, Unreadable):
        return None, turn.t(UNREADABLE[found.reason])
    value = found.as_date(BIRTHDAY_YEAR_UNKNOWN)
    if found.year is None:
        return value, None  # no year to check: any month-day of a leap year is a birthday
    return (None, problem) if (problem := birthday_problem(turn, value)) is not None else (value, None)


def birthday_text(turn: Turn, value: date) -> str:
    """A stored birthday as the member reads it, in their locale (without the year when none was given)."""
    return format_birthday(value, turn.tr.locale, year_known=value.year != BIRTHDAY_YEAR_UNKNOWN)


def birthday_saved(turn: Turn, value: date) -> str:
    """The confirmation of what was saved, so a misread date is seen at once."""
    return turn.t("birthday.saved", date=birthday_text(turn, value))


def birthday_problem(turn: Turn, value: date) -> str | None:
    """Why a typed birthday cannot be taken, in the member's words, or None if it is fine."""
    today = turn.now.astimezone(turn.tr.zone).date()
    if value > today:
        return turn.t("birthday.future")
    if value.year < 1900:
        return turn.t("birthday.too_early")
    try:
        check_birthday(value, today)
    except InvalidBirthday as refusal:
        return turn.refusal(refusal)
    return None


def is_skip(turn: Turn, text: str) -> bool:
    word = text.strip().casefold()
    return word in _SKIP_WORDS or word == turn.t("button.skip").casefold()


async def switch_language(turn: Turn, lang: str) -> list[Reply]:
    """A member chose `lang` (a language button or /language): stored, and the answer already in it."""
    member = turn.member
    assert member is not None
    turn.member = await turn.loyalty.update_member(stored_id(member.id), language=lang, now=turn.now)
    turn.tr = Translator(lang, timezone=member.timezone, format_locale=turn.ctx.config.format_locales.get(lang))
    return [Reply(text=turn.t("language.changed"), keyboard=turn.menu_keyboard())]


__all__ = ["LANGUAGE_NAMES", "UNREADABLE", "birthday_problem", "birthday_saved", "birthday_text", "is_skip",
           "language_buttons", "switch_language", "typed_birthday"]
