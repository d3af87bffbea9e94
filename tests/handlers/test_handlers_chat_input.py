"""Chat input checked at the edge, on SQLite and PostgreSQL: control characters, over-long texts,
out-of-range numbers in buttons, a double tap on Confirm, and birthdays as members write them."""

from __future__ import annotations

from datetime import date

import pytest

from loyalbot.chat.callbacks import encode, survey_answer
from loyalbot.chat.i18n import Translator
from loyalbot.chat.port import Contact, IncomingMedia
from loyalbot.handlers.config import ChatConfig
from loyalbot.loyalty.programme import load_programme
from tests.handlers.chatinput_support import make_chat, store_chat_fixture

store_chat = store_chat_fixture()

LANGS = ("en", "zh_Hans", "zh_Hant")
APOLOGY = {lang: Translator(lang).t("error.unexpected") for lang in LANGS}


def said(person) -> str:
    return person.texts()


async def at_feedback(chat, lang="en"):
    ann = await chat.registered(11, lang=lang, points=500)
    await ann.send("/feedback")
    return ann


async def joining_until_birthday(chat, user_id=21, lang="en", first_name="Ann"):
    person = chat.person(user_id, lang=lang, first_name=first_name)
    names = {"en": "English", "zh_Hans": "简体中文", "zh_Hant": "繁體中文"}
    tr = Translator(lang)
    await person.send("/start")
    await person.press(names[lang])
    await person.press(tr.label("button.accept"))
    await person.press(tr.label("button.no_thanks"))
    return person


# --- 1. control characters and over-long texts ----------------------------------------------------------


@pytest.mark.parametrize("text", ["good\x00coffee", "bell\x07", "esc\x1b[31m", "c1\x85", "del\x7f",
                                  "lone \ud800 surrogate"], ids=["NUL", "BEL", "ESC", "NEL", "DEL", "surrogate"])
@pytest.mark.parametrize("lang", LANGS)
async def test_a_control_character_in_feedback_is_refused_in_the_members_language(store_chat, text, lang):
    ann = await at_feedback(store_chat, lang)
    before = await store_chat.snapshot()
    await ann.send(text)
    assert said(ann) == Translator(lang).t("input.control_characters")
    assert await store_chat.snapshot() == before, "nothing stored, the step is still the feedback text"
    await ann.send("good coffee")  # the member can go on at once
    assert ann.sees(Translator(lang).t("feedback.rate"))


async def test_newline_and_tab_are_fine_in_feedback(store_chat):
    ann = await at_feedback(store_chat)
    await ann.send("line one\nline two\twith a tab")
    await ann.press("⭐⭐⭐⭐⭐")
    assert ann.sees("FB-")
    assert await store_chat.count("feedback") == 1


@pytest.mark.parametrize("step", ["idle", "reg.bday", "fb.rating", "set.tz", "set.bday"])
async def test_nul_is_refused_at_every_step_and_changes_nothing(store_chat, step):
    chat = store_chat
    if step == "reg.bday":
        person = await joining_until_birthday(chat)
    else:
        person = await chat.registered(12, points=500)
        if step == "fb.rating":
            await person.send("/feedback")
            await person.send("fine")
        elif step == "set.tz":
            await person.send("/settings")
            await person.press("Time zone")
            await person.press("Another one")
        elif step == "set.bday":
            await person.send("/settings")
            await person.press("Birthday")
    before = await chat.snapshot()
    for text in ("Europe/\x00Paris", "1995-06-15\x00", "3\x00", "\x00"):
        await person.send(text)
        assert said(person) == Translator("en").t("input.control_characters")
        assert await chat.snapshot() == before


async def test_nul_in_command_arguments_caption_and_contact_is_refused(store_chat):
    chat = store_chat
    ann = await chat.registered(13, points=500)
    before = await chat.snapshot()
    refused = Translator("en").t("input.control_characters")
    await ann.deliver(command="feedback", args="great\x00")
    assert said(ann) == refused
    await ann.deliver(media=IncomingMedia(kind="photo", file_id="AgAD", caption="look\x00"))
    assert said(ann) == refused
    assert await chat.snapshot() == before
    bob = await joining_until_birthday(chat, user_id=14)
    await bob.press("Skip")
    before = await chat.snapshot()
    await bob.deliver(contact=Contact(phone="+3161\x002345678", user_id=14))
    assert said(bob) == refused
    assert await chat.snapshot() == before
    assert await chat.loyalty.member_by_telegram(14) is None


