"""/privacy: what is stored and why, a copy of it all as a JSON file, and erasure after a confirmation."""

from __future__ import annotations

import json
import logging
import secrets
from typing import TYPE_CHECKING

from loyalbot.chat.callbacks import encode
from loyalbot.chat.i18n import N_
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
    assert callback is not None and member is not None
    verb = callback.verb
    if verb == "x":
        document = await turn.loyalty.export_member_data(stored_id(member.id))
        data = json.dumps(document, ensure_ascii=False, indent=2).encode("utf-8")
        return [Reply(text=turn.t("privacy.export_caption"),
                      media=Media(kind="document", data=data, filename="loyalbot-data.json"))]
    if verb == "e":
        # Erasure is final, so "yes" only counts with the token of the confirmation just shown: a forged
        # or replayed press cannot skip the question.
        token = secrets.token_urlsafe(6)
        await turn.ctx.states.set(*turn.key, ERASE_STEP, {"token": token})
        return [Reply(text=turn.t("privacy.erase_confirm", points=member.balance), buttons=[
            [Button(turn.t("privacy.button_erase_yes"), encode("pv", "y", token))],
            [Button(turn.t("button.cancel"), encode("pv", "n"))]])]
    if verb == "n":
        await turn.ctx.states.clear(*turn.key)
        return [Reply(text=turn.t("privacy.erase_cancelled"), edit=True)]
    state = turn.state
    if state is None or state.step != ERASE_STEP or state.data.get("token") != callback.args[1]:
        log.info("erase confirmation without a matching question; ignored")
        return [Reply(toast=turn.label("error.stale_button"))]
    await turn.loyalty.erase_member(stored_id(member.id), actor=f"member:{member.id}", now=turn.now)
    await turn.ctx.states.clear(*turn.key)  # the Redis store is not cleared by the service
    log.info("member erased at their request")
    return [Reply(text=turn.t("privacy.erased"), edit=True),
            Reply(text=turn.t("privacy.erased_restart"), remove_keyboard=True)]


def register(router: Router) -> None:
    router.command("privacy", show_privacy, open=True, help=N_("help.privacy"))
    router.callback("pv", pressed)
