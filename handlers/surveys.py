"""Answers to satisfaction surveys: the score buttons the scheduler sends, then an optional comment.

The buttons' data is `chat.callbacks.survey_answer(survey_id, score)`. A second tap, a survey
that has closed, someone else's survey or a forged score is answered with a polite toast and
changes nothing (the service refuses; nothing is written). The same update handled again after a
crash (same `update_key`) is not a second tap: it gets the first answer, and nothing is stored twice.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from loyalbot.chat.callbacks import encode
from loyalbot.chat.port import Button, Reply
from loyalbot.handlers.turn import Turn
from loyalbot.loyalty.errors import InvalidFeedback, Refusal
from loyalbot.storage.rows import stored_id

if TYPE_CHECKING:
    from loyalbot.handlers.router import Router

log = logging.getLogger(__name__)


async def pressed(turn: Turn) -> list[Reply]:
    callback, member = turn.callback, turn.member
    assert callback is not None and member is not None
    survey_id = int(callback.args[1])
    if callback.verb == "s":
        if turn.step == "sv.comment" and turn.state and turn.state.data.get("survey") == survey_id:
            await turn.clear_state()
            return [Reply(edit=True, buttons=None), Reply(text=turn.t("survey.no_comment"))]
        return turn.toast("error.stale_button")
    score = int(callback.args[2])
    try:
        await turn.loyalty.record_survey_answer(stored_id(member.id), survey_id, score, now=turn.now,
                                                update_key=turn.incoming.update_key)
    except Refusal as refusal:
        log.info("survey answer refused: %s", refusal.code)
        return [Reply(toast=turn.refusal(refusal)[:200], alert=True)]
    await turn.set_state("sv.comment", {"survey": survey_id})
    return [Reply(edit=True, buttons=None),
            Reply(text=turn.t("survey.thanks"), buttons=[[Button(turn.t("button.skip"),
                                                                 encode("sv", "s", survey_id))]])]


async def step(turn: Turn) -> list[Reply]:
    """The comment after a score: the next text the member types."""
    assert turn.member is not None and turn.state is not None
    text = turn.incoming.text
    if text is None or not text.strip():
        return [Reply(text=turn.t("survey.comment_text_only"))]
    try:
        await turn.loyalty.add_survey_comment(stored_id(turn.member.id), int(turn.state.data.get("survey", 0)), text,
                                              update_key=turn.incoming.update_key)
    except InvalidFeedback as refusal:
        log.info("survey comment refused: too long")
        return [Reply(text=turn.refusal(refusal))]
    except Refusal as refusal:
        log.info("survey comment refused: %s", refusal.code)
        await turn.clear_state()
        return [Reply(text=turn.refusal(refusal))]
    await turn.clear_state()
    return [Reply(text=turn.t("survey.comment_thanks"))]


def register(router: Router) -> None:
    router.callback("sv", pressed)
    router.step("sv", step)
