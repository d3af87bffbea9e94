"""The two "Done when" walkthroughs, automated against `loyalbot demo` (run_demo) on both runtimes.

* Scheduler: while the demo runs, an operator in another process (`python -m loyalbot.bot.cli schedule ...`
  on the demo's SQLite file) adds a birthday message and a points-expiry reminder, previews them and
  runs them now. The operator's process only plans (outbox rows); the demo's own dispatcher, polling
  the outbox, delivers them to the chat of a member who joined in Chinese, in Chinese.
* Support: a member asks for a person, staff take the conversation in the staff group's topic, reply
  and close it; the member sees the reply, gets the CSAT survey and answers it, and the answer is
  stored with the staff member's id.

The demo keeps the real clock, so nothing here moves time: the data is arranged to be due now.
"""

from __future__ import annotations

import asyncio
import os
import re
import sys
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from babel.dates import format_date

from loyalbot.bot.app import App
from loyalbot.bot.commands import DEMO_IDENTITIES, DEMO_WELCOME_BONUS, run_demo
from loyalbot.bot.local_api import LocalApiControl
from loyalbot.bot.seed import DEMO_EXPIRING_DAYS, DEMO_EXPIRING_POINTS
from loyalbot.chat.i18n import Translator
from loyalbot.scheduler.service import SchedulerService
from loyalbot.scheduler.templates import BABEL_LOCALES
from loyalbot.storage import utcnow
from loyalbot.storage.models import Outbox, Schedule, Survey, SurveyAnswer
from tests.scenario.driver import Chat, Person, eventually

pytestmark = pytest.mark.asyncio(loop_scope="module")

REPO = Path(__file__).resolve().parents[2]
EN = Translator("en")
CLI_SECONDS = 60.0


def identity(role: str, language_code: str) -> dict[str, Any]:
    return next(i for i in DEMO_IDENTITIES if i["role"] == role and i["language_code"] == language_code)



async def operator_cli(folder: Path, database: Path, *args: str) -> str:
    """`python -m loyalbot.bot.cli ...` in its own process, in the demo's folder, on the demo's store; returns its output."""
    env = {**os.environ, "LOYALBOT_DATABASE_URL": f"sqlite+aiosqlite:///{database}",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
           "COLUMNS": "200", "NO_COLOR": "1"}
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "loyalbot.bot.cli", *args, cwd=folder, env=env,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(), CLI_SECONDS)
    text = out.decode()
    assert proc.returncode == 0, f"`loyalbot {' '.join(args)}` failed ({proc.returncode}):\n{text}"
    return text


async def demo(tmp_path: Path, framework: str, monkeypatch: pytest.MonkeyPatch,
               walkthrough: Callable[[App, LocalApiControl, Chat], Awaitable[None]]) -> Path:
    """Run the demo on `framework` with a store in tmp_path; `walkthrough` runs once it is up, then it stops."""
    monkeypatch.setenv("LOYALBOT_FRAMEWORK", framework)  # as a newcomer would choose it
    monkeypatch.chdir(tmp_path)
    database = tmp_path / "loyalbot-demo.db"
    ran: list[str] = []

    async def ready(app: App, url: str) -> None:
        try:
            assert app.framework == framework
            async with LocalApiControl(url) as tg:
                assert app.settings.staff_group_id is not None
                await walkthrough(app, tg, Chat(tg, app, app.settings.staff_group_id))
            ran.append(framework)
        finally:
            app.request_stop()

    await run_demo(str(database), None, 0, ready=ready)
    assert ran == [framework], "the walkthrough ran to its end"
    return database


def counts(output: str) -> dict[str, tuple[int, int]]:
    """The per-language table the CLI prints: language -> (would get it / planned, skipped)."""
    found = {}
    for match in re.finditer(r"^[│|]\s*(\w+)\s*[│|]\s*(\d+)\s*[│|]\s*(\d+)\s*[│|]\s*$", output, re.MULTILINE):
        found[match.group(1)] = (int(match.group(2)), int(match.group(3)))
    return found


def scheduler_of(app: App) -> SchedulerService:
    assert app.context is not None
    service = app.context.services.scheduler
    assert isinstance(service, SchedulerService) and service.dispatcher is not None
    return service


def year_earlier(moment: datetime) -> datetime:
    try:
        return moment.replace(year=moment.year - 1)
    except ValueError:  # 29 February
        return moment.replace(year=moment.year - 1, day=28)


