"""Three `loyalbot run` webhook replicas behind nginx on one PostgreSQL and Redis: each update handled once, in
order per member, with one replica SIGKILLed and, in the other test, one drained with SIGTERM.

50 members each send five updates (/points, /feedback, their feedback text, the rating "4", /points) to the
local Bot API server, which posts them one by one to nginx's webhook address; nginx spreads them over the
replicas (aiogram and python-telegram-bot side by side). Meanwhile a till posts one purchase per member,
twice, through nginx to the replicas' shop API. A lost, reordered or doubled update shows as a member
without the five answers in order, or with two feedback rows; a doubled purchase as points twice.
"""

from __future__ import annotations

import asyncio
import json
import signal
from typing import Any

import httpx
import sqlalchemy as sa

from loyalbot.console.api import create_api_key
from loyalbot.loyalty import Loyalty, load_programme
from loyalbot.storage.models import Feedback, LedgerEntry, Member, Purchase
from tests.replicas.conftest import Fleet, until

MEMBERS = 50
SCRIPT = ("/points", "/feedback", "Lovely pastries from member {n}", "4", "/points")
EXPECTED = ["points", "ask", "rate", "thanks", "points"]


def kind(message: dict[str, Any]) -> str:
    text = str(message.get("text") or "")
    buttons = [b for row in (message.get("reply_markup") or {}).get("inline_keyboard", []) for b in row]
    if "FB-" in text:
        return "thanks"
    if buttons:  # only the rating question carries inline buttons (the stars)
        return "rate"
    if "/cancel" in text:
        return "ask"
    return "points"


async def replies_sent(tg: Any) -> int:
    return sum(1 for call in await tg.calls(method="sendMessage") if call["ok"])


async def prepare(fleet: Fleet, tg: Any, ids: list[int]) -> tuple[Loyalty, str, list[str]]:
    loyalty = Loyalty(fleet.db, load_programme())
    await loyalty.sync_programme()
    numbers = []
    for n, telegram_id in enumerate(ids):
        member = await loyalty.register_member(telegram_id=telegram_id, first_name=f"M{n}", terms_accepted=True)
        numbers.append(member.member_no)
        await tg.create_user(telegram_id, f"M{n}", language_code="en")
    return loyalty, await create_api_key(fleet.db, "till"), numbers


async def chat(tg: Any, ids: list[int]) -> None:
    gate = asyncio.Semaphore(16)

    async def member_writes(n: int, telegram_id: int) -> None:
        for line in SCRIPT:
            async with gate:
                await tg.send_text(telegram_id, line.format(n=n))

    await asyncio.gather(*(member_writes(n, t) for n, t in enumerate(ids)))


async def till(fleet: Fleet, key: str, numbers: list[str]) -> list[list[int]]:
    """Each member's purchase posted twice through nginx; a post cut off by a dying replica is sent again
    (the shop's retry, idempotent on its external id). Returns the final status of each post."""
    gate = asyncio.Semaphore(8)

    async def post(client: httpx.AsyncClient, body: dict[str, str]) -> int:
        for _ in range(20):
            try:
                async with gate:
                    response = await client.post("/api/v1/purchases", json=body)
                if response.status_code not in (502, 503, 504):
                    return response.status_code
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.5)
        return 0

    async with httpx.AsyncClient(base_url=fleet.url, headers={"Authorization": f"Bearer {key}"},
                                 timeout=30) as client:
        async def twice(number: str) -> list[int]:
            body = {"member_no": number, "external_id": f"till-{number}", "amount": "12.00"}
            return [await post(client, body), await post(client, body)]

        return await asyncio.gather(*(twice(number) for number in numbers))


async def settle(fleet: Fleet, tg: Any, total: int) -> None:
    """Wait until every update is answered and nothing is left at the server or in the inbox."""
    alive = fleet.alive()
    await until(lambda: at_least(tg, total), what="every update answered", alive=alive)

    async def nothing_left() -> bool:
        pending = await tg.pending_updates()
        return all(not updates for updates in pending["bots"].values()) and await fleet.pending() == 0

    await until(nothing_left, what="the server and the inbox to empty", alive=alive)


async def at_least(tg: Any, count: int) -> bool:
    return await replies_sent(tg) >= count


async def outcome(fleet: Fleet, tg: Any, ids: list[int]) -> dict[str, Any]:
    """What the members saw and what the store holds."""
    disorder, duplicates = [], 0
    for n, telegram_id in enumerate(ids):
        kinds = [kind(m) for m in await tg.bot_messages(telegram_id)]
        collapsed = [k for i, k in enumerate(kinds) if i == 0 or kinds[i - 1] != k]
        if collapsed != EXPECTED:
            disorder.append((n, kinds))
        duplicates += len(kinds) - len(SCRIPT)
    async with fleet.db.read() as s:
        feedback = (await s.execute(sa.select(Member.telegram_id, Feedback.text, Feedback.rating).join(
            Feedback, Feedback.member_id == Member.id))).all()
        purchases = (await s.execute(sa.select(Member.telegram_id, sa.func.count(Purchase.id)).join(
            Purchase, Purchase.member_id == Member.id).group_by(Member.telegram_id))).all()
        balances = dict((await s.execute(sa.select(Member.telegram_id, Member.balance))).all())
        ledgered = dict((await s.execute(sa.select(Member.telegram_id, sa.func.coalesce(
            sa.func.sum(LedgerEntry.delta), 0)).join(LedgerEntry, LedgerEntry.member_id == Member.id,
                                                      isouter=True).group_by(Member.telegram_id))).all())
    per_member: dict[int, list[tuple[str, int | None]]] = {}
    for telegram_id, text, rating in feedback:
        per_member.setdefault(telegram_id, []).append((text, rating))
    return {"disorder": disorder, "duplicates": duplicates, "feedback": per_member,
            "purchases": dict(purchases), "balances": balances, "ledgered": ledgered}


