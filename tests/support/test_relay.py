"""The staff-group queue with a fake sender and a fake clock: budget, order, merging, RetryAfter, lost topics."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from loyalbot.chat.outbound import Outgoing, RetryAfter, Sent, ThreadNotFound
from loyalbot.handlers.support.config import BusinessHours, split_text
from loyalbot.handlers.support.relay import RelayItem, StaffRelay

GROUP = -100


class FakeClock:
    """Time that moves only when the relay sleeps, so a minute of budget passes instantly."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += max(seconds, 0.0)


@dataclass
class FakeSender:
    clock: FakeClock
    posts: list[dict[str, Any]] = field(default_factory=list)
    faults: list[Exception] = field(default_factory=list)
    gone_threads: set[int] = field(default_factory=set)
    next_id: int = 1

    def _fail(self, thread_id: int | None) -> None:
        if self.faults:
            raise self.faults.pop(0)
        if thread_id in self.gone_threads:
            raise ThreadNotFound("message thread not found")

    def _record(self, thread_id: int | None, **what: Any) -> Sent:
        self.next_id += 1
        self.posts.append({"at": self.clock.now, "thread": thread_id, "id": self.next_id, **what})
        return Sent(self.next_id, thread_id)

    async def send(self, message: Outgoing) -> Sent:
        self._fail(message.thread_id)
        return self._record(message.thread_id, text=message.text, card=message.buttons is not None)

    async def copy_message(self, chat_id: int, from_chat_id: int, message_id: int, *, thread_id: int | None = None,
                           caption: str | None = None) -> Sent:
        self._fail(thread_id)
        return self._record(thread_id, copy=message_id, caption=caption)

    async def edit_text(self, *args: Any, **kwargs: Any) -> None:
        return None


@dataclass
class FakeResolver:
    threads: dict[int, int] = field(default_factory=dict)
    relayed_refs: list[tuple[list[int], int]] = field(default_factory=list)
    created: int = 0

    async def thread_for(self, conversation_id: int, *, gone: int | None = None) -> tuple[int, list[RelayItem]]:
        if conversation_id in self.threads and gone is None:
            return self.threads[conversation_id], []
        self.created += 1
        self.threads[conversation_id] = 1000 + self.created
        card = RelayItem(conversation_id=conversation_id, kind="text", text=f"card {conversation_id}", card=True,
                         buttons=[])
        return self.threads[conversation_id], [card]

    async def relayed(self, item: RelayItem, sent: Sent) -> None:
        if item.refs:
            self.relayed_refs.append((item.refs, sent.message_id))

    async def undeliverable(self, item: RelayItem, error: Exception) -> None:
        raise AssertionError(f"nothing should be undeliverable here: {error!r}")


def _relay(per_minute: float = 20, burst: int = 5):
    clock = FakeClock()
    sender = FakeSender(clock)
    resolver = FakeResolver()
    relay = StaffRelay(lambda: sender, GROUP, resolver, per_minute=per_minute, burst=burst, clock=clock,
                       sleep=clock.sleep)
    return relay, sender, resolver, clock


def _text(conv: int, n: int) -> RelayItem:
    return RelayItem(conversation_id=conv, kind="copy", from_chat_id=1, message_id=n, text=f"m{n}",
                     mergeable=True, refs=[n])


def _words(posts: list[dict[str, Any]]) -> list[str]:
    words: list[str] = []
    for post in posts:
        if post.get("card"):
            continue
        words.extend(post["text"].split("\n") if "text" in post else [f"m{post['copy']}"])
    return words


async def test_a_burst_of_100_arrives_in_order_within_the_group_budget_nothing_lost():
    relay, sender, resolver, clock = _relay(per_minute=20, burst=5)
    for n in range(100):
        relay.put(_text(7, n))
    assert await relay.drain(5)
    assert _words(sender.posts) == [f"m{n}" for n in range(100)]
    assert relay.merged > 0 and len(sender.posts) < 100
    times = [p["at"] for p in sender.posts]
    for start in times:  # no 60 seconds hold more than Telegram's 20, the burst included
        assert sum(1 for t in times if start <= t <= start + 60) <= 20
    # every member message is paired with the staff message that carries it
    assert sorted(ref for refs, _ in resolver.relayed_refs for ref in refs) == list(range(100))
    assert resolver.created == 1 and sender.posts[0]["card"]


