"""The paths that make high rates possible keep the rules: even pacing, per-chat limits, nothing lost or doubled."""

from __future__ import annotations

import asyncio
from collections import Counter

import sqlalchemy as sa

from loyalbot.bot.local_api import LocalApiControl, LocalBotApi
from loyalbot.bot.senders import AiogramSender, make_aiogram_bot
from loyalbot.chat.outbound import Outgoing, Sent
from loyalbot.chat.pacing import Pacer
from loyalbot.scheduler.dispatcher import Dispatcher
from loyalbot.scheduler.planner import Planner
from loyalbot.storage.models import Member, Outbox, Schedule
from tests.scheduler.conftest import FakeChat, add_member, at, outbox_rows

NOW = at("2025-06-10 10:00")
JOINED = at("2025-01-01 10:00")


class FakeTime:
    """A monotonic clock that moves only when the pacer sleeps; each sleep overshoots like a real event loop."""

    def __init__(self, overshoot: float = 0.0) -> None:
        self.now = 1000.0
        self.overshoot = overshoot

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds + self.overshoot


def most_in_window(times: list[float], window: float) -> int:
    most, first = 0, 0
    for last, moment in enumerate(times):
        while moment - times[first] >= window - 1e-9:
            first += 1
        most = max(most, last - first + 1)
    return most


async def test_pacer_keeps_the_full_rate_when_every_sleep_overshoots():
    # The event loop cannot sleep less than about a millisecond: at 1000/s each wait overshoots. The
    # timeline makes that up, so 2000 slots take two seconds, not three.
    clock = FakeTime(overshoot=0.0005)
    pacer = Pacer(1000, clock=clock, sleep=clock.sleep)
    times = []
    for _ in range(2000):
        await pacer.slot()
        times.append(clock.now)
    elapsed = times[-1] - times[0]
    assert abs(elapsed - 1999 / 1000) <= pacer.slack + pacer.interval  # 1999 intervals, give or take the slack
    # ...and never faster than the rate, even over short windows (beyond the slack's worth of slots).
    extra = round(pacer.slack * 1000) + 1
    assert most_in_window(times, 1.0) <= 1000 + extra
    assert most_in_window(times, 0.1) <= 100 + extra


async def test_pacer_makes_up_a_stall_only_within_its_slack():
    clock = FakeTime()
    pacer = Pacer(1000, clock=clock, sleep=clock.sleep)
    for _ in range(10):
        await pacer.slot()
    clock.now += 0.5  # the loop was busy for half a second: those 500 slots are gone, not sent in a burst
    stalled_at = clock.now
    times = []
    for _ in range(50):
        await pacer.slot()
        times.append(clock.now)
    at_once = sum(1 for t in times if t == stalled_at)
    extra = round(pacer.slack * 1000) + 1
    assert 1 <= at_once <= extra
    assert most_in_window(times, 0.02) <= 20 + extra


async def test_at_low_rates_slots_never_come_back_to_back_even_after_a_stall():
    # One message in flight at a time at 20/s is what keeps a crash's unknown window to one row.
    clock = FakeTime(overshoot=0.004)
    pacer = Pacer(20, clock=clock, sleep=clock.sleep)
    times = []
    for n in range(40):
        if n in (10, 25):
            clock.now += 0.3  # stalls
        if n == 18:
            clock.now += 0.04  # late by less than a slot
        await pacer.slot()
        times.append(clock.now)
    assert min(b - a for a, b in zip(times, times[1:], strict=False)) >= 0.05 / 2


async def test_a_pause_for_retry_after_holds_every_slot():
    clock = FakeTime()
    pacer = Pacer(30, clock=clock, sleep=clock.sleep)
    await pacer.slot()
    pacer.pause(2.0)
    before = clock.now
    await pacer.slot()
    assert clock.now - before >= 2.0


async def test_at_1000_per_second_chats_get_one_message_a_second_and_nobody_is_throttled(db, loyalty):
    api = LocalBotApi(serve_page=False)
    await api.start()
    bot = make_aiogram_bot("434343:throughput-token", api.url)
    try:
        async with LocalApiControl(api.url) as tg:
            # No burst allowance per chat: a second message within a second to one chat would get a 429.
            await tg.set_limits(enabled=True, global_per_second=1000, private_burst=1, private_per_second=1)
            members = []
            for n in range(25):
                member = await add_member(loyalty, now=JOINED, first_name=f"T{n}")
                await tg.create_user(member.telegram_id, f"T{n}")
                members.append(member)
            for name in ("one", "two", "three"):
                async with db.transaction() as tx:
                    schedule = Schedule(name=name, kind="broadcast", one_off_at=NOW, created_at=NOW, updated_at=NOW,
                                        templates={"en": f"{name} for {{{{ name }}}}"})
                    tx.add(schedule)
                await Planner(loyalty, batch_size=10).run(schedule, now=NOW)
            dispatcher = Dispatcher(db, AiogramSender(bot), rate=1000, batch_size=40)
            stats = await dispatcher.drain(limit_seconds=60)
            counters = await tg.stats()
            assert counters["total_rate_limited"] == 0 and stats.rate_limited == 0
            for member in members:
                texts = sorted(m["text"] for m in await tg.bot_messages(member.chat_id))
                assert texts == sorted(f"{name} for {member.first_name}" for name in ("one", "two", "three"))
            assert {r.status for r in await outbox_rows(db)} == {"sent"}
    finally:
        await bot.session.close()
        await api.stop()


