"""Scheduled messages end to end, on aiogram and on python-telegram-bot, through the local Bot API server.

The app runs with the scheduler attached exactly as `loyalbot run` attaches it (`scheduler.service.attach`),
so the outbox is drained by the app's own dispatcher through the runtime's sender. Operators' schedules
are added with the `loyalbot` command line (its typer app, against the same SQLite file) and run with
the code `schedule run-now` uses, at a `now` the test controls; the app's clock is moved to that
moment, so what is due is due for the dispatcher too.
"""

from __future__ import annotations

import asyncio
import html
import json
import re
from collections.abc import AsyncIterator
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import pytest_asyncio
import sqlalchemy as sa
from babel.dates import format_date
from babel.numbers import format_decimal
from typer.testing import CliRunner

from loyalbot.bot.app import App
from loyalbot.bot.cli import app as loyalbot_cli
from loyalbot.bot.local_api import LocalApiControl, LocalBotApi
from loyalbot.bot.runtime import Connection
from loyalbot.chat.callbacks import survey_answer
from loyalbot.chat.i18n import Translator
from loyalbot.scheduler.planner import Planner, PlanStats
from loyalbot.scheduler.service import SchedulerService
from loyalbot.scheduler.service import attach as attach_scheduler
from loyalbot.scheduler.templates import BABEL_LOCALES, TemplateBook, default_templates
from loyalbot.storage import utcnow
from loyalbot.storage.models import Outbox, Schedule, Survey, SurveyAnswer
from tests.scenario.conftest import FRAMEWORKS, TOKEN, scenario_settings
from tests.scenario.driver import Chat, Person, TestClock, eventually

pytestmark = pytest.mark.asyncio(loop_scope="module")

runner = CliRunner()
EN = Translator("en")


# --- the world: the app with its scheduler ---------------------------------------------------------------


@pytest_asyncio.fixture(params=FRAMEWORKS, loop_scope="module")
async def chat(request: pytest.FixtureRequest, server: LocalBotApi, tg: LocalApiControl, store_file: Any
               ) -> AsyncIterator[Chat]:
    """The whole app on one runtime, with the scheduler attached the way the bot's assembly attaches it."""
    group = await tg.create_group("Staff", is_forum=True)
    clock = TestClock()
    app = App(scenario_settings(server, store_file, group["id"]), framework=request.param, clock=clock,
              connection=Connection(token=TOKEN, api_url=server.url, polling_timeout=1))
    attach_scheduler(app)
    await app.start()
    world = Chat(tg, app, group["id"], clock)
    world.store_url = f"sqlite+aiosqlite:///{store_file}"  # type: ignore[attr-defined]
    try:
        yield world
    finally:
        await app.stop()


def scheduler_of(chat: Chat) -> SchedulerService:
    assert chat.app.context is not None
    service = chat.app.context.services.scheduler
    assert isinstance(service, SchedulerService)
    return service


async def operator(chat: Chat, *args: str) -> str:
    """`loyalbot schedule ...` as an operator types it, against the app's store; returns what it printed."""
    url = chat.store_url  # type: ignore[attr-defined]
    result = await asyncio.to_thread(runner.invoke, loyalbot_cli, ["schedule", *args, "--database-url", url])
    assert result.exit_code == 0, result.output
    return result.output


async def add_schedule(chat: Chat, name: str, *args: str) -> Schedule:
    """Add a schedule with the CLI; the running scheduler rebuilds its jobs from the table (what its watcher does).

    The daily time is half a day away, so no clock tick of APScheduler runs it during the test."""
    daily = (utcnow() + timedelta(hours=12)).strftime("%H:%M")
    await operator(chat, "add", name, "--daily-time", daily, *args)
    service = scheduler_of(chat)
    await service.reload()
    assert service.scheduler is not None and name in [job.name for job in service.scheduler.get_jobs()]
    async with chat.loyalty.db.read() as s:
        return (await s.execute(sa.select(Schedule).where(Schedule.name == name))).scalar_one()


