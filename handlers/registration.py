"""Joining the programme with /start: language, terms, marketing consent, birthday, phone, welcome.

Each answer moves the conversation state one step on (reg.lang -> reg.terms -> reg.mkt -> reg.bday
-> reg.phone); the member row is only created at the end, so someone who stops half-way has
joined nothing. A button from an earlier step is answered with a toast and changes nothing.
"""

from __future__ import annotations

import logging
from datetime import date
from typing import TYPE_CHECKING, Any

from loyalbot.chat.callbacks import encode
from loyalbot.chat.i18n import LANGUAGES, N_, Translator
from loyalbot.chat.port import Button, KeyButton, Reply
from loyalbot.handlers.birthdays import Unreadable, format_birthday, read_birthday
from loyalbot.handlers.turn import Turn
from loyalbot.loyalty.errors import InvalidBirthday
from loyalbot.loyalty.members import check_birthday
from loyalbot.loyalty.programme import BIRTHDAY_YEAR_UNKNOWN

if TYPE_CHECKING:
    from loyalbot.handlers.router import Router

log = logging.getLogger(__name__)

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


# --- the questions -----------------------------------------------------------------------------------


def _ask(turn: Turn, step: str) -> list[Reply]:
    t = turn.t
    if step == "reg.lang":
        return [Reply(text=t("start.welcome", name=turn.ctx.config.bot_name) + "\n\n" + t("start.choose_language"),
                      buttons=language_buttons(turn.lang))]
    if step == "reg.terms":
        return [Reply(text=t("start.terms", name=turn.ctx.config.bot_name), buttons=[
            [Button(t("button.accept"), encode("rg", "ty")), Button(t("button.decline"), encode("rg", "tn"))]])]
    if step == "reg.mkt":
        return [Reply(text=t("start.marketing"), buttons=[
            [Button(t("button.yes_please"), encode("rg", "my")), Button(t("button.no_thanks"), encode("rg", "mn"))]])]
    if step == "reg.bday":
        return [Reply(text=t("start.birthday"), buttons=[[Button(t("button.skip"), encode("rg", "bs"))]])]
    if step == "reg.phone":
        return [Reply(text=t("start.phone"), keyboard=[
            [KeyButton(t("button.share_phone"), request_contact=True)], [KeyButton(t("button.skip"))]])]
    return []


async def _go(turn: Turn, step: str, **data: Any) -> list[Reply]:
    await turn.set_state(step, {**(turn.state.data if turn.state else {}), **data})
    return _ask(turn, step)


# --- handlers ------------------------------------------------------------------------------------------


async def start(turn: Turn) -> list[Reply]:
    """/start: a member sees the menu; anyone else begins (or begins again) to join."""
    if turn.member is not None:
        await turn.clear_state()
        name = turn.member.first_name or ""
        return [Reply(text=turn.t("start.welcome_back", name=name).strip(), keyboard=turn.menu_keyboard())]
    await turn.clear_state()
    return await _go(turn, "reg.lang", lang=turn.lang)


async def choose_language(turn: Turn) -> list[Reply]:
    """A language button: during joining it sets the language; for a member it is /language's answer."""
    assert turn.callback is not None
    lang = turn.callback.verb
    if turn.member is not None:
        from loyalbot.handlers.settings import switch_language

        return await switch_language(turn, lang)
    if turn.step not in (None, "reg.lang", "reg.terms"):
        return turn.toast("error.stale_button")
    turn.tr = Translator(lang, timezone=turn.tr.zone.key, format_locale=turn.ctx.config.format_locales.get(lang))
    return await _go(turn, "reg.terms", lang=lang)


async def answer(turn: Turn) -> list[Reply]:
    """The registration buttons: terms, marketing consent, skipping the birthday."""
    assert turn.callback is not None
    verb, step = turn.callback.verb, turn.step
    expected = {"ty": "reg.terms", "tn": "reg.terms", "tr": "reg.terms", "my": "reg.mkt", "mn": "reg.mkt",
                "bs": "reg.bday"}[verb]
    if turn.member is not None or step != expected:
        return turn.toast("error.stale_button")
    if verb == "ty":
        return await _go(turn, "reg.mkt")
    if verb == "tn":
        return [Reply(text=turn.t("start.terms_declined"),
                      buttons=[[Button(turn.t("button.try_again"), encode("rg", "tr"))]])]
    if verb == "tr":
        return _ask(turn, "reg.terms")
    if verb in ("my", "mn"):
        return await _go(turn, "reg.bday", mkt=verb == "my")
    return await _go(turn, "reg.phone", bday=None)


async def step(turn: Turn) -> list[Reply]:
    """Messages while joining: the typed birthday, the shared contact, or a nudge back to the buttons."""
    incoming, current = turn.incoming, turn.step or ""
    if current == "reg.bday" and incoming.text is not None:
        if is_skip(turn, incoming.text):
            return await _go(turn, "reg.phone", bday=None)
        value, problem = typed_birthday(turn, incoming.text)
        if value is None:
            log.info("registration: birthday refused")
            return [Reply(text=problem, buttons=[[Button(turn.t("button.skip"), encode("rg", "bs"))]])]
        return [Reply(text=birthday_saved(turn, value))] + await _go(turn, "reg.phone", bday=value.isoformat())
    if current == "reg.phone":
        if incoming.contact is not None:
            if incoming.contact.user_id != incoming.user_id:
                log.info("registration: someone else's contact refused")
                return [Reply(text=turn.t("start.not_your_contact"))] + _ask(turn, "reg.phone")
            return await finish(turn, phone=incoming.contact.phone)
        if incoming.text is not None and is_skip(turn, incoming.text):
            return await finish(turn, phone=None)
        return [Reply(text=turn.t("start.use_buttons"))] + _ask(turn, "reg.phone")
    return [Reply(text=turn.t("start.use_buttons"))] + _ask(turn, current)


async def finish(turn: Turn, *, phone: str | None) -> list[Reply]:
    """Create the member from what was gathered and show the main menu."""
    data = turn.state.data if turn.state else {}
    bday = date.fromisoformat(data["bday"]) if data.get("bday") else None
    incoming = turn.incoming
    member = await turn.loyalty.register_member(
        telegram_id=incoming.user_id, chat_id=incoming.chat_id, first_name=incoming.first_name,
        last_name=incoming.last_name, language=turn.lang, terms_accepted=True,
        marketing_consent=bool(data.get("mkt")), birthday=bday, phone=phone, now=turn.now,
    )
    await turn.clear_state()
    turn.member = member
    text = turn.t("start.joined", name=turn.ctx.config.bot_name, member_no=member.member_no,
                  tier=turn.tier_name(member.tier))
    if member.balance > 0:  # the programme's welcome bonus, credited as the member joined
        text += "\n\n" + turn.t("start.welcome_bonus", points=turn.tr.number(member.balance))
    return [Reply(text=text, keyboard=turn.menu_keyboard())]


async def join_prompt(turn: Turn) -> list[Reply]:
    """What someone who has not joined gets when they try anything else: the way to join."""
    if turn.step and turn.step.startswith("reg."):
        return [Reply(text=turn.t("start.finish_first"))] + _ask(turn, turn.step)
    return [Reply(text=turn.t("start.join_first"))]


def register(router: Router) -> None:
    router.command("start", start, open=True)
    router.callback("lg", choose_language, open=True)
    router.callback("rg", answer, open=True)
    router.step("reg", step)
    router.join_prompt = join_prompt
