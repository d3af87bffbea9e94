"""The dispatcher: drains the outbox at Telegram's limits and records every result.

Limits: at most `rate` messages a second overall (30 by default, up to 1000 with paid broadcasts),
spaced evenly (no bursts), and at most one message a second per chat, timed from when the previous
message to that chat was *answered*. Both are kept in the shared limits (`limits`, storage/rates.py:
Redis, PostgreSQL or this process's memory), so every dispatcher and replica of the bot together keep
them: the bot's rate as slots of the key "bot", reserved a group at a time; a chat as a hold on
"chat:<id>", taken when its row is claimed and released when Telegram answers. A 429 pauses its chat
for the `retry_after` Telegram gives, and the whole bot when 429s come for a second chat within one
retry_after (Telegram's answer does not say which limit it was); both pauses are in the shared limits,
seen by every dispatcher. When the shared limits do not answer (Redis down), the claimed rows go back to
the outbox untouched and nothing is sent until they answer again. A 403 (blocked) marks the member unreachable and the row failed,
and skips their other pending rows; a 400 fails the row at once; a 5xx, timeout or network error is
retried with exponential backoff up to `max_attempts`, then the row stays failed with the error.

Crash safety and what "exactly once" can honestly mean here
-----------------------------------------------------------
A row moves pending -> sending (claimed, in one transaction; ``FOR UPDATE SKIP LOCKED`` on PostgreSQL
so several dispatchers share the outbox without sending a row twice) -> sent/failed/pending. Just
before a row is handed to Telegram its ``sent_at`` is set and committed (the *hand-over* mark); the
result is committed right after Telegram answers. So after a crash, a row stuck in 'sending':

* without ``sent_at`` was never handed over: it goes back to 'pending' and is sent once, later;
* with ``sent_at`` was handed over but its answer was not recorded. Telegram has no idempotency key,
  and a bot cannot read a private chat's history, so nobody can tell whether the member got it.
  We do *not* send it again (a duplicate care message is worse than a lost one); the row is marked
  failed with ``last_error = "interrupted: delivery unknown"`` so it is visible and counted. Set
  ``resend_unknown=True`` to prefer at-least-once instead.

The unknown window is one HTTP round trip plus one commit per row (a few milliseconds); at 30/s the
dispatcher spends most of its time waiting for the next slot, outside any window. Below 100/s rows are
handed over one at a time, each after its slot. From 100/s on, rows are handed over in groups of 20 ms'
worth of sending, and the next group's hand-over is committed while the current group is being sent
(the send loop then never waits for the database; that is what makes 1000/s possible), and results are
committed in groups of the same size. So a crash at 1000/s leaves at most about three groups (some
60 rows, 60 ms of sending) as "delivery unknown"; a *graceful* stop gives rows handed over but not yet
sent back to the outbox as plainly pending, since then we know they were not sent. Stale 'sending'
rows of a dispatcher that died are recovered at start-up and every `recover_every` seconds once their
claim is older than `stale_after` seconds.

Throughput: sends run concurrently (up to `max_in_flight`, by default rate/5 and at least 50) while
the `SharedPacer` (chat/pacing.py) hands out evenly spaced slots of the shared limits; the per-chat
interval is kept by deferring a row whose chat is held (or within its second) in the outbox. The next batch is claimed while the current one is sent.

A send that gets no answer within `send_timeout` is ambiguous in the same way and is treated the
same way (failed, "delivery unknown"; retried only with `resend_unknown`). Errors that say the
request was refused (5xx, network errors before an answer) are retried with backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import secrets
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError

from loyalbot.chat.limits import MESSAGES_PER_SECOND
from loyalbot.chat.metrics import Metrics
from loyalbot.chat.outbound import (
    BadRequest,
    Blocked,
    Button,
    ChatSender,
    Outgoing,
    RetryAfter,
    SendError,
    Sent,
    ThreadNotFound,
    Transient,
)
from loyalbot.chat.pacing import BOT_SLOT_KEY, SharedPacer
from loyalbot.scheduler.caps import Caps, hold_back
from loyalbot.scheduler.offers import issue_for_handover, withdraw_unsent
from loyalbot.storage import Db, as_utc, utcnow
from loyalbot.storage.models import Member, Outbox
from loyalbot.storage.rates import LimitsUnavailable, MemoryLimits, SendLimits
from loyalbot.storage.rows import rows_changed, stored_id

log = logging.getLogger(__name__)

UNKNOWN_DELIVERY = "interrupted: delivery unknown"


@dataclass
class DispatchStats:
    """What a dispatcher did since it started."""

    sent: int = 0
    failed: int = 0
    retried: int = 0
    blocked: int = 0
    rate_limited: int = 0  # 429s Telegram answered
    chat_pauses: int = 0  # ... of which paused only their chat
    bot_pauses: int = 0  # ... of which paused the whole bot (429s for two chats within one retry_after)
    chat_waits: int = 0  # rows given back because their chat had a message on its way or within a second
    limits_unavailable: int = 0  # batches given back because the shared limits did not answer
    recovered: int = 0
    unknown: int = 0
    errors: dict[str, int] = field(default_factory=dict)


def default_worker_id() -> str:
    return f"{socket.gethostname()[:30]}:{os.getpid()}:{secrets.token_hex(3)}"


def row_message(row: Any) -> Outgoing:
    buttons = [[Button(text=b["text"], data=b.get("data"), url=b.get("url")) for b in line]
               for line in (row.buttons or [])] or None
    return Outgoing(chat_id=int(row.chat_id), text=row.text, buttons=buttons)


class Dispatcher:
    """Sends due outbox rows through a `ChatSender`, within Telegram's limits, recording each result."""

    def __init__(
        self,
        db: Db,
        sender: ChatSender,
        *,
        rate: float = MESSAGES_PER_SECOND,
        per_chat_interval: float = 1.0,
        max_attempts: int = 5,
        backoff_base: float = 5.0,
        backoff_cap: float = 3600.0,
        send_timeout: float = 20.0,
        batch_size: int | None = None,
        idle_poll: float = 1.0,
        stale_after: float = 120.0,
        recover_every: float = 30.0,
        resend_unknown: bool = False,
        max_in_flight: int | None = None,
        worker_id: str | None = None,
        clock: Callable[[], datetime] = utcnow,
        metrics: Metrics | None = None,
        limits: SendLimits | None = None,
        caps: Callable[[], Caps] | None = None,
    ) -> None:
        if not 0 < rate <= 1000:
            raise ValueError("rate must be above 0 and at most 1000 messages a second")
        self.db = db
        self.sender = sender
        self.rate = rate
        self.per_chat_interval = per_chat_interval
        self.max_attempts = max_attempts
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.send_timeout = send_timeout
        self.batch_size = batch_size or max(5, min(500, int(rate * 2)))
        self.idle_poll = idle_poll
        self.stale_after = stale_after
        self.recover_every = recover_every
        self.resend_unknown = resend_unknown
        self.worker_id = (worker_id or default_worker_id())[:64]
        self.clock = clock
        # The programme's frequency caps as they are now (a new programme version applies at the next claim).
        self.caps = caps or Caps
        self.stats = DispatchStats()
        self.metrics = metrics or Metrics()
        self._counted_ok = self.metrics.sends.labels(result="ok")  # bound once: counted on every send
        # Telegram's limits, shared with every other dispatcher and replica of this bot (storage/rates.py):
        # the bot's rate as slots of the "bot" key, one message a second per chat as "chat:<id>" holds.
        self.limits: SendLimits = limits if limits is not None else MemoryLimits()
        # Sends overlap: at 1000/s with a few milliseconds per round trip a dozen are in flight, more
        # when Telegram is slow; the cap keeps a stalled server from piling up connections.
        self._in_flight = asyncio.Semaphore(max_in_flight or max(50, int(rate / 5)))
        self._answered: list[tuple[str, float]] = []  # chats to release, with the spacing until their next
        self._last_429: tuple[int, float] | None = None  # (chat, until when) of the last 429
        # A chat is held from its claim until its message is answered: the batch's sending time at most,
        # plus the send's timeout. A dispatcher that dies holding chats blocks them no longer than this.
        self._lease = send_timeout + self.batch_size / rate + 5.0
        self._stop = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        # Rows are handed over (and results committed) in groups of 20 ms' worth of sending.
        self._group = max(1, int(rate * 0.02))
        self.pacer = SharedPacer(self.limits, BOT_SLOT_KEY, rate, batch=self._group)
        # From 100/s on, a group's hand-over commit runs while the group before it is being sent, and
        # the next batch is claimed while this one is sent, so the send loop never waits for the
        # database; below that one commit fits easily between two slots and the unknown window stays
        # one row wide (see the module doc).
        self._lookahead = self._group > 1
        self._prefetch: asyncio.Task[list[Any]] | None = None
        self._sent_buffer: list[dict[str, Any]] = []

    # --- running ------------------------------------------------------------------------------------

    def stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        """Drain the outbox until `stop()`; recovers stale claims at start and now and then."""
        await self.recover(startup=True)
        last_recover = time.monotonic()
        while not self._stop.is_set():
            if time.monotonic() - last_recover > self.recover_every:
                await self.recover()
                last_recover = time.monotonic()
            try:
                handled = await self.run_once()
            except LimitsUnavailable as exc:  # rows are back in the outbox; nothing goes out unlimited
                log.warning("shared send limits unavailable (%s); sending paused", exc)
                handled = 0
            except (DBAPIError, OSError) as exc:  # the store is restarting: what was claimed is recovered later
                log.warning("outbox store unavailable (%s); sending paused", type(exc).__name__)
                handled = 0
            if handled == 0:
                await self._flush_sent()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), self.idle_poll)
        await self._drain_tasks()

    async def drain(self, *, until_empty: bool = True, limit_seconds: float = 60.0, horizon: float = 2.0
                    ) -> DispatchStats:
        """Send everything due now or within `horizon` seconds (tests, bench); returns when none is left."""
        await self.recover(startup=True)
        deadline = time.monotonic() + limit_seconds
        while time.monotonic() < deadline:
            handled = await self.run_once()
            if handled == 0:
                await self._drain_tasks()
                if not until_empty or not await self._due_left(horizon):
                    break
                await asyncio.sleep(min(0.05, self.idle_poll))
        await self._drain_tasks()
        return self.stats

    async def _due_left(self, horizon: float) -> bool:
        async with self.db.read() as s:
            found = await s.execute(sa.select(Outbox.id).where(
                Outbox.status.in_(("pending", "sending")),
                Outbox.not_before <= self.clock() + timedelta(seconds=horizon)).limit(1))
            return found.first() is not None

    async def run_once(self) -> int:
        """Claim one batch of due rows and send them; returns how many rows were handled."""
        await self._flush_sent()
        rows = await self._claimed()
        if not rows:
            return 0
        eligible, deferred = await self._hold_chats(rows)
        # Hand rows over in small groups (one commit each) so the unknown window stays a few rows wide.
        group = self._group
        chunks = [eligible[start:start + group] for start in range(0, len(eligible), group)]
        ahead: asyncio.Task[set[int]] | None = None
        unsent: list[Any] = []  # held chats whose row did not go: released at once
        halted = False  # the shared limits stopped answering: give the rest back
        try:
            for index, chunk in enumerate(chunks):
                if self._stop.is_set() or halted:
                    unsent.extend(chunk)
                    if ahead is not None:  # handed over but certainly not sent: give them back
                        ahead_ids = await ahead
                        ahead = None
                        deferred.extend((row.id, 0.0, row.id in ahead_ids) for row in chunk)
                    else:
                        deferred.extend((row.id, 0.0, False) for row in chunk)
                    continue
                slot_taken = False
                if ahead is not None:
                    mine, ahead = await ahead, None
                else:
                    # Wait for the slot *before* the hand-over mark, so a crash while waiting leaves the
                    # row plainly unsent (re-queued), not "handed over, result unknown".
                    if not await self._slot():
                        halted = True
                        unsent.extend(chunk)
                        deferred.extend((row.id, 1.0, False) for row in chunk)
                        continue
                    slot_taken = True
                    mine = await self._handover([row.id for row in chunk])
                if self._lookahead and index + 1 < len(chunks):
                    ahead = asyncio.create_task(self._handover([row.id for row in chunks[index + 1]]))
                if self._lookahead and self._prefetch is None and index == len(chunks) // 2:
                    self._prefetch = asyncio.create_task(self.claim(self.batch_size))
                for position, row in enumerate(chunk):
                    if row.id not in mine:  # recovered by another dispatcher meanwhile: it is theirs now
                        unsent.append(row)
                        continue
                    if halted or ((position or not slot_taken) and not await self._slot()):
                        halted = True  # handed over but certainly not sent: back, with its attempt
                        unsent.append(row)
                        deferred.append((row.id, 1.0, True))
                        continue
                    await self._in_flight.acquire()
                    task = asyncio.create_task(self._send(row))
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)
        finally:
            if ahead is not None:  # an error above: the hand-over may still commit; let it finish
                with contextlib.suppress(Exception):
                    await ahead
            with contextlib.suppress(LimitsUnavailable):
                await self.limits.release([(self._chat_key(row.chat_id), 0.0) for row in unsent])
        if deferred:
            await self._release(deferred)
        if halted:
            self.stats.limits_unavailable += 1
            raise LimitsUnavailable("the shared send limits did not answer")
        return len(rows)

    @staticmethod
    def _chat_key(chat_id: int) -> str:
        return f"chat:{int(chat_id)}"

    async def _slot(self) -> bool:
        """Wait for the bot's next send slot; False when the shared limits cannot be asked."""
        try:
            await self.pacer.slot()
        except LimitsUnavailable:
            return False
        return True

    async def _hold_chats(self, rows: list[Any]) -> tuple[list[Any], list[tuple[int, float, bool]]]:
        """The rows that may go now (their chat is free, and held for them) and those that wait their turn.

        One message a second per chat, across every dispatcher: a chat whose message is on its way, or was
        answered less than `per_chat_interval` ago, waits; so does a second row of one chat in this batch."""
        firsts: dict[int, Any] = {}
        deferred: list[tuple[int, float, bool]] = []
        for row in rows:
            if row.chat_id in firsts:
                deferred.append((row.id, self.per_chat_interval, False))
            else:
                firsts[row.chat_id] = row
        try:
            held = await self.limits.hold([self._chat_key(chat) for chat in firsts], lease=self._lease)
        except LimitsUnavailable:
            self.stats.limits_unavailable += 1
            await self._release([(row.id, 1.0, False) for row in rows])
            raise
        eligible = []
        for chat, row in firsts.items():
            wait = held[self._chat_key(chat)]
            if wait > 0:
                # A chat with a message on its way is held for a lease much longer than the send takes: look
                # again a second later rather than when the lease would end (a 429's pause is kept anyway).
                deferred.append((row.id, min(wait, self.per_chat_interval), False))
            else:
                eligible.append(row)
        self.stats.chat_waits += len(deferred)
        return eligible, deferred

    async def _claimed(self) -> list[Any]:
        """The batch claimed ahead of time while the last one was sent, or a fresh claim."""
        if self._prefetch is not None:
            task, self._prefetch = self._prefetch, None
            rows = await task
            if rows:
                return rows
        return await self.claim(self.batch_size)

    async def _drain_tasks(self) -> None:
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
        await self._flush_sent()
        if self._prefetch is not None:  # claimed ahead but not started: back to the outbox as they were
            task, self._prefetch = self._prefetch, None
            rows = await task
            if rows:
                await self._release([(row.id, 0.0, False) for row in rows])

    # --- the outbox rows ----------------------------------------------------------------------------

    async def claim(self, limit: int) -> list[Any]:
        """Mark up to `limit` due rows as 'sending' by this dispatcher, oldest due first."""
        now = self.clock()
        due = (sa.select(Outbox.id).where(Outbox.status == "pending", Outbox.not_before <= now)
               .order_by(Outbox.not_before, Outbox.id).limit(limit))
        if self.db.is_postgres:
            due = due.with_for_update(skip_locked=True)
        async with self.db.connection() as conn:  # hot path: Core statements, no ORM session per batch
            result = await conn.execute(
                sa.update(Outbox).where(Outbox.id.in_(due.scalar_subquery()))
                .values(status="sending", claimed_by=self.worker_id, claimed_at=now, sent_at=None)
                .returning(Outbox.id, Outbox.chat_id, Outbox.member_id, Outbox.text, Outbox.buttons,
                           Outbox.attempts, Outbox.not_before, Outbox.kind, Outbox.schedule_id)
                .execution_options(synchronize_session=False))
            rows = sorted(result.all(), key=lambda r: (r.not_before, r.id))
            # Frequency caps are counted here, in the claim's transaction (scheduler/caps.py).
            return await hold_back(conn, rows, self.caps(), now, postgres=self.db.is_postgres)

    async def _handover(self, row_ids: list[int]) -> set[int]:
        """Commit that these rows are about to go to Telegram (see the module doc: crash safety).

        Returns the ids still claimed by this dispatcher; only those may be sent. A row that promises an
        offer coupon gets it issued in this same transaction (scheduler/offers.py)."""
        now = self.clock()
        async with self.db.connection() as conn:
            result = await conn.execute(
                sa.update(Outbox).where(Outbox.id.in_(row_ids), Outbox.status == "sending",
                                        Outbox.claimed_by == self.worker_id)
                .values(sent_at=now, claimed_at=now, attempts=Outbox.attempts + 1)
                .returning(Outbox.id, Outbox.offer, Outbox.schedule_id, Outbox.member_id)
                .execution_options(synchronize_session=False))
            rows = result.all()
            refused = await issue_for_handover(conn, [r for r in rows if r.offer], now, postgres=self.db.is_postgres)
            return {stored_id(r[0]) for r in rows if r[0] not in refused}

    async def _release(self, deferred: list[tuple[int, float, bool]]) -> None:
        """Give claimed rows that were not sent back to the outbox: (row id, seconds to wait, handed over).

        A row handed over but certainly not sent (stopping) gets its attempt back, and its offer coupon is
        withdrawn until it is handed over again."""
        now = self.clock()
        params = [{"rid": row_id, "nb": now + timedelta(seconds=max(wait, 0.0)), "undo": int(handed_over)}
                  for row_id, wait, handed_over in deferred]
        async with self.db.connection() as conn:  # one executemany for the whole list
            await conn.execute(sa.update(Outbox).where(Outbox.id == sa.bindparam("rid"), Outbox.status == "sending",
                                                       Outbox.claimed_by == self.worker_id)
                               .values(status="pending", claimed_by=None, claimed_at=None, sent_at=None,
                                       not_before=sa.bindparam("nb"),
                                       attempts=Outbox.attempts - sa.bindparam("undo")), params)
            await withdraw_unsent(conn, [row_id for row_id, _, handed_over in deferred if handed_over])

    async def recover(self, *, stale_after: float | None = None, startup: bool = False) -> int:
        """Rows left 'sending' by a dispatcher that died: back to pending if never handed over, else failed
        as 'delivery unknown' (or pending again with `resend_unknown`). Returns how many were recovered."""
        now = self.clock()
        age = self.stale_after if stale_after is None else stale_after
        stale = sa.and_(Outbox.status == "sending", Outbox.claimed_by != self.worker_id,
                        Outbox.claimed_at <= now - timedelta(seconds=age))
        async with self.db.transaction() as tx:
            back = await tx.execute(sa.update(Outbox).where(stale, Outbox.sent_at.is_(None))
                                    .values(status="pending", claimed_by=None, claimed_at=None)
                                    .execution_options(synchronize_session=False))
            if self.resend_unknown:
                unknown = await tx.execute(sa.update(Outbox).where(stale, Outbox.sent_at.is_not(None))
                                           .values(status="pending", claimed_by=None, claimed_at=None,
                                                   sent_at=None, last_error=UNKNOWN_DELIVERY)
                                           .execution_options(synchronize_session=False))
            else:
                unknown = await tx.execute(sa.update(Outbox).where(stale, Outbox.sent_at.is_not(None))
                                           .values(status="failed", last_error=UNKNOWN_DELIVERY)
                                           .execution_options(synchronize_session=False))
        recovered, unknown_n = rows_changed(back), rows_changed(unknown)
        if recovered or unknown_n:
            log.warning("outbox recovery%s: %d unsent claims re-queued, %d handed over with unknown result %s",
                        " at start-up" if startup else "", recovered, unknown_n,
                        "re-queued" if self.resend_unknown else "marked failed (not resent)")
        self.stats.recovered += recovered
        self.stats.unknown += unknown_n
        return recovered + unknown_n

    # --- one send -----------------------------------------------------------------------------------

    async def _send(self, row: Any) -> None:
        spacing = self.per_chat_interval
        try:
            try:
                async with asyncio.timeout(self.send_timeout):
                    sent = await self.sender.send(row_message(row))
            except TimeoutError:
                if not self.resend_unknown:  # Telegram may well have it: same rule as a crash after hand-over
                    await self._unknown(row.id)
                    return
                raise Transient(f"no answer within {self.send_timeout:g}s") from None
            except SendError:
                raise
            except Exception as exc:  # a bug or an unexpected library error must not lose the row
                log.exception("unexpected error sending outbox row %s", row.id)
                raise Transient(f"{type(exc).__name__}: {exc}") from None
            await self._mark_sent(row.id, sent)
        except SendError as exc:
            try:
                spacing = max(spacing, await self._failed(row, exc))
            except (DBAPIError, OSError) as db_exc:  # the row stays 'sending'; recovery puts it back
                log.warning("outbox row %s: could not record %s (%s)", row.id, type(exc).__name__,
                            type(db_exc).__name__)
        finally:
            # One message a second per chat as Telegram sees them: the chat was held while this one was on
            # its way, and the next one waits a full interval from when this one was answered (by then
            # Telegram has it), not from when it was sent, so a request delayed on its way cannot bring two
            # messages closer together at the receiving end -- whichever dispatcher sends the next.
            self._answered.append((self._chat_key(row.chat_id), spacing))
            self._in_flight.release()
        if len(self._answered) >= self._group:
            await self._flush_answered()

    async def _flush_answered(self) -> None:
        if not self._answered:
            return
        batch, self._answered = self._answered, []
        try:
            await self.limits.release(batch)
        except LimitsUnavailable as exc:  # their holds run out with the lease: later, never sooner
            log.warning("could not release %d chats in the shared limits (%s)", len(batch), exc)

    async def _unknown(self, row_id: int) -> None:
        log.warning("outbox row %s: no answer within %gs; not resent (delivery unknown)", row_id, self.send_timeout)
        self.stats.unknown += 1
        self.metrics.sends.labels(result="unknown").inc()
        async with self.db.transaction() as tx:
            await tx.execute(sa.update(Outbox).where(Outbox.id == row_id, Outbox.status == "sending")
                             .values(status="failed", last_error=f"{UNKNOWN_DELIVERY} (timeout)")
                             .execution_options(synchronize_session=False))

    async def _mark_sent(self, row_id: int, sent: Sent) -> None:
        # At high rates results are committed in small groups (one commit per `group` rows); at 30/s
        # the group is one row, so the unknown window stays one round trip (see the module doc).
        self._sent_buffer.append({"rid": row_id, "at": self.clock(), "mid": sent.message_id})
        self.stats.sent += 1
        self._counted_ok.inc()
        if len(self._sent_buffer) >= self._group:
            await self._flush_sent()

    async def _flush_sent(self) -> None:
        await self._flush_answered()
        if not self._sent_buffer:
            return
        batch, self._sent_buffer = self._sent_buffer, []
        # A row erased while it was on its way stays skipped (erasure scrubbed it; nothing to record).
        try:
            async with self.db.connection() as conn:
                await conn.execute(sa.update(Outbox).where(Outbox.id == sa.bindparam("rid"),
                                                           Outbox.status != "skipped")
                                   .values(status="sent", sent_at=sa.bindparam("at"),
                                           telegram_message_id=sa.bindparam("mid"), last_error=None), batch)
        except (DBAPIError, OSError) as exc:
            # Telegram has these messages: keep them to record at the next flush (the store is restarting,
            # say). Raising here would kill the send task and leave its rows 'sending' for good.
            self._sent_buffer = batch + self._sent_buffer
            log.warning("could not record %d sent outbox rows yet (%s); will retry", len(batch), type(exc).__name__)

    async def _failed(self, row: Any, exc: SendError) -> float:
        """Record a failed send; returns how long its chat must wait before the next message (a 429's)."""
        name = type(exc).__name__
        self.stats.errors[name] = self.stats.errors.get(name, 0) + 1
        error = f"{name}: {exc.description}"[:500]
        now = self.clock()
        attempts = int(row.attempts) + 1
        values: dict[str, Any]
        chat_wait = 0.0
        if isinstance(exc, RetryAfter):
            # Telegram asks us to wait: this chat for retry_after, and the whole bot when 429s come for a
            # second chat within one retry_after (then it is the bot's rate, not one chat's); the row goes
            # back (not its fault). Both pauses are in the shared limits, so every dispatcher keeps them.
            self.stats.rate_limited += 1
            chat_wait = exc.seconds
            await self._pause_for(row.chat_id, exc.seconds)
            values = dict(status="pending", not_before=now + timedelta(seconds=exc.seconds),
                          attempts=attempts - 1, last_error=error)
        elif isinstance(exc, Blocked):
            self.stats.blocked += 1
            self.stats.failed += 1
            values = dict(status="failed", last_error=error)
        elif isinstance(exc, BadRequest | ThreadNotFound):
            self.stats.failed += 1
            values = dict(status="failed", last_error=error)
        elif attempts >= self.max_attempts:
            self.stats.failed += 1
            values = dict(status="failed", last_error=f"gave up after {attempts} attempts: {error}"[:500])
        else:
            self.stats.retried += 1
            delay = min(self.backoff_cap, self.backoff_base * 2 ** (attempts - 1)) * random.uniform(0.8, 1.2)
            values = dict(status="pending", not_before=now + timedelta(seconds=delay), last_error=error)
        result = ("429" if isinstance(exc, RetryAfter) else "403" if isinstance(exc, Blocked)
                  else "retry" if values["status"] == "pending" else "error")
        self.metrics.sends.labels(result=result).inc()
        if result == "429":
            self.metrics.rate_limited.labels(source="outbox").inc()
        if values["status"] == "pending":
            values.update(claimed_by=None, claimed_at=None, sent_at=None)
        async with self.db.transaction() as tx:
            # Only a row still being sent: one erased meanwhile must not come back as pending (to chat 0).
            await tx.execute(sa.update(Outbox).where(Outbox.id == row.id, Outbox.status == "sending").values(**values)
                             .execution_options(synchronize_session=False))
            # Telegram refused it, so the member did not get it: no coupon for it (a retry issues it again).
            await withdraw_unsent(await tx.connection(), [row.id])
            if isinstance(exc, Blocked):
                # Only the member whose own chat refused is unreachable: a test send to a staff member's
                # chat (kind "test") carries a member's id for the wording, not for the address.
                await tx.execute(sa.update(Member).where(Member.id == row.member_id, Member.status == "active",
                                                         Member.chat_id == row.chat_id)
                                 .values(status="unreachable").execution_options(synchronize_session=False))
                await tx.execute(sa.update(Outbox).where(Outbox.member_id == row.member_id,
                                                         Outbox.chat_id == row.chat_id,
                                                         Outbox.status == "pending")
                                 .values(status="skipped", skip_reason="unreachable")
                                 .execution_options(synchronize_session=False))
        if not isinstance(exc, RetryAfter):
            log.info("outbox row %s: %s -> %s", row.id, error, values["status"])
        return chat_wait

    async def _pause_for(self, chat_id: int, seconds: float) -> None:
        moment = time.monotonic()
        last, self._last_429 = self._last_429, (int(chat_id), moment + seconds)
        if last is not None and last[0] != int(chat_id) and last[1] > moment:
            self.stats.bot_pauses += 1
            log.warning("429s for several chats: every dispatcher of the bot waits %.1fs", seconds)
            with contextlib.suppress(LimitsUnavailable):
                await self.pacer.pause(seconds)
        else:
            self.stats.chat_pauses += 1


async def outbox_counts(db: Db, *, since: datetime | None = None) -> dict[str, Any]:
    """Rows by status (and skipped by reason, failed by error), optionally only those created since."""
    where = [Outbox.created_at >= as_utc(since)] if since else []
    async with db.read() as s:
        by_status = dict((await s.execute(sa.select(Outbox.status, sa.func.count()).where(*where)
                                          .group_by(Outbox.status))).all())
        skipped = dict((await s.execute(sa.select(Outbox.skip_reason, sa.func.count())
                                        .where(Outbox.status == "skipped", *where)
                                        .group_by(Outbox.skip_reason))).all())
        failed = dict((await s.execute(sa.select(Outbox.last_error, sa.func.count())
                                       .where(Outbox.status == "failed", *where)
                                       .group_by(Outbox.last_error).limit(20))).all())
        due = (await s.execute(sa.select(sa.func.count()).where(
            Outbox.status == "pending", Outbox.not_before <= utcnow(), *where))).scalar_one()
    return {"by_status": {k: int(v) for k, v in by_status.items()},
            "skipped": {str(k): int(v) for k, v in skipped.items()},
            "failed": {str(k): int(v) for k, v in failed.items()}, "due_now": int(due)}