async def run_now(chat: Chat, schedule: Schedule) -> PlanStats:
    """What `loyalbot schedule run-now` does, at the app's (moved) clock instead of the wall clock."""
    return await Planner(chat.loyalty).run(schedule, now=chat.clock())



async def rows_of(chat: Chat, schedule: Schedule) -> list[Outbox]:
    async with chat.loyalty.db.read() as s:
        return list((await s.execute(sa.select(Outbox).where(Outbox.schedule_id == schedule.id)
                                     .order_by(Outbox.id))).scalars())


async def all_sent(chat: Chat, *schedules: Schedule) -> bool:
    rows = [row for schedule in schedules for row in await rows_of(chat, schedule)]
    return bool(rows) and all(row.status in ("sent", "skipped") for row in rows)


async def last_id(person: Person) -> int:
    messages = await person.transcript()
    return max((m["message_id"] for m in messages), default=0)


async def bot_messages_after(person: Person, after: int) -> list[dict[str, Any]]:
    return [m for m in await person.transcript()
            if m["direction"] == "bot" and not m["deleted"] and m["message_id"] > after]


def plain(rendered: str) -> str:
    """What Telegram shows of an HTML message: the text without tags, entities decoded."""
    return html.unescape(re.sub(r"<[^>]+>", "", rendered))


def labels(message: dict[str, Any]) -> list[str]:
    return [b["text"] for row in (message.get("reply_markup") or {}).get("inline_keyboard") or [] for b in row]


def button(message: dict[str, Any], label: str) -> str:
    return next(b["callback_data"] for row in message["reply_markup"]["inline_keyboard"] for b in row
                if b["text"] == label)


async def answers(chat: Chat, member_id: int) -> list[tuple[SurveyAnswer, Survey]]:
    async with chat.loyalty.db.read() as s:
        rows = (await s.execute(sa.select(SurveyAnswer, Survey).join(Survey, Survey.id == SurveyAnswer.survey_id)
                                .where(SurveyAnswer.member_id == member_id).order_by(SurveyAnswer.id))).all()
    return [(a, sv) for a, sv in rows]


def local_birthday(moment: datetime, timezone: str) -> date:
    """A birthday that falls on `moment`'s date where the member lives (29 Feb kept in a leap year)."""
    today = moment.astimezone(ZoneInfo(timezone)).date()
    return today.replace(year=1992 if (today.month, today.day) == (2, 29) else 1990)


# --- care messages and reminders ------------------------------------------------------------------------


