"""Issue #11's "done when", automated against `loyalbot demo` (run_demo) on both runtimes, as the README's
"A win-back campaign, step by step" says it (its command-line path; tests/browser/test_console_winback.py
clicks through the console):

an operator installs the plays, gives the win-back play a control group and two variants (its offer, a coffee
coupon, is the play's own), runs it; the demo's lapsed regulars, in three languages, receive it in their chats
with a "Show my coupon" button; one of them buys at the counter (Sam: `/award MEMBERNO 12.50`); the results show
the conversion and the lift against the control group, with its interval.

The demo keeps the real clock: its lapsed regulars are arranged (bot/seed.py, DEMO_LAPSED) to be 90 days and more
without a purchase now.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from loyalbot.bot.app import App
from loyalbot.bot.commands import DEMO_IDENTITIES
from loyalbot.bot.local_api import LocalApiControl
from loyalbot.bot.seed import DEMO_LAPSED, DEMO_LAPSED_LANGUAGES
from loyalbot.storage.models import CampaignHoldout, Coupon, Outbox, Schedule
from tests.scenario.driver import Chat, Person, eventually
from tests.scenario.test_demo_walkthroughs import counts, demo, operator_cli

pytestmark = pytest.mark.asyncio(loop_scope="module")

HOLDOUT_PCT = 30  # the README's figure
# The README's variants, as the operator pastes them (a template per language, each with the member's name).
VARIANTS = [
    {"name": "A", "weight": 1, "templates": {
        "en": "We miss you, {{ name }}! A coffee on us is waiting in your coupons.",
        "zh_Hans": "{{ name }}，我们想您了！送您一杯咖啡，券已放进您的优惠券。",
        "zh_Hant": "{{ name }}，我們想您了！送您一杯咖啡，券已放進您的優惠券。"}},
    {"name": "B", "weight": 1, "templates": {
        "en": "{{ name }}, it has been a while: come by this week, the coffee is on us.",
        "zh_Hans": "{{ name }}，好久不见：本周来坐坐，咖啡我们请。",
        "zh_Hant": "{{ name }}，好久不見：本週來坐坐，咖啡我們請。"}},
]
OPENINGS = {"A": {"en": "We miss you, ", "zh_Hans": "，我们想您了", "zh_Hant": "，我們想您了"},
            "B": {"en": ", it has been a while", "zh_Hans": "，好久不见", "zh_Hant": "，好久不見"}}
COUPON_BUTTON = {"en": "Show my coupon", "zh_Hans": "查看我的优惠券", "zh_Hant": "查看我的優惠券"}


def variants_json() -> str:
    return json.dumps(VARIANTS, ensure_ascii=False)


def cells(output: str, arm: str) -> list[str]:
    """The cells of one row of `campaign results`' table (arm: A, B, treated, control)."""
    for line in output.splitlines():
        parts = [p.strip() for p in re.split(r"[│|]", line)]
        if len(parts) > 2 and parts[1] == arm:
            return parts[1:-1]
    raise AssertionError(f"no row {arm!r} in:\n{output}")


