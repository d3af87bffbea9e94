"""The handoff state machine over the SQL store: every change of a conversation's state, in one place.

Every change goes through `HandoffStore._move`, which checks that the transition is allowed and
writes a `HandoffEvent` (who, from, to, when) in the same transaction. A member has at most one
conversation that is not closed; asking again soon after a close reopens the latest one instead of
starting another. Only asking reopens: free text after a close is the bot's to answer. Taking a
conversation is atomic: the row is locked (PostgreSQL) or the write is serialised (SQLite), so of two
simultaneous takes exactly one wins and the other is told who holds it.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from loyalbot.loyalty.handoff.records import HandoffRecords
from loyalbot.loyalty.handoff.states import (
    BOT,
    CLOSED,
    HUMAN,
    OPEN_STATES,
    TRANSITIONS,
    WAITING,
    ConversationClosed,
    ConversationHeld,
    NotHeld,
    SupportBlocked,
    Transition,
    UnknownConversation,
    actor_member,
    actor_staff,
    seconds_between,
)
from loyalbot.storage import as_utc, utcnow
from loyalbot.storage.models import AuditLog, HandoffConversation, HandoffEvent, Member, Survey


class HandoffStore(HandoffRecords):
    """The handoff state machine over the SQL store; each public method is one transaction."""

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
            conv.resolution_seconds = seconds_between(conv.opened_at, now)
            return Transition(conv, from_state, CLOSED)

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
            conv.resolution_seconds = seconds_between(conv.opened_at, now)
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


__all__ = ["HandoffStore"]