async def test_birthday_and_expiry_reminder_reach_the_right_members_once_in_their_language(chat: Chat) -> None:
    ann = await chat.registered_member("Ann", language_code="en", points=480)
    mei = await chat.registered_member("小明", language_code="zh-hans", points=520)
    bob = await chat.registered_member("Bob", language_code="en")  # no points; birthday not today
    ann_m, mei_m, bob_m = [await p.record() for p in (ann, mei, bob)]
    assert mei_m.language == "zh_Hans"

    # The moment the operator runs the schedules: five days before the members' points expire (which is
    # just before midnight), around midday, so the whole test stays on one calendar day.
    expiring = (await chat.loyalty.points_summary(ann_m.id)).next_expiry
    assert expiring is not None
    run_at = expiring.expires_at - timedelta(days=5, hours=12)
    chat.clock.advance(seconds=(run_at - chat.clock()).total_seconds())
    for member in (ann_m, mei_m):
        await chat.loyalty.update_member(member.id, birthday=local_birthday(run_at, member.timezone))
    await chat.loyalty.update_member(bob_m.id, birthday=local_birthday(run_at + timedelta(days=3), bob_m.timezone))

    birthday = await add_schedule(
        chat, "birthday-care", "--kind", "birthday",
        "--template", "en=Happy birthday, {{ name }}! You have {{ points|number }} points to celebrate with.",
        "--template", "zh_Hans={{ name }}，生日快乐！你有 {{ points|number }} 积分可以用来庆祝。")
    reminder = await add_schedule(chat, "points-reminder", "--kind", "points_expiry", "--offset-days", "14")
    before = {p.id: await last_id(p) for p in (ann, mei, bob)}

    for schedule in (birthday, reminder):
        stats = await run_now(chat, schedule)
        assert (stats.planned, dict(stats.languages)) == (2, {"en": 1, "zh_Hans": 1}), stats.as_dict()
    await eventually(lambda: all_sent(chat, birthday, reminder))

    # What each member's chat shows: exactly the two messages, in their language, with their own values.
    expiry_day = expiring.expires_at.astimezone(chat.loyalty.programme.zone).date()
    reminder_templates = TemplateBook().compiled(default_templates("points_expiry"), kind="points_expiry")
    for person, member, points, lang, hello in ((ann, ann_m, 480, "en", "Happy birthday, Ann!"),
                                                 (mei, mei_m, 520, "zh_Hans", "小明，生日快乐！")):
        texts = [m["text"] for m in await bot_messages_after(person, before[person.id])]
        locale = BABEL_LOCALES[lang]
        number = format_decimal(points, locale=locale)
        birthday_texts = [t for t in texts if hello in t]
        assert len(birthday_texts) == 1, texts
        assert number in birthday_texts[0]
        reminder_texts = [t for t in texts if format_date(expiry_day, "long", locale=locale) in t]
        assert len(reminder_texts) == 1, texts
        assert member.first_name in reminder_texts[0] and number in reminder_texts[0]
        variables = dict(name=member.first_name, expiring_points=points, expiry_date=expiry_day)
        assert reminder_texts[0] == plain(reminder_templates.render(lang, variables))
        assert len(texts) == 2, texts
    assert "Happy birthday" not in " ".join(m["text"] for m in await bot_messages_after(mei, before[mei.id]))
    assert await bot_messages_after(bob, before[bob.id]) == []

    # Running again (a retry, another replica, the bot catching up) plans and sends nothing new.
    for schedule in (birthday, reminder):
        again = await run_now(chat, schedule)
        assert (again.planned, again.already_planned) == (0, 2)
    assert len(await rows_of(chat, birthday)) == len(await rows_of(chat, reminder)) == 2
    for person in (ann, mei):
        assert len(await bot_messages_after(person, before[person.id])) == 2


async def test_a_member_who_turned_care_messages_off_gets_no_birthday_message(chat: Chat) -> None:
    ann = await chat.registered_member("Ann")
    eve = await chat.registered_member("Eve")
    ann_m, eve_m = await ann.record(), await eve.record()
    for member in (ann_m, eve_m):
        await chat.loyalty.update_member(member.id, birthday=local_birthday(chat.clock(), member.timezone))
    await chat.loyalty.update_member(eve_m.id, notify={"care": False})
    birthday = await add_schedule(chat, "birthday-care", "--kind", "birthday")
    before = {p.id: await last_id(p) for p in (ann, eve)}
    stats = await run_now(chat, birthday)
    assert stats.planned == 1 and dict(stats.skipped) == {"opted_out": 1}
    await eventually(lambda: all_sent(chat, birthday))
    assert len(await bot_messages_after(ann, before[ann.id])) == 1
    assert await bot_messages_after(eve, before[eve.id]) == []


# --- surveys --------------------------------------------------------------------------------------------


