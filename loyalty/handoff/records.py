"""What a handoff conversation keeps beside its state: reads, relayed messages, topics and notices.

`HandoffRecords` is the part of `HandoffStore` that never changes a conversation's state (that is
store.py's, in one place); each public method is one transaction.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.engine import CursorResult
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from loyalbot.loyalty.handoff.states import CLOSED, OPEN_STATES, WAITING, UnknownConversation, seconds_between
from loyalbot.storage import Db, as_utc, utcnow
from loyalbot.storage.models import Feedback, HandoffConversation, HandoffEvent, HandoffMessage, Member


class HandoffRecords:
    """Reading conversations, and recording their messages, topics and notices (no change of state)."""

    def __init__(self, db: Db) -> None:
        self.db = db

    async def _lock(self, tx: AsyncSession, conversation_id: int) -> HandoffConversation:
        conv = (await tx.execute(
            select(HandoffConversation).where(HandoffConversation.id == conversation_id).with_for_update()
            .execution_options(populate_existing=True))).scalar_one_or_none()
        if conv is None:
            raise UnknownConversation()
        return conv

    # --- reading ------------------------------------------------------------------------------------

    async def get(self, conversation_id: int) -> HandoffConversation:
        async with self.db.read() as s:
            conv = await s.get(HandoffConversation, conversation_id)
        if conv is None:
            raise UnknownConversation()
        return conv

    async def active_of(self, member_id: int) -> HandoffConversation | None:
        """The member's conversation that is not closed, if any."""
        async with self.db.read() as s:
            return (await s.execute(
                select(HandoffConversation).where(HandoffConversation.member_id == member_id,
                                                  col(HandoffConversation.state).in_(OPEN_STATES))
                .order_by(col(HandoffConversation.id).desc()).limit(1))).scalar_one_or_none()

    async def latest_of(self, member_id: int) -> HandoffConversation | None:
        async with self.db.read() as s:
            return (await s.execute(
                select(HandoffConversation).where(HandoffConversation.member_id == member_id)
                .order_by(col(HandoffConversation.id).desc()).limit(1))).scalar_one_or_none()

    async def by_topic(self, topic_id: int) -> HandoffConversation | None:
        """The conversation whose staff topic is `topic_id`."""
        async with self.db.read() as s:
            return (await s.execute(
                select(HandoffConversation).where(HandoffConversation.topic_id == topic_id)
                .order_by(col(HandoffConversation.id).desc()).limit(1))).scalar_one_or_none()

    async def events(self, conversation_id: int) -> list[HandoffEvent]:
        async with self.db.read() as s:
            return list((await s.execute(
                select(HandoffEvent).where(HandoffEvent.conversation_id == conversation_id)
                .order_by(col(HandoffEvent.id)))).scalars())

    async def waiting_since(self, conversation_id: int) -> datetime | None:
        """When the conversation last started waiting (opened or reopened)."""
        async with self.db.read() as s:
            value = (await s.execute(
                select(sa.func.max(HandoffEvent.created_at)).where(HandoffEvent.conversation_id == conversation_id,
                                                                   HandoffEvent.to_state == WAITING))).scalar()
        return as_utc(value) if value is not None else None

    async def recent_first_responses(self, limit: int = 20) -> list[int]:
        """First-response times (seconds) of the latest conversations that got one: the expected wait."""
        async with self.db.read() as s:
            return [int(v) for v in (await s.execute(
                select(HandoffConversation.first_response_seconds)
                .where(col(HandoffConversation.first_response_seconds).is_not(None))
                .order_by(col(HandoffConversation.first_response_at).desc()).limit(limit))).scalars()
                    if v is not None]

    async def last_feedback(self, member_id: int) -> str | None:
        """The member's latest feedback (with its stars), for the staff's summary card."""
        async with self.db.read() as s:
            row = (await s.execute(select(Feedback).where(Feedback.member_id == member_id)
                                   .order_by(col(Feedback.id).desc()).limit(1))).scalar_one_or_none()
        if row is None:
            return None
        return f"{'⭐' * row.rating + ' ' if row.rating else ''}{row.text}"

    # --- topics, messages, notices --------------------------------------------------------------------

    async def set_topic(self, conversation_id: int, topic_id: int | None) -> None:
        async with self.db.transaction() as tx:
            conv = await self._lock(tx, conversation_id)
            conv.topic_id = topic_id
            tx.add(conv)

    async def record_message(self, conversation_id: int, direction: str, *, member_message_id: int | None = None,
                             staff_message_id: int | None = None, staff_id: int | None = None,
                             content_type: str = "text", text: str | None = None,
                             now: datetime | None = None) -> HandoffMessage:
        """Store a relayed message (or a staff note); a staff member's first reply sets the first response."""
        now = as_utc(now or utcnow())
        async with self.db.transaction() as tx:
            row = HandoffMessage(conversation_id=conversation_id, direction=direction,
                                 member_message_id=member_message_id, staff_message_id=staff_message_id,
                                 staff_id=staff_id, content_type=content_type, text=text, created_at=now)
            tx.add(row)
            if direction == "out":
                conv = await self._lock(tx, conversation_id)
                if conv.first_response_at is None:
                    conv.first_response_at = now
                    conv.first_response_seconds = seconds_between(conv.opened_at, now)
                    tx.add(conv)
            await tx.flush()
            return row

    async def set_staff_copy(self, message_ids: list[int], staff_message_id: int) -> None:
        """The relay sent member messages `message_ids` to the staff topic as `staff_message_id`."""
        if not message_ids:
            return
        async with self.db.transaction() as tx:
            await tx.execute(sa.update(HandoffMessage).where(col(HandoffMessage.id).in_(message_ids))
                             .values(staff_message_id=staff_message_id))

    async def message_by_member_copy(self, conversation_id: int, member_message_id: int) -> HandoffMessage | None:
        async with self.db.read() as s:
            return (await s.execute(
                select(HandoffMessage).where(HandoffMessage.conversation_id == conversation_id,
                                             HandoffMessage.member_message_id == member_message_id)
                .order_by(col(HandoffMessage.id)).limit(1))).scalar_one_or_none()

    async def message_by_staff_copy(self, conversation_id: int, staff_message_id: int) -> HandoffMessage | None:
        async with self.db.read() as s:
            return (await s.execute(
                select(HandoffMessage).where(HandoffMessage.conversation_id == conversation_id,
                                             HandoffMessage.staff_message_id == staff_message_id)
                .order_by(col(HandoffMessage.id)).limit(1))).scalar_one_or_none()

    async def shares_staff_copy(self, row: HandoffMessage) -> bool:
        """Whether other member messages were merged into the same staff message as `row`."""
        if row.staff_message_id is None:
            return False
        async with self.db.read() as s:
            count = (await s.execute(
                select(sa.func.count()).select_from(HandoffMessage)
                .where(HandoffMessage.conversation_id == row.conversation_id,
                       HandoffMessage.staff_message_id == row.staff_message_id,
                       HandoffMessage.direction == "in"))).scalar_one()
        return int(count) > 1

    async def messages(self, conversation_id: int) -> list[HandoffMessage]:
        async with self.db.read() as s:
            return list((await s.execute(
                select(HandoffMessage).where(HandoffMessage.conversation_id == conversation_id)
                .order_by(col(HandoffMessage.id)))).scalars())

    async def latest_card(self, conversation_id: int) -> HandoffMessage | None:
        """The staff-group copy of the conversation's newest summary card (a row with direction ``card``)."""
        async with self.db.read() as s:
            return (await s.execute(
                select(HandoffMessage).where(HandoffMessage.conversation_id == conversation_id,
                                             HandoffMessage.direction == "card",
                                             col(HandoffMessage.staff_message_id).is_not(None))
                .order_by(col(HandoffMessage.id).desc()).limit(1))).scalar_one_or_none()

    async def staff_group_posts(self, conversation_id: int) -> list[tuple[str, int]]:
        """(direction, staff message id) of everything of the conversation in its topic, oldest first."""
        async with self.db.read() as s:
            rows = (await s.execute(
                select(HandoffMessage.direction, HandoffMessage.staff_message_id)
                .where(HandoffMessage.conversation_id == conversation_id,
                       col(HandoffMessage.staff_message_id).is_not(None))
                .order_by(col(HandoffMessage.id)))).all()
        return list(dict.fromkeys((str(d), int(m)) for d, m in rows if m is not None))

    async def erased_topics(self, member_id: int | None = None) -> list[HandoffConversation]:
        """Conversations of erased members that still name a staff topic (it must be cleared away)."""
        async with self.db.read() as s:
            query = (select(HandoffConversation).join(Member, col(Member.id) == HandoffConversation.member_id)
                     .where(Member.status == "erased", col(HandoffConversation.topic_id).is_not(None))
                     .order_by(col(HandoffConversation.id)))
            if member_id is not None:
                query = query.where(HandoffConversation.member_id == member_id)
            return list((await s.execute(query)).scalars())

    async def forget_topic(self, conversation_id: int, topic_id: int) -> bool:
        """The conversation no longer has staff topic `topic_id`; False when that was already recorded."""
        async with self.db.transaction() as tx:
            update = (sa.update(HandoffConversation)
                      .where(col(HandoffConversation.id) == conversation_id,
                             col(HandoffConversation.topic_id) == topic_id)
                      .values(topic_id=None))
            done = cast("CursorResult[Any]", await tx.execute(update))  # an UPDATE's result counts its rows
            return bool(done.rowcount)

    async def unrelayed(self, *, since: datetime) -> list[HandoffMessage]:
        """Member messages stored but never copied to staff (the process stopped first), oldest first."""
        async with self.db.read() as s:
            return list((await s.execute(
                select(HandoffMessage).join(HandoffConversation,
                                            col(HandoffConversation.id) == HandoffMessage.conversation_id)
                .where(HandoffMessage.direction == "in", col(HandoffMessage.staff_message_id).is_(None),
                       col(HandoffMessage.created_at) >= as_utc(since),
                       HandoffConversation.state != CLOSED)
                .order_by(col(HandoffMessage.id)))).scalars())

    async def claim_out_of_hours_notice(self, conversation_id: int, *, now: datetime | None = None,
                                        every: timedelta = timedelta(minutes=30)) -> bool:
        """True (and noted) when the out-of-hours message may be sent now: not within `every` of the last."""
        now = as_utc(now or utcnow())
        async with self.db.transaction() as tx:
            conv = await self._lock(tx, conversation_id)
            last = conv.out_of_hours_notice_at
            if last is not None and now - as_utc(last) < every:
                return False
            conv.out_of_hours_notice_at = now
            tx.add(conv)
            return True

    async def due_waiting_notices(self, *, now: datetime | None = None,
                                  after: timedelta = timedelta(minutes=15)) -> list[HandoffConversation]:
        """Conversations waiting longer than `after` with no staff answer and no update sent yet."""
        now = as_utc(now or utcnow())
        since = (select(HandoffEvent.conversation_id, sa.func.max(HandoffEvent.created_at).label("at"))
                 .where(HandoffEvent.to_state == WAITING).group_by(col(HandoffEvent.conversation_id)).subquery())
        async with self.db.read() as s:
            rows = (await s.execute(
                select(HandoffConversation).join(since, since.c.conversation_id == HandoffConversation.id)
                .where(HandoffConversation.state == WAITING, col(HandoffConversation.waiting_notice_at).is_(None),
                       since.c.at <= now - after)
                .order_by(col(HandoffConversation.id)))).scalars()
            return list(rows)

    async def claim_waiting_notice(self, conversation_id: int, *, now: datetime | None = None) -> bool:
        """True (and noted) the first time only, and only while the conversation still waits."""
        now = as_utc(now or utcnow())
        async with self.db.transaction() as tx:
            conv = await self._lock(tx, conversation_id)
            if conv.state != WAITING or conv.waiting_notice_at is not None:
                return False
            conv.waiting_notice_at = now
            tx.add(conv)
            return True


__all__ = ["HandoffRecords"]
