"""Replies keep Telegram's per-chat limits shared with every other sender: one message a second into a private
chat (a reply right after a campaign message included), the group's 20 a minute in the staff group."""

from __future__ import annotations

import pytest

from loyalbot.bot.runtime import Pipeline
from loyalbot.chat.outbound import Outgoing, RetryAfter, Sent
from loyalbot.chat.pacing import BOT_SLOT_KEY, PacedSender, SharedPacer, chat_key
from loyalbot.chat.port import Incoming, Reply
from loyalbot.handlers.support.relay import RelayItem, StaffRelay
from loyalbot.storage.rates import MemoryLimits

ANN, GROUP = 4001, -100_555


class Clock:
    """Seconds that move only when someone sleeps: the limits, the pacer and the sender share it."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += max(seconds, 0.0)


class Recorder:
    """A sender noting when each message reached Telegram (answered after `latency` seconds)."""

    def __init__(self, clock: Clock, latency: float = 0.05, faults: list[Exception] | None = None) -> None:
        self.clock, self.latency, self.faults = clock, latency, faults or []
        self.arrived: list[tuple[int, float]] = []

    async def send(self, message: Outgoing) -> Sent:
        self.clock.now += self.latency
        if self.faults:
            raise self.faults.pop(0)
        self.arrived.append((message.chat_id, self.clock.now))
        return Sent(len(self.arrived))

    async def edit_text(self, chat_id: int, message_id: int, text: str, buttons=None, html: bool = True) -> None:
        self.clock.now += self.latency
        self.arrived.append((chat_id, self.clock.now))

    async def answer_callback(self, callback_id: str, text: str | None = None, alert: bool = False) -> None:
        self.arrived.append((0, self.clock.now))


def _paced(clock: Clock, sender: Recorder, limits: MemoryLimits) -> PacedSender:
    return PacedSender(sender, limits, clock=clock, sleep=clock.sleep)


class TwoAnswers:
    async def handle(self, incoming: Incoming) -> list[Reply]:
        return [Reply(text="Your card"), Reply(text="Your points"), Reply(text="What next?")]


@pytest.mark.asyncio
async def test_the_messages_one_update_produces_are_a_second_apart_and_the_first_goes_at_once() -> None:
    clock = Clock()
    sender = Recorder(clock)
    pipeline = Pipeline(sender, TwoAnswers())
    limits = MemoryLimits(clock=clock)
    pipeline.pace(limits)
    pipeline.replies.sender.clock, pipeline.replies.sender.sleep = clock, clock.sleep
    start = clock.now
    await pipeline.process(Incoming(user_id=ANN, chat_id=ANN, text="/card"))
    times = [t for chat, t in sender.arrived if chat == ANN]
    assert len(times) == 3
    assert times[0] - start < 0.1, "a single reply waits for nothing"
    assert all(later - earlier >= 1.0 for earlier, later in zip(times, times[1:], strict=False)), times


@pytest.mark.asyncio
async def test_a_reply_just_after_a_campaign_message_waits_its_second_and_the_campaign_waits_for_it() -> None:
    clock = Clock()
    limits = MemoryLimits(clock=clock)
    sender = Recorder(clock)
    paced = _paced(clock, sender, limits)
    # The dispatcher holds the chat, its message is answered, it releases the chat for a second.
    assert await limits.hold([chat_key(ANN)], lease=30) == {chat_key(ANN): 0.0}
    campaign_answered = clock.now
    await limits.release([(chat_key(ANN), 1.0)])
    await paced.send(Outgoing(chat_id=ANN, text="Your points"))
    assert sender.arrived[0][1] - campaign_answered >= 1.0
    # ... and the dispatcher finds the chat held by the reply for a second after it.
    wait = (await limits.hold([chat_key(ANN)], lease=30))[chat_key(ANN)]
    assert wait >= 0.9
    other = 4002
    await paced.edit_text(other, 7, "Saved")  # another chat is not held up by Ann's
    assert sender.arrived[-1] == (other, clock.now)


@pytest.mark.asyncio
async def test_a_429_on_a_reply_keeps_the_chat_quiet_for_its_retry_after() -> None:
    clock = Clock()
    limits = MemoryLimits(clock=clock)
    sender = Recorder(clock, faults=[RetryAfter(5)])
    paced = _paced(clock, sender, limits)
    with pytest.raises(RetryAfter):
        await paced.send(Outgoing(chat_id=ANN, text="Your points"))
    told = clock.now
    assert (await limits.hold([chat_key(ANN)], lease=30))[chat_key(ANN)] >= 4.9, "the dispatcher waits too"
    clock.now += 5
    await paced.send(Outgoing(chat_id=ANN, text="Your points"))
    assert sender.arrived[-1][1] - told >= 5


class Posts:
    async def thread_for(self, conversation_id, *, gone=None):
        return 1, []

    async def relayed(self, item, sent) -> None:
        return None

    async def fresh_card(self, conversation_id):
        return None

    async def undeliverable(self, item, error) -> None:
        return None


@pytest.mark.asyncio
async def test_replies_in_the_staff_group_and_the_relay_share_the_groups_20_a_minute() -> None:
    clock = Clock()
    limits = MemoryLimits(clock=clock)
    sender = Recorder(clock)
    relay = StaffRelay(lambda: sender, GROUP, Posts(), clock=clock, sleep=clock.sleep, shared=limits)
    paced = _paced(clock, sender, limits)
    for n in range(12):
        relay.put(RelayItem(conversation_id=None, kind="text", text=f"feedback {n}"))
        await paced.send(Outgoing(chat_id=GROUP, text=f"Taken by Sam ({n})"))
    assert await relay.drain(5)
    times = sorted(t for chat, t in sender.arrived if chat == GROUP)
    assert len(times) == 24
    for start in times:
        assert sum(1 for t in times if start <= t <= start + 60) <= 20, "no minute holds more than 20"


@pytest.mark.asyncio
async def test_replies_to_many_chats_keep_to_the_bots_overall_rate() -> None:
    clock = Clock()
    limits = MemoryLimits(clock=clock)
    sender = Recorder(clock, latency=0.01)
    paced = PacedSender(sender, limits, bot_rate=10, clock=clock, sleep=clock.sleep)
    for chat in range(5000, 5040):  # forty members, each answered once: no chat's own second holds anyone
        await paced.send(Outgoing(chat_id=chat, text="Your points"))
    times = [t for _, t in sender.arrived]
    assert len(times) == 40
    busiest = max(sum(1 for t in times if start <= t < start + 1.0) for start in times)
    assert busiest <= 11, f"{busiest} messages in one second at a rate of 10/s"
    assert times[-1] - times[0] < 4.5, "and no slower than the rate either"


@pytest.mark.asyncio
async def test_a_reply_takes_the_slot_after_those_a_dispatcher_reserved_and_counts_in_its_rate() -> None:
    clock = Clock()
    limits = MemoryLimits(clock=clock)
    dispatcher = SharedPacer(limits, BOT_SLOT_KEY, 10, batch=5, clock=clock, sleep=clock.sleep)
    start = clock.now
    await dispatcher.slot()  # reserves five slots, 0.1 s apart, the first one now
    sender = Recorder(clock, latency=0.0)
    paced = PacedSender(sender, limits, bot_rate=10, clock=clock, sleep=clock.sleep)
    await paced.send(Outgoing(chat_id=ANN, text="Your card"))
    assert sender.arrived[0][1] - start >= 0.5 - 0.05, "the reply waits for the campaign's reserved slots"
    # The dispatcher's next reservation comes after the reply's slot.
    grant = await limits.reserve(BOT_SLOT_KEY, 1, interval=0.1, tolerance=0.05, horizon=1.0)
    assert clock.now + grant.delays[0] - sender.arrived[0][1] >= 0.1 - 0.05
    # Into the staff group (the relay's sender has no group budget of its own) the bot's rate holds too.
    relay_sender = PacedSender(sender, limits, groups=False, bot_rate=10, clock=clock, sleep=clock.sleep)
    before = clock.now
    await relay_sender.send(Outgoing(chat_id=GROUP, text="New conversation"))
    await relay_sender.send(Outgoing(chat_id=GROUP, text="Ann: hello"))
    assert sender.arrived[-1][1] - before >= 0.1, "two posts are a slot apart"
