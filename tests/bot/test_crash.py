"""The bot process killed with SIGKILL in the middle of a burst, then restarted: every update is answered,
no effect lands twice, and only updates that were in hand at the kill may have their reply repeated.

200 members each send four updates (/points, /feedback, their feedback text, the rating "4") through
the local Bot API server, which plays Telegram for a `loyalbot run` subprocess, by long polling and
by webhook, on aiogram and on python-telegram-bot, on SQLite and PostgreSQL. The feedback flow moves
the conversation state twice and writes one feedback row, so a lost, reordered or repeated update
shows as a member without their reference number, a stray answer, or two feedback rows.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from loyalbot.bot.local_api import LocalApiControl, LocalBotApi
from loyalbot.storage.models import Feedback, InboxUpdate, Member
from tests.bot.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "626262:crash-inbox-token"
SECRET = "crash-Secret_1"
MEMBERS = 200
FIRST_ID = 300_000
SCRIPT = ("/points", "/feedback", "Lovely pastries from member {n}", "4")


def _env(store_url: str, api_url: str, framework: str, hook_port: int | None) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "LOYALBOT_DATABASE_URL": store_url, "LOYALBOT_BOT_TOKEN": TOKEN,
           "LOYALBOT_TELEGRAM_API_URL": api_url, "LOYALBOT_FRAMEWORK": framework, "LOYALBOT_CONSOLE_PORT": "-1",
           "LOYALBOT_LOG_LEVEL": "WARNING", "LOYALBOT_INSTANCE": "crash-test"}
    for name in ("LOYALBOT_WEBHOOK_URL", "LOYALBOT_WEBHOOK_SECRET", "LOYALBOT_WEBHOOK_LISTEN", "LOYALBOT_REDIS_URL"):
        env.pop(name, None)
    if hook_port is not None:
        env.update(LOYALBOT_WEBHOOK_URL=f"http://127.0.0.1:{hook_port}/hook", LOYALBOT_WEBHOOK_SECRET=SECRET,
                   LOYALBOT_WEBHOOK_LISTEN=f"127.0.0.1:{hook_port}")
    return env


async def _start_bot(env: dict[str, str], tg: LocalApiControl, log: Path, webhook: bool
                     ) -> asyncio.subprocess.Process:
    ready_call = "setWebhook" if webhook else "getUpdates"
    before = len(await tg.calls(method=ready_call))
    with log.open("ab") as out:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "loyalbot.bot.cli", "run", cwd=ROOT, env=env, stdout=out, stderr=out)
    await _until(lambda: _count_calls(tg, ready_call, before), what=f"the bot's first {ready_call}",
                 process=process, log=log)
    return process


async def _count_calls(tg: LocalApiControl, method: str, before: int) -> bool:
    return len(await tg.calls(method=method)) > before


async def _until(check: Any, *, what: str, limit: float = 90.0, process: Any = None, log: Path | None = None
                 ) -> None:
    """Poll real I/O (the server, the store) until `check()` holds; fail with the bot's log otherwise."""
    deadline = time.monotonic() + limit
    while not await check():
        if process is not None and process.returncode is not None:
            raise AssertionError(f"the bot exited ({process.returncode}) before {what}:\n"
                                 f"{_tail(log)}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}:\n{_tail(log)}")
        await asyncio.sleep(0.05)


def _tail(log: Path | None) -> str:
    return log.read_text(errors="replace")[-3000:] if log is not None and log.exists() else ""


async def _replies_sent(tg: LocalApiControl) -> int:
    return sum(1 for call in await tg.calls(method="sendMessage") if call["ok"])


def _kind(message: dict[str, Any]) -> str:
    text = str(message.get("text") or "")
    buttons = [b.get("callback_data", "") for row in (message.get("reply_markup") or {}).get("inline_keyboard", [])
               for b in row]
    if "FB-" in text:
        return "thanks"
    if buttons:  # only the rating question carries inline buttons (the stars)
        return "rate"
    if "/cancel" in text:
        return "ask"
    return "points"


