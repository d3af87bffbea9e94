"""Reads for the console's members, feedback, survey and support pages: one page of each list, newest first.

Reads only; every change goes through the Loyalty services. Lists are read a page at a time (PAGE rows and
one more, to learn whether there is a next page) on indexed columns (member_id, state, status).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, TypeVar

import sqlalchemy as sa
from sqlmodel import col, select

from loyalbot.storage import Db, as_utc
from loyalbot.storage.models import (
    Coupon,
    Feedback,
    HandoffConversation,
    HandoffEvent,
    HandoffMessage,
    LedgerEntry,
    Member,
    Outbox,
    Purchase,
    Refund,
    Reward,
    Staff,
    SurveyAnswer,
    TierChange,
)

PAGE = 20
T = TypeVar("T")


@dataclass
class Page(Generic[T]):
    """One page of a list: its rows, its number (from 1), and whether there is a next one."""

    rows: list[T]
    number: int = 1
    more: bool = False

    @property
    def previous(self) -> int | None:
        return self.number - 1 if self.number > 1 else None

    @property
    def next(self) -> int | None:
        return self.number + 1 if self.more else None


def page_number(value: Any) -> int:
    """A ?page= value as a page number: 1 for anything that is not a positive whole number, at most 100000."""
    try:
        number = int(str(value))
    except ValueError:
        return 1
    return max(1, min(number, 100_000))


async def _page(s: Any, query: Any, number: int, *, scalars: bool = True) -> Page[Any]:
    result = await s.execute(query.offset((number - 1) * PAGE).limit(PAGE + 1))
    rows = list(result.scalars()) if scalars else [tuple(r) for r in result.all()]
    return Page(rows=rows[:PAGE], number=number, more=len(rows) > PAGE)


SECTIONS = ("ledger", "lots", "tiers", "coupons", "purchases", "feedback", "surveys", "support")


@dataclass
class MemberFile:
    """Everything the member's page shows; each list is one page (the page asked for, or the first)."""

    member: Member
    sections: dict[str, Page[Any]] = field(default_factory=dict)
    refunds: dict[int, list[Refund]] = field(default_factory=dict)  # purchase id -> its refunds


async def member_file(db: Db, member_id: int, *, section: str | None = None, page: int = 1,
                      now: datetime) -> MemberFile | None:
    """The member (erased ones too: their page says so) and one page of each of their lists."""
    async with db.read() as s:
        member = await s.get(Member, member_id)
        if member is None:
            return None
        found = MemberFile(member=member)

        def number(name: str) -> int:
            return page if section == name else 1

        mine = member_id
        queries: dict[str, tuple[Any, bool]] = {
            "ledger": (select(LedgerEntry).where(LedgerEntry.member_id == mine)
                       .order_by(col(LedgerEntry.created_at).desc(), col(LedgerEntry.id).desc()), True),
            "lots": (select(LedgerEntry).where(LedgerEntry.member_id == mine, col(LedgerEntry.remaining) > 0)
                     .order_by(col(LedgerEntry.expires_at), col(LedgerEntry.id)), True),
            "tiers": (select(TierChange).where(TierChange.member_id == mine)
                      .order_by(col(TierChange.created_at).desc(), col(TierChange.id).desc()), True),
            "coupons": (select(Coupon, Reward).join(Reward, col(Reward.id) == col(Coupon.reward_id))
                        .where(Coupon.member_id == mine)
                        .order_by(col(Coupon.issued_at).desc(), col(Coupon.id).desc()), False),
            "purchases": (select(Purchase).where(Purchase.member_id == mine)
                          .order_by(col(Purchase.occurred_at).desc(), col(Purchase.id).desc()), True),
            "feedback": (select(Feedback).where(Feedback.member_id == mine)
                         .order_by(col(Feedback.created_at).desc(), col(Feedback.id).desc()), True),
            "surveys": (select(SurveyAnswer).where(SurveyAnswer.member_id == mine)
                        .order_by(col(SurveyAnswer.created_at).desc(), col(SurveyAnswer.id).desc()), True),
            "support": (select(HandoffConversation).where(HandoffConversation.member_id == mine)
                        .order_by(col(HandoffConversation.opened_at).desc(), col(HandoffConversation.id).desc()),
                        True),
        }
        for name, (query, scalars) in queries.items():
            found.sections[name] = await _page(s, query, number(name), scalars=scalars)
        purchase_ids = [p.id for p in found.sections["purchases"].rows]
        if purchase_ids:
            for refund in (await s.execute(select(Refund).where(col(Refund.purchase_id).in_(purchase_ids))
                                           .order_by(col(Refund.id)))).scalars():
                found.refunds.setdefault(refund.purchase_id, []).append(refund)
    found.sections["coupons"].rows = [(c, r, c.status == "active" and as_utc(c.expires_at) > now)
                                      for c, r in found.sections["coupons"].rows]
    return found


# --- the feedback inbox ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class FeedbackRow:
    feedback: Feedback
    member_no: str
    member_status: str


