"""The two "Done when" walkthroughs, automated against `loyalbot demo` (run_demo) on both runtimes.

* Scheduler: while the demo runs, an operator in another process (`python -m bot.cli schedule ...`
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
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from babel.dates import format_date

from bot.app import App
from bot.commands import DEMO_IDENTITIES, run_demo
from bot.local_api import LocalApiControl
from handlers.i18n import Translator
from scheduler.service import SchedulerService
from scheduler.templates import BABEL_LOCALES
from storage import utcnow
from storage.models import Outbox, Schedule, Survey, SurveyAnswer
from tests.scenario.driver import Chat, Person, eventually

pytestmark = pytest.mark.asyncio(loop_scope="module")

REPO = Path(__file__).resolve().parents[2]
EN = Translator("en")
CLI_SECONDS = 60.0


def identity(role: str, language_code: str) -> dict[str, Any]:
    return next(i for i in DEMO_IDENTITIES if i["role"] == role and i["language_code"] == language_code)



async def operator_cli(folder: Path, database: Path, *args: str) -> str:
    """`python -m bot.cli ...` in its own process, in the demo's folder, on the demo's store; returns its output."""
    env = {**os.environ, "LOYALBOT_DATABASE_URL": f"sqlite+aiosqlite:///{database}",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
           "COLUMNS": "200", "NO_COLOR": "1"}
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "bot.cli", *args, cwd=folder, env=env,
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
    service = app.context.services["scheduler"]
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
    seen: dict[str, Any] = {}
    xm = identity("member", "zh-hans")

    async def walkthrough(app: App, tg: LocalApiControl, chat: Chat) -> None:
        loyalty = app.loyalty
        assert loyalty is not None
        mei = Person(chat, xm["id"], xm["first_name"], xm["language_code"])
        await mei.join()
        member = await mei.record()
        assert member.language == "zh_Hans"
        # Born on this day; 75 points earned a year ago, which expire at the end of this month.
        now = utcnow()
        today = now.astimezone(ZoneInfo(member.timezone)).date()
        born = today.replace(year=1992) if (today.month, today.day) == (2, 29) else today.replace(year=1990)
        await loyalty.update_member(member.id, birthday=born)
        lot = await loyalty.grant_bonus(member.id, 75, reference="test-last-year", note="test",
                                        now=year_earlier(now))
        assert lot is not None and lot.expires_at > now
        window = (lot.expires_at - now).days + 1  # the reminder's window reaches the expiry
        daily = (now + timedelta(hours=12)).strftime("%H:%M")  # no clock tick during the test
        before = max((m["message_id"] for m in await mei.transcript()), default=0)

        folder, database = Path.cwd(), Path(app.settings.database_url.split("///", 1)[1])
        seen["added"] = [
            await operator_cli(folder, database, "schedule", "add", "birthday-care", "--kind", "birthday",
                               "--daily-time", daily),
            await operator_cli(folder, database, "schedule", "add", "points-reminder", "--kind", "points_expiry",
                               "--daily-time", daily, "--offset-days", str(window)),
        ]
        seen["previews"] = [await operator_cli(folder, database, "schedule", "preview", name)
                            for name in ("birthday-care", "points-reminder")]
        seen["outbox_after_preview"] = await outbox(app)
        seen["runs"] = [await operator_cli(folder, database, "schedule", "run-now", name)
                        for name in ("birthday-care", "points-reminder")]

        async def both_sent() -> list[Outbox] | None:
            rows = await outbox(app)
            return rows if len(rows) == 2 and all(r.status == "sent" for r in rows) else None

        seen["rows"] = await eventually(both_sent)
        seen["worker"] = scheduler_of(app).dispatcher.worker_id  # type: ignore[union-attr]
        seen["messages"] = [m for m in await mei.transcript() if m["direction"] == "bot" and m["message_id"] > before]
        seen.update(member=member, lot=lot, zone=loyalty.programme.zone)

    await demo(tmp_path, framework, monkeypatch, walkthrough)

    member, lot = seen["member"], seen["lot"]
    assert all("picks it up" in out for out in seen["added"])
    birthday_preview, reminder_preview = seen["previews"]
    for preview in seen["previews"]:
        assert "preview of" in preview and "sample (zh_Hans)" in preview
        assert counts(preview) == {"zh_Hans": (1, 0), "all": (1, 0)}, preview
    assert f"{member.first_name}，生日快乐" in birthday_preview
    expiry = lot.expires_at.astimezone(seen["zone"]).date()
    zh_date = format_date(expiry, "long", locale=BABEL_LOCALES["zh_Hans"])
    # The expiring 75, not the 275 balance; printed as terminal text, not Telegram's HTML.
    assert zh_date in reminder_preview and " 75 " in reminder_preview and "<b>" not in reminder_preview
    assert seen["outbox_after_preview"] == [], "a preview plans nothing"
    assert all(counts(run) == {"zh_Hans": (1, 0), "all": (1, 0)} for run in seen["runs"]), seen["runs"]

    # Planned by the operator's process, delivered by the demo's dispatcher, once each.
    rows: list[Outbox] = seen["rows"]
    assert {r.kind for r in rows} == {"birthday", "points_expiry"}
    assert all(r.claimed_by == seen["worker"] and r.telegram_message_id for r in rows)
    assert str(os.getpid()) in seen["worker"], "the dispatcher is the demo process's own"
    texts = [m["text"] for m in seen["messages"]]
    assert len(texts) == 2, texts
    assert sorted(m["message_id"] for m in seen["messages"]) == sorted(r.telegram_message_id for r in rows)
    greeting = next(t for t in texts if "生日快乐" in t)
    reminder = next(t for t in texts if zh_date in t)
    assert greeting.startswith(f"{member.first_name}，") and reminder.startswith(f"{member.first_name}，")
    assert " 75 " in reminder and "275" not in reminder
    assert not any(word in " ".join(texts) for word in ("Happy birthday", "reminder", "points"))


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
        support = app.context.services["handoff"]

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
