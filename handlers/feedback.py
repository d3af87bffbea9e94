"""/feedback: the member writes what is on their mind, optionally rates us 1-5, and gets a reference.

If the support room provides ``ctx.services.feedback_sink`` (async callable(member, feedback)),
it is called after the feedback is stored, e.g. to post it to the staff group; its failure is
logged and does not trouble the member, whose feedback is already safe.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from loyalbot.chat.callbacks import encode
from loyalbot.chat.i18n import N_
from loyalbot.chat.port import Button, Reply
from loyalbot.handlers.turn import Turn
from loyalbot.loyalty.surveys import MAX_FEEDBACK_CHARS
from loyalbot.storage.rows import stored_id

if TYPE_CHECKING:
    from loyalbot.handlers.router import Router

log = logging.getLogger(__name__)


def reference(feedback_id: int) -> str:
    """The reference number a member is given for their feedback (FB-000123)."""
    return f"FB-{feedback_id:06d}"


def _rating_buttons(turn: Turn) -> list[list[Button]]:
    stars = [Button("⭐" * score, encode("fb", "r", score)) for score in range(1, 6)]
    return [stars[:3], stars[3:], [Button(turn.t("button.skip"), encode("fb", "s"))]]


async def ask(turn: Turn) -> list[Reply]:
    await turn.set_state("fb.text")
    return [Reply(text=turn.t("feedback.ask", cancel="/cancel"))]


async def step(turn: Turn) -> list[Reply]:
    """The typed feedback (fb.text), or anything typed while the rating is asked (fb.rating)."""
    text = turn.incoming.text
    if turn.step == "fb.text":
        if text is None or not text.strip():
            return [Reply(text=turn.t("feedback.text_only"))]
        if len(text.strip()) > MAX_FEEDBACK_CHARS:
            log.info("feedback refused: %d characters", len(text))
            return [Reply(text=turn.t("error.invalid_feedback", limit=MAX_FEEDBACK_CHARS))]
        await turn.set_state("fb.rating", {"text": text.strip()})
        return [Reply(text=turn.t("feedback.rate"), buttons=_rating_buttons(turn))]
    if text is not None and text.strip() in {"1", "2", "3", "4", "5"}:
        return await _record(turn, int(text.strip()))
    return [Reply(text=turn.t("feedback.use_buttons"), buttons=_rating_buttons(turn))]


async def pressed(turn: Turn) -> list[Reply]:
    callback = turn.callback
    assert callback is not None
    if turn.step != "fb.rating":
        return turn.toast("error.stale_button")
    if callback.verb == "s":
        return await _record(turn, None)
    score = int(callback.args[1])
    if not 1 <= score <= 5:
        log.info("feedback rating out of range refused")
        return turn.toast("error.score_out_of_range", alert=True, low=1, high=5)
    return await _record(turn, score)


async def _record(turn: Turn, rating: int | None) -> list[Reply]:
    member = turn.member
    assert member is not None and turn.state is not None
    feedback = await turn.loyalty.record_feedback(stored_id(member.id), turn.state.data.get("text"), rating=rating,
                                                  now=turn.now, update_key=turn.incoming.update_key)
    await turn.clear_state()
    sink = turn.ctx.services.feedback_sink
    if sink is not None:
        try:
            await sink(member, feedback)
        except Exception as exc:  # the feedback is stored; a failed notice to staff must not undo the thanks
            log.error("feedback sink failed: %s", type(exc).__name__)
    thanks = turn.t("feedback.thanks", ref=reference(feedback.id or 0))
    replies = [Reply(text=thanks, keyboard=turn.menu_keyboard())]
    if turn.incoming.callback_id is not None:
        replies.insert(0, Reply(edit=True, buttons=None))  # the rating buttons have done their job
    return replies


def register(router: Router) -> None:
    router.command("feedback", ask, help=N_("help.feedback"), menu=N_("menu.feedback"))
    router.step("fb", step, max_chars=MAX_FEEDBACK_CHARS)
    router.callback("fb", pressed)
