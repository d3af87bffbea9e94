"""Erasure erases, on SQLite and PostgreSQL: after it no table holds the member's name, phone, Telegram id or
user name (only the anonymous books), and nothing of theirs is left to be sent."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from loyalbot.loyalty.handoff import CLOSED, HandoffStore
from loyalbot.storage.models import ConversationState, InboxUpdate, LedgerEntry, Outbox, Purchase, Schedule
from tests.loyalty import helpers

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
TELEGRAM_ID = 734512987
FIRST, LAST, PHONE, USERNAME = "Annabel", "Kowalczyk", "+31612345678", "annabel_k_77"
STAFF = 9001


async def personal_data_left(db) -> list[tuple[str, str, Any]]:
    return await helpers.personal_data_left(db, [FIRST, LAST, PHONE, PHONE.lstrip("+"), USERNAME, str(TELEGRAM_ID)],
                                            [TELEGRAM_ID])


async def _member_with_a_history(loyalty, db):
    ann = await loyalty.register_member(telegram_id=TELEGRAM_ID, chat_id=TELEGRAM_ID, first_name=FIRST,
                                        last_name=LAST, phone=PHONE,
                                        terms_accepted=True, birthday=date(1990, 5, 1), now=NOW)
    await loyalty.award_purchase(ann.id, external_id="till-1", amount="120", now=NOW)
    await loyalty.record_feedback(ann.id, f"{FIRST} here, lovely staff", rating=5, now=NOW)
    survey = await loyalty.open_survey(ann.id, "nps", trigger="schedule", now=NOW)
    await loyalty.record_survey_answer(ann.id, survey.id, 9, now=NOW)
    await loyalty.add_survey_comment(ann.id, survey.id, f"The {LAST} family says thanks")
    store = HandoffStore(db)
    conv = (await store.request(ann.id, now=NOW)).conversation
    await store.set_topic(conv.id, 77)
    await store.record_message(conv.id, "in", member_message_id=5, text=f"Hi, I'm {FIRST} {LAST}, {PHONE}", now=NOW)
    await store.take(conv.id, STAFF, now=NOW)
    await store.record_message(conv.id, "out", member_message_id=6, staff_message_id=60, staff_id=STAFF,
                               text=f"Hello {FIRST}!", now=NOW)
    await store.record_message(conv.id, "note", staff_message_id=61, staff_id=STAFF,
                               text=f"{FIRST} is @{USERNAME}", now=NOW)
    await store.record_message(conv.id, "card", staff_message_id=59, now=NOW)
    async with db.transaction() as tx:
        tx.add(ConversationState(chat_id=TELEGRAM_ID, user_id=TELEGRAM_ID, step="feedback.text",
                                 data={"username": USERNAME}, updated_at=NOW))
        schedule = Schedule(name="birthday", kind="birthday", daily_time="09:00")
        tx.add(schedule)
        await tx.flush()
        for n, status in enumerate(("pending", "sending", "sent", "failed", "skipped")):
            tx.add(Outbox(schedule_id=schedule.id, member_id=ann.id, chat_id=TELEGRAM_ID, kind="birthday",
                          period=str(2020 + n), text=f"Happy birthday, {FIRST}!", status=status,
                          buttons=[[{"text": f"Thanks from {FIRST}", "data": "x"}]],
                          claimed_by="worker-1" if status == "sending" else None,
                          sent_at=NOW if status in ("sending", "sent") else None, not_before=NOW, created_at=NOW))
        # A transactional message (no schedule) carries its own key.
        tx.add(Outbox(schedule_id=None, idempotency_key=f"coupon_used:{ann.id}:1", member_id=ann.id,
                      chat_id=TELEGRAM_ID, kind="coupon_used", period="1", text=f"Enjoy, {FIRST}", status="sent",
                      not_before=NOW, created_at=NOW))
        # Updates they sent, as the inbox recorded them on arrival: one handled, one set aside as failed.
        sender = {"id": TELEGRAM_ID, "first_name": FIRST, "username": USERNAME}
        for update_id, status in ((501, "done"), (502, "failed")):
            tx.add(InboxUpdate(bot_id=1, update_id=update_id, lane=f"u:{TELEGRAM_ID}", fingerprint=str(update_id),
                               payload=None if status == "done" else {"message": {"from": sender, "text": FIRST}},
                               status=status, received_at=NOW, done_at=NOW))
    return ann, conv


async def test_the_test_finds_personal_data_before_erasure(loyalty, db):
    await _member_with_a_history(loyalty, db)
    tables = {table for table, _, _ in await personal_data_left(db)}
    assert {"members", "outbox", "handoff_messages", "feedback", "survey_answers", "conversation_states",
            "inbox_updates"} <= tables


async def test_after_erasure_no_table_holds_the_members_name_phone_telegram_id_or_user_name(loyalty, db):
    ann, conv = await _member_with_a_history(loyalty, db)
    await loyalty.erase_member(ann.id, actor=f"member:{ann.id}", now=NOW + timedelta(minutes=5))
    assert await personal_data_left(db) == []

    async with db.read() as s:
        outbox = (await s.execute(sa.select(Outbox).order_by(Outbox.id))).scalars().all()
        ledger = (await s.execute(sa.select(LedgerEntry.kind, LedgerEntry.delta).order_by(LedgerEntry.id))).all()
        purchases = (await s.execute(sa.select(Purchase.amount))).scalars().all()
    # Nothing of theirs is left to send: what had not gone out (sending included) is skipped as erased.
    assert {(row.period, row.status, row.skip_reason) for row in outbox if row.schedule_id is not None} == {
        ("2020", "skipped", "erased"), ("2021", "skipped", "erased"), ("2022", "sent", None),
        ("2023", "failed", None), ("2024", "skipped", None)}
    assert all(row.text == "" and row.chat_id == 0 and row.buttons == [] for row in outbox)
    # The books still add up, anonymously: what was earned, and what was forfeited on erasure.
    assert [tuple(entry) for entry in ledger] == [("earn", 120), ("adjust", -120)]
    assert [str(amount) for amount in purchases] == ["120.00"]
    # The open conversation was closed through the state machine, and its topic is left for support to clear.
    closed = await HandoffStore(db).get(conv.id)
    assert closed.state == CLOSED and closed.topic_id == 77
    assert [(e.from_state, e.to_state) for e in await HandoffStore(db).events(conv.id)][-1] == ("human", CLOSED)
    assert [c.id for c in await HandoffStore(db).erased_topics()] == [conv.id]


async def test_erasing_tells_listeners_after_the_commit(loyalty, db):
    from loyalbot.loyalty.events import MemberErased

    ann, _ = await _member_with_a_history(loyalty, db)
    heard: list[Any] = []

    async def listener(event: Any) -> None:
        async with db.read() as s:  # committed by the time listeners hear of it
            heard.append((event, (await s.execute(sa.select(sa.func.count()).select_from(Outbox)
                                                  .where(Outbox.text != ""))).scalar_one()))

    loyalty.subscribe(listener)
    await loyalty.erase_member(ann.id, actor="test", now=NOW)
    assert heard == [(MemberErased(ann.id), 0)]