async def test_nps_score_and_comment_are_stored_and_bad_presses_change_nothing(chat: Chat) -> None:
    ann = await chat.registered_member("Ann", language_code="en")
    mei = await chat.registered_member("小明", language_code="zh-hans")
    ann_m, mei_m = await ann.record(), await mei.record()
    chat.clock.advance(days=20)  # NPS asks members of at least two weeks
    nps = await add_schedule(chat, "nps-check", "--kind", "nps",
                             "--segment", json.dumps({"member_ids": [ann_m.id, mei_m.id]}))
    before = {p.id: await last_id(p) for p in (ann, mei)}
    stats = await run_now(chat, nps)
    assert (stats.planned, dict(stats.languages)) == (2, {"en": 1, "zh_Hans": 1})
    await eventually(lambda: all_sent(chat, nps))

    (question,) = await bot_messages_after(ann, before[ann.id])
    assert "Ann" in question["text"]
    assert labels(question) == [str(score) for score in range(11)]
    (zh_question,) = await bot_messages_after(mei, before[mei.id])
    assert "小明" in zh_question["text"] and "Ann" not in zh_question["text"]
    assert labels(zh_question) == [str(score) for score in range(11)]
    async with chat.loyalty.db.read() as s:
        survey = (await s.execute(sa.select(Survey).where(Survey.member_id == ann_m.id))).scalar_one()
    assert survey.kind == "nps" and survey.schedule_id == nps.id and survey.status == "open"

    # A forged score outside 0-10 is refused politely and stores nothing.
    await ann.press_data(question["message_id"], survey_answer(survey.id, 11))
    assert ann.last_toast == EN.t("error.score_out_of_range", low=0, high=10)
    assert await answers(chat, ann_m.id) == []

    # The member taps 9: stored with the survey it answers; the bot asks for a comment.
    await ann.press_data(question["message_id"], button(question, "9"))
    assert ann.saw(EN.t("survey.thanks"))
    (answer, answered), = await answers(chat, ann_m.id)
    assert (answer.score, answer.kind, answered.id, answered.trigger, answered.schedule_id) == (
        9, "nps", survey.id, "schedule", nps.id)
    assert answered.status == "answered"

    await ann.send("Friendly staff, but the queue was long")
    assert ann.saw(EN.t("survey.comment_thanks"))
    (answer, _), = await answers(chat, ann_m.id)
    assert answer.comment == "Friendly staff, but the queue was long"

    # A second tap on the same question changes nothing.
    await ann.press_data(question["message_id"], button(question, "3"))
    assert ann.last_toast == EN.t("error.survey_closed")
    (answer, _), = await answers(chat, ann_m.id)
    assert (answer.score, answer.comment) == (9, "Friendly staff, but the queue was long")
    assert await answers(chat, mei_m.id) == []


async def test_csat_after_a_coupon_is_used_arrives_after_the_delay_and_names_the_staff(chat: Chat) -> None:
    ann = await chat.registered_member("Ann", points=500)
    await ann.send("/rewards")
    await ann.press("coffee")
    await ann.press("Confirm")
    ann_m = await ann.record()
    coupon, _ = (await chat.loyalty.coupons_of(ann_m.id))[0]
    sam = await chat.staff("Sam")
    await sam.send(f"/use {coupon.code}")
    before = await last_id(ann)
    await sam.press("Confirm")
    used_at = chat.clock()
    assert await chat.coupons_of(ann, status="used") == 1

    # The used coupon planned a CSAT survey, held back for the delay: nothing reaches the member yet.
    async with chat.loyalty.db.read() as s:
        (row,) = (await s.execute(sa.select(Outbox).where(Outbox.member_id == ann_m.id,
                                                          Outbox.kind == "csat"))).scalars().all()
    assert row.status == "pending" and row.not_before > used_at + timedelta(minutes=29)
    # Until then the member hears only that the coupon was used (scheduler/notices.py), not the question.
    told = await eventually(lambda: bot_messages_after(ann, before))
    assert [(coupon.code in m["text"], labels(m)) for m in told] == [(True, [])]

    chat.clock.advance(minutes=31)

    async def csat_arrived() -> list[dict[str, Any]]:
        return [m for m in await bot_messages_after(ann, before) if labels(m)]

    (question,) = await eventually(csat_arrived)
    assert "Ann" in question["text"] and labels(question) == ["1", "2", "3", "4", "5"]
    async with chat.loyalty.db.read() as s:
        survey = await s.get(Survey, row.survey_id)
    assert survey is not None and (survey.kind, survey.trigger, survey.trigger_ref) == (
        "csat", "coupon", f"coupon:{coupon.id}")

    await ann.press_data(question["message_id"], survey_answer(survey.id, 6))  # forged: CSAT is 1-5
    assert ann.last_toast == EN.t("error.score_out_of_range", low=1, high=5)
    assert await answers(chat, ann_m.id) == []
    await ann.press_data(question["message_id"], button(question, "4"))
    await ann.press_data(question["message_id"], button(question, "1"))  # a second tap
    assert ann.last_toast == EN.t("error.survey_closed")
    (answer, answered), = await answers(chat, ann_m.id)
    assert (answer.score, answer.kind, answer.staff_id, answered.id) == (4, "csat", sam.id, survey.id)
    await ann.press(EN.t("button.skip"))
    assert ann.saw(EN.t("survey.no_comment"))
    assert (await answers(chat, ann_m.id))[0][0].comment is None


