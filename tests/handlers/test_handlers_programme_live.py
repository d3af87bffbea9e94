"""A reward an operator adds in the console is what members then see in the chat, each in their language,
without a restart; a tier's new benefits and earning rate reach the bot's own programme within its check."""

from __future__ import annotations

import asyncio
import re

import httpx

from loyalbot.console.accounts import add_operator
from loyalbot.console.api import create_app
from loyalbot.loyalty import Loyalty, load_programme
from loyalbot.storage.throttle import SqlThrottle
from tests.console.test_signin import PASSWORD, csrf_of, sign_in


async def catalogue(member) -> list[str]:
    """Every reward button of /rewards, page after page."""
    await member.send("/rewards")
    labels = []
    for _ in range(5):
        labels += [b for b in member.buttons() if "»" not in b and "«" not in b]
        if not any("»" in b for b in member.buttons()):
            break
        await member.press(next(b for b in member.buttons() if "»" in b))
    return labels


CAKE = {"en": "Cheesecake slice", "zh_Hans": "芝士蛋糕一块", "zh_Hant": "起司蛋糕一塊"}


async def console_adds_cake(chat) -> None:
    """The console runs in its own process: its own Loyalty on the bot's store."""
    console_side = Loyalty(chat.db, load_programme())
    await console_side.sync_programme()
    await add_operator(chat.db, "mia", PASSWORD)
    app = create_app(chat.db, console_side, throttle=SqlThrottle(chat.db))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://console") as web:
        await sign_in(web)
        token = csrf_of(await web.get("/console/programme/rewards/new"))
        saved = await web.post("/console/programme/rewards/new", data={
            "csrf": token, "based_on": "1", "code": "cake", "cost": "120", "validity_days": "7", "active": "on",
            **{f"title_{lang}": title for lang, title in CAKE.items()}, "description_en": "Baked this morning.",
            "description_zh_Hans": "今早烘焙。", "description_zh_Hant": "今早烘焙。"})
        assert saved.status_code == 303, saved.text


async def test_a_reward_added_in_the_console_is_in_the_chat_in_each_language(chat):
    members = {lang: await chat.registered(10 + i, lang=lang, points=500) for i, lang in enumerate(CAKE)}
    for member in members.values():
        before = await catalogue(member)
        assert not any(title in label for title in CAKE.values() for label in before)
    await console_adds_cake(chat)
    for lang, member in members.items():
        labels = await catalogue(member)
        assert any(label.startswith(f"{CAKE[lang]} · 120") for label in labels), (lang, labels)
    ann = members["en"]
    await ann.press(CAKE["en"])
    assert ann.sees("for 120 points")
    await ann.press("✅ Confirm")
    coupon, = await chat.coupons(ann)
    assert (await chat.reward("cake")).id == coupon.reward_id


async def test_the_bots_programme_follows_a_console_edit_without_a_restart(chat):
    chat.loyalty.programmes.check_every = 0.05  # the bot's process looks at the newest version every 50 ms
    console_side = Loyalty(chat.db, load_programme())
    await console_side.sync_programme()
    richer = console_side.programme.model_copy(update={"earning": console_side.programme.earning.model_copy(
        update={"points_per_unit": 3})})
    await console_side.save_programme(richer, author="console:mia", based_on=1)
    ann = await chat.registered(30, points=0)
    for _ in range(200):  # poll: each turn lets the bot look again once its interval has passed
        await ann.send("/points")
        if chat.loyalty.in_force.version == 2:
            break
        await asyncio.sleep(0.01)
    assert chat.loyalty.in_force.version == 2
    assert chat.loyalty.programme.earning.points_per_unit == 3
    assert re.search(r"\d", ann.texts())
