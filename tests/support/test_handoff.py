"""The handoff state machine on SQLite and PostgreSQL: transitions, their records, atomic take, reopen, CSAT rules."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from sqlmodel import select

from loyalbot.loyalty import Loyalty
from loyalbot.loyalty.handoff import (
    BOT,
    CLOSED,
    HUMAN,
    WAITING,
    ConversationClosed,
    ConversationHeld,
    HandoffStore,
    NotHeld,
    SupportBlocked,
    actor_member,
    actor_staff,
)
from loyalbot.storage.models import AuditLog

T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
ANN_STAFF, BOB_STAFF = 9001, 9002


async def _member(loyalty: Loyalty, telegram_id: int = 1001):
    return await loyalty.register_member(telegram_id=telegram_id, first_name="Ann", terms_accepted=True, now=T0)


@pytest.fixture
def store(loyalty: Loyalty) -> HandoffStore:
    return HandoffStore(loyalty.db)


async def test_asking_opens_a_waiting_conversation_and_records_who_and_when(loyalty, store):
    member = await _member(loyalty)
    first = await store.request(member.id, now=T0)
    assert first.created and first.to_state == WAITING
    again = await store.request(member.id, now=T0 + timedelta(minutes=1))
    assert not again.changed and again.conversation.id == first.conversation.id
    events = await store.events(first.conversation.id)
    assert [(e.from_state, e.to_state, e.actor) for e in events] == [(BOT, WAITING, actor_member(member.id))]
    assert events[0].created_at == T0


async def test_take_hand_back_ask_again_and_close_each_leave_a_record(loyalty, store):
    member = await _member(loyalty)
    conv = (await store.request(member.id, now=T0)).conversation
    taken = await store.take(conv.id, ANN_STAFF, now=T0 + timedelta(minutes=3))
    assert taken.to_state == HUMAN and taken.conversation.staff_id == ANN_STAFF
    await store.record_message(conv.id, "out", member_message_id=5, staff_message_id=50, staff_id=ANN_STAFF,
                               text="Hello!", now=T0 + timedelta(minutes=4))
    await store.hand_back(conv.id, ANN_STAFF, now=T0 + timedelta(minutes=10))
    again = await store.request(member.id, now=T0 + timedelta(minutes=20))
    assert again.conversation.id == conv.id and (again.from_state, again.to_state) == (BOT, WAITING)
    await store.take(conv.id, BOB_STAFF, now=T0 + timedelta(minutes=21))
    closed = await store.close(conv.id, actor=actor_staff(BOB_STAFF), staff_id=BOB_STAFF,
                               now=T0 + timedelta(minutes=30))
    assert closed.to_state == CLOSED

    events = await store.events(conv.id)
    assert [(e.from_state, e.to_state, e.actor) for e in events] == [
        (BOT, WAITING, actor_member(member.id)),
        (WAITING, HUMAN, actor_staff(ANN_STAFF)),
        (HUMAN, BOT, actor_staff(ANN_STAFF)),
        (BOT, WAITING, actor_member(member.id)),
        (WAITING, HUMAN, actor_staff(BOB_STAFF)),
        (HUMAN, CLOSED, actor_staff(BOB_STAFF)),
    ]
    stored = await store.get(conv.id)
    assert stored.first_response_seconds == 4 * 60  # from opening to the first staff reply
    assert stored.resolution_seconds == 30 * 60
    assert stored.closed_by == BOB_STAFF and stored.staff_id == BOB_STAFF


async def test_a_second_staff_member_is_told_who_holds_the_conversation(loyalty, store):
    member = await _member(loyalty)
    conv = (await store.request(member.id, now=T0)).conversation
    await store.take(conv.id, ANN_STAFF, now=T0)
    with pytest.raises(ConversationHeld) as held:
        await store.take(conv.id, BOB_STAFF, now=T0)
    assert held.value.params["holder"] == ANN_STAFF
    with pytest.raises(ConversationHeld):
        await store.hand_back(conv.id, BOB_STAFF, now=T0)
    mine = await store.take(conv.id, ANN_STAFF, now=T0)
    assert not mine.changed
    assert len(await store.events(conv.id)) == 2  # nothing recorded for refused or repeated takes


async def test_simultaneous_takes_have_exactly_one_winner(loyalty, store):
    for round_no in range(5):
        member = await _member(loyalty, 2000 + round_no)
        conv = (await store.request(member.id, now=T0)).conversation
        staff = [ANN_STAFF + i for i in range(6)]
        results = await asyncio.gather(*(store.take(conv.id, s, now=T0) for s in staff), return_exceptions=True)
        winners = [r for r in results if not isinstance(r, Exception)]
        losers = [r for r in results if isinstance(r, ConversationHeld)]
        assert len(winners) == 1 and len(losers) == len(staff) - 1
        holder = winners[0].conversation.staff_id
        assert all(lost.params["holder"] == holder for lost in losers)
        assert (await store.get(conv.id)).staff_id == holder
        assert [e.to_state for e in await store.events(conv.id)] == [WAITING, HUMAN]


async def test_moves_that_make_no_sense_are_refused_and_change_nothing(loyalty, store):
    member = await _member(loyalty)
    conv = (await store.request(member.id, now=T0)).conversation
    with pytest.raises(NotHeld):
        await store.hand_back(conv.id, ANN_STAFF, now=T0)
    await store.close(conv.id, actor=actor_member(member.id), now=T0)
    with pytest.raises(ConversationClosed):
        await store.take(conv.id, ANN_STAFF, now=T0)
    with pytest.raises(ConversationClosed):
        await store.hand_back(conv.id, ANN_STAFF, now=T0)
    twice = await store.close(conv.id, actor=actor_member(member.id), now=T0 + timedelta(minutes=1))
    assert not twice.changed
    assert [e.to_state for e in await store.events(conv.id)] == [WAITING, CLOSED]


async def test_asking_soon_after_a_close_reopens_the_same_conversation_later_starts_a_new_one(loyalty, store):
    member = await _member(loyalty)
    conv = (await store.request(member.id, now=T0)).conversation
    await store.close(conv.id, actor=actor_member(member.id), now=T0 + timedelta(minutes=5))
    reopened = await store.request(member.id, now=T0 + timedelta(minutes=30), reopen_within=timedelta(hours=1))
    assert reopened.reopened and reopened.conversation.id == conv.id
    assert reopened.conversation.closed_at is None
    await store.close(conv.id, actor=actor_member(member.id), now=T0 + timedelta(minutes=40))
    fresh = await store.request(member.id, now=T0 + timedelta(hours=3), reopen_within=timedelta(hours=1))
    assert fresh.created and fresh.conversation.id != conv.id
    assert (await store.get(conv.id)).state == CLOSED


async def test_blocking_is_recorded_closes_the_talk_and_can_be_undone(loyalty, store):
    member = await _member(loyalty)
    conv = (await store.request(member.id, now=T0)).conversation
    closed = await store.set_blocked(member.id, True, staff_id=ANN_STAFF, now=T0)
    assert closed is not None and closed.to_state == CLOSED
    with pytest.raises(SupportBlocked):
        await store.request(member.id, now=T0 + timedelta(minutes=1))
    await store.set_blocked(member.id, False, staff_id=BOB_STAFF, now=T0 + timedelta(minutes=2))
    back = await store.request(member.id, now=T0 + timedelta(minutes=3))
    assert back.to_state == WAITING and back.conversation.id == conv.id
    async with loyalty.db.read() as s:
        audit = list((await s.execute(select(AuditLog.actor, AuditLog.action)
                                      .where(AuditLog.member_id == member.id,
                                             AuditLog.action.like("support_%")).order_by(AuditLog.id))).all())
    assert audit == [(actor_staff(ANN_STAFF), "support_block"), (actor_staff(BOB_STAFF), "support_unblock")]


async def test_csat_only_after_a_staff_answer_once_per_conversation_and_not_within_the_cooldown(loyalty, store):
    member = await _member(loyalty)
    conv = (await store.request(member.id, now=T0)).conversation
    closed = (await store.close(conv.id, actor=actor_member(member.id), now=T0)).conversation
    assert not await store.csat_due(closed, now=T0)  # nobody from staff ever answered

    second = (await store.request(member.id, now=T0 + timedelta(days=1))).conversation
    await store.take(second.id, ANN_STAFF, now=T0 + timedelta(days=1))
    await store.record_message(second.id, "out", staff_id=ANN_STAFF, text="hi", now=T0 + timedelta(days=1))
    closed = (await store.close(second.id, actor=actor_staff(ANN_STAFF), staff_id=ANN_STAFF,
                                now=T0 + timedelta(days=1))).conversation
    assert await store.csat_due(closed, now=T0 + timedelta(days=1))
    survey = await loyalty.open_survey(member.id, "csat", trigger="handoff", conversation_id=second.id,
                                       staff_id=ANN_STAFF, now=T0 + timedelta(days=1))
    assert survey is not None
    assert not await store.csat_due(closed, now=T0 + timedelta(days=30))  # one per conversation
    await loyalty.record_survey_answer(member.id, survey.id, 5, now=T0 + timedelta(days=1))

    for day, expected in ((3, False), (9, True)):  # the 7-day cooldown per member
        conv = (await store.request(member.id, now=T0 + timedelta(days=day))).conversation
        await store.take(conv.id, BOB_STAFF, now=T0 + timedelta(days=day))
        await store.record_message(conv.id, "out", staff_id=BOB_STAFF, text="hi", now=T0 + timedelta(days=day))
        closed = (await store.close(conv.id, actor=actor_staff(BOB_STAFF), staff_id=BOB_STAFF,
                                    now=T0 + timedelta(days=day))).conversation
        assert await store.csat_due(closed, now=T0 + timedelta(days=day)) is expected


async def test_one_waiting_update_after_the_configured_time(loyalty, store):
    member = await _member(loyalty)
    conv = (await store.request(member.id, now=T0)).conversation
    after = timedelta(minutes=15)
    assert await store.due_waiting_notices(now=T0 + timedelta(minutes=14), after=after) == []
    due = await store.due_waiting_notices(now=T0 + timedelta(minutes=16), after=after)
    assert [c.id for c in due] == [conv.id]
    assert await store.claim_waiting_notice(conv.id, now=T0 + timedelta(minutes=16))
    assert not await store.claim_waiting_notice(conv.id, now=T0 + timedelta(minutes=17))
    assert await store.due_waiting_notices(now=T0 + timedelta(hours=2), after=after) == []


async def test_out_of_hours_notice_is_not_repeated_within_thirty_minutes(loyalty, store):
    member = await _member(loyalty)
    conv = (await store.request(member.id, now=T0)).conversation
    every = timedelta(minutes=30)
    assert await store.claim_out_of_hours_notice(conv.id, now=T0, every=every)
    assert not await store.claim_out_of_hours_notice(conv.id, now=T0 + timedelta(minutes=29), every=every)
    assert await store.claim_out_of_hours_notice(conv.id, now=T0 + timedelta(minutes=31), every=every)


async def test_member_messages_not_yet_relayed_are_found_again(loyalty, store):
    member = await _member(loyalty)
    conv = (await store.request(member.id, now=T0)).conversation
    first = await store.record_message(conv.id, "in", member_message_id=11, text="one", now=T0)
    second = await store.record_message(conv.id, "in", member_message_id=12, text="two", now=T0)
    await store.set_staff_copy([first.id], 500)
    assert [m.id for m in await store.unrelayed(since=T0 - timedelta(days=1))] == [second.id]
