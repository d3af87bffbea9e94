"""What both Telegram runtimes share: the ordered-per-member work lanes and the error boundary.

A runtime (aiogram or python-telegram-bot) receives raw updates (long polling through `Poller`, or
the webhook) and hands them to `Pipeline.receive`, which records them in the durable inbox before
they are confirmed to Telegram. The pipeline then handles them from the inbox: each member's updates
in arrival order, different members concurrently; the runtime's `parse` turns its framework's update
into an `Incoming`, the router answers it, the replies go out through the runtime's sender, and the
update is marked done. One bad update is logged (without personal data) and never stops the bot.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import logging
import secrets
import time
from collections import deque
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from dataclasses import replace as dc_replace
from datetime import timedelta
from typing import Any, Protocol

from loyalbot.chat import logids
from loyalbot.chat.limits import CHAT_SPACING, GROUP_BURST, GROUP_MESSAGES_PER_MINUTE
from loyalbot.chat.metrics import Metrics
from loyalbot.chat.outbound import ChatSender, RetryAfter, Transient
from loyalbot.chat.pacing import PacedSender
from loyalbot.chat.port import Incoming, Reply, deliver, log_failure
from loyalbot.storage.clock import as_utc, utcnow
from loyalbot.storage.inbox import Claimed, Inbox, MemoryInbox, Received
from loyalbot.storage.rates import SendLimits
from loyalbot.storage.throttle import FailureLimit

log = logging.getLogger("loyalbot.runtime")

# One salt per process: the same user gets the same tag in one run's logs, and no tag can be
# turned back into a Telegram id by hashing candidate ids.
_SALT = secrets.token_bytes(16)

ALLOWED_UPDATES = ["message", "edited_message", "callback_query"]


@dataclass(frozen=True)
class Connection:
    """Where and how a runtime reaches Telegram. The token is a secret: never log this object."""

    token: str
    api_url: str = "https://api.telegram.org"  # a Bot API server root; methods at <root>/bot<token>/<method>
    webhook_url: str | None = None  # set: receive by webhook; unset: long polling
    webhook_secret: str | None = None
    webhook_listen: str = "127.0.0.1:8443"
    polling_timeout: int = 10
    # Polling only: delete a webhook that is set instead of refusing to start (`loyalbot run --delete-webhook`).
    delete_webhook: bool = False
    trusted_proxies: tuple[str, ...] = ("127.0.0.1", "::1")  # peers whose X-Forwarded-For the webhook believes

    def __repr__(self) -> str:
        return f"Connection(api_url={self.api_url!r}, webhook={bool(self.webhook_url)})"


def user_tag(user_id: int | None) -> str:
    """A short, salted hash of a Telegram user id for logs (never the id itself)."""
    if user_id is None:
        return "-"
    return hashlib.blake2b(str(user_id).encode(), key=_SALT, digest_size=5).hexdigest()


def quiet_http_loggers() -> None:
    """httpx logs every request URL at INFO, and Bot API URLs contain the bot token: keep it out of logs."""
    for name in ("httpx", "httpcore"):
        logging.getLogger(name).setLevel(logging.WARNING)


class RouterLike(Protocol):
    """What a runtime needs of `handlers.router.Router`."""

    async def handle(self, incoming: Incoming) -> list[Reply]: ...


class Lanes:
    """Runs jobs concurrently across keys and strictly in submission order within one key.

    `submit` never waits, so a framework's update loop can hand an update over and move on to the
    next; a lane's task ends when its queue is empty, so idle members cost nothing.
    """

    def __init__(self, *, concurrency: int = 64) -> None:
        self._queues: dict[Hashable, deque[Callable[[], Awaitable[None]]]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._slots = asyncio.Semaphore(concurrency)  # bounds work in flight (database pool, sockets)

    def submit(self, key: Hashable, job: Callable[[], Awaitable[None]]) -> None:
        queue = self._queues.get(key)
        if queue is not None:
            queue.append(job)
            return
        self._queues[key] = deque([job])
        task = asyncio.get_running_loop().create_task(self._run(key))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, key: Hashable) -> None:
        queue = self._queues[key]
        try:
            while queue:
                job = queue[0]
                async with self._slots:
                    try:
                        await job()
                    except Exception:  # jobs have their own boundary; this only keeps the lane alive
                        log.exception("lane job failed")
                queue.popleft()
        finally:
            self._queues.pop(key, None)

    @property
    def pending(self) -> int:
        return sum(len(q) for q in self._queues.values())

    async def drain(self, within: float = 10.0) -> bool:
        """Wait until every submitted job has run (or `within` seconds pass); True when nothing is left."""
        deadline = asyncio.get_running_loop().time() + within
        while self._tasks:
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                return False
            await asyncio.wait(set(self._tasks), timeout=remaining)
        return True

    async def cancel(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


def lane_of(update: dict[str, Any]) -> str:
    """Whose updates must keep their order: the user's (a member, or a colleague in the staff group)."""
    for kind in ("message", "edited_message", "callback_query"):
        body = update.get(kind)
        if isinstance(body, dict):
            sender = body.get("from") or {}
            if isinstance(sender, dict) and isinstance(sender.get("id"), int):
                return f"u:{sender['id']}"
            chat = body.get("chat") or {}
            if isinstance(chat, dict) and isinstance(chat.get("id"), int):
                return f"c:{chat['id']}"
    return "other"


