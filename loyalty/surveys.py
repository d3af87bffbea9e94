"""Feedback and satisfaction surveys: what members tell us, the CSAT and NPS surveys put to them, the scores."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import col, select

from loyalbot.loyalty import errors
from loyalbot.loyalty.members import lock_member
from loyalbot.loyalty.results import Scores
from loyalbot.storage import Db, as_utc, utcnow
from loyalbot.storage.inbox import effect_of, remember_effect
from loyalbot.storage.models import Feedback, Member, Survey, SurveyAnswer

MAX_FEEDBACK_CHARS = 4000
MAX_COMMENT_CHARS = 2000
SURVEY_SCALES = {"csat": (1, 5), "nps": (0, 10)}


class Surveys:
    """Feedback, surveys and their answers."""

    def __init__(self, db: Db) -> None:
        self.db = db

    async def record_feedback(self, member_id: int, text: str | None, *, rating: int | None = None,
                              now: datetime | None = None, update_key: str | None = None) -> Feedback:
        """Store a member's feedback; its id is the reference number they are given.
        With `update_key` (the Telegram update it came in), the same update stores it once."""
        now = as_utc(now or utcnow())
        text = (text or "").strip()
        if rating is not None and (isinstance(rating, bool) or not isinstance(rating, int) or not 1 <= rating <= 5):
            raise errors.ScoreOutOfRange(low=1, high=5)
        if (not text and rating is None) or len(text) > MAX_FEEDBACK_CHARS:
            raise errors.InvalidFeedback(limit=MAX_FEEDBACK_CHARS)
        async with self.db.transaction() as tx:
            await lock_member(tx, member_id)
            effect_key = f"feedback:{update_key}" if update_key else None
            if effect_key is not None and (done := await effect_of(tx, effect_key)) is not None:
                earlier = await tx.get(Feedback, int(done.get("feedback", 0)))
                if earlier is not None:
                    return earlier
            feedback = Feedback(member_id=member_id, text=text, rating=rating, created_at=now)
            tx.add(feedback)
            if effect_key is not None:
                await tx.flush()
                await remember_effect(tx, effect_key, {"feedback": feedback.id}, now=now)
            return feedback

    async def open_survey(self, member_id: int, kind: str, *, trigger: str, trigger_ref: str | None = None,
                          schedule_id: int | None = None, conversation_id: int | None = None,
                          staff_id: int | None = None, now: datetime | None = None) -> Survey | None:
        """Put a survey to a member; None when they already have one open (at most one at a time)."""
        now = as_utc(now or utcnow())
        if kind not in SURVEY_SCALES:
            raise errors.InvalidSetting("survey kind must be csat or nps", setting="kind")
        async with self.db.transaction() as tx:
            await lock_member(tx, member_id)
            open_one = await tx.execute(select(Survey.id).where(Survey.member_id == member_id,
                                                                Survey.status == "open"))
            if open_one.first() is not None:
                return None
            survey = Survey(member_id=member_id, kind=kind, trigger=trigger, trigger_ref=trigger_ref,
                            schedule_id=schedule_id, conversation_id=conversation_id, staff_id=staff_id,
                            created_at=now)
            tx.add(survey)
            await tx.flush()
            return survey

    async def record_survey_answer(self, member_id: int, survey_id: int, score: Any, *,
                                   comment: str | None = None, now: datetime | None = None,
                                   update_key: str | None = None) -> SurveyAnswer:
        """Store an answer to an open survey of this member; out-of-range scores and second answers are refused.
        The update that stored it (`update_key`), handled again after a crash, gets the stored answer back."""
        now = as_utc(now or utcnow())
        async with self.db.transaction() as tx:
            if update_key and (done := await effect_of(tx, f"survey:{update_key}")) is not None:
                earlier = await tx.get(SurveyAnswer, int(done.get("answer", 0)))
                if earlier is not None:
                    return earlier
            survey = (await tx.execute(select(Survey).where(Survey.id == survey_id).with_for_update()
                                       .execution_options(populate_existing=True))).scalar_one_or_none()
            if survey is None or survey.member_id != member_id:
                raise errors.UnknownSurvey()
            low, high = SURVEY_SCALES[survey.kind]
            if isinstance(score, bool) or not isinstance(score, int) or not low <= score <= high:
                raise errors.ScoreOutOfRange(low=low, high=high)
            if survey.status != "open":
                raise errors.SurveyClosed()
            survey.status, survey.answered_at = "answered", now
            answer = SurveyAnswer(survey_id=survey_id, member_id=member_id, kind=survey.kind, score=score,
                                  comment=(comment or "").strip()[:MAX_COMMENT_CHARS] or None,
                                  staff_id=survey.staff_id, created_at=now)
            tx.add_all([survey, answer])
            if update_key:
                await tx.flush()
                await remember_effect(tx, f"survey:{update_key}", {"answer": answer.id}, now=now)
            return answer

    async def add_survey_comment(self, member_id: int, survey_id: int, comment: str, *,
                                 update_key: str | None = None) -> SurveyAnswer:
        """Attach the optional follow-up comment to an answered survey (once; the update that attached it,
        `update_key`, handled again after a crash, gets the answer back instead of a refusal)."""
        comment = (comment or "").strip()
        if not comment or len(comment) > MAX_COMMENT_CHARS:
            raise errors.InvalidFeedback(limit=MAX_COMMENT_CHARS)
        async with self.db.transaction() as tx:
            answer = (await tx.execute(select(SurveyAnswer).where(SurveyAnswer.survey_id == survey_id)
                                       .with_for_update())).scalar_one_or_none()
            if answer is None or answer.member_id != member_id:
                raise errors.UnknownSurvey()
            if update_key and await effect_of(tx, f"survey_comment:{update_key}") is not None:
                return answer
            if answer.comment:
                raise errors.SurveyClosed()
            answer.comment = comment
            tx.add(answer)
            if update_key:
                await remember_effect(tx, f"survey_comment:{update_key}", {"answer": answer.id})
            return answer

    async def scores(self, kind: str, *, since: datetime, until: datetime, tier: str | None = None,
                     language: str | None = None) -> Scores:
        """CSAT (share of 4-5 answers, in %) or NPS (promoters minus detractors, in points) over a period."""
        query = (select(SurveyAnswer.score, sa.func.count())
                 .where(SurveyAnswer.kind == kind, col(SurveyAnswer.created_at) >= as_utc(since),
                        col(SurveyAnswer.created_at) < as_utc(until)).group_by(col(SurveyAnswer.score)))
        if tier or language:  # only then the members: the answers' own index serves the rest
            query = query.join(Member, col(Member.id) == SurveyAnswer.member_id)
        if tier:
            query = query.where(Member.tier == tier)
        if language:
            query = query.where(Member.language == language)
        async with self.db.read() as s:
            dist = {int(score): int(n) for score, n in (await s.execute(query)).all()}
        total = sum(dist.values())
        if not total:
            return Scores(kind=kind, answers=0, value=None, distribution=dist)
        if kind == "csat":
            value = 100.0 * sum(n for score, n in dist.items() if score >= 4) / total
        else:
            promoters = sum(n for score, n in dist.items() if score >= 9)
            detractors = sum(n for score, n in dist.items() if score <= 6)
            value = 100.0 * (promoters - detractors) / total
        return Scores(kind=kind, answers=total, value=round(value, 1), distribution=dist)


__all__ = ["MAX_COMMENT_CHARS", "MAX_FEEDBACK_CHARS", "SURVEY_SCALES", "Surveys"]