def check_effects_once(seen: dict[str, Any], ids: list[int], posts: list[list[int]]) -> None:
    assert seen["disorder"] == [], f"{len(seen['disorder'])} members not answered in order: {seen['disorder'][:3]}"
    assert sorted(seen["feedback"]) == sorted(ids), "one feedback per member"
    for n, telegram_id in enumerate(ids):
        assert seen["feedback"][telegram_id] == [(f"Lovely pastries from member {n}", 4)]
    assert all(statuses[0] in (200, 201) and statuses[1] == 200 for statuses in posts), posts
    assert seen["purchases"] == {telegram_id: 1 for telegram_id in ids}, "each purchase recorded once"
    points = {seen["balances"][telegram_id] for telegram_id in ids}
    assert len(points) == 1 and points.pop() > 0, "every member has the points of one purchase"
    assert seen["balances"] == seen["ledgered"], "cached balances equal the ledger"


async def test_three_replicas_behind_nginx_answer_each_update_once_in_order_and_survive_a_sigkill(
        fleet_factory, telegram, member_ids) -> None:
    _, tg = telegram
    # A short lease: the survivors take over the killed replica's updates 5 s after its last renewal.
    fleet = await fleet_factory(["aiogram", "ptb", "aiogram"], inbox_lease="5")
    ids = member_ids(MEMBERS)
    _, key, numbers = await prepare(fleet, tg, ids)
    total = MEMBERS * len(SCRIPT)

    burst = asyncio.ensure_future(chat(tg, ids))
    shop = asyncio.ensure_future(till(fleet, key, numbers))
    await until(lambda: at_least(tg, total // 3), what="a third of the replies", alive=fleet.alive())
    victim = fleet.replicas[0]
    victim.signal(signal.SIGKILL)
    assert await victim.wait() == -signal.SIGKILL
    in_hand = await fleet.pending_claimed_by(victim.name)
    await burst
    posts = await shop
    await settle(fleet, tg, total)

    seen = await outcome(fleet, tg, ids)
    spread = fleet.upstreams_of_webhook_posts()
    print(json.dumps({"replicas": "sigkill", "updates": total, "in_hand_at_kill": in_hand,
                      "duplicate_replies": seen["duplicates"], "webhook_posts_per_upstream": spread}))
    check_effects_once(seen, ids, posts)
    # Only the replies of updates the killed replica held can repeat (their effects do not).
    assert 0 <= seen["duplicates"] <= in_hand, (seen["duplicates"], in_hand)
    assert all(spread.get(f"127.0.0.1:{r.webhook_port}", 0) > 0 for r in fleet.replicas), spread
    for replica in fleet.replicas[1:]:
        replica.signal(signal.SIGTERM)
    assert [await r.wait() for r in fleet.replicas[1:]] == [0, 0]


async def test_a_replica_drained_by_sigterm_finishes_its_updates_and_gives_the_rest_back_at_once(
        fleet_factory, telegram, member_ids) -> None:
    _, tg = telegram
    # A lease far longer than the test may wait: whatever the drained replica kept could only be handled
    # after it ran out, so every update answered below proves its claims were given back at its exit.
    fleet = await fleet_factory(["ptb", "aiogram", "ptb"], inbox_lease="900", drain_seconds="60")
    ids = member_ids(MEMBERS)
    _, key, numbers = await prepare(fleet, tg, ids)
    total = MEMBERS * len(SCRIPT)

    burst = asyncio.ensure_future(chat(tg, ids))
    shop = asyncio.ensure_future(till(fleet, key, numbers))
    await until(lambda: at_least(tg, total // 3), what="a third of the replies", alive=fleet.alive())
    drained = fleet.replicas[1]
    drained.signal(signal.SIGTERM)
    assert await drained.wait() == 0, drained.log.read_text()[-3000:]
    left_claimed = await fleet.pending_claimed_by(drained.name)
    await burst
    posts = await shop
    await settle(fleet, tg, total)

    seen = await outcome(fleet, tg, ids)
    print(json.dumps({"replicas": "sigterm", "updates": total, "claims_left_by_drained": left_claimed,
                      "duplicate_replies": seen["duplicates"],
                      "webhook_posts_per_upstream": fleet.upstreams_of_webhook_posts()}))
    assert left_claimed == 0, "a drained replica keeps no claim in the inbox"
    check_effects_once(seen, ids, posts)
    assert seen["duplicates"] == 0, "a drain finishes what it started: no reply is sent twice"
    assert "given back" in drained.log.read_text() or "stopped" in drained.log.read_text()
    for replica in (fleet.replicas[0], fleet.replicas[2]):
        replica.signal(signal.SIGTERM)
    assert [await r.wait() for r in (fleet.replicas[0], fleet.replicas[2])] == [0, 0]
