"""Settings (message kinds, quiet hours, time zone, birthday), language switching, export and erasure."""

from __future__ import annotations

import json
from datetime import date


async def test_message_kinds_can_be_switched_off_and_on(chat):
    ann = await chat.registered(1)
    await ann.send("⚙️ Settings")
    assert ann.sees("✅ Short surveys")
    await ann.press("Short surveys")
    assert ann.replies[0].edit and ann.sees("⬜ Short surveys") and ann.sees("Saved")
    assert (await ann.member()).notify["surveys"] is False
    await ann.press("Short surveys")
    assert (await ann.member()).notify["surveys"] is True


async def test_switching_offers_on_records_marketing_consent(chat):
    ann = await chat.registered(2)
    assert (await ann.member()).marketing_consent is False
    await ann.send("/settings")
    assert ann.sees("⬜ Offers and news")
    await ann.press("Offers and news")
    member = await ann.member()
    assert member.marketing_consent is True and member.marketing_consent_at is not None
    assert member.notify["offers"] is True
    await ann.press("Offers and news")
    member = await ann.member()
    assert member.marketing_consent is False and member.notify["offers"] is False


async def test_quiet_hours_from_presets(chat):
    ann = await chat.registered(3)
    await ann.send("/settings")
    await ann.press("Quiet hours")
    await ann.press("22:00–08:00")
    member = await ann.member()
    assert (member.quiet_start, member.quiet_end) == (22 * 60, 8 * 60)
    assert ann.sees("Quiet hours: 22:00–08:00")
    await ann.press("Quiet hours")
    await ann.press("Off")
    member = await ann.member()
    assert (member.quiet_start, member.quiet_end) == (None, None)


async def test_time_zone_from_the_list_or_typed(chat):
    ann = await chat.registered(4)
    await ann.send("/settings")
    await ann.press("Time zone")
    await ann.press("Asia/Taipei")
    assert (await ann.member()).timezone == "Asia/Taipei"
    await ann.press("Time zone")
    await ann.press("Another one")
    await ann.send("Mars/Olympus_Mons")
    assert ann.sees("don't know that time zone")
    assert (await ann.member()).timezone == "Asia/Taipei"
    await ann.send("America/Chicago")
    assert (await ann.member()).timezone == "America/Chicago"
    assert ann.sees("Time zone: America/Chicago")


async def test_birthday_in_settings(chat):
    ann = await chat.registered(5, lang="zh_Hans")
    await ann.send("/settings")
    assert ann.sees("生日：未设置")
    await ann.press("🎂 生日")
    await ann.send("2099-01-01")
    assert ann.sees("还没到")
    await ann.send("15.08.1985")
    assert (await ann.member()).birthday == date(1985, 8, 15)
    assert ann.sees("1985年8月15日")


async def test_language_switch_resends_the_menu_in_the_new_language(chat):
    ann = await chat.registered(6)
    await ann.send("/language")
    await ann.press("简体中文")
    assert (await ann.member()).language == "zh_Hans"
    assert ann.sees("简体中文")
    assert "💳 会员卡" in ann.keyboard() and "💳 Card" not in ann.keyboard()
    await ann.send("/points")
    assert ann.sees("积分")
    await ann.send("/settings")
    await ann.press("语言")
    await ann.press("English")
    assert "💳 Card" in ann.keyboard()


async def test_menu_labels_work_in_any_language(chat):
    ann = await chat.registered(7)
    await ann.send("⭐ 積分")  # a keyboard left over from another language
    assert ann.sees("You have")


async def test_export_sends_my_data_as_a_json_document(chat):
    ann = await chat.registered(8, points=200)
    await ann.send("/privacy")
    assert ann.sees("We never sell your data")
    await ann.press("Send me my data")
    reply, = [r for r in ann.replies if r.media is not None]
    assert reply.media.kind == "document" and reply.media.filename == "loyalbot-data.json"
    document = json.loads(reply.media.data)
    assert document["member"]["member_no"] == (await ann.member()).member_no
    assert sum(entry["delta"] for entry in document["ledger"]) == 200


async def test_erasure_needs_a_confirmation_and_start_begins_afresh(chat):
    ann = await chat.registered(9, points=200)
    number = (await ann.member()).member_no
    await ann.send("/privacy")
    await ann.press("Erase my data")
    assert ann.sees("200 points")
    await ann.press("Cancel")
    assert (await ann.member()) is not None
    await ann.press("Erase my data")
    await ann.press("Yes, erase everything")
    assert ann.sees("erased") and ann.sees("/start")
    assert any(r.remove_keyboard for r in ann.replies)
    assert await ann.member() is None
    await ann.send("/points")
    assert ann.sees("not a member yet")
    await ann.send("/start")
    await ann.press("English")
    await ann.press("I accept")
    await ann.press("No, thanks")
    await ann.press("Skip")
    await ann.send("Skip")
    fresh = await ann.member()
    assert fresh is not None and fresh.member_no != number and fresh.balance == 0


async def test_a_forged_or_replayed_erase_confirmation_erases_nothing(chat):
    from loyalbot.chat.callbacks import encode

    ann = await chat.registered(10, points=200)
    await ann.press_data(encode("pv", "y", "guessed"))  # never asked
    assert await ann.member() is not None and ann.replies[0].toast
    await ann.send("/privacy")
    await ann.press("Erase my data")
    yes = next(b.data for r in ann.replies for row in (r.buttons or []) for b in row if "Yes" in b.text)
    await ann.press("Cancel")
    await ann.press_data(yes)  # the old question's button, after cancelling
    assert await ann.member() is not None and (await ann.member()).balance == 200
