"""Hostile input at every step of every conversation: a clear reply in the member's language, no
exception, and not one row of the store changed."""

from __future__ import annotations

import re

import pytest

from loyalbot.chat.callbacks import survey_answer

CJK = re.compile(r"[\u4e00-\u9fff]")


async def _idle(chat, person):
    await chat.registered(person.user_id, lang="zh_Hans", points=500)


async def _reg(chat, person, presses):
    await person.send("/start")
    for label in presses:
        await person.press(label)


async def _reg_phone(chat, person):
    await _reg(chat, person, ["简体中文", "我同意", "不用了，谢谢", "跳过"])


async def _feedback_text(chat, person):
    await _idle(chat, person)
    await person.send("/feedback")


async def _feedback_rating(chat, person):
    await _feedback_text(chat, person)
    await person.send("不错")


async def _timezone(chat, person):
    await _idle(chat, person)
    await person.send("/settings")
    await person.press("🌍 时区")
    await person.press("其他")


async def _birthday(chat, person):
    await _idle(chat, person)
    await person.send("/settings")
    await person.press("🎂 生日")


async def _survey_comment(chat, person):
    await _idle(chat, person)
    member = await person.member()
    survey = await chat.loyalty.open_survey(member.id, "csat", trigger="manual", now=chat.clock())
    await person.press_data(survey_answer(survey.id, 4))


async def _confirming(chat, person):
    await _idle(chat, person)
    await person.send("/rewards")
    await person.press("任选咖啡一杯")


STEPS = {
    "idle member": _idle,
    "reg.lang": lambda chat, p: _reg(chat, p, []),
    "reg.terms": lambda chat, p: _reg(chat, p, ["简体中文"]),
    "reg.mkt": lambda chat, p: _reg(chat, p, ["简体中文", "我同意"]),
    "reg.bday": lambda chat, p: _reg(chat, p, ["简体中文", "我同意", "不用了，谢谢"]),
    "reg.phone": _reg_phone,
    "fb.text": _feedback_text,
    "fb.rating": _feedback_rating,
    "set.tz": _timezone,
    "set.bday": _birthday,
    "sv.comment": _survey_comment,
    "rewards confirmation": _confirming,
}
FREE_TEXT_STEPS = {"fb.text", "sv.comment"}  # where any short text is a fine answer


async def _random_text(p, step):
    return await p.send("asdf 🙃🔥 ¿qué? \u202e\u0000 <script>")


async def _long_text(p, step):
    return await p.send("長" * 5000)


async def _unknown_command(p, step):
    return await p.send("/frobnicate now")


async def _forged_button(p, step):
    return await p.press_data("1:rw:c:99999:forgedrequest")


async def _oversized_button(p, step):
    return await p.press_data("1:rw:p:" + "9" * 80)


async def _garbage_button(p, step):
    return await p.press_data("💥:not:ours")


async def _stale_button(p, step):
    # A registration button from a step the person is not at (any more).
    return await p.press_data("1:rg:my" if step == "reg.terms" else "1:rg:ty")


async def _someone_elses_contact(p, step):
    return await p.share_contact(own=False)


async def _photo(p, step):
    return await p.send_photo()


INPUTS = {
    "random text and emoji": _random_text,
    "5000 characters": _long_text,
    "unknown command": _unknown_command,
    "forged button": _forged_button,
    "oversized button": _oversized_button,
    "garbage button": _garbage_button,
    "stale button": _stale_button,
    "someone else's contact": _someone_elses_contact,
    "photo": _photo,
}


CASES = [(step, hostile) for step in STEPS for hostile in INPUTS
         if not (step in FREE_TEXT_STEPS and hostile == "random text and emoji")]


@pytest.mark.parametrize(("step", "hostile"), CASES)
async def test_hostile_input_changes_nothing(chat, step, hostile):
    person = chat.person(42, lang="zh-hans")
    await STEPS[step](chat, person)
    before = await chat.snapshot()
    replies = await INPUTS[hostile](person, step)
    assert replies, "every hostile input gets an answer"
    said = person.texts()
    assert CJK.search(said), f"answered in the member's language, got {said!r}"
    assert "Traceback" not in said and "Error" not in said
    for reply in replies:
        assert reply.text is None or len(reply.text) <= (1024 if reply.media else 4096)
        assert reply.toast is None or len(reply.toast) <= 200
    assert await chat.snapshot() == before