def fingerprint(update: dict[str, Any]) -> str:
    """What makes an update itself, hashed: the same for a redelivery whichever framework serialised it."""
    parts: list[Any] = []
    for kind in ("message", "edited_message", "callback_query"):
        body = update.get(kind)
        if isinstance(body, dict):
            chat = body.get("chat") or {}
            parts = [kind, body.get("id"), chat.get("id") if isinstance(chat, dict) else None,
                     body.get("message_id"), body.get("date"), body.get("edit_date")]
            break
    else:
        parts = ["other", sorted(update)]
    return hashlib.blake2b(repr(parts).encode(), digest_size=16).hexdigest()


def received(updates: list[dict[str, Any]]) -> list[Received]:
    """Raw updates (webhook bodies, getUpdates results) as inbox records; ones without an id are dropped."""
    out = []
    for update in updates:
        update_id = update.get("update_id")
        if isinstance(update_id, int) and not isinstance(update_id, bool):
            out.append(Received(update_id, lane_of(update), fingerprint(update), update))
    return out


Parse = Callable[[dict[str, Any]], "Incoming | None"]


class Persistent:
    """A `ChatSender` that tries a call again after a transient failure, so a reply is not lost to a blip.

    A Bot API 5xx, a timeout or a network failure (`Transient`) is tried again after 0.5, 1, 2, 4 ...
    seconds (at most `max_backoff` apart), a 429 (`RetryAfter`) after the time Telegram names, for as
    long as the next try still starts within `within` seconds of the first: a storm of 5xx answers
    lasting several seconds is ridden out, not given up after a fixed number of quick tries. A 400 or
    403 (or any other refusal) is never tried again. A timeout may hide a message that did arrive, so
    a retried send can, rarely, show a reply twice; that is the price of not losing it. What still
    fails at the deadline is raised to the caller (the pipeline then leaves the update in the inbox).
    """

    def __init__(self, sender: ChatSender, *, within: float = 30.0, backoff: float = 0.5, max_backoff: float = 8.0,
                 attempts: int | None = None, sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                 clock: Callable[[], float] = time.monotonic,
                 on_rate_limited: Callable[[], None] | None = None) -> None:
        self.sender = sender
        self.on_rate_limited = on_rate_limited
        self.within = within
        self.attempts = attempts  # None: as many as fit within the deadline
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.sleep = sleep
        self.clock = clock

    def __getattr__(self, name: str) -> Any:
        call = getattr(self.sender, name)
        if not callable(call):
            return call

        async def persistent(*args: Any, **kwargs: Any) -> Any:
            deadline = self.clock() + self.within
            attempt = 0
            while True:
                attempt += 1
                try:
                    return await call(*args, **kwargs)
                except RetryAfter as exc:
                    if self.on_rate_limited is not None:
                        self.on_rate_limited()
                    wait = exc.seconds
                    if self._last(attempt, wait, deadline):
                        raise
                except Transient as exc:
                    wait = min(self.backoff * 2 ** (attempt - 1), self.max_backoff)
                    if self._last(attempt, wait, deadline):
                        raise
                    log.info("%s failed (%s); trying again in %.1fs", name, type(exc).__name__, wait)
                await self.sleep(wait)

        return persistent

    def _last(self, attempt: int, wait: float, deadline: float) -> bool:
        """Whether the try just failed was the last: no attempts left, or the next would start past the deadline."""
        return (self.attempts is not None and attempt >= self.attempts) or self.clock() + wait > deadline