async def test_an_over_long_text_is_refused_with_the_limit(store_chat):
    chat = store_chat
    ann = await chat.registered(15, lang="zh_Hans")
    before = await chat.snapshot()
    await ann.send("长" * 4097)
    assert said(ann) == Translator("zh_Hans").t("input.too_long", limit=4096)
    await ann.send("/feedback")
    before = await chat.snapshot()
    await ann.send("长" * 4001)
    assert said(ann) == Translator("zh_Hans").t("input.too_long", limit=4000), "the step's own limit"
    assert await chat.snapshot() == before


async def test_a_profile_name_with_control_characters_is_stored_clean(store_chat):
    chat = store_chat
    ann = await joining_until_birthday(chat, user_id=16, first_name="A\x00nn\x1b")
    await ann.press("Skip")
    await ann.share_contact()
    member = await ann.member()
    assert member is not None and member.first_name == "Ann"
    assert not any(APOLOGY["en"] in t for replies in ann.history for r in replies for t in (r.text, r.toast) if t)


# --- 2. numbers in buttons bounded to what the columns hold -------------------------------------------------


@pytest.mark.parametrize("data", [
    "1:rw:c:999999999999:forged", "1:rw:c:2147483648:forged", "1:rw:s:999999999999", "1:cp:q:999999999999",
    "1:sv:a:999999999999:4", "1:sv:s:999999999999", "1:rw:p:999999999999", "1:rw:c:0012:forged",
    "1:fb:r:999999999999", "1:sp:x:999999999999",
], ids=lambda d: d[2:12])
async def test_a_number_beyond_its_column_is_an_out_of_date_button(store_chat, data):
    chat = store_chat
    ann = await chat.registered(17, lang="zh_Hant", points=500)
    await ann.send("/rewards")
    before = await chat.snapshot()
    await ann.press_data(data)
    assert said(ann) == Translator("zh_Hant").label("error.stale_button")
    assert await chat.snapshot() == before


async def test_the_largest_32_bit_id_is_a_normal_unknown(store_chat):
    chat = store_chat
    ann = await chat.registered(18, points=500)
    await ann.press_data(encode("rw", "c", 2**31 - 1, "forged"))
    assert ann.sees("That reward isn't available any more.")
    await ann.press_data(survey_answer(2**31 - 1, 4))
    assert ann.sees(Translator("en").t("error.unknown_survey"))
    assert await chat.count("coupons") == 0 and await chat.count("survey_answers") == 0


# --- 4. double tap on Confirm -------------------------------------------------------------------------------


async def test_a_double_tap_on_confirm_adds_nothing_to_the_chat(store_chat):
    chat = store_chat
    ann = await chat.registered(19, points=500)
    await ann.send("/rewards")
    await ann.press("A coffee of your choice")
    confirm = next(b.data for r in ann.replies for row in (r.buttons or []) for b in row if "Confirm" in b.text)
    await ann.press_data(confirm)
    assert len(ann.photos()) == 1, "the coupon arrives with the first tap"
    await ann.press_data(confirm)
    assert not any(r.text or r.media or r.edit for r in ann.replies), "the second tap adds nothing to the chat"
    assert [r.toast for r in ann.replies] == [Translator("en").label("rewards.already_redeemed")]
    assert len(await chat.coupons(ann)) == 1
    assert (await ann.member()).balance == 350


# --- 5. birthdays -------------------------------------------------------------------------------------------


BIRTHDAY_FORMS = {
    "en": ["1995-06-15", "1995/06/15", "15/06/1995", "15.06.1995", "15 June 1995", "June 15, 1995", "15 Jun 1995",
           "1995年6月15日"],
    "zh_Hans": ["1995年6月15日", "1995/06/15", "1995-06-15", "１９９５年６月１５日", "一九九五年六月十五日",
                "1995年6月15号", "15/06/1995"],
    "zh_Hant": ["1995年6月15日", "民國84年6月15日", "1995/06/15", "1995-06-15", "1995年6月15號"],
}
SAVED = {"en": "🎂 Saved your birthday: 15 Jun 1995.", "zh_Hans": "🎂 已保存您的生日：1995年6月15日。",
         "zh_Hant": "🎂 已儲存您的生日：1995年6月15日。"}


