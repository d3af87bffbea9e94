"""An update handled again after a crash (same update_key) gives the same answer and repeats no effect."""

from __future__ import annotations

import sqlalchemy as sa

from loyalbot.chat.port import Incoming
from loyalbot.storage.models import Feedback


async def _again(chat, ann, key: str, **payload) -> list:
    """Deliver one update as the inbox would, with its key; returns the replies."""
    incoming = Incoming(user_id=ann.user_id, chat_id=ann.user_id, language_code=ann.language_code,
                        first_name=ann.first_name, message_id=next(chat.ids), update_id=int(key.split(":")[0]),
                        update_key=key, **payload)
    ann.replies = await chat.router.handle(incoming)
    ann.history.append(ann.replies)
    return ann.replies


async def test_a_replayed_update_answers_as_the_first_time_and_stores_feedback_once(chat):
    ann = await chat.registered(1)
    await _again(chat, ann, "10:aa", command="feedback")
    await _again(chat, ann, "11:bb", text="Great croissants")
    first = [r.text for r in await _again(chat, ann, "12:cc", text="4")]
    # The process died after the answer went out, before the update was marked done: it comes again.
    second = [r.text for r in await _again(chat, ann, "12:cc", text="4")]
    assert first == second and "FB-" in (first[0] or "")
    async with chat.db.read() as s:
        rows = (await s.execute(sa.select(Feedback.text, Feedback.rating))).all()
    assert [tuple(r) for r in rows] == [("Great croissants", 4)]
    # A new update (another key) is a new answer: the conversation has moved on.
    await _again(chat, ann, "13:dd", text="4")
    assert not ann.sees("FB-")


async def test_a_replayed_step_starts_from_the_state_it_first_saw(chat):
    ann = await chat.registered(2)
    await _again(chat, ann, "20:aa", command="feedback")
    rate = [r.text for r in await _again(chat, ann, "21:bb", text="Lovely tea")]
    again = [r.text for r in await _again(chat, ann, "21:bb", text="Lovely tea")]
    assert rate == again, "the text is taken as the feedback again, not as an answer to the rating question"
    await _again(chat, ann, "22:cc", text="5")
    async with chat.db.read() as s:
        rows = (await s.execute(sa.select(Feedback.text, Feedback.rating))).all()
    assert [tuple(r) for r in rows] == [("Lovely tea", 5)]
