"""Joining with /start, in each language; the refusals along the way; what non-members get."""

from __future__ import annotations

from datetime import date

import pytest

LABELS = {  # what a member sees on the buttons, per language
    "en": {"accept": "I accept", "decline": "No, thanks", "yes": "Yes, please", "skip": "Skip",
           "welcome": "Welcome", "joined": "Welcome aboard", "card": "💳 Card"},
    "zh_Hans": {"accept": "我同意", "decline": "暂不同意", "yes": "好的，请发给我", "skip": "跳过",
                "welcome": "欢迎", "joined": "欢迎加入", "card": "💳 会员卡"},
    "zh_Hant": {"accept": "我同意", "decline": "暫不同意", "yes": "好的，請傳給我", "skip": "跳過",
                "welcome": "歡迎", "joined": "歡迎加入", "card": "💳 會員卡"},
}


@pytest.mark.parametrize(("telegram_code", "lang"), [
    ("en-GB", "en"), ("zh-hans", "zh_Hans"), ("zh-CN", "zh_Hans"), ("zh-hant", "zh_Hant"), ("zh-TW", "zh_Hant"),
])
async def test_joining_in_each_language(chat, telegram_code, lang):
    ann = chat.person(1, lang=telegram_code)
    words = LABELS[lang]
    await ann.send("/start")
    assert ann.sees(words["welcome"])
    assert any(b.startswith("✓ ") for b in ann.buttons()), "the Telegram language is preselected"
    await ann.press("✓")
    await ann.press(words["accept"])
    await ann.press(words["yes"])
    await ann.send("1990-05-31")
    await ann.share_contact()
    assert ann.sees(words["joined"])
    assert words["card"] in ann.keyboard()
    member = await ann.member()
    assert member is not None
    assert member.language == lang
    assert member.marketing_consent is True
    assert member.birthday == date(1990, 5, 31)
    assert member.phone == "+31612345678"
    assert ann.sees(member.member_no)


async def test_language_can_be_changed_while_joining(chat):
    ann = chat.person(2, lang="en")
    await ann.send("/start")
    await ann.press("繁體中文")
    assert ann.sees("條款")
    await ann.press("我同意")
    await ann.press("不用了，謝謝")
    await ann.press("跳過")
    await ann.send("跳過")
    member = await ann.member()
    assert member is not None and member.language == "zh_Hant"
    assert member.marketing_consent is False and member.birthday is None and member.phone is None


async def test_declining_the_terms_explains_and_offers_to_try_again(chat):
    ann = chat.person(3)
    await ann.send("/start")
    await ann.press("English")
    await ann.press("No, thanks")
    assert ann.sees("can't join")
    assert await ann.member() is None
    await ann.press("Try again")
    assert ann.sees("accept the programme terms")
    await ann.press("I accept")
    assert ann.sees("offers")


@pytest.mark.parametrize(("typed", "answer"), [
    ("2031-01-01", "in the future"),
    ("1899-12-31", "before 1900"),
    ("31.02.1990", "isn't in the calendar"),
    ("next tuesday", "can't read that date"),
    ("2024-01-01", "doesn't look right"),  # two years old
])
async def test_a_wrong_birthday_is_refused_and_asked_again(chat, typed, answer):
    ann = chat.person(4)
    await ann.send("/start")
    await ann.press("English")
    await ann.press("I accept")
    await ann.press("No, thanks")
    await ann.send(typed)
    assert ann.sees(answer)
    await ann.send("31.05.1990")
    assert ann.sees("phone number")
    await ann.send("Skip")
    member = await ann.member()
    assert member is not None and member.birthday == date(1990, 5, 31)


async def test_someone_elses_contact_is_refused(chat):
    ann = chat.person(5)
    await ann.send("/start")
    await ann.press("English")
    await ann.press("I accept")
    await ann.press("No, thanks")
    await ann.press("Skip")
    await ann.share_contact(own=False, phone="+4411111111")
    assert ann.sees("someone else's contact")
    assert await ann.member() is None
    await ann.share_contact(own=True)
    member = await ann.member()
    assert member is not None and member.phone == "+31612345678"


async def test_a_second_start_shows_the_menu_not_a_new_registration(chat):
    ann = await chat.registered(6, first_name="Ann")
    await ann.send("/start")
    assert ann.sees("Welcome back Ann")
    assert "💳 Card" in ann.keyboard()
    assert await chat.count("members") == 1


async def test_non_members_are_led_to_registration(chat):
    bob = chat.person(7)
    for attempt in ("/points", "⭐ Points", "hello", "/rewards"):
        await bob.send(attempt)
        assert bob.sees("/start"), attempt
    await bob.press_data("1:rw:p:0")
    assert bob.sees("/start")
    assert await chat.count("members") == 0


async def test_someone_half_way_is_brought_back_to_their_step(chat):
    bob = chat.person(8)
    await bob.send("/start")
    await bob.press("English")
    await bob.send("/points")
    assert bob.sees("finish joining")
    assert bob.sees("accept the programme terms")
    assert "✅ I accept" in bob.buttons()


async def test_an_earlier_steps_button_changes_nothing(chat):
    ann = chat.person(9)
    await ann.send("/start")
    await ann.press("English")
    await ann.press("I accept")
    await ann.press("Yes, please")
    before = await chat.snapshot()
    await ann.press("I accept")  # the terms button, pressed again from the old message
    assert ann.sees("expired")
    assert await chat.snapshot() == before