@pytest.mark.parametrize("framework", ["aiogram", "ptb"])
async def test_operator_schedules_from_another_process_reach_a_chinese_member_through_the_demo(
        tmp_path: Path, framework: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The README's operator walk, command for command, on the demo's own data (nothing arranged here)."""
    seen: dict[str, Any] = {}
    xm = identity("member", "zh-hans")

    async def walkthrough(app: App, tg: LocalApiControl, chat: Chat) -> None:
        loyalty = app.loyalty
        assert loyalty is not None
        mei = Person(chat, xm["id"], xm["first_name"], xm["language_code"])
        await mei.join()  # skips the birthday question, as most people in a demo do
        member = await mei.record()
        assert member.language == "zh_Hans"
        # The welcome says the welcome bonus is on the card (texts arrive as plain text plus entities).
        bonus = re.sub(r"<[^>]+>", "", mei.t("start.welcome_bonus", points=str(DEMO_WELCOME_BONUS)))
        assert any(bonus in str(m.get("text") or "") for m in await mei.transcript())
        before = max((m["message_id"] for m in await mei.transcript()), default=0)

        folder, database = Path.cwd(), Path(app.settings.database_url.split("///", 1)[1])
        seen["added"] = [
            await operator_cli(folder, database, "schedule", "add", "birthdays", "--kind", "birthday",
                               "--daily-time", "10:00", "--member-local-time"),
            await operator_cli(folder, database, "schedule", "add", "expiring", "--kind", "points_expiry",
                               "--offset-days", "30", "--daily-time", "09:00"),
        ]
        seen["preview"] = await operator_cli(folder, database, "schedule", "preview", "birthdays")
        seen["outbox_after_preview"] = [r for r in await outbox(app) if r.kind == "birthday"]
        seen["run"] = await operator_cli(folder, database, "schedule", "run-now", "expiring")

        async def reminder_sent() -> list[Outbox] | None:
            rows = [r for r in await outbox(app) if r.kind == "points_expiry"]
            return rows if rows and all(r.status == "sent" for r in rows) else None

        seen["rows"] = await eventually(reminder_sent)
        seen["status"] = await operator_cli(folder, database, "outbox", "status")
        seen["list"] = await operator_cli(folder, database, "schedule", "list")
        seen["worker"] = scheduler_of(app).dispatcher.worker_id  # type: ignore[union-attr]
        seen["messages"] = [m for m in await mei.transcript() if m["direction"] == "bot" and m["message_id"] > before]
        seen.update(member=await mei.record(), zone=loyalty.programme.zone, now=utcnow())

    await demo(tmp_path, framework, monkeypatch, walkthrough)

    member = seen["member"]
    assert all("picks it up" in out for out in seen["added"])
    # The demo gave the member (who skipped the question) today's birthday: the preview finds them.
    preview = seen["preview"]
    assert "preview of" in preview and "sample (zh_Hans)" in preview
    assert counts(preview) == {"zh_Hans": (1, 0), "all": (1, 0)}, preview
    assert f"{member.first_name}，生日快乐" in preview and "<b>" not in preview
    assert seen["outbox_after_preview"] == [], "a preview plans nothing"
    assert counts(seen["run"]) == {"zh_Hans": (1, 0), "all": (1, 0)}, seen["run"]

    # Planned by the operator's process, delivered by the demo's dispatcher, once, in Chinese.
    (row,) = seen["rows"]
    assert row.claimed_by == seen["worker"] and row.telegram_message_id
    assert str(os.getpid()) in seen["worker"], "the dispatcher is the demo process's own"
    reminders = [m for m in seen["messages"] if m["message_id"] == row.telegram_message_id]
    assert len(reminders) == 1, seen["messages"]
    text = reminders[0]["text"]
    expiry = (seen["now"] + timedelta(days=DEMO_EXPIRING_DAYS)).astimezone(seen["zone"]).date()
    zh_date = format_date(expiry, "long", locale=BABEL_LOCALES["zh_Hans"])
    assert text.startswith(f"{member.first_name}，") and zh_date in text
    assert f" {DEMO_EXPIRING_POINTS} " in text, "the points about to expire, not the whole balance"
    assert "您" in text and "你" not in text
    assert "sent" in seen["status"]
    assert "never" not in next(line for line in seen["list"].splitlines() if " expiring " in line)


async def outbox(app: App) -> list[Outbox]:
    assert app.loyalty is not None
    async with app.loyalty.db.read() as s:
        return list((await s.execute(sa.select(Outbox).order_by(Outbox.id))).scalars())


@pytest.mark.parametrize("framework", ["aiogram", "ptb"])
async def test_member_asks_for_help_staff_take_reply_close_and_the_csat_names_them(
        tmp_path: Path, framework: str, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}
    ann_id, sam_id = identity("member", "en"), next(i for i in DEMO_IDENTITIES if i["id"] == 2001)

    async def walkthrough(app: App, tg: LocalApiControl, chat: Chat) -> None:
        assert app.loyalty is not None and app.context is not None
        # The demo asks for the CSAT right after a support conversation closes (a shop would wait ~30 minutes).
        group = chat.staff_group
        ann = Person(chat, ann_id["id"], ann_id["first_name"], ann_id["language_code"])
        sam = Person(chat, sam_id["id"], sam_id["first_name"], sam_id["language_code"])
        await ann.join()
        member = await ann.record()
        support = app.context.services.handoff

        await ann.send("/support")
        seen["asked"] = ann.last_text

        async def card_posted() -> Any:
            conv = await support.store.latest_of(member.id)
            if conv is None or conv.topic_id is None:
                return None
            msgs = await tg.transcript(group, conv.topic_id)
            return conv if any(EN.t("support.button.take") in str(m.get("reply_markup")) for m in msgs) else None

        conv = await eventually(card_posted)
        await sam.press(EN.t("support.button.take"), chat_id=group)
        seen["state_after_take"] = (await support.store.get(conv.id)).state
        await sam.send("Hi Ann, I have added the missing stamp for you.", chat_id=group, thread_id=conv.topic_id)
        await sam.send("/close", chat_id=group, thread_id=conv.topic_id)
        seen["closed"] = await support.store.get(conv.id)

        async def csat_arrived() -> dict[str, Any] | None:
            for message in reversed(await ann.transcript()):
                keyboard = (message.get("reply_markup") or {}).get("inline_keyboard") or []
                if message["direction"] == "bot" and [b["text"] for row in keyboard for b in row] == list("12345"):
                    return message
            return None

        question = await eventually(csat_arrived)
        seen["member_saw"] = [m.get("text") for m in await ann.transcript() if m["direction"] == "bot"]
        five = next(b["callback_data"] for row in question["reply_markup"]["inline_keyboard"] for b in row
                    if b["text"] == "5")
        await ann.press_data(question["message_id"], five)
        seen["thanks"] = ann.saw(EN.t("survey.thanks"))
        async with app.loyalty.db.read() as s:
            seen["answers"] = (await s.execute(
                sa.select(SurveyAnswer, Survey).join(Survey, Survey.id == SurveyAnswer.survey_id)
                .where(SurveyAnswer.member_id == member.id))).all()
            seen["schedule"] = (await s.execute(sa.select(Schedule.name).join(Survey, Survey.schedule_id == Schedule.id)
                                                .where(Survey.member_id == member.id))).scalars().all()
        seen.update(conv=conv, member=member)

    await demo(tmp_path, framework, monkeypatch, walkthrough)

    conv = seen["conv"]
    assert seen["asked"], "the member is told their request is with the team"
    assert seen["state_after_take"] == "human"
    assert seen["closed"].state == "closed" and seen["closed"].staff_id == sam_id["id"]
    assert "Hi Ann, I have added the missing stamp for you." in seen["member_saw"]
    assert seen["thanks"]
    (answer, survey), = seen["answers"]
    assert (answer.score, answer.kind, answer.staff_id) == (5, "csat", sam_id["id"])
    assert (survey.trigger, survey.conversation_id) == ("handoff", conv.id)
    assert seen["schedule"] == ["csat-after-support"], "the demo's ask-at-once CSAT schedule was the one used"


@pytest.mark.parametrize("framework", ["aiogram", "ptb"])
async def test_a_newcomer_to_the_demo_finds_pending_points_a_stamp_card_and_their_referral_link(
        tmp_path: Path, framework: str, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}
    ann_id = identity("member", "en")

    async def walkthrough(app: App, tg: LocalApiControl, chat: Chat) -> None:
        ann = Person(chat, ann_id["id"], ann_id["first_name"], ann_id["language_code"])
        await ann.join()
        for command in ("/points", "/stamps", "/invite"):
            await ann.send(command)
            seen[command] = ann.last_text
            seen[command + " buttons"] = str(ann.last_message.get("reply_markup"))
        seen["bot"] = app.runtime.username

    await demo(tmp_path, framework, monkeypatch, walkthrough)
    assert "pending" in seen["/points"].lower() and re.search(r"\d", seen["/points"])  # with the day they clear
    assert "●" in seen["/stamps"] and "/10" in seen["/stamps"]  # a card under way
    link = re.search(r"https://t\.me/(\w+)\?start=([A-Za-z0-9_-]{1,64})", seen["/invite"] + seen["/invite buttons"])
    assert link is not None and link.group(1) == seen["bot"]
    assert "t.me/share/url" in seen["/invite buttons"]  # the share button
