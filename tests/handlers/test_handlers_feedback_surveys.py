"""Feedback with a reference number, and answers to satisfaction surveys."""

from __future__ import annotations

import sqlalchemy as sa

from loyalbot.chat.callbacks import survey_answer
from loyalbot.storage.models import Feedback, SurveyAnswer


async def test_feedback_with_rating_gets_a_reference_and_reaches_the_sink(chat):
    posted = []

    async def sink(member, feedback):
        posted.append((member.member_no, feedback.text, feedback.rating))

    chat.ctx.services.feedback_sink = sink
    ann = await chat.registered(1)
    await ann.send("💬 Feedback")
    await ann.send("The <b>flat white</b> was lovely ☕")
    await ann.press("⭐⭐⭐⭐")
    async with chat.db.read() as s:
        stored = (await s.execute(sa.select(Feedback))).scalar_one()
    assert ann.sees(f"FB-{stored.id:06d}")
    assert stored.text == "The <b>flat white</b> was lovely ☕" and stored.rating == 4
    assert posted == [((await ann.member()).member_no, stored.text, 4)]


async def test_feedback_rating_can_be_skipped_and_a_failing_sink_does_not_matter(chat):
    async def broken_sink(member, feedback):
        raise RuntimeError("staff group unreachable")

    chat.ctx.services.feedback_sink = broken_sink
    ann = await chat.registered(2, lang="zh_Hans")
    await ann.send("/feedback")
    await ann.send("咖啡很好喝")
    await ann.press("跳过")
    assert ann.sees("参考编号")
    assert await chat.count("feedback") == 1


async def test_feedback_too_long_is_refused_and_asked_again(chat):
    ann = await chat.registered(3)
    await ann.send("/feedback")
    await ann.send("x" * 5000)
    assert ann.sees("4,000 characters or fewer")
    await ann.send("short and sweet")
    assert ann.sees("How would you rate")
    assert await chat.count("feedback") == 0


async def _survey(chat, person, kind="csat"):
    member = await person.member()
    return await chat.loyalty.open_survey(member.id, kind, trigger="manual", now=chat.clock())


async def test_a_survey_answer_is_recorded_with_an_optional_comment(chat):
    ann = await chat.registered(4)
    survey = await _survey(chat, ann)
    await ann.press_data(survey_answer(survey.id, 5))
    assert ann.sees("Thank you")
    await ann.send("Friendly staff!")
    assert ann.sees("noted your comment")
    async with chat.db.read() as s:
        answer = (await s.execute(sa.select(SurveyAnswer))).scalar_one()
    assert (answer.score, answer.comment) == (5, "Friendly staff!")


async def test_the_comment_can_be_skipped(chat):
    ann = await chat.registered(5)
    survey = await _survey(chat, ann, "nps")
    await ann.press_data(survey_answer(survey.id, 9))
    await ann.press("Skip")
    assert ann.sees("have a lovely day")
    await ann.send("hello")  # no longer a comment
    async with chat.db.read() as s:
        answer = (await s.execute(sa.select(SurveyAnswer))).scalar_one()
    assert answer.comment is None and answer.score == 9


async def test_second_tap_stale_and_forged_survey_buttons_change_nothing(chat):
    ann = await chat.registered(6, lang="zh_Hant")
    bob = await chat.registered(7)
    survey = await _survey(chat, ann)
    await ann.press_data(survey_answer(survey.id, 9))  # CSAT is 1-5: a forged score
    assert ann.replies[0].toast and "1" in ann.replies[0].toast and "5" in ann.replies[0].toast
    assert await chat.count("survey_answers") == 0
    await bob.press_data(survey_answer(survey.id, 3))  # someone else's survey
    assert bob.replies[0].toast
    assert await chat.count("survey_answers") == 0
    await ann.press_data(survey_answer(survey.id, 4))
    await ann.press("跳過")
    before = await chat.snapshot()
    await ann.press_data(survey_answer(survey.id, 2))  # the second tap
    assert "已經回答過" in ann.replies[0].toast
    await ann.press_data(survey_answer(999, 2))  # a survey that never was
    assert ann.replies[0].toast
    assert await chat.snapshot() == before
