"""Satisfaction surveys: answer buttons, CSAT after a used coupon or a closed support conversation, reports.

The answers themselves arrive as button presses and are stored by the conversations in handlers/
(`Loyalty.record_survey_answer`); the callback data is `chat.callbacks.survey_answer(survey_id, score)`,
"1:sv:<survey_id>:<score>".
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from loyalbot.chat.callbacks import survey_answer
from loyalbot.loyalty.results import Scores
from loyalbot.loyalty.service import Loyalty
from loyalbot.storage import as_utc
from loyalbot.storage.models import Member, Outbox, Survey

NPS_ROWS = ((0, 1, 2, 3, 4, 5), (6, 7, 8, 9, 10))
CSAT_ROWS = ((1, 2, 3, 4, 5),)
DEFAULT_CSAT_DELAY = timedelta(minutes=30)


def survey_answer_data(survey_id: int, score: int) -> str:
    """Callback data of an answer button, in the shared codec's format."""
    return survey_answer(survey_id, score)


def survey_buttons(kind: str, survey_id: int) -> list[list[dict[str, str]]]:
    """The answer buttons as stored in the outbox: NPS 0-10 in two rows, CSAT 1-5 in one."""
    rows = NPS_ROWS if kind == "nps" else CSAT_ROWS
    return [[{"text": str(score), "data": survey_answer_data(survey_id, score)} for score in row] for row in rows]


@dataclass(frozen=True)
class SurveyReport:
    """CSAT or NPS over a period and segment, plus how many were asked (response rate)."""

    kind: str
    since: datetime
    until: datetime
    asked: int
    answers: int
    value: float | None  # CSAT: % of 4-5 answers; NPS: promoters minus detractors, in points
    distribution: dict[int, int]

    @property
    def response_rate(self) -> float | None:
        return round(100.0 * self.answers / self.asked, 1) if self.asked else None


async def survey_report(loyalty: Loyalty, kind: str, *, since: datetime, until: datetime,
                        tier: str | None = None, language: str | None = None) -> SurveyReport:
    """CSAT (share of 4-5) or NPS (promoters minus detractors) for surveys answered in [since, until)."""
    if kind not in ("csat", "nps"):
        raise ValueError("kind must be csat or nps")
    scores: Scores = await loyalty.scores(kind, since=since, until=until, tier=tier, language=language)
    query = (sa.select(sa.func.count()).select_from(Survey).join(Member, Member.id == Survey.member_id)
             .where(Survey.kind == kind, Survey.created_at >= as_utc(since), Survey.created_at < as_utc(until)))
    if tier:
        query = query.where(Member.tier == tier)
    if language:
        query = query.where(Member.language == language)
    async with loyalty.db.read() as s:
        asked = int((await s.execute(query)).scalar_one())
    return SurveyReport(kind=kind, since=as_utc(since), until=as_utc(until), asked=asked, answers=scores.answers,
                        value=scores.value, distribution=dict(scores.distribution))


async def delivered_surveys(loyalty: Loyalty, member_id: int) -> list[dict[str, Any]]:
    """The survey messages a member was sent, newest first (for support and tests)."""
    async with loyalty.db.read() as s:
        rows = (await s.execute(sa.select(Outbox.survey_id, Outbox.kind, Outbox.status, Outbox.sent_at)
                                .where(Outbox.member_id == member_id, Outbox.survey_id.is_not(None))
                                .order_by(Outbox.id.desc()))).all()
    return [dict(survey_id=r[0], kind=r[1], status=r[2], sent_at=r[3]) for r in rows]