@pytest.mark.parametrize("mode", ["polling", "webhook"])
@pytest.mark.parametrize("framework", ["aiogram", "ptb"])
async def test_sigkill_mid_burst_then_restart_answers_every_update_with_each_effect_once(
        store_url: str, db, loyalty, framework: str, mode: str, tmp_path: Path) -> None:
    api = LocalBotApi(serve_page=False, call_log_size=50_000, webhook_retry_delay=0.05, webhook_retry_max=0.5)
    await api.start()
    tg = LocalApiControl(api.url)
    log = tmp_path / "bot.log"
    webhook = mode == "webhook"
    hook_port = free_port() if webhook else None
    env = _env(store_url, api.url, framework, hook_port)
    process = None
    try:
        await tg.create_bot(TOKEN, first_name="Crash Bot", username="crash_bot")
        for i in range(MEMBERS):
            await loyalty.register_member(telegram_id=FIRST_ID + i, first_name=f"M{i}", terms_accepted=True)
            await tg.create_user(FIRST_ID + i, f"M{i}", language_code="en")

        process = await _start_bot(env, tg, log, webhook)
        gate = asyncio.Semaphore(16)

        async def member_writes(i: int) -> None:
            for line in SCRIPT:
                async with gate:
                    await tg.send_text(FIRST_ID + i, line.format(n=i))

        burst = asyncio.gather(*(member_writes(i) for i in range(MEMBERS)))
        total = MEMBERS * len(SCRIPT)
        # Kill once about a quarter of the replies are out, while the rest is received or in hand.
        await _until(lambda: _at_least(tg, total // 4), what="a quarter of the replies", process=process, log=log)
        process.send_signal(signal.SIGKILL)
        await process.wait()
        async with db.read() as s:
            in_hand = (await s.execute(sa.select(sa.func.count()).select_from(InboxUpdate).where(
                InboxUpdate.status == "pending", InboxUpdate.claimed_by.is_not(None)))).scalar_one()
        answered_at_kill = await _replies_sent(tg)
        await burst  # the rest of the burst reaches the server while no bot runs

        process = await _start_bot(env, tg, log, webhook)
        await _until(lambda: _at_least(tg, total), what="every update answered", process=process, log=log)

        async def inbox_empty() -> bool:
            async with db.read() as s:
                return (await s.execute(sa.select(sa.func.count()).select_from(InboxUpdate).where(
                    InboxUpdate.status == "pending"))).scalar_one() == 0

        async def nothing_left() -> bool:
            pending = await tg.pending_updates()
            return all(not updates for updates in pending["bots"].values()) and await inbox_empty()

        await _until(nothing_left, what="the server and the inbox to empty", process=process, log=log)
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 60) == 0, _tail(log)
        process = None

        unanswered, duplicates = [], 0
        for i in range(MEMBERS):
            messages = await tg.bot_messages(FIRST_ID + i)
            kinds = [_kind(m) for m in messages]
            in_order = [k for n, k in enumerate(kinds) if n == 0 or kinds[n - 1] != k]
            if in_order != ["points", "ask", "rate", "thanks"]:
                unanswered.append((i, [str(m.get("text"))[:60] for m in messages]))
            duplicates += len(kinds) - len(SCRIPT)
        async with db.read() as s:
            rows = (await s.execute(sa.select(Member.telegram_id, Feedback.text, Feedback.rating).join(
                Feedback, Feedback.member_id == Member.id))).all()
        per_member: dict[int, list[tuple[str, int | None]]] = {}
        for telegram_id, text, rating in rows:
            per_member.setdefault(telegram_id, []).append((text, rating))
        doubled = {tid: got for tid, got in per_member.items() if len(got) != 1}
        print(json.dumps({"crash": framework, "mode": mode, "store": store_url.split(":", 1)[0],
                          "updates": total, "answered_before_kill": answered_at_kill, "in_hand_at_kill": in_hand,
                          "unanswered": len(unanswered), "double_effects": len(doubled),
                          "duplicate_replies": duplicates}))
        assert unanswered == [], f"{len(unanswered)} members not answered in order, e.g. {unanswered[:3]}"
        assert doubled == {} and len(per_member) == MEMBERS
        assert all(got == [(f"Lovely pastries from member {tid - FIRST_ID}", 4)] for tid, got in per_member.items())
        assert 0 <= duplicates <= in_hand, (duplicates, in_hand)
        pending = await tg.pending_updates()
        assert all(not updates for updates in pending["bots"].values()), "every update confirmed on stop"
    finally:
        if process is not None and process.returncode is None:
            process.kill()
            await process.wait()
        await tg.aclose()
        await api.stop()


async def _at_least(tg: LocalApiControl, count: int) -> bool:
    return await _replies_sent(tg) >= count