@pytest.mark.parametrize(("lang", "typed"), [(lang, form) for lang, forms in BIRTHDAY_FORMS.items() for form in forms])
async def test_birthdays_in_the_usual_forms_are_taken_and_confirmed(store_chat, lang, typed):
    chat = store_chat
    ann = await joining_until_birthday(chat, lang=lang)
    await ann.send(typed)
    assert ann.sees(SAVED[lang]), said(ann)
    assert ann.sees(Translator(lang).t("start.phone")), "and the next question follows"
    await ann.share_contact()
    member = await ann.member()
    assert member is not None and member.birthday == date(1995, 6, 15)


@pytest.mark.parametrize(("lang", "typed", "key"), [
    ("zh_Hans", "03/04/1995", "birthday.ambiguous"),
    ("zh_Hant", "03/04/1995", "birthday.ambiguous"),
    ("en", "31/06/1995", "birthday.no_such_day"),
    ("zh_Hans", "1995年2月30日", "birthday.no_such_day"),
    ("en", "15 June", "birthday.year_needed"),
    ("zh_Hans", "6月15日", "birthday.year_needed"),
    ("zh_Hant", "next tuesday", "birthday.format"),
])
async def test_a_birthday_that_cannot_be_read_says_why_and_changes_nothing(store_chat, lang, typed, key):
    chat = store_chat
    ann = await joining_until_birthday(chat, lang=lang)
    before = await chat.snapshot()
    await ann.send(typed)
    assert ann.sees(Translator(lang).t(key))
    assert await chat.snapshot() == before


async def test_an_ambiguous_date_follows_the_format_locale_in_english(store_chat):
    chat = store_chat
    ann = await joining_until_birthday(chat)  # en: formatted as en_GB, day first
    await ann.send("03/04/1995")
    assert ann.sees("🎂 Saved your birthday: 3 Apr 1995.")
    await ann.share_contact()
    assert (await ann.member()).birthday == date(1995, 4, 3)


async def test_month_first_where_the_format_locale_writes_it_so(store_url):
    config = ChatConfig(format_locales={"en": "en_US", "zh_Hans": "zh_Hans_CN", "zh_Hant": "zh_Hant_TW"})
    chat = await make_chat(store_url, config=config)
    try:
        ann = await joining_until_birthday(chat)
        await ann.send("03/04/1995")
        assert ann.sees("🎂 Saved your birthday: Mar 4, 1995.")
    finally:
        await chat.db.dispose()


async def test_a_birthday_in_settings_is_confirmed(store_chat):
    chat = store_chat
    ann = await chat.registered(22, lang="zh_Hant")
    await ann.send("/settings")
    await ann.press("🎂 生日")
    await ann.send("民國84年6月15日")
    assert ann.sees("🎂 已儲存您的生日：1995年6月15日。")
    assert (await ann.member()).birthday == date(1995, 6, 15)


def year_optional():
    programme = load_programme()
    return programme.model_copy(update={
        "programme": programme.programme.model_copy(update={"birthday_year_required": False})})


@pytest.mark.parametrize(("lang", "typed", "shown"), [
    ("zh_Hans", "6月15日", "6月15日"), ("zh_Hant", "6月15日", "6月15日"), ("en", "15 June", "15 June"),
    ("en", "February 29", "29 February"),
])
async def test_a_birthday_without_the_year_where_the_programme_allows_it(store_url, lang, typed, shown):
    chat = await make_chat(store_url, programme=year_optional())
    try:
        ann = await joining_until_birthday(chat, lang=lang)
        await ann.send(typed)
        assert ann.sees(Translator(lang).t("birthday.saved", date=shown)), said(ann)
        await ann.share_contact()
        member = await ann.member()
        assert member is not None and (member.birthday.month, member.birthday.day) == (
            (2, 29) if "29" in typed else (6, 15))
        await ann.send("/settings")
        assert ann.sees(Translator(lang).t("settings.birthday", value=shown)), "shown without a year"
    finally:
        await chat.db.dispose()
