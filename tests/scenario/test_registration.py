"""Joining the programme, in each language, on both runtimes."""

from __future__ import annotations

import pytest

from tests.scenario.driver import Chat

pytestmark = pytest.mark.asyncio(loop_scope="module")

LANGUAGE_BUTTON = {"en": "English", "zh_Hans": "简体中文", "zh_Hant": "繁體中文"}


@pytest.mark.parametrize(("language_code", "language"), [("en", "en"), ("zh-hans", "zh_Hans"), ("zh-hant", "zh_Hant")])
async def test_joining_in_each_language(chat: Chat, language_code: str, language: str) -> None:
    ann = await chat.member("Ann", language_code=language_code)
    await ann.send("/start")
    assert ann.last_text_contains(ann.t("start.choose_language"))
    await ann.press(LANGUAGE_BUTTON[language])
    await ann.press(ann.t("button.accept"))
    await ann.press(ann.t("button.no_thanks"))
    await ann.press(ann.t("button.skip"))
    assert await chat.loyalty.member_by_telegram(ann.id) is None, "nobody joins before the last answer"
    await ann.press_reply(ann.t("button.share_phone"))
    member = await ann.record()
    assert member.language == language
    assert member.phone and not member.marketing_consent
    assert ann.last_text_contains(member.member_no)


async def test_someone_elses_contact_is_refused_and_changes_nothing(chat: Chat) -> None:
    ann = await chat.member("Ann")
    ben = await chat.member("Ben")
    await ann.send("/start")
    await ann.press("English")
    await ann.press("accept")
    await ann.press("Yes, please")
    await ann.send("1990-05-17")
    await ann.share_contact(of=ben.id, phone="+15550009999")
    assert ann.saw(ann.t("start.not_your_contact"))
    assert await chat.loyalty.member_by_telegram(ann.id) is None
    await ann.share_contact()
    member = await ann.record()
    assert member.phone != "+15550009999"
    assert member.marketing_consent and str(member.birthday) == "1990-05-17"
