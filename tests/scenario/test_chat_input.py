"""Chat input end to end, on both runtimes: a double tap on Confirm, birthdays as members write them,
and a control character in a message."""

from __future__ import annotations

from datetime import date

import pytest

from loyalbot.chat.i18n import Translator
from tests.scenario.driver import Chat

pytestmark = pytest.mark.asyncio(loop_scope="module")


async def test_ann_presses_confirm_twice_and_gets_one_coupon_message(chat: Chat) -> None:
    ann = await chat.registered_member("Ann", points=500)
    await ann.send("/rewards")
    await ann.press("coffee")
    message_id, data = await ann.find_button(ann.t("button.confirm"))
    await ann.press_data(message_id, data)
    coupons_shown = [m for m in await ann.transcript() if m["direction"] == "bot" and m["kind"] == "photo"]
    assert len(coupons_shown) == 1, "the first tap brings the coupon"
    seen = [(m["message_id"], len(m["edits"])) for m in await ann.transcript()]

    await ann.press_data(message_id, data)  # the double tap
    assert ann.replies == [], "no new message"
    assert [(m["message_id"], len(m["edits"])) for m in await ann.transcript()] == seen, "nothing edited either"
    assert ann.last_toast == ann.tr.label("rewards.already_redeemed"), "the tap is answered quietly"
    assert await chat.coupons_of(ann) == 1
    assert (await ann.record()).balance == 350


@pytest.mark.parametrize(("language_code", "typed", "saved"), [
    ("en", "15 June 1995", "🎂 Saved your birthday: 15 Jun 1995."),
    ("en", "15/06/1995", "🎂 Saved your birthday: 15 Jun 1995."),
    ("zh-hans", "1995年6月15日", "🎂 已保存您的生日：1995年6月15日。"),
    ("zh-hans", "1995/06/15", "🎂 已保存您的生日：1995年6月15日。"),
    ("zh-hant", "民國84年6月15日", "🎂 已儲存您的生日：1995年6月15日。"),
    ("zh-hant", "1995年6月15日", "🎂 已儲存您的生日：1995年6月15日。"),
])
async def test_a_birthday_typed_as_members_write_it_is_saved_and_confirmed(
        chat: Chat, language_code: str, typed: str, saved: str) -> None:
    ann = await chat.member("Ann", language_code=language_code)
    await ann.join(birthday=typed)
    assert any(saved in str(m.get("text") or "") for m in await ann.transcript()), "the date is confirmed"
    member = await ann.record()
    assert member.birthday == date(1995, 6, 15)


async def test_an_ambiguous_birthday_in_chinese_is_asked_again(chat: Chat) -> None:
    mei = await chat.member("Mei", language_code="zh-hans")
    await mei.send("/start")
    await mei.press("简体中文")
    await mei.press(mei.t("button.accept"))
    await mei.press(mei.t("button.no_thanks"))
    await mei.send("03/04/1995")
    assert mei.saw(Translator("zh_Hans").t("birthday.ambiguous"))
    state = await chat.app.states.get(mei.id, mei.id)
    assert state is not None and state.step == "reg.bday", "still at the birthday question"


async def test_a_control_character_in_feedback_is_refused_and_nothing_is_stored(chat: Chat) -> None:
    ann = await chat.registered_member("Ann", language_code="zh-hant")
    await ann.send("/feedback")
    await ann.send("咖啡很好\x00")
    assert ann.saw(Translator("zh_Hant").t("input.control_characters"))
    state = await chat.app.states.get(ann.id, ann.id)
    assert state is not None and state.step == "fb.text" and not state.data
    await ann.send("咖啡很好")
    assert ann.saw(Translator("zh_Hant").t("feedback.rate"))