class Undelivered(Exception):
    """An update's replies could not go out for now (Telegram kept answering 5xx or 429): it is not done."""

    def __init__(self, retry_in: float) -> None:
        self.retry_in = retry_in
        super().__init__(f"replies not delivered; try again in {retry_in:.1f}s")


class Pipeline:
    """Updates in: recorded in the inbox, then handled from it (router -> deliver) per member in order.

    `receive` returns once the updates are durably recorded: only then may the runtime confirm them to
    Telegram. A worker claims recorded updates (the oldest of each member first, also what a crash
    left unfinished), runs each through the router inside an error boundary, delivers the replies and
    marks the update done, in the transaction of the worker's next claim (one transaction a round, not
    one per update). A crash between sending a reply and that mark handles the update again on restart:
    its effects are not repeated (handlers remember them by `Incoming.update_key`) and its answer is the
    same, sent again. At most the updates this process held at the crash are repeated: never more than
    `2 * concurrency` (what one worker may claim at a time), and only those whose replies had gone out.
    An update whose replies Telegram keeps refusing with 5xx or 429 past the retries is not done: it is
    given back to the inbox (`Inbox.postpone`) and handled again after `retry_undelivered` seconds (or the
    429's retry_after), up to the inbox's attempts; a reply that did go out before may then show twice.
    """

    def __init__(self, sender: ChatSender, router: RouterLike | None = None, *, concurrency: int = 64,
                 inbox: Inbox | None = None) -> None:
        self.sender = sender
        # Replies go out through this: a transient failure is tried again before the update is marked
        # done, since a done update is never handled again; one that outlasts the retries hands the
        # update back to the inbox (`Undelivered`), to be handled again a little later.
        self.replies = self._persistent(sender)
        self.metrics = Metrics()  # the App puts its own here, the one /metrics serves
        self.router = router
        self.inbox: Inbox = inbox or MemoryInbox()
        self.parse: Parse | None = None  # set by the runtime: raw update -> Incoming (None: nothing to do)
        self.concurrency = concurrency
        self.lanes = Lanes(concurrency=concurrency)
        self.handled = 0
        self.failed = 0
        self.undelivered = 0
        # How long an update whose replies met 5xx answers past the retries waits in the inbox before it is
        # handled again (after a 429, the time Telegram named).
        self.retry_undelivered = 5.0
        self.listeners: list[Callable[[Incoming], None]] = []  # e.g. a bench counting handled updates
        self.heartbeat = 10.0  # seconds between lease renewals of updates in hand
        self.drain_within = 10.0  # seconds a stop waits for the updates being handled (LOYALBOT_DRAIN_SECONDS)
        self.prune_every = 3600.0
        self._inflight: set[int] = set()  # claimed and not yet marked done
        self._finished: list[int] = []  # handled, to be marked done with the next claim
        self._wake = asyncio.Event()
        self._worker: asyncio.Task[None] | None = None
        self._stopping = False
        self._draining = False  # shutting down: claim nothing more, start nothing more
        self._untouched: list[int] = []  # claimed, then given back unstarted by a drain
        self._rounds = 0
        self._empty_round = -1
        self._round_done = asyncio.Event()

    def _persistent(self, sender: ChatSender) -> Persistent:
        return Persistent(sender, on_rate_limited=lambda: self.metrics.rate_limited.labels(source="replies").inc())

    def pace(self, limits: SendLimits, *, group_per_minute: float = GROUP_MESSAGES_PER_MINUTE,
             group_burst: int = GROUP_BURST, bot_rate: float | None = None,
             spacing: float = CHAT_SPACING) -> None:
        """Space replies by the limits every sender of the bot shares: one message a second per private chat,
        the group's budget in a group (chat.pacing.PacedSender, with the staff relay's figures) and, with
        `bot_rate`, a slot of the bot's overall rate; retries go through the spacing too."""
        self.replies = self._persistent(PacedSender(self.sender, limits, group_per_minute=group_per_minute,
                                                    group_burst=group_burst, bot_rate=bot_rate,
                                                    spacing=spacing))

    # --- receiving --------------------------------------------------------------------------------------

    async def receive(self, updates: list[dict[str, Any]]) -> int:
        """Record raw updates durably; returns how many were new. Raises when they could not be recorded."""
        records = received(updates)
        if not records:
            return 0
        new = await self.inbox.record(records)
        if len(new) < len(records):
            log.info("%d redelivered update(s) ignored", len(records) - len(new))
            self.metrics.updates.labels(outcome="repeated").inc(len(records) - len(new))
        if new:
            self._wake.set()
        return len(new)

    def submit(self, incoming: Incoming) -> None:
        """Handle an `Incoming` that has no Telegram update behind it (tests); not durable."""
        self.lanes.submit(incoming.user_id, lambda: self._process_once(incoming))

    async def _process_once(self, incoming: Incoming) -> None:
        with contextlib.suppress(Undelivered):  # nothing to hand it back to: logged and counted by process()
            await self.process(incoming)

    # --- the worker -------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Start handling what is in the inbox: first whatever a crash left unfinished."""
        if self._worker is not None:
            return
        self._stopping = False
        self._draining = False
        recovered = await self.inbox.recover()
        if recovered:
            log.info("%d update(s) left unfinished by the last run are handled first", recovered)
        self._wake.set()
        self._worker = asyncio.get_running_loop().create_task(self._work(), name="inbox-worker")

    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        next_beat = loop.time() + self.heartbeat
        next_prune = loop.time() + 60.0
        while not self._stopping:
            self._wake.clear()
            try:
                # Updates handled since the last round are marked done in the claim's own transaction.
                finished, self._finished = self._finished, []
                room = self.concurrency * 2 - len(self._inflight) + len(finished)
                try:
                    claimed = await self.inbox.claim(limit=max(room, 0), skip=self._inflight, finished=finished)
                except BaseException:
                    self._finished = finished + self._finished  # not marked: with the next round
                    raise
                self._inflight.difference_update(finished)
                self._rounds += 1
                if not claimed and not self._inflight:
                    self._empty_round = self._rounds
                self._round_done.set()
                for row in claimed:
                    self._inflight.add(row.update_id)
                    self.lanes.submit(row.lane, functools.partial(self._handle, row))
                if loop.time() >= next_beat:
                    next_beat = loop.time() + self.heartbeat
                    await self.inbox.extend(set(self._inflight))
                if loop.time() >= next_prune:
                    next_prune = loop.time() + self.prune_every
                    pruned = await self.inbox.prune()
                    if pruned:
                        log.info("inbox pruned: %d handled update(s)", pruned)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the store is away: keep the loop, try again shortly
                log.warning("inbox worker: %s", type(exc).__name__)
                await asyncio.sleep(1.0)
                continue
            # Woken by new updates or a finished one; otherwise look again now and then for updates that
            # another process received or left behind (an expired lease).
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=1.0)

    async def _handle(self, row: Claimed) -> None:
        if self._draining:  # claimed but not started before the drain: given back, not handled here
            self._untouched.append(row.update_id)
            self._inflight.discard(row.update_id)
            return
        token = logids.update_id.set(row.update_id)  # on every log line made while handling it
        try:
            await self._handle_row(row)
        finally:
            logids.update_id.reset(token)

    async def _handle_row(self, row: Claimed) -> None:
        try:
            incoming = self._incoming(row)
            if incoming is not None:
                await self.process(incoming)
            if row.received_at is not None:
                self.metrics.update_latency.observe(max(0.0, (utcnow() - as_utc(row.received_at)).total_seconds()))
        except Undelivered as exc:  # not handled: back to the inbox, handled again (effects not repeated)
            self._inflight.discard(row.update_id)
            try:
                await self.inbox.postpone([row.update_id], after=timedelta(seconds=exc.retry_in))
            except Exception as failure:  # the store is away: the claim's lease runs out instead
                log.warning("update %s not postponed (%s); taken again when its lease ends", row.update_id,
                            type(failure).__name__)
            self._wake.set()
            return
        except BaseException:  # cancelled (a stop that could not wait): not handled, stays in the inbox
            self._inflight.discard(row.update_id)
            raise
        # Handled: marked done with the worker's next claim (it stays in `_inflight`, so it is not taken
        # again meanwhile). A kill before that mark repeats its replies on restart, nothing else.
        self._finished.append(row.update_id)
        self._wake.set()

    async def _mark_finished(self) -> None:
        """Mark done what was handled and not marked yet (at a stop, when no claim round follows)."""
        finished, self._finished = self._finished, []
        for update_id in finished:
            try:
                await self.inbox.done(update_id)
            except Exception as exc:  # stays claimed; after a restart (or its lease) it is handled again
                log.error("update %s handled but not marked done: %s", update_id, type(exc).__name__)
            self._inflight.discard(update_id)

    def _incoming(self, row: Claimed) -> Incoming | None:
        if self.parse is None:
            return None
        try:
            incoming = self.parse(row.payload)
        except Exception as exc:  # an update the framework cannot read: nothing to answer
            log.warning("update %s unreadable: %s", row.update_id, type(exc).__name__)
            return None
        if incoming is not None:
            incoming = dc_replace(incoming, update_id=row.update_id,
                                  update_key=f"{row.update_id}:{row.fingerprint[:12]}")
        return incoming

    async def process(self, incoming: Incoming) -> None:
        """Handle one update now. Failures are logged (without personal data) and answered, never raised,
        except `Undelivered`: Telegram kept answering its replies with 5xx or 429 past the retries, so the
        update is not handled yet and must not be marked done (the inbox worker hands it back)."""
        if self.router is None:
            log.warning("update dropped: no router yet (user %s)", user_tag(incoming.user_id))
            return
        try:
            replies = await self.router.handle(incoming)
            await deliver(incoming, replies, self.replies)
            self.handled += 1
            self.metrics.updates.labels(outcome="handled").inc()
        except (Transient, RetryAfter) as exc:
            self.undelivered += 1
            self.metrics.updates.labels(outcome="undelivered").inc()
            retry_in = max(exc.seconds, 0.5) if isinstance(exc, RetryAfter) else self.retry_undelivered
            log.warning("update not answered: %s past the retries (user %s); handled again in %.0fs",
                        type(exc).__name__, user_tag(incoming.user_id), retry_in)
            raise Undelivered(retry_in) from None
        except Exception as exc:
            self.failed += 1
            self.metrics.updates.labels(outcome="failed").inc()
            log_failure(log, "update failed", incoming, exc, frames=6,
                        detail=f"user {user_tag(incoming.user_id)}, chat type {incoming.chat_type}")
        for listener in self.listeners:
            listener(incoming)

    @property
    def busy(self) -> bool:
        """Whether updates are being handled (or queued to be) in this process."""
        return bool(self._inflight) or self.lanes.pending > 0

    async def drain(self, within: float = 10.0) -> bool:
        """Wait until every update recorded so far is handled (the worker goes on); True when none is left."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        if self._worker is None:
            return await self.lanes.drain(within)
        while loop.time() < deadline and not self._worker.done():
            self._round_done.clear()
            self._wake.set()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._round_done.wait(), timeout=max(0.01, deadline - loop.time()))
            if self._empty_round == self._rounds and not self.busy:
                return True  # a claim found nothing left and nothing is in hand
            if self.busy:
                await asyncio.sleep(0.02)  # let the lanes get on before looking again
        return False

    async def close(self, within: float = 10.0) -> None:
        """A clean stop (SIGTERM): claim nothing more, finish the updates already being handled (within
        `within` seconds), mark them done and give every other claim back to the shared inbox at once, so
        another replica takes those updates without waiting for their lease to run out. An update whose
        handling outlasts `within` is cancelled and given back too; it is handled again elsewhere (its
        effects are not repeated). Without a store (`MemoryInbox`) nothing would survive the process, so
        there everything received is handled first."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        if isinstance(self.inbox, MemoryInbox):
            await self.drain(within)
        self._draining = True
        if self._worker is not None:
            self._stopping = True
            self._wake.set()  # let a claim in progress finish and its rows be handed (and given) back
            try:
                await asyncio.wait_for(asyncio.shield(self._worker), timeout=max(0.1, deadline - loop.time()))
            except (TimeoutError, asyncio.CancelledError, Exception):
                self._worker.cancel()
                await asyncio.gather(self._worker, return_exceptions=True)
            self._worker = None
        if not await self.lanes.drain(max(0.1, deadline - loop.time())):
            log.warning("stopping with %d update(s) unfinished; given back to the inbox", self.lanes.pending)
            await self.lanes.cancel()
        await self._mark_finished()
        untouched, self._untouched = self._untouched, []
        try:
            released = await self.inbox.release(untouched)
        except Exception as exc:  # the store is away: the leases run out instead
            log.warning("inbox claims not given back (%s); they free up when their lease ends", type(exc).__name__)
        else:
            if released:
                log.info("%d claimed update(s) given back to the inbox for another process", released)
        self._inflight.clear()


