"""Staff at the counter on both runtimes: find a member by phone or name, confirm and undo /award, staff menu."""

from __future__ import annotations

import pytest

from loyalbot.chat.i18n import Translator
from tests.scenario.driver import Chat

pytestmark = pytest.mark.asyncio(loop_scope="module")


async def test_staff_award_by_phone_confirm_double_tap_and_undo(chat: Chat) -> None:
    ann = await chat.registered_member("Ann")
    member = await ann.record()
    assert member.phone  # shared while joining
    sam = await chat.staff("Sam")
    await sam.send(f"/award {member.phone} 12,50")
    assert "Ann" in sam.last_text and member.member_no in sam.last_text and "€12.50" in sam.last_text
    assert (await ann.record()).balance == 0  # nothing before Confirm
    message_id, data = await sam.find_button("Confirm")
    await sam.press_data(message_id, data)
    assert sam.last_text_contains("12 points awarded")
    await sam.press_data(message_id, data)  # a double tap
    assert sam.last_toast == Translator("en").label("staff.award_already_recorded")
    assert (await ann.record()).balance == 12
    await sam.press("Undo")
    assert sam.last_text_contains("Undone") and sam.last_text_contains("12 points taken back")
    assert (await ann.record()).balance == 0


async def test_staff_find_a_member_by_name_and_lenient_amounts_are_refused(chat: Chat) -> None:
    ann = await chat.registered_member("Annabel")
    await chat.registered_member("Annika")
    sam = await chat.staff("Sam", language_code="zh-hans")
    await sam.send("/member anna")
    number = (await ann.record()).member_no
    assert number in sam.last_text and "Annabel" in sam.last_text
    await sam.send("/member ann")
    assert len(await sam.buttons()) >= 2
    await sam.press(f"Annabel · {number}")
    assert number in sam.last_text and "积分" in sam.last_text
    await sam.send(f"/award {number} 1e5")
    assert sam.last_text_contains("金额无效")
    assert not sam.last_message.get("reply_markup")  # no Confirm offered for it
    assert (await ann.record()).balance == 0


async def test_staff_who_are_not_members_get_the_staff_menu_and_can_still_join(chat: Chat) -> None:
    sam = await chat.staff("Sam", language_code="zh-hant")
    await sam.send("/start")
    assert "/award" in sam.last_text and "/take" in sam.last_text and "接手對話" in sam.last_text
    await sam.press("以會員身分加入計畫")
    assert any("繁體中文" in label for _, label, _ in await sam.buttons())
    await sam.send("/help")
    assert "/member" in sam.last_text and "記錄消費" in sam.last_text