class StoppingChat(FakeChat):
    """A chat that asks the dispatcher to stop after `after` messages (an operator's SIGTERM mid-run)."""

    def __init__(self, after: int) -> None:
        super().__init__()
        self.after = after
        self.dispatcher: Dispatcher | None = None

    async def send(self, message: Outgoing) -> Sent:
        # This call's number, taken before the send awaits: sends overlap, so by the time this one is
        # answered others may have counted too, and "calls == after" then would never be true (the run
        # never stopped: the test hung in the dispatcher's idle loop once every row was sent).
        number = self.calls + 1
        sent = await super().send(message)
        if number == self.after and self.dispatcher is not None:
            self.dispatcher.stop()
        return sent


async def test_stopping_mid_run_gives_claimed_and_handed_over_rows_back_untouched(db, loyalty):
    members = [await add_member(loyalty, now=JOINED, first_name=f"S{n}") for n in range(120)]
    async with db.transaction() as tx:
        schedule = Schedule(name="news", kind="broadcast", one_off_at=NOW, created_at=NOW, updated_at=NOW,
                            templates={"en": "news for {{ name }}"})
        tx.add(schedule)
    assert (await Planner(loyalty).run(schedule, now=NOW)).planned == 120

    chat = StoppingChat(after=30)
    first = Dispatcher(db, chat, rate=1000, batch_size=60, worker_id="first")
    chat.dispatcher = first
    await asyncio.wait_for(first.run(), 120)  # returns once stopped, after recording what is in flight
    rows = await outbox_rows(db)
    sent = [r for r in rows if r.status == "sent"]
    waiting = [r for r in rows if r.status != "sent"]
    assert len(sent) == chat.calls and 30 <= len(sent) < 120
    # Rows handed over ahead of their slot, or claimed ahead, were certainly not sent: they are plainly
    # pending again, with no attempt counted, not "delivery unknown".
    assert waiting and all(r.status == "pending" and r.attempts == 0 and r.sent_at is None and r.claimed_by is None
                           for r in waiting)

    second = Dispatcher(db, chat, rate=1000, worker_id="second")
    await second.drain(limit_seconds=30)
    assert Counter(len(chat.delivered[m.chat_id]) for m in members) == {1: 120}
    assert {r.status for r in await outbox_rows(db)} == {"sent"}


async def test_planning_in_many_small_batches_plans_each_member_once_and_counts_every_outcome(db, loyalty):
    expected: Counter[str] = Counter()
    for n in range(23):
        consent, language = n % 4 != 0, ("en", "zh_Hans")[n % 2]
        await add_member(loyalty, now=JOINED, first_name=f"P{n}", marketing_consent=consent,
                         balance=7 if n == 5 else 10 + n, language=language)
        if consent and n != 5:
            expected[language] += 1
    async with db.transaction() as tx:
        # 10 // (points - 7) fails for the member with 7 points only: one row skipped, the run goes on.
        schedule = Schedule(name="odd", kind="broadcast", one_off_at=NOW, created_at=NOW, updated_at=NOW,
                            templates={"en": "{{ name }}: {{ 10 // (points - 7) }}",
                                       "zh_Hans": "{{ name }}：{{ 10 // (points - 7) }}"})
        tx.add(schedule)
    planner = Planner(loyalty, batch_size=4)
    stats = await planner.run(schedule, now=NOW)
    assert stats.planned == 23 - 6 - 1
    assert stats.skipped == Counter({"no_consent": 6, "render_failed": 1})
    assert stats.languages == expected
    rows = await outbox_rows(db)
    assert len(rows) == 23 and len({r.member_id for r in rows}) == 23
    async with db.read() as s:
        names = dict((await s.execute(sa.select(Member.id, Member.first_name))).all())
    for row in rows:
        if row.status == "pending":
            assert row.text.startswith(names[row.member_id])
    again = await planner.run(schedule, now=NOW)
    assert again.planned == 0 and again.already_planned == 23
    async with db.read() as s:
        assert (await s.execute(sa.select(sa.func.count()).select_from(Outbox))).scalar_one() == 23
