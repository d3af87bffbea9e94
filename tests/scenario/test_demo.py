"""`loyalbot demo` on either runtime: the same members, staff and staff group, and the bot answers."""

from __future__ import annotations

from pathlib import Path

import pytest

from loyalbot.bot.app import App
from loyalbot.bot.commands import DEMO_IDENTITIES, run_demo
from loyalbot.bot.local_api import LocalApiControl

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest.mark.parametrize("framework", ["aiogram", "ptb"])
async def test_demo_comes_up_ready_to_chat(tmp_path: Path, framework: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOYALBOT_FRAMEWORK", framework)  # as a newcomer would choose it
    seen: dict = {}

    async def try_it(app: App, url: str) -> None:
        async with LocalApiControl(url) as tg:
            config = await tg.demo_config()
            sent = await tg.send_text(1001, "/start")
            reply = await tg.wait_for_bot_message(1001, after_id=sent["message_id"])
            seen.update(framework=app.framework, reply=reply, config=config,
                        staff=[s.telegram_id for s in await app.loyalty.list_staff()],
                        group=app.settings.staff_group_id)
        app.request_stop()

    await run_demo(str(tmp_path / "demo.db"), None, 0, ready=try_it)
    assert seen["framework"] == framework
    assert seen["reply"]["reply_markup"]["inline_keyboard"], "the language choice is offered"
    staff_ids = sorted(i["id"] for i in DEMO_IDENTITIES if i["role"] == "staff")
    assert seen["staff"] == staff_ids
    assert seen["config"]["staff_group"]["id"] == seen["group"]
    assert seen["config"]["staff_group"]["is_forum"]
    assert (tmp_path / "demo.db").exists()
