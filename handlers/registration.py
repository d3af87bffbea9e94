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
from loyalbot.chat.i18n import Translator
from loyalbot.chat.port import Button, KeyButton, Reply
from loyalbot.handlers.profile import (
    birthday_saved,
    is_skip,
    language_buttons,
    switch_language,
    typed_birthday,
)
from loyalbot.handlers.turn import Turn
from loyalbot.loyalty.errors import Refusal
from loyalbot.loyalty.referrals import looks_like_code
from loyalbot.storage.rows import stored_id

if TYPE_CHECKING:
    from loyalbot.handlers.router import Router

log = logging.getLogger(__name__)

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
    code = turn.incoming.args.strip()
    if turn.member is not None:
        await turn.clear_state()
        name = turn.member.first_name or ""
        replies = [Reply(text=turn.t("start.welcome_back", name=name).strip(), keyboard=turn.menu_keyboard())]
        if code and looks_like_code(code):  # a member opening someone's link: links are for newcomers
            log.info("registration: referral link opened by a member")
            replies.insert(0, Reply(text=turn.t("error.not_a_newcomer")))
        return replies
    await turn.clear_state()
    # A referral code from a t.me/<bot>?start=<code> link waits in the state until the member has joined.
    return await _go(turn, "reg.lang", lang=turn.lang, ref=code if looks_like_code(code) else None)


async def choose_language(turn: Turn) -> list[Reply]:
    """A language button: during joining it sets the language; for a member it is /language's answer."""
    assert turn.callback is not None
    lang = turn.callback.verb
    if turn.member is not None:
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
    if data.get("ref"):
        text += "\n\n" + await _link_referral(turn, stored_id(member.id), data["ref"])
    return [Reply(text=text, keyboard=turn.menu_keyboard())]


async def _link_referral(turn: Turn, member_id: int, code: str) -> str:
    """Link the member who just joined to the friend whose link they came with; what to tell them."""
    try:
        await turn.loyalty.link_referral(member_id, code, now=turn.now)
    except Refusal as refusal:  # joining went fine; only the link did not
        log.info("registration: referral refused: %s", refusal.code)
        return turn.refusal(refusal)
    return turn.t("start.referred")


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