async def test_the_thank_you_play_asks_the_csat_with_its_message_answered_once(chat: Chat) -> None:
    """Issue #11 item 8: the post-purchase thank-you carries the 1-5 question; the answer is a CSAT answer."""
    ann, mei = await chat.member("Ann"), await chat.member("小明", language_code="zh-hans")
    for person in (ann, mei):
        await person.join(marketing=True)  # the thank-you is a broadcast: marketing consent
    ann_m, mei_m = await ann.record(), await mei.record()
    zone = ZoneInfo(ann_m.timezone)
    local = chat.clock().astimezone(zone)
    evening = local.replace(hour=19, minute=5, second=0, microsecond=0)
    chat.clock.advance(seconds=((evening if evening > local else evening + timedelta(days=1)) - local).total_seconds())
    for member in (ann_m, mei_m):  # a purchase today, before the evening's thank-you
        await chat.loyalty.award_purchase(member.id, external_id=f"till-{member.id}", amount="8.00",
                                          occurred_at=chat.clock() - timedelta(hours=2), now=chat.clock())
    url = chat.store_url  # type: ignore[attr-defined]
    installed = await asyncio.to_thread(runner.invoke, loyalbot_cli,
                                        ["campaign", "plays", "install", "--database-url", url])
    assert installed.exit_code == 0, installed.output
    async with chat.loyalty.db.read() as s:
        thanks = (await s.execute(sa.select(Schedule).where(Schedule.name == "play-thank-you"))).scalar_one()
    before = {p.id: await last_id(p) for p in (ann, mei)}
    stats = await run_now(chat, thanks)
    assert (stats.planned, dict(stats.languages)) == (2, {"en": 1, "zh_Hans": 1})
    await eventually(lambda: all_sent(chat, thanks))

    def thank_you(messages: list[dict[str, Any]], words: str) -> dict[str, Any]:
        (found,) = [m for m in messages if words in str(m.get("text"))]
        return found

    question = thank_you(await bot_messages_after(ann, before[ann.id]), "Thank you for coming by today, Ann!")
    assert "How did we do? Tap 1 (not good) to 5 (excellent)." in question["text"]
    assert labels(question) == ["1", "2", "3", "4", "5"]
    zh_question = thank_you(await bot_messages_after(mei, before[mei.id]), "小明，感谢您今天的光临")
    assert "请点 1（不满意）到 5（非常满意）" in zh_question["text"] and labels(zh_question) == list("12345")

    await ann.press_data(question["message_id"], button(question, "4"))
    assert ann.saw(EN.t("survey.thanks"))
    await ann.press_data(question["message_id"], button(question, "2"))  # a second tap on the same message
    assert ann.last_toast == EN.t("error.survey_closed")
    (answer, survey), = await answers(chat, ann_m.id)
    assert (answer.score, answer.kind, survey.kind, survey.trigger, survey.schedule_id) == (
        4, "csat", "csat", "schedule", thanks.id)
    assert await answers(chat, mei_m.id) == []
