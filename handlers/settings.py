"""/settings and /language: which messages the member wants, quiet hours, time zone, birthday, language.

Offers need marketing consent: switching offers on records the consent, switching them off withdraws it.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from loyalbot.chat.callbacks import encode
from loyalbot.chat.i18n import N_
from loyalbot.chat.port import Button, Reply
from loyalbot.handlers.profile import (
    birthday_saved,
    birthday_text,
    is_skip,
    language_buttons,
    typed_birthday,
)
from loyalbot.handlers.turn import Turn
from loyalbot.loyalty.errors import InvalidSetting
from loyalbot.loyalty.members import NOTIFY_KINDS
from loyalbot.storage.rows import stored_id

if TYPE_CHECKING:
    from loyalbot.handlers.router import Router

log = logging.getLogger(__name__)

KIND_LABELS = {
    "care": N_("settings.kind_care"),
    "reminders": N_("settings.kind_reminders"),
    "surveys": N_("settings.kind_surveys"),
    "offers": N_("settings.kind_offers"),
    "activity": N_("settings.kind_activity"),  # points credited, tier changes, coupons used (scheduler/notices.py)
}


def _hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def _quiet(turn: Turn) -> str:
    member = turn.member
    assert member is not None
    if member.quiet_start is None or member.quiet_end is None:
        return turn.t("settings.quiet_off")
    return f"{_hhmm(member.quiet_start)}–{_hhmm(member.quiet_end)}"


def _wants(turn: Turn, kind: str) -> bool:
    member = turn.member
    assert member is not None
    wants = bool((member.notify or {}).get(kind, True))
    return wants and member.marketing_consent if kind == "offers" else wants


def settings_view(turn: Turn, *, edit: bool = False, note: str | None = None) -> list[Reply]:
    member = turn.member
    assert member is not None
    birthday = birthday_text(turn, member.birthday) if member.birthday else turn.t("settings.not_set")
    lines = [note, ""] if note else []
    lines += [turn.t("settings.title"), turn.t("settings.messages")]
    lines += [("✅ " if _wants(turn, kind) else "⬜ ") + turn.t(KIND_LABELS[kind]) for kind in NOTIFY_KINDS]
    lines += [turn.t("settings.quiet", value=_quiet(turn)), turn.t("settings.timezone", value=member.timezone),
              turn.t("settings.birthday", value=birthday), turn.t("settings.tap_to_change")]
    buttons = [[Button(("✅ " if _wants(turn, kind) else "⬜ ") + turn.t(KIND_LABELS[kind]), encode("st", "n", kind))]
               for kind in NOTIFY_KINDS]
    buttons += [[Button(turn.t("settings.button_quiet"), encode("st", "q", "menu")),
                 Button(turn.t("settings.button_timezone"), encode("st", "z", "menu"))],
                [Button(turn.t("settings.button_birthday"), encode("st", "b")),
                 Button(turn.t("settings.button_language"), encode("st", "l"))]]
    return [Reply(text="\n".join(lines), buttons=buttons, edit=edit)]


async def show_settings(turn: Turn) -> list[Reply]:
    return settings_view(turn)


async def show_languages(turn: Turn) -> list[Reply]:
    """/language: pick the language of the conversation (the menu follows)."""
    return [Reply(text=turn.t("language.choose"), buttons=language_buttons(turn.lang))]


async def _update(turn: Turn, note_key: str, *, note: str | None = None, **changes: object) -> list[Reply]:
    assert turn.member is not None
    try:
        turn.member = await turn.loyalty.update_member(stored_id(turn.member.id), now=turn.now, **changes)
    except InvalidSetting as refusal:
        log.info("setting refused: %s", refusal.params.get("setting"))
        return turn.refusal_reply(refusal)
    return settings_view(turn, edit=turn.incoming.callback_id is not None, note=note or turn.t(note_key))


async def pressed(turn: Turn) -> list[Reply]:
    callback, member = turn.callback, turn.member
    assert callback is not None and member is not None
    verb = callback.verb
    arg = str(callback.args[1]) if len(callback.args) > 1 else ""
    if verb == "v":
        await turn.clear_state()
        return settings_view(turn, edit=True)
    if verb == "l":
        return await show_languages(turn)
    if verb == "n":
        if arg == "offers":
            on = not _wants(turn, "offers")
            return await _update(turn, "settings.saved", notify={"offers": on}, marketing_consent=on)
        return await _update(turn, "settings.saved", notify={arg: not _wants(turn, arg)})
    if verb == "q":
        presets = turn.ctx.config.quiet_presets
        if arg == "menu":
            rows = [[Button(f"{_hhmm(start)}–{_hhmm(end)}", encode("st", "q", token))]
                    for token, (start, end) in presets.items()]
            rows += [[Button(turn.t("settings.quiet_off"), encode("st", "q", "off"))],
                     [Button(turn.t("button.back"), encode("st", "v"))]]
            return [Reply(text=turn.t("settings.quiet_choose"), buttons=rows, edit=True)]
        if arg == "off":
            return await _update(turn, "settings.saved", quiet_start=None, quiet_end=None)
        if arg in presets:
            start, end = presets[arg]
            return await _update(turn, "settings.saved", quiet_start=start, quiet_end=end)
        return turn.toast("error.stale_button")
    if verb == "z":
        zones = turn.ctx.config.timezones
        if arg == "menu":
            rows = [[Button(zone, encode("st", "z", str(i)))] for i, zone in enumerate(zones)]
            rows += [[Button(turn.t("settings.timezone_type"), encode("st", "z", "type"))],
                     [Button(turn.t("button.back"), encode("st", "v"))]]
            return [Reply(text=turn.t("settings.timezone_choose"), buttons=rows, edit=True)]
        if arg == "type":
            await turn.set_state("set.tz")
            return [Reply(text=turn.t("settings.timezone_ask"))]
        if arg.isdigit() and int(arg) < len(zones):
            return await _update(turn, "settings.saved", timezone=zones[int(arg)])
        return turn.toast("error.stale_button")
    # verb == "b"
    await turn.set_state("set.bday")
    return [Reply(text=turn.t("settings.birthday_ask"))]


async def step(turn: Turn) -> list[Reply]:
    """A typed time zone (set.tz) or birthday (set.bday)."""
    text = (turn.incoming.text or "").strip()
    if turn.step == "set.tz":
        if not text or len(text) > 64 or " " in text:
            return [Reply(text=turn.t("error.invalid_timezone"))]
        assert turn.member is not None  # only a member gets to this step, from their settings
        try:
            turn.member = await turn.loyalty.update_member(stored_id(turn.member.id), timezone=text, now=turn.now)
        except InvalidSetting:
            log.info("unknown time zone refused")
            return [Reply(text=turn.t("error.invalid_timezone"))]
        await turn.clear_state()
        return settings_view(turn, note=turn.t("settings.saved"))
    if text and is_skip(turn, text):
        await turn.clear_state()
        return settings_view(turn)
    value, problem = typed_birthday(turn, text)
    if value is None:
        log.info("birthday refused in settings")
        return [Reply(text=problem)]
    await turn.clear_state()
    return await _update(turn, "settings.saved", note=birthday_saved(turn, value), birthday=value)


def register(router: Router) -> None:
    router.command("settings", show_settings, help=N_("help.settings"), menu=N_("menu.settings"))
    router.command("language", show_languages, help=N_("help.language"))
    router.callback("st", pressed)
    router.step("set", step)