@pytest.mark.parametrize("framework", ["aiogram", "ptb"])
async def test_a_winback_campaign_with_a_coupon_a_control_group_and_two_variants_shows_its_lift(
        tmp_path: Path, framework: str, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}
    sam_id = next(i for i in DEMO_IDENTITIES if i["id"] == 2001)

    async def walkthrough(app: App, tg: LocalApiControl, chat: Chat) -> None:
        assert app.loyalty is not None
        folder, database = Path.cwd(), Path(app.settings.database_url.split("///", 1)[1])
        picker = {i["id"]: i["label"] for i in (await tg.demo_config())["identities"]}
        seen["picker"] = [picker.get(p["id"]) for p in DEMO_LAPSED]
        seen["installed"] = await operator_cli(folder, database, "campaign", "plays", "install")
        seen["edited"] = await operator_cli(folder, database, "schedule", "edit", "play-winback-90",
                                            "--param", f"holdout_pct={HOLDOUT_PCT}",
                                            "--param", f"variants={variants_json()}")
        seen["run"] = await operator_cli(folder, database, "schedule", "run-now", "play-winback-90")

        async def all_sent() -> list[Outbox] | None:
            async with app.loyalty.db.read() as s:  # type: ignore[union-attr]
                rows = list((await s.execute(sa.select(Outbox).join(Schedule, Schedule.id == Outbox.schedule_id)
                                             .where(Schedule.name == "play-winback-90")
                                             .order_by(Outbox.id))).scalars())
            return rows if rows and all(r.status == "sent" for r in rows) else None

        rows = await eventually(all_sent)
        async with app.loyalty.db.read() as s:
            held = list((await s.execute(sa.select(CampaignHoldout.member_id))).scalars())
        members = {m.id: m for m in [await app.loyalty.member(r.member_id) for r in rows]}
        by_telegram = {p["id"]: p for p in DEMO_LAPSED}
        seen["held"] = held
        seen["received"] = []
        for row in rows:
            member = members[row.member_id]
            person = by_telegram[member.telegram_id]
            tr = Person(chat, member.telegram_id, person["first_name"], person["language_code"])
            bot_said = [m for m in await tr.transcript() if m["direction"] == "bot"]
            seen["received"].append((member, row.variant, bot_said))
        # The first recipient opens the coupon from the message, then buys at the counter.
        buyer, _, _ = seen["received"][0]
        person = by_telegram[buyer.telegram_id]
        grace = Person(chat, buyer.telegram_id, person["first_name"], person["language_code"])
        await grace.press(COUPON_BUTTON[buyer.language])
        seen["coupon_shown"] = grace.last_text
        async with app.loyalty.db.read() as s:
            seen["coupon"] = (await s.execute(sa.select(Coupon).where(Coupon.id == rows[0].coupon_id))).scalar_one()
        sam = Person(chat, sam_id["id"], sam_id["first_name"], sam_id["language_code"])
        await sam.send(f"/member {buyer.first_name}")
        seen["looked_up"] = sam.last_text
        await sam.send(f"/award {buyer.member_no} 12.50")
        await sam.press("Confirm")
        seen["award"] = sam.last_text
        seen["results"] = await operator_cli(folder, database, "campaign", "results", "play-winback-90")

    await demo(tmp_path, framework, monkeypatch, walkthrough)

    # The demo's lapsed regulars are on the page's picker, three per language.
    assert all(seen["picker"]), seen["picker"]
    assert "play-winback-90" in seen["installed"] and "Changed 'play-winback-90'" in seen["edited"]
    held, received = seen["held"], seen["received"]
    # Every lapsed regular is in the audience: each one either got the message or is in the control group.
    assert len(held) + len(received) == len(DEMO_LAPSED)
    assert held and f"held out as the campaign's control group (sent nothing): {len(held)}" in seen["run"]
    assert counts(seen["run"])["all"] == (len(received), 0), seen["run"]
    assert {variant for _, variant, _ in received} == {"A", "B"}, "each variant reached someone"
    # What the README tells a newcomer to expect on a fresh demo: seven sent, two held out, Grace among the first.
    assert (len(received), len(held)) == (7, 2)
    assert received[0][0].first_name == "Grace" and received[0][0].member_no in seen["looked_up"]
    assert {m.language for m, _, _ in received} == set(DEMO_LAPSED_LANGUAGES.values()), "all three languages"
    for member, variant, said in received:
        (message,) = said  # the campaign is the first thing the demo ever sent them
        assert member.first_name in message["text"] and OPENINGS[variant][member.language] in message["text"]
        labels = [b["text"] for line in message["reply_markup"]["inline_keyboard"] for b in line]
        assert labels == [COUPON_BUTTON[member.language]], labels
    assert seen["coupon"].code in seen["coupon_shown"]
    assert "€12.50" in seen["award"] or "12.50" in seen["award"]

    results = seen["results"]
    treated, control = cells(results, "treated"), cells(results, "control")
    assert treated[1:3] == [str(len(received)), "1"], results  # sent, converted
    assert control[1:3] == [str(len(held)), "0"], results
    assert treated[3].startswith(f"{100 / len(received):.1f}%"), results
    lift = re.match(r"([+-]\d+\.\d) pt \(([+-]\d+\.\d)–([+-]\d+\.\d)\)", treated[7])
    assert lift, results
    assert float(lift.group(1)) == pytest.approx(100 / len(received), abs=0.06)
    assert float(lift.group(2)) < 0 < float(lift.group(3)), "so few members: the interval says it may be chance"
    # The other variant: nobody bought there, nor in the control group; no interval is claimed for a 0 - 0.
    other = cells(results, "A" if received[0][1] == "B" else "B")
    assert other[2] == "0" and other[7] == "+0.0 pt (too few to tell)", results