async def feedback_page(db: Db, *, state: str | None, rating: int | None, number: int) -> Page[FeedbackRow]:
    query = (select(Feedback, Member.member_no, Member.status).join(Member, col(Member.id) == col(Feedback.member_id))
             .order_by(col(Feedback.created_at).desc(), col(Feedback.id).desc()))
    if state:
        query = query.where(Feedback.state == state)
    if rating is not None:
        query = query.where(Feedback.rating == rating)
    async with db.read() as s:
        found = await _page(s, query, number, scalars=False)
    return Page(rows=[FeedbackRow(f, no, st) for f, no, st in found.rows], number=found.number, more=found.more)


async def feedback_counts(db: Db) -> dict[str, int]:
    async with db.read() as s:
        rows = (await s.execute(select(Feedback.state, sa.func.count()).group_by(col(Feedback.state)))).all()
    return {str(state): int(n) for state, n in rows}


async def feedback_item(db: Db, feedback_id: int) -> tuple[Feedback, Member, Outbox | None] | None:
    async with db.read() as s:
        feedback = await s.get(Feedback, feedback_id)
        if feedback is None:
            return None
        member = await s.get(Member, feedback.member_id)
        assert member is not None
        reply = (await s.execute(select(Outbox).where(Outbox.idempotency_key == f"feedback-reply:{feedback_id}"))
                 ).scalar_one_or_none()
    return feedback, member, reply


# --- survey results -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CommentRow:
    answer: SurveyAnswer
    member_no: str


async def survey_comments(db: Db, *, kind: str | None, score: int | None, since: datetime,
                          number: int) -> Page[CommentRow]:
    query = (select(SurveyAnswer, Member.member_no).join(Member, col(Member.id) == col(SurveyAnswer.member_id))
             .where(col(SurveyAnswer.comment).is_not(None), col(SurveyAnswer.comment) != "",
                    col(SurveyAnswer.created_at) >= since)
             .order_by(col(SurveyAnswer.created_at).desc(), col(SurveyAnswer.id).desc()))
    if kind:
        query = query.where(SurveyAnswer.kind == kind)
    if score is not None:
        query = query.where(SurveyAnswer.score == score)
    async with db.read() as s:
        found = await _page(s, query, number, scalars=False)
    return Page(rows=[CommentRow(a, no) for a, no in found.rows], number=found.number, more=found.more)


# --- support conversations ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ConversationRow:
    conversation: HandoffConversation
    member_no: str
    agent: str | None  # the staff member's name (or Telegram id) who took it


async def _agents(s: Any, staff_ids: Sequence[int | None]) -> dict[int, str]:
    ids = sorted({i for i in staff_ids if i is not None})
    if not ids:
        return {}
    rows = (await s.execute(select(Staff.telegram_id, Staff.name).where(col(Staff.telegram_id).in_(ids)))).all()
    return {int(tid): (name or str(tid)) for tid, name in rows}


async def conversations_page(db: Db, *, state: str | None, number: int) -> Page[ConversationRow]:
    query = (select(HandoffConversation, Member.member_no)
             .join(Member, col(Member.id) == col(HandoffConversation.member_id))
             .order_by(col(HandoffConversation.opened_at).desc(), col(HandoffConversation.id).desc()))
    if state:
        query = query.where(HandoffConversation.state == state)
    async with db.read() as s:
        found = await _page(s, query, number, scalars=False)
        agents = await _agents(s, [c.staff_id for c, _ in found.rows])
    return Page(rows=[ConversationRow(c, no, agents.get(c.staff_id or 0, str(c.staff_id) if c.staff_id else None))
                      for c, no in found.rows], number=found.number, more=found.more)


async def conversation_counts(db: Db) -> dict[str, int]:
    async with db.read() as s:
        rows = (await s.execute(select(HandoffConversation.state, sa.func.count())
                                .group_by(col(HandoffConversation.state)))).all()
    return {str(state): int(n) for state, n in rows}


@dataclass
class ConversationFile:
    row: ConversationRow
    events: list[HandoffEvent]
    messages: Page[HandoffMessage]


async def conversation_file(db: Db, conversation_id: int, *, number: int) -> ConversationFile | None:
    async with db.read() as s:
        found = (await s.execute(select(HandoffConversation, Member.member_no)
                                 .join(Member, col(Member.id) == col(HandoffConversation.member_id))
                                 .where(HandoffConversation.id == conversation_id))).first()
        if found is None:
            return None
        conversation, member_no = found
        agents = await _agents(s, [conversation.staff_id])
        events = list((await s.execute(select(HandoffEvent).where(HandoffEvent.conversation_id == conversation_id)
                                       .order_by(col(HandoffEvent.created_at), col(HandoffEvent.id)))).scalars())
        messages = await _page(s, select(HandoffMessage).where(HandoffMessage.conversation_id == conversation_id)
                               .order_by(col(HandoffMessage.created_at), col(HandoffMessage.id)), number)
    agent = agents.get(conversation.staff_id or 0, str(conversation.staff_id) if conversation.staff_id else None)
    return ConversationFile(row=ConversationRow(conversation, member_no, agent), events=events, messages=messages)