class PollingConflict(RuntimeError):
    """getUpdates answered 409 Conflict: a webhook is set for the bot, or another process polls it."""

    def __init__(self, description: str) -> None:
        self.description = description
        self.webhook = "webhook" in description.lower()
        if self.webhook:
            advice = ("a webhook is set for this bot, so another deployment receives its updates by webhook. "
                      "Stop that deployment, or set LOYALBOT_WEBHOOK_URL to run this process as one of its "
                      "replicas, or run `loyalbot run --delete-webhook` once to switch the bot to polling")
        else:
            advice = ("another process is already polling this bot (only one may call getUpdates). Stop it, or "
                      "run several replicas in webhook mode behind nginx (LOYALBOT_WEBHOOK_URL; see "
                      "`loyalbot nginx-config`)")
        super().__init__(f"Telegram answered 409 Conflict to getUpdates: {advice}.")


# A process that has polled before gets this many 409s in a row before it gives up: a newcomer's first
# getUpdates ends the running one's with 409, and the newcomer (never polled yet) is the one that stops.
CONFLICTS_TOLERATED = 3
# Failed polls (the Bot API or the store unreachable) are retried 0.5, 1, 2, 4 s apart, then every 5 s: a store
# back after a restart is polled again within 5 s, not after a backoff grown to 30 s while it was down.
POLL_RETRY_MAX = 5.0


