"""The webhook endpoint accepts only Telegram's secret; both runtimes receive updates through it."""

from __future__ import annotations

import asyncio
import logging

import httpx
import pytest
from aiohttp import web

from loyalbot.bot.aiogram_runtime import AiogramRuntime
from loyalbot.bot.local_api import LocalApiControl, LocalBotApi
from loyalbot.bot.ptb_runtime import PtbRuntime
from loyalbot.bot.runtime import Connection
from loyalbot.bot.webhook import SECRET_HEADER, WebhookConfigError, check_webhook_settings, webhook_app
from loyalbot.chat.port import Incoming, Reply
from tests.bot.conftest import TOKEN, free_port

pytestmark = pytest.mark.asyncio(loop_scope="module")

SECRET = "s3cret-Token_1"
UPDATE = {"update_id": 5, "message": {"message_id": 1, "date": 0, "chat": {"id": 1, "type": "private"},
                                       "from": {"id": 1, "is_bot": False, "first_name": "A"}, "text": "hi"}}


class Echo:
    """A stand-in router: answers every text with itself."""

    async def handle(self, incoming: Incoming) -> list[Reply]:
        return [Reply(text=f"echo: {incoming.text or incoming.command}")]


async def _serve(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, f"http://127.0.0.1:{port}/hook"


async def test_secret_is_checked_before_anything_is_handed_over(caplog: pytest.LogCaptureFixture) -> None:
    fed: list[dict] = []

    async def feed(update: dict) -> None:
        fed.append(update)

    runner, url = await _serve(webhook_app("/hook", SECRET, feed))
    try:
        async with httpx.AsyncClient() as client:
            with caplog.at_level(logging.WARNING, logger="loyalbot.webhook"):
                missing = await client.post(url, json=UPDATE)
                wrong = await client.post(url, json=UPDATE, headers={SECRET_HEADER: "guess"})
            not_json = await client.post(url, content=b"{nope", headers={SECRET_HEADER: SECRET})
            not_update = await client.post(url, json=[1, 2], headers={SECRET_HEADER: SECRET})
            assert fed == []
            good = await client.post(url, json=UPDATE, headers={SECRET_HEADER: SECRET})
    finally:
        await runner.cleanup()
    assert (missing.status_code, wrong.status_code) == (401, 403)
    assert (not_json.status_code, not_update.status_code) == (400, 400)
    assert good.status_code == 200
    assert fed == [UPDATE]
    refusals = [r.getMessage() for r in caplog.records if "secret" in r.getMessage()]
    assert len(refusals) == 2
    assert all(SECRET not in line and "guess" not in line for line in refusals)


async def test_a_webhook_needs_a_usable_secret() -> None:
    with pytest.raises(WebhookConfigError, match="LOYALBOT_WEBHOOK_SECRET"):
        check_webhook_settings("https://bot.example.org/tg", None)
    with pytest.raises(WebhookConfigError, match="LOYALBOT_WEBHOOK_SECRET"):
        check_webhook_settings("https://bot.example.org/tg", "has spaces")
    with pytest.raises(WebhookConfigError, match="https"):
        check_webhook_settings("http://bot.example.org/tg", SECRET)
    assert check_webhook_settings("https://bot.example.org/tg", SECRET) == "/tg"


@pytest.mark.parametrize("runtime_class", [AiogramRuntime, PtbRuntime], ids=["aiogram", "ptb"])
async def test_runtime_receives_by_webhook_and_refuses_forged_posts(server: LocalBotApi, tg: LocalApiControl,
                                                                     runtime_class: type) -> None:
    port = free_port()
    hook = f"http://127.0.0.1:{port}/telegram"
    runtime = runtime_class(Connection(token=TOKEN, api_url=server.url, webhook_url=hook, webhook_secret=SECRET,
                                       webhook_listen=f"127.0.0.1:{port}"), Echo())
    await tg.create_user(1001, "Ann")
    await runtime.open()
    await runtime.start()
    try:
        sent = await tg.send_text(1001, "hello")
        reply = await tg.wait_for_bot_message(1001, after_id=sent["message_id"])
        assert reply["text"] == "echo: hello"
        forged = {**UPDATE, "update_id": 999, "message": {**UPDATE["message"], "chat": {"id": 1001, "type": "private"},
                                                             "from": {"id": 1001, "is_bot": False, "first_name": "A"},
                                                             "text": "forged"}}
        async with httpx.AsyncClient() as client:
            no_secret = await client.post(hook, json=forged)
            bad_secret = await client.post(hook, json=forged, headers={SECRET_HEADER: "x" + SECRET})
        assert (no_secret.status_code, bad_secret.status_code) == (401, 403)
        # Let anything that slipped through reach the chat before looking.
        await runtime.pipeline.drain()
        await asyncio.sleep(0)
        texts = [m["text"] for m in await tg.bot_messages(1001)]
        assert texts == ["echo: hello"]
        # What /metrics tells of it: one update handled, two calls refused.
        registry = runtime.pipeline.metrics.registry
        assert registry.get_sample_value("loyalbot_updates_total", {"outcome": "handled"}) == 1
        assert registry.get_sample_value("loyalbot_updates_total", {"outcome": "refused"}) == 2
    finally:
        await runtime.stop()
