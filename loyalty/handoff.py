"""Support handoff: a member's conversation with staff as one explicit state, changed in one place.

States: ``bot`` (the bot answers), ``waiting`` (the member asked for a person), ``human`` (a staff
member holds it), ``closed``. Every change goes through `HandoffStore._move`, which checks that the
transition is allowed and writes a `HandoffEvent` (who, from, to, when) in the same transaction.
A member has at most one conversation that is not closed; asking again soon after a close
reopens the latest one instead of starting another. Only asking reopens: free text after a close is
the bot's to answer. First-response and resolution times are
stored on the conversation. Taking a conversation is atomic: the row is locked (PostgreSQL) or the
write is serialised (SQLite), so of two simultaneous takes exactly one wins and the other is told
who holds it.

Nothing here knows about Telegram: handlers/support.py turns these calls into messages.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.engine import CursorResult
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from loyalbot.loyalty.errors import Refusal
from loyalbot.storage import Db, as_utc, utcnow
from loyalbot.storage.models import (
    AuditLog,
    Feedback,
    HandoffConversation,
    HandoffEvent,
    HandoffMessage,
    Member,
    Survey,
)

log = logging.getLogger(__name__)

BOT, WAITING, HUMAN, CLOSED = "bot", "waiting", "human", "closed"
STATES = (BOT, WAITING, HUMAN, CLOSED)
OPEN_STATES = (BOT, WAITING, HUMAN)
# The only moves a conversation can make (from, to).
TRANSITIONS = frozenset({
    (BOT, WAITING), (BOT, HUMAN), (BOT, CLOSED),
    (WAITING, HUMAN), (WAITING, CLOSED),
    (HUMAN, BOT), (HUMAN, CLOSED),
    (CLOSED, WAITING),
})


# --- refusals (their codes are message keys: error.<code>) ------------------------------------------


class SupportBlocked(Refusal):
    """Staff have blocked this member from support."""

    code = "support_blocked"
    http_status = 403


class UnknownConversation(Refusal):
    """No such support conversation."""

    code = "handoff_unknown"
    http_status = 404


class ConversationHeld(Refusal):
    """Another staff member holds the conversation (params: holder = their Telegram id)."""

    code = "handoff_held"
    http_status = 409


class ConversationClosed(Refusal):
    """The conversation is closed."""

    code = "handoff_closed"
    http_status = 409


class NotHeld(Refusal):
    """Nobody holds the conversation, so there is nothing to hand back."""

    code = "handoff_not_held"
    http_status = 409


# --- results ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Transition:
    """What a call did to a conversation: its state before and after (equal when nothing changed)."""

    conversation: HandoffConversation
    from_state: str
    to_state: str
    created: bool = False

    @property
    def changed(self) -> bool:
        return self.from_state != self.to_state or self.created

    @property
    def reopened(self) -> bool:
        return self.from_state == CLOSED and self.to_state == WAITING


def actor_member(member_id: int) -> str:
    return f"member:{member_id}"


def actor_staff(staff_id: int) -> str:
    return f"staff:{staff_id}"


def _seconds(start: datetime, end: datetime) -> int:
    return max(0, int((as_utc(end) - as_utc(start)).total_seconds()))


class HandoffStore:
    """The handoff state machine over the SQL store; each public method is one transaction."""

    def __init__(self, db: Db) -> None:
        self.db = db

    # --- the one place that changes state -----------------------------------------------------------

    @staticmethod
    def _move(tx: AsyncSession, conv: HandoffConversation, to_state: str, actor: str, now: datetime) -> str:
        """Move `conv` to `to_state` and record who did it when; returns the state it left."""
        from_state = conv.state
        if (from_state, to_state) not in TRANSITIONS:
            raise ValueError(f"handoff cannot go from {from_state} to {to_state}")
        conv.state = to_state
        tx.add(conv)
        tx.add(HandoffEvent(conversation_id=conv.id or 0, from_state=from_state, to_state=to_state, actor=actor,
                            created_at=now))
        return from_state

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
                .order_by(col(HandoffConversation.first_response_at).desc()).limit(limit))).scalars()]

    async def last_feedback(self, member_id: int) -> str | None:
        """The member's latest feedback (with its stars), for the staff's summary card."""
        async with self.db.read() as s:
            row = (await s.execute(select(Feedback).where(Feedback.member_id == member_id)
                                   .order_by(col(Feedback.id).desc()).limit(1))).scalar_one_or_none()
        if row is None:
            return None
        return f"{'⭐' * row.rating + ' ' if row.rating else ''}{row.text}"

    # --- transitions ----------------------------------------------------------------------------------

    async def _lock(self, tx: AsyncSession, conversation_id: int) -> HandoffConversation:
        conv = (await tx.execute(
            select(HandoffConversation).where(HandoffConversation.id == conversation_id).with_for_update()
            .execution_options(populate_existing=True))).scalar_one_or_none()
        if conv is None:
            raise UnknownConversation()
        return conv

    async def request(self, member_id: int, *, now: datetime | None = None,
                      reopen_within: timedelta = timedelta(hours=2)) -> Transition:
        """The member asks for a person: bot -> waiting, closed -> waiting (reopen), or a new conversation.

        A conversation already waiting or with a human is returned unchanged. A conversation closed
        longer ago than `reopen_within` is left closed and a new one is started.
        """
        now = as_utc(now or utcnow())
        actor = actor_member(member_id)
        async with self.db.transaction() as tx:
            # Locking the member serialises two requests of one member (a double tap) on PostgreSQL.
            member = (await tx.execute(select(Member).where(Member.id == member_id).with_for_update()
                                       .execution_options(populate_existing=True))).scalar_one_or_none()
            if member is None or member.status == "erased":
                raise UnknownConversation("no such member")
            if member.support_blocked:
                raise SupportBlocked()
            latest = (await tx.execute(
                select(HandoffConversation).where(HandoffConversation.member_id == member_id)
                .order_by(col(HandoffConversation.id).desc()).limit(1).with_for_update()
                .execution_options(populate_existing=True))).scalar_one_or_none()
            if latest is not None and latest.state in (WAITING, HUMAN):
                return Transition(latest, latest.state, latest.state)
            if latest is not None and latest.state == BOT:
                self._move(tx, latest, WAITING, actor, now)
                latest.waiting_notice_at = None
                return Transition(latest, BOT, WAITING)
            if latest is not None and latest.closed_at is not None and now - as_utc(latest.closed_at) <= reopen_within:
                self._reopen(tx, latest, actor, now)
                return Transition(latest, CLOSED, WAITING)
            conv = HandoffConversation(member_id=member_id, state=BOT, opened_at=now)
            tx.add(conv)
            await tx.flush()
            self._move(tx, conv, WAITING, actor, now)
            return Transition(conv, BOT, WAITING, created=True)

    def _reopen(self, tx: AsyncSession, conv: HandoffConversation, actor: str, now: datetime) -> None:
        self._move(tx, conv, WAITING, actor, now)
        conv.closed_at = None
        conv.closed_by = None
        conv.resolution_seconds = None
        conv.waiting_notice_at = None
        conv.out_of_hours_notice_at = None

    async def take(self, conversation_id: int, staff_id: int, *, now: datetime | None = None) -> Transition:
        """A staff member takes the conversation over. Raises ConversationHeld(holder=...) if someone else has it."""
        now = as_utc(now or utcnow())
        async with self.db.transaction() as tx:
            conv = await self._lock(tx, conversation_id)
            if conv.state == CLOSED:
                raise ConversationClosed()
            if conv.state == HUMAN:
                if conv.staff_id == staff_id:
                    return Transition(conv, HUMAN, HUMAN)
                raise ConversationHeld(holder=conv.staff_id)
            from_state = self._move(tx, conv, HUMAN, actor_staff(staff_id), now)
            conv.staff_id = staff_id
            return Transition(conv, from_state, HUMAN)

    async def hand_back(self, conversation_id: int, staff_id: int, *, now: datetime | None = None) -> Transition:
        """The staff member who holds the conversation gives it back to the bot (human -> bot)."""
        now = as_utc(now or utcnow())
        async with self.db.transaction() as tx:
            conv = await self._lock(tx, conversation_id)
            if conv.state == CLOSED:
                raise ConversationClosed()
            if conv.state != HUMAN:
                raise NotHeld()
            if conv.staff_id != staff_id:
                raise ConversationHeld(holder=conv.staff_id)
            self._move(tx, conv, BOT, actor_staff(staff_id), now)
            # staff_id stays: it names who held the conversation last (the CSAT is about them).
            return Transition(conv, HUMAN, BOT)

    async def close(self, conversation_id: int, *, actor: str, staff_id: int | None = None,
                    now: datetime | None = None) -> Transition:
        """Close the conversation (by staff, or by the member with /end); closing twice changes nothing."""
        now = as_utc(now or utcnow())
        async with self.db.transaction() as tx:
            conv = await self._lock(tx, conversation_id)
            if conv.state == CLOSED:
                return Transition(conv, CLOSED, CLOSED)
            if staff_id is not None and conv.state == HUMAN and conv.staff_id not in (None, staff_id):
                raise ConversationHeld(holder=conv.staff_id)
            from_state = self._move(tx, conv, CLOSED, actor, now)
            conv.closed_at = now
            conv.closed_by = staff_id
            conv.resolution_seconds = _seconds(conv.opened_at, now)
            return Transition(conv, from_state, CLOSED)

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
                    conv.first_response_seconds = _seconds(conv.opened_at, now)
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
        return list(dict.fromkeys((str(d), int(m)) for d, m in rows))

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
            done = await tx.execute(sa.update(HandoffConversation)
                                    .where(col(HandoffConversation.id) == conversation_id,
                                           col(HandoffConversation.topic_id) == topic_id)
                                    .values(topic_id=None))
            return bool(cast("CursorResult[Any]", done).rowcount)

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

    # --- blocking and CSAT ------------------------------------------------------------------------------

    async def set_blocked(self, member_id: int, blocked: bool, *, staff_id: int,
                          now: datetime | None = None) -> Transition | None:
        """Block (or unblock) a member from support, recorded in the audit log; blocking closes the open talk."""
        now = as_utc(now or utcnow())
        async with self.db.transaction() as tx:
            member = (await tx.execute(select(Member).where(Member.id == member_id).with_for_update()
                                       .execution_options(populate_existing=True))).scalar_one_or_none()
            if member is None:
                raise UnknownConversation("no such member")
            member.support_blocked = blocked
            tx.add(member)
            tx.add(AuditLog(actor=actor_staff(staff_id), action="support_block" if blocked else "support_unblock",
                            member_id=member_id, details={}, created_at=now))
            if not blocked:
                return None
            conv = (await tx.execute(
                select(HandoffConversation).where(HandoffConversation.member_id == member_id,
                                                  col(HandoffConversation.state).in_(OPEN_STATES))
                .with_for_update().execution_options(populate_existing=True))).scalar_one_or_none()
            if conv is None:
                return None
            from_state = self._move(tx, conv, CLOSED, actor_staff(staff_id), now)
            conv.closed_at, conv.closed_by = now, staff_id
            conv.resolution_seconds = _seconds(conv.opened_at, now)
            return Transition(conv, from_state, CLOSED)

    async def csat_due(self, conversation: HandoffConversation, *, now: datetime | None = None,
                       cooldown: timedelta = timedelta(days=7)) -> bool:
        """Whether to ask the member for a CSAT on this close.

        Only when a staff member answered; once per conversation; not when the member was asked
        about a support conversation within `cooldown`.
        """
        now = as_utc(now or utcnow())
        if conversation.staff_id is None or conversation.first_response_at is None:
            return False
        async with self.db.read() as s:
            asked = (await s.execute(
                select(Survey.id).where(Survey.member_id == conversation.member_id, Survey.trigger == "handoff",
                                        sa.or_(col(Survey.conversation_id) == conversation.id,
                                               col(Survey.created_at) > now - cooldown)).limit(1))).first()
        return asked is None


__all__ = [
    "BOT", "CLOSED", "HUMAN", "OPEN_STATES", "STATES", "TRANSITIONS", "WAITING",
    "ConversationClosed", "ConversationHeld", "HandoffStore", "NotHeld", "SupportBlocked", "Transition",
    "UnknownConversation", "actor_member", "actor_staff",
]