class Poller:
    """Long polling that confirms an update to Telegram only once it is recorded in the inbox.

    getUpdates with `offset` tells Telegram that every update below it is received; the offset moves
    past a batch only after `pipeline.receive` has stored it. Nothing is confirmed on a failure to
    store: the same batch comes again.

    A 409 Conflict stops polling and is handed to `on_fatal`: at once when a webhook is set or when
    this process has not polled successfully yet (it is the second consumer), after
    CONFLICTS_TOLERATED in a row otherwise.
    """

    def __init__(self, fetch: Fetch, pipeline: Pipeline, *, timeout: int,
                 on_fatal: Callable[[BaseException], None] | None = None) -> None:
        self.fetch = fetch
        self.pipeline = pipeline
        self.timeout = timeout
        self.on_fatal = on_fatal
        self.offset: int | None = None
        self._task: asyncio.Task[None] | None = None
        self._polled = False
        self._stopped = False

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="poller")

    async def _run(self) -> None:
        failures = 0
        conflicts = 0
        while True:
            try:
                updates = await self.fetch(self.offset, self.timeout)
                self._polled = True
                conflicts = 0
                if updates:
                    await self.pipeline.receive(updates)
                    self.offset = max(int(u["update_id"]) for u in updates) + 1
                failures = 0
            except asyncio.CancelledError:
                raise
            except PollingConflict as exc:
                conflicts += 1
                if exc.webhook or not self._polled or conflicts >= CONFLICTS_TOLERATED:
                    log.error("polling stopped: %s", exc)
                    self._stopped = True
                    if self.on_fatal is not None:
                        self.on_fatal(exc)
                    return
                log.warning("getUpdates answered 409 Conflict (%d in a row); trying again", conflicts)
                await asyncio.sleep(1.0)
            except Exception as exc:
                failures += 1
                log.warning("polling failed (%s); retrying", type(exc).__name__)
                await asyncio.sleep(min(0.5 * 2 ** min(failures - 1, 6), POLL_RETRY_MAX))

    async def stop(self) -> None:
        """Stop polling and confirm what was recorded, so the next process does not get it again."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        if self.offset is not None and not self._stopped:  # after a conflict, another consumer owns the offset
            try:
                # Confirms everything below the offset; what this call returns is not confirmed by it.
                await self.fetch(self.offset, 0)
            except Exception as exc:
                log.warning("could not confirm received updates: %s", type(exc).__name__)


Fetch = Callable[[int | None, int], Awaitable[list[dict[str, Any]]]]


class Runtime(Protocol):
    """A running Telegram framework: its sender, and start/stop of polling or the webhook."""

    name: str
    pipeline: Pipeline
    webhook_guard: FailureLimit | None  # the limit of wrong webhook secrets, shared across replicas
    username: str | None  # the bot's @username, known once `open` has called getMe (for t.me links)

    @property
    def sender(self) -> ChatSender:
        """The framework's sender (read-only here, so each runtime may hold its own sender class)."""
        ...

    on_fatal: Callable[[BaseException], None] | None  # told when receiving cannot go on (409 Conflict)

    async def open(self) -> None:
        """Connect the bot (getMe) so the sender can be used; no updates are received yet."""

    async def start(self) -> None:
        """Begin receiving updates (polling or webhook); returns once receiving has started."""

    async def pause(self) -> None:
        """Take no more updates (SIGTERM): the webhook answers 503, polling stops fetching."""

    async def reachable(self) -> None:
        """Call getMe; raises when the Bot API server does not answer (a /readyz check)."""

    async def stop(self) -> None:
        """Stop receiving, finish the updates in hand, give back the rest, close the connection."""


__all__ = ["ALLOWED_UPDATES", "CONFLICTS_TOLERATED", "Connection", "Fetch", "Lanes", "Persistent", "Pipeline",
           "Poller", "PollingConflict", "RouterLike",
           "Runtime", "Undelivered", "fingerprint", "lane_of", "quiet_http_loggers", "received", "user_tag"]