async def test_feedback_posts_that_cannot_be_merged_keep_to_20_in_any_minute_the_burst_included():
    relay, sender, _, _ = _relay(per_minute=20, burst=5)
    for n in range(40):  # the General topic's feedback posts: none merges with another
        relay.put(RelayItem(conversation_id=None, kind="text", text=f"FB-{n}"))
    assert await relay.drain(5)
    times = [p["at"] for p in sender.posts]
    assert len(times) == 40
    assert times[:5] == [times[0]] * 5, "a quiet group still takes a burst at once"
    for start in times:
        assert sum(1 for t in times if start <= t <= start + 60) <= 20


async def test_without_a_backlog_each_message_is_copied_as_it_is():
    relay, sender, _, _ = _relay(per_minute=600, burst=50)
    for n in range(3):
        relay.put(_text(7, n))
        assert await relay.drain(5)
    assert [p.get("copy") for p in sender.posts if not p.get("card")] == [0, 1, 2]
    assert relay.merged == 0


async def test_merging_never_moves_text_across_a_photo_of_the_same_topic_nor_mixes_topics():
    relay, sender, _, clock = _relay(per_minute=1, burst=1)
    relay.put(_text(1, 0))
    relay.put(_text(1, 1))
    relay.put(RelayItem(conversation_id=1, kind="copy", from_chat_id=1, message_id=99))  # a photo
    relay.put(_text(2, 2))
    relay.put(_text(1, 3))
    relay.put(_text(1, 4))
    assert await relay.drain(5)
    by_topic: dict[int, list[str]] = {}
    for post in sender.posts:
        if post.get("card"):
            continue
        by_topic.setdefault(post["thread"], []).append(post.get("text") or f"copy {post['copy']}")
    assert list(by_topic.values()) == [["m0\nm1", "copy 99", "m3\nm4"], ["copy 2"]]


async def test_retry_after_is_honoured_and_the_message_is_sent_once_afterwards():
    relay, sender, _, clock = _relay(per_minute=600, burst=10)
    relay.put(_text(3, 1))
    assert await relay.drain(5)
    sender.faults.append(RetryAfter(7))
    relay.put(_text(3, 2))
    assert await relay.drain(5)
    assert _words(sender.posts) == ["m1", "m2"]
    assert sender.posts[-1]["at"] >= 7
    assert relay.retried == 1


async def test_a_deleted_topic_is_replaced_the_card_goes_first_and_the_failed_message_follows():
    relay, sender, resolver, _ = _relay(per_minute=600, burst=10)
    relay.put(_text(4, 1))
    assert await relay.drain(5)
    old = resolver.threads[4]
    sender.gone_threads.add(old)
    relay.put(_text(4, 2))
    assert await relay.drain(5)
    new = resolver.threads[4]
    assert new != old
    in_new = [p for p in sender.posts if p["thread"] == new]
    assert in_new[0]["card"] and in_new[1]["copy"] == 2
    assert _words(sender.posts) == ["m1", "m2"]


async def test_merged_text_stays_within_telegrams_message_limit():
    relay, sender, _, _ = _relay(per_minute=1, burst=1)
    originals = {n: str(n) * 1500 for n in range(6)}
    for n, text in originals.items():
        relay.put(RelayItem(conversation_id=5, kind="copy", from_chat_id=1, message_id=n, text=text,
                            mergeable=True))
    assert await relay.drain(5)
    delivered = [p.get("text") or originals[p["copy"]] for p in sender.posts if not p.get("card")]
    assert all(len(text) <= 4096 for text in delivered)
    assert "\n".join(delivered).split("\n") == list(originals.values())
    assert len(delivered) < len(originals)


def test_a_long_caption_is_split_and_nothing_is_lost():
    caption = "x" * 1000 + "y" * 5000
    parts = split_text(caption, 1024)
    assert len(parts[0]) == 1024 and all(len(p) <= 4096 for p in parts[1:])
    assert "".join(parts) == caption


def test_business_hours_say_when_staff_are_back():
    from datetime import UTC, datetime

    hours = BusinessHours.parse("09:00-18:00", "mon-fri", "Europe/Amsterdam")
    monday_noon = datetime(2026, 3, 2, 11, 0, tzinfo=UTC)  # 12:00 in Amsterdam
    assert hours.next_opening(monday_noon) is None
    friday_evening = datetime(2026, 3, 6, 19, 0, tzinfo=UTC)  # 20:00 Friday in Amsterdam
    assert hours.next_opening(friday_evening) == datetime(2026, 3, 9, 8, 0, tzinfo=UTC)  # Monday 09:00
    early = datetime(2026, 3, 3, 6, 0, tzinfo=UTC)  # 07:00 Tuesday
    assert hours.next_opening(early) == datetime(2026, 3, 3, 8, 0, tzinfo=UTC)
