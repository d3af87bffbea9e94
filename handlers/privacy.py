"""/privacy: what is stored and why, a copy of it all as a JSON file, and erasure after a confirmation."""

from __future__ import annotations

import json
import logging
import secrets
from typing import TYPE_CHECKING

from loyalbot.chat.callbacks import encode
from loyalbot.chat.i18n import LANGUAGES, N_, Translator
from loyalbot.chat.port import Button, Media, Reply
from loyalbot.handlers.turn import Turn
from loyalbot.storage.rows import stored_id

if TYPE_CHECKING:
    from loyalbot.handlers.router import Router

log = logging.getLogger(__name__)
ERASE_STEP = "privacy.erase"


async def show_privacy(turn: Turn) -> list[Reply]:
    """/privacy: open to anyone (it is worth reading before joining); the buttons only for members."""
    if turn.member is None:
        return [Reply(text=turn.t("privacy.info", name=turn.ctx.config.bot_name))]
    return [Reply(text=turn.t("privacy.info", name=turn.ctx.config.bot_name), buttons=[
        [Button(turn.t("privacy.button_export"), encode("pv", "x"))],
        [Button(turn.t("privacy.button_erase"), encode("pv", "e"))],
    ])]


async def pressed(turn: Turn) -> list[Reply]:
    callback, member = turn.callback, turn.member
    assert callback is not None
    verb = callback.verb
    if member is None:
        # Open to non-members only for this: the "yes" that erased them, handled again after a crash
        # (the member is gone by then), is told what it was told the first time.
        done = await turn.loyalty.update_effect("erase", turn.incoming.update_key) if verb == "y" else None
        if done is not None:
            log.info("erasure handled again: answered as the first time")
            if done.get("lang") in LANGUAGES:  # in the language they were told in, not their phone's
                turn.tr = Translator(str(done["lang"]))
            return _erased(turn)
        return turn.toast("start.join_first", alert=True)
    if verb == "x":
        document = await turn.loyalty.export_member_data(stored_id(member.id))
        data = json.dumps(document, ensure_ascii=False, indent=2).encode("utf-8")
        return [Reply(text=turn.t("privacy.export_caption"),
                      media=Media(kind="document", data=data, filename="loyalbot-data.json"))]
    if verb == "e":
        # Erasure is final, so "yes" only counts with the token of the confirmation just shown: a forged
        # or replayed press cannot skip the question.
        token = await _erase_token(turn)
        await turn.set_state(ERASE_STEP, {"token": token})
        return [Reply(text=turn.t("privacy.erase_confirm", points=member.balance), buttons=[
            [Button(turn.t("privacy.button_erase_yes"), encode("pv", "y", token))],
            [Button(turn.t("button.cancel"), encode("pv", "n"))]])]
    if verb == "n":
        await turn.clear_state()
        return [Reply(text=turn.t("privacy.erase_cancelled"), edit=True)]
    state = turn.state
    if state is None or state.step != ERASE_STEP or state.data.get("token") != callback.args[1]:
        log.info("erase confirmation without a matching question; ignored")
        return [Reply(toast=turn.label("error.stale_button"))]
    await turn.loyalty.erase_member(stored_id(member.id), actor=f"member:{member.id}", now=turn.now,
                                    update_key=turn.incoming.update_key)
    # Cleared without a replay mark: a mark would keep a row under their Telegram id after erasure
    # (and the Redis store is not cleared by the service). A replay is recognised by the service instead.
    await turn.ctx.states.clear(*turn.key)
    log.info("member erased at their request")
    return _erased(turn)


async def _erase_token(turn: Turn) -> str:
    """A fresh token for the erase question; the same one again when this update is handled again, so
    the question shown first (and its "yes") stays the one that counts."""
    key = turn.incoming.update_key
    if key is not None:
        stored = await turn.ctx.states.get(*turn.key)
        if stored is not None and stored.applied == key and stored.step == ERASE_STEP and stored.data.get("token"):
            return str(stored.data["token"])
    return secrets.token_urlsafe(6)


def _erased(turn: Turn) -> list[Reply]:
    return [Reply(text=turn.t("privacy.erased"), edit=True),
            Reply(text=turn.t("privacy.erased_restart"), remove_keyboard=True)]


def register(router: Router) -> None:
    router.command("privacy", show_privacy, open=True, help=N_("help.privacy"))
    router.callback("pv", pressed, open=True)  # see pressed: a replayed erasure
