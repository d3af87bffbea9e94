"""SIGTERM on a real `loyalbot run` process while an update is being handled: it takes no more updates (the
webhook answers 503, polling stops fetching, /readyz says draining), finishes the update in hand, gives
its claims back to the inbox and exits 0; the next process answers what came in meanwhile, once.

The update in hand is held, for as long as the test needs and without any timing, by a lock the test
takes on the feedback table: the member's feedback text cannot be saved until the test lets go.
"""

from __future__ import annotations

import json
import signal

import httpx
import pytest
import sqlalchemy as sa

from loyalbot.loyalty import Loyalty, load_programme
from loyalbot.storage import Db
from loyalbot.storage.models import Feedback, InboxUpdate, Member
from tests.bot.conftest import free_port
from tests.replicas.conftest import HOOK_PATH, SECRET, Replica, replica_env, tail, until


async def feedback_insert_waiting(db) -> bool:
    """Whether some session waits for the lock on the feedback table (the replica's insert)."""
    async with db.read() as s:
        return bool((await s.execute(sa.text(
            "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
            "WHERE c.relname = 'feedback' AND NOT l.granted"))).scalar_one())


@pytest.mark.parametrize("mode", ["webhook", "polling"])
@pytest.mark.parametrize("framework", ["aiogram", "ptb"])
async def test_sigterm_finishes_the_update_in_hand_takes_no_more_and_exits_0(
        pg_url, redis_url, telegram, member_ids, tmp_path, framework: str, mode: str) -> None:
    api, tg = telegram
    hook, web = free_port(), free_port()
    webhook = mode == "webhook"
    env = replica_env("solo", framework, store_url=pg_url, api_url=api.url,
                      hook_url=f"http://127.0.0.1:{hook}{HOOK_PATH}", webhook_port=hook, console_port=web,
                      redis_url=redis_url, drain_seconds="120")
    if not webhook:
        del env["LOYALBOT_WEBHOOK_URL"], env["LOYALBOT_WEBHOOK_SECRET"]
    db = Db(pg_url)
    replica = Replica("solo", framework, hook, web, env, tmp_path / "solo.log")
    lock = None
    try:
        loyalty = Loyalty(db, load_programme())
        await loyalty.sync_programme()
        ann, ben = member_ids(2)
        for telegram_id, name in ((ann, "Ann"), (ben, "Ben")):
            await loyalty.register_member(telegram_id=telegram_id, first_name=name, terms_accepted=True)
            await tg.create_user(telegram_id, name, language_code="en")
        replica.start()
        await until(replica.ready, what="the bot ready", alive=replica.died)
        await tg.send_text(ann, "/feedback")
        await until(lambda: has_replies(tg, ann, 1), what="the feedback question", alive=replica.died)
        await tg.send_text(ann, "The croissants were perfect")
        await until(lambda: has_replies(tg, ann, 2), what="the rating question", alive=replica.died)

        # Hold the feedback table: Ann's rating is received and claimed, and saving it waits on the lock.
        lock = await db.engine.connect()
        transaction = await lock.begin()
        await lock.execute(sa.text("LOCK TABLE feedback IN EXCLUSIVE MODE"))
        await tg.send_text(ann, "4")
        await until(lambda: feedback_insert_waiting(db), what="the feedback insert to wait", alive=replica.died)

        replica.signal(signal.SIGTERM)
        async with httpx.AsyncClient(timeout=10) as client:
            async def draining() -> bool:
                response = await client.get(f"{replica.console}/readyz")
                return response.status_code == 503 and response.json().get("error") == "draining"

            await until(draining, what="/readyz to say draining", alive=replica.died)
            assert (await client.get(f"{replica.console}/healthz")).status_code == 200, "alive while it drains"
            if webhook:  # an update posted now is refused, so that nginx or Telegram send it elsewhere
                refused = await client.post(f"http://127.0.0.1:{hook}{HOOK_PATH}", headers={
                    "X-Telegram-Bot-Api-Secret-Token": SECRET}, json={"update_id": 1, "message": {}})
                assert refused.status_code == 503, refused.text
        # Ben writes while Ann's update is in hand: not taken (by webhook: refused; by polling: not fetched).
        await tg.send_text(ben, "/points")
        assert replica.process is not None and replica.process.poll() is None, "still draining Ann's update"

        await transaction.commit()  # let go: Ann's feedback is saved and answered, then the process exits
        await lock.close()
        lock = None
        assert await replica.wait() == 0, tail(replica.log)
        assert [kind_of(m) for m in await tg.bot_messages(ann)] == ["ask", "rate", "thanks"]
        assert await tg.bot_messages(ben) == [], "nothing was taken after SIGTERM"
        async with db.read() as s:
            held = (await s.execute(sa.select(sa.func.count()).select_from(InboxUpdate).where(
                InboxUpdate.status == "pending", InboxUpdate.claimed_by.is_not(None)))).scalar_one()
            saved = (await s.execute(sa.select(Feedback.text, Feedback.rating).join(
                Member, Member.id == Feedback.member_id).where(Member.telegram_id == ann))).all()
        assert held == 0, "no claim is left behind"
        assert [tuple(row) for row in saved] == [("The croissants were perfect", 4)]
        pending = await tg.pending_updates()
        print(json.dumps({"shutdown": framework, "mode": mode,
                          "left_at_server": sum(len(u) for u in pending["bots"].values())}))

        # The next process answers Ben, once, and Ann's update is not handled again.
        replica.start()
        await until(lambda: has_replies(tg, ben, 1), what="Ben answered by the next process", alive=replica.died)
        replica.signal(signal.SIGTERM)
        assert await replica.wait() == 0, tail(replica.log)
        assert len(await tg.bot_messages(ben)) == 1
        assert [kind_of(m) for m in await tg.bot_messages(ann)] == ["ask", "rate", "thanks"]
    finally:
        if lock is not None:
            await lock.close()
        replica.kill()
        await db.dispose()


async def has_replies(tg, chat_id: int, count: int) -> bool:
    return len(await tg.bot_messages(chat_id)) >= count


def kind_of(message) -> str:
    if "FB-" in str(message.get("text") or ""):
        return "thanks"
    buttons = [b for row in (message.get("reply_markup") or {}).get("inline_keyboard", []) for b in row]
    return "rate" if buttons else "ask"


