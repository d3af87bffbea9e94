"""Polling is one consumer per bot: a second `loyalbot run` that polls, or one started while a webhook is set,
stops with a message naming the cause and what to do (exit code 1), and the first keeps answering.

Real processes against the local Bot API server, which answers getUpdates with 409 Conflict as Telegram
does (a newer getUpdates ends the older one; a set webhook refuses it), on aiogram and python-telegram-bot.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from loyalbot.bot.local_api import LocalApiControl, LocalBotApi
from tests.replicas.conftest import tail, until

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "838383:polling-conflict-token"
ANN = 5_551_001


def start(tmp_path: Path, api_url: str, framework: str, name: str, *args: str) -> tuple[subprocess.Popen[bytes], Path]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOYALBOT_")} | {
        "PYTHONPATH": str(ROOT), "LOYALBOT_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}",
        "LOYALBOT_BOT_TOKEN": TOKEN, "LOYALBOT_TELEGRAM_API_URL": api_url, "LOYALBOT_FRAMEWORK": framework,
        "LOYALBOT_CONSOLE_PORT": "-1", "LOYALBOT_INSTANCE": name, "LOYALBOT_LOG_LEVEL": "WARNING"}
    log = tmp_path / f"{name}.log"
    with log.open("ab") as out:
        process = subprocess.Popen([sys.executable, "-m", "loyalbot.bot.cli", "run", *args], cwd=ROOT, env=env,
                                   stdout=out, stderr=subprocess.STDOUT)
    return process, log


async def exited(process: subprocess.Popen[bytes]) -> bool:
    return process.poll() is not None


def stop(process: subprocess.Popen[bytes]) -> int:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            return process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
    return process.wait()


@pytest.fixture
async def telegram():
    api = LocalBotApi(serve_page=False)
    await api.start()
    tg = LocalApiControl(api.url)
    await tg.create_bot(TOKEN, first_name="Conflict Bot", username="conflict_bot")
    await tg.create_user(ANN, "Ann", language_code="en")
    try:
        yield api, tg
    finally:
        await tg.aclose()
        await api.stop()


async def answered(tg: LocalApiControl, count: int) -> bool:
    return len(await tg.bot_messages(ANN)) >= count


@pytest.mark.parametrize("framework", ["aiogram", "ptb"])
async def test_a_second_polling_process_stops_with_a_clear_message_and_the_first_keeps_answering(
        telegram, tmp_path: Path, framework: str) -> None:
    api, tg = telegram
    first, first_log = start(tmp_path, api.url, framework, "first")
    second = None
    try:
        await tg.send_text(ANN, "/help")
        await until(lambda: answered(tg, 1), what="the first process's answer",
                    alive=lambda: f"first exited: {tail(first_log)}" if first.poll() is not None else None)
        second, second_log = start(tmp_path, api.url, framework, "second")
        await until(lambda: exited(second), what="the second process to stop")
        output = second_log.read_text(errors="replace")
        assert second.returncode == 1, output
        assert "409 Conflict" in output and "another process is already polling this bot" in output, output
        assert "webhook mode behind nginx" in output, "it says what to do instead"
        assert TOKEN not in output
        before = len(await tg.bot_messages(ANN))
        await tg.send_text(ANN, "/help")
        await until(lambda: answered(tg, before + 1), what="the first process to answer again",
                    alive=lambda: f"first exited: {tail(first_log)}" if first.poll() is not None else None)
        assert stop(first) == 0, tail(first_log)
    finally:
        stop(first)
        if second is not None:
            stop(second)


@pytest.mark.parametrize("framework", ["aiogram", "ptb"])
async def test_polling_while_a_webhook_is_set_stops_and_says_so_unless_told_to_delete_it(
        telegram, tmp_path: Path, framework: str) -> None:
    api, tg = telegram
    async with httpx.AsyncClient(base_url=f"{api.url}/bot{TOKEN}") as bot_api:
        assert (await bot_api.post("/setWebhook", data={"url": "https://replicas.example/telegram/webhook"})).json()["ok"]
        polling, log = start(tmp_path, api.url, framework, "poller")
        await until(lambda: exited(polling), what="the polling process to stop")
        output = log.read_text(errors="replace")
        assert polling.returncode == 1, output
        assert "409 Conflict" in output and "a webhook is set for this bot" in output, output
        assert "--delete-webhook" in output
        info = (await bot_api.get("/getWebhookInfo")).json()["result"]
        assert info["url"] == "https://replicas.example/telegram/webhook", "the other deployment's webhook stays"

        taking_over, log = start(tmp_path, api.url, framework, "taker", "--delete-webhook")
        try:
            await tg.send_text(ANN, "/help")
            await until(lambda: answered(tg, 1), what="an answer by polling after --delete-webhook",
                        alive=lambda: f"exited: {tail(log)}" if taking_over.poll() is not None else None)
            assert (await bot_api.get("/getWebhookInfo")).json()["result"]["url"] == ""
        finally:
            assert stop(taking_over) == 0, tail(log)
