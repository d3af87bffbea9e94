"""Every writing conversation, handled twice with the same update (as after a SIGKILL between its effect and
its done mark): the second time writes nothing (the whole store is unchanged) and answers exactly as the first.

Both stores. Each step goes through the router with an `update_key`, as the inbox delivers it; `replay`
delivers the same update again and compares every reply (text, buttons, media, toast) and every row.
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest
import sqlalchemy as sa
from sqlmodel import SQLModel

from loyalbot.chat.callbacks import survey_answer
from loyalbot.chat.port import Contact, Incoming, Reply
from loyalbot.handlers.config import ChatConfig
from loyalbot.handlers.context import Context
from loyalbot.handlers.router import build_router
from loyalbot.handlers.state import SqlStateStore
from loyalbot.storage.models import AuditLog, Coupon, Member, Purchase, Refund, SurveyAnswer
from tests.handlers.conftest import START, Chat, Clock

UNCHANGING = {"last_activity_at", "updated_at"}  # touched by every message / by the state store's own clock


@pytest.fixture
async def chat(db, programme) -> Any:
    from loyalbot.loyalty.service import Loyalty

    loyalty = Loyalty(db, programme)
    await loyalty.sync_programme()
    clock = Clock(START)
    ctx = Context(loyalty=loyalty, states=SqlStateStore(db), config=ChatConfig(), clock=clock)
    return Chat(db=db, loyalty=loyalty, clock=clock, ctx=ctx, router=build_router(ctx))


class Updates:
    """Updates as the inbox hands them over: each with its own update_id and update_key."""

    def __init__(self, chat: Chat) -> None:
        self.chat = chat
        self.ids = itertools.count(7000)
        self.last: list[Reply] = []

    def make(self, user_id: int, **payload: Any) -> Incoming:
        update_id = next(self.ids)
        return Incoming(user_id=user_id, chat_id=user_id, language_code="en", first_name="Ann",
                        message_id=next(self.chat.ids), update_id=update_id, update_key=f"{update_id}:f00d{update_id}",
                        **payload)

    async def send(self, user_id: int, **payload: Any) -> list[Reply]:
        self.last = await self.chat.router.handle(self.make(user_id, **payload))
        return self.last

    async def replay(self, user_id: int, **payload: Any) -> list[Reply]:
        """Handle one update, then handle it again; assert the second time changed nothing and said the same."""
        incoming = self.make(user_id, **payload)
        first = await self.chat.router.handle(incoming)
        before = await snapshot(self.chat)
        second = await self.chat.router.handle(incoming)
        assert await snapshot(self.chat) == before, "handling the update again wrote something"
        assert second == first, f"answered {texts(second)!r} the second time, {texts(first)!r} the first"
        self.last = first
        return first

    async def press(self, user_id: int, data: str, *, again: bool = False) -> list[Reply]:
        payload = dict(callback_data=data, callback_id=f"cb{next(self.ids)}")
        return await (self.replay if again else self.send)(user_id, **payload)


def texts(replies: list[Reply]) -> str:
    return "\n".join(t for r in replies for t in (r.text, r.toast) if t)


def button(replies: list[Reply], label: str) -> str:
    found = [b.data for r in replies for row in (r.buttons or []) for b in row if label in b.text]
    assert found and found[0], f"no button {label!r} in {texts(replies)!r}"
    return str(found[0])


async def snapshot(chat: Chat) -> dict[str, list[tuple]]:
    result: dict[str, list[tuple]] = {}
    async with chat.db.read() as s:
        for table in SQLModel.metadata.sorted_tables:
            columns = [c for c in table.columns if c.name not in UNCHANGING]
            rows = (await s.execute(sa.select(*columns).order_by(*table.primary_key.columns))).all()
            result[table.name] = [tuple(r) for r in rows]
    return result


async def count(chat: Chat, model: Any, *where: Any) -> int:
    async with chat.db.read() as s:
        return int((await s.execute(sa.select(sa.func.count()).select_from(model).where(*where))).scalar_one())


@pytest.fixture
def updates(chat: Chat) -> Updates:
    return Updates(chat)


# --- privacy: the erase question's token, the erasure itself ---------------------------------------------


async def test_a_replayed_erase_question_keeps_its_token_and_the_first_yes_still_erases(chat, updates):
    await chat.registered(11, points=40)
    await updates.send(11, command="privacy")
    asked = await updates.press(11, button(updates.last, "Erase"), again=True)
    assert "40" in texts(asked)
    # The member presses "yes" under the question they saw first: it is the one that counts.
    erased = await updates.press(11, button(asked, "Yes"), again=True)
    assert "erased" in texts(erased).lower()
    async with chat.db.read() as s:
        member = (await s.execute(sa.select(Member).where(Member.first_name.is_(None)))).scalar_one()
    assert member.status == "erased"
    assert await count(chat, AuditLog, AuditLog.action == "erase") == 1
    # Nothing under their Telegram id is left behind by the replay's bookkeeping.
    assert await chat.count("conversation_states") == 0


async def test_a_replayed_erasure_answers_in_the_members_language(chat, updates):
    await chat.registered(12, lang="zh_Hant")
    await updates.send(12, command="privacy")
    asked = await updates.press(12, button(updates.last, "刪除"))
    erased = await updates.press(12, button(asked, "刪除"), again=True)
    assert "您" in texts(erased)


# --- surveys: the score and the comment ----------------------------------------------------------------------


async def test_a_replayed_survey_score_and_comment_are_stored_once_and_thanked_as_the_first_time(chat, updates):
    ann = await chat.registered(21)
    member = await ann.member()
    survey = await chat.loyalty.open_survey(member.id, "csat", trigger="manual", now=chat.clock())
    thanked = await updates.press(21, survey_answer(survey.id, 4), again=True)
    assert "thank" in texts(thanked).lower()
    comment = await updates.replay(21, text="The barista was lovely")
    assert texts(comment) and "already" not in texts(comment).lower()
    async with chat.db.read() as s:
        rows = (await s.execute(sa.select(SurveyAnswer.score, SurveyAnswer.comment))).all()
    assert [tuple(r) for r in rows] == [(4, "The barista was lovely")]
    # A second tap (a new update) on the same score is still refused.
    again = await updates.press(21, survey_answer(survey.id, 2))
    assert await count(chat, SurveyAnswer) == 1 and texts(again)


# --- registration: the last step ----------------------------------------------------------------------------


@pytest.mark.parametrize("last", ["contact", "skip"])
async def test_a_replayed_last_registration_step_joins_once_and_welcomes_as_the_first_time(chat, updates, last):
    await updates.send(31, command="start")
    await updates.press(31, button(updates.last, "English"))
    await updates.press(31, button(updates.last, "accept"))
    await updates.press(31, button(updates.last, "No, thanks"))
    await updates.press(31, button(updates.last, "Skip"))
    step = dict(contact=Contact(phone="+31612345678", user_id=31)) if last == "contact" else dict(text="Skip")
    joined = await updates.replay(31, **step)
    member = await chat.loyalty.member_by_telegram(31)
    assert member is not None and member.member_no in texts(joined)
    assert await count(chat, Member) == 1


# --- the counter: a coupon used, an award confirmed and undone -----------------------------------------------


async def _staff_and_coupon(chat: Chat, member_id: int) -> tuple[Coupon, int]:
    ann = await chat.registered(member_id, points=500, first_name="Ann")
    member = await ann.member()
    result = await chat.loyalty.redeem_reward(member.id, (await chat.reward("coffee")).id,
                                              request_id=f"t-{member_id}", now=chat.clock())
    await chat.staff(90)
    return result.coupon, member.id


async def test_a_replayed_coupon_use_is_told_used_not_already_used(chat, updates):
    coupon, _ = await _staff_and_coupon(chat, 41)
    await updates.send(90, command="use", args=coupon.code)
    confirm = button(updates.last, "Confirm")
    used = await updates.press(90, confirm, again=True)
    assert "used" in texts(used) and "already" not in texts(used).lower()
    assert await count(chat, AuditLog, AuditLog.action == "use_coupon") == 1
    # A new press of the same Confirm is another update: that one is refused as already used.
    later = await updates.press(90, confirm)
    assert "already used" in texts(later)


async def test_a_replayed_award_confirmation_and_undo_answer_as_the_first_time(chat, updates):
    ann = await chat.registered(51, first_name="Ann")
    await chat.staff(90)
    number = (await ann.member()).member_no
    await updates.send(90, command="award", args=f"{number} 20")
    awarded = await updates.press(90, button(updates.last, "Confirm"), again=True)
    assert "already" not in texts(awarded).lower() and number in texts(awarded)
    assert await count(chat, Purchase) == 1
    undone = await updates.press(90, button(awarded, "Undo"), again=True)
    assert "already" not in texts(undone).lower() and texts(undone)
    assert await count(chat, Refund) == 1
    member = await ann.member()
    assert member.balance == 0 and await chat.loyalty.ledger_check(member.id) == (0, 0, 0)


# --- rewards: the redeem confirmation ------------------------------------------------------------------------


async def test_a_replayed_redeem_confirmation_shows_the_same_coupon_again_and_spends_once(chat, updates):
    await chat.registered(61, points=500)
    await updates.send(61, command="rewards")
    await updates.press(61, button(updates.last, "coffee"))
    confirm = button(updates.last, "Confirm")
    done = await updates.press(61, confirm, again=True)
    assert any(r.media is not None and r.media.kind == "photo" for r in done)
    assert await count(chat, Coupon) == 1
    member = await chat.loyalty.member_by_telegram(61)
    coffee = await chat.reward("coffee")
    assert member.balance == 500 - coffee.cost
    # A double tap (a second update) is still only a notice.
    tap = await updates.press(61, confirm)
    assert all(r.text is None for r in tap) and await count(chat, Coupon) == 1
