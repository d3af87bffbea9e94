"""The scheduler inside the bot process: APScheduler jobs from the schedules table, events, the dispatcher.

`SchedulerService(db, loyalty, sender=...)` with `await start()` / `await stop()`:

* APScheduler 3's `AsyncIOScheduler` runs one job per enabled clock-driven schedule. Jobs are derived
  from the `schedules` table at start-up (no APScheduler job store: the table is the truth), and
  rebuilt when the table changes: every `poll_seconds` the service reads a fingerprint of the table
  (each row's id, `updated_at` and enabled flag), which is how edits made by the CLI, another process, reach a
  running bot without a restart.
* One planner at a time: of all the replicas on one store, only the holder of the `planner` lease
  (storage/leases.py) runs the clock-driven jobs. Every replica asks for it every `lease_renew`
  seconds; the holder renews it, and when the holder dies the lease expires (`lease_ttl`) and the next
  replica to ask takes it over, reloads the jobs and plans what was missed. A holder that cannot renew
  (the store is away) stops planning before its lease can have expired. A clean stop releases it.
* A run missed while no replica planned (this process down, a leader change) is planned once when
  planning (re)starts (the trigger's first fire time after `last_run_at` has passed), not once per
  missed tick. Planning a period twice (an old leader finishing a run while the new one catches up)
  plans nothing new: outbox rows are keyed by (schedule, member, period); `last_run_at` only moves on.
* Tier changes and used coupons (`Loyalty.subscribe`) plan tier_change and CSAT messages;
  `schedule_csat(...)` is what the support room calls when a conversation is closed.
* Members are scored (RFM, lifecycle stage; scheduler/rfm.py) nightly at the programme's `[lifecycle] score_at`,
  by the planner only, and the lifecycle_change schedules are planned for those whose stage changed.
* The ledger upkeep (`run_upkeep`, every `upkeep_seconds` on the planner): pending points whose return
  window passed become spendable, referrals are settled, lots expire, a yearly reset carries over.
* The `Dispatcher` drains the outbox at `send_rate` (30/s; up to 1000/s with paid broadcasts).
* The `Notifier` turns the services' notices (points credited, tier changed, coupon used, welcome
  bonus) into outbox rows every `notice_poll` seconds, folding a burst of points into one message
  planned `notice_delay` seconds ahead (scheduler/notices.py).
* The planner checks the campaigns' stop-loss rules every `stop_loss_every` seconds and pauses a
  campaign that falls below its threshold, telling the staff group (scheduler/stoploss.py).

`attach(app)` adds the service to the bot's assembly (bot/app.py) without the scheduler importing bot.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import socket
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger
from sqlmodel import col

from loyalbot.chat.limits import MESSAGES_PER_SECOND, PAID_MESSAGES_PER_SECOND
from loyalbot.chat.metrics import Metrics
from loyalbot.chat.outbound import ChatSender
from loyalbot.loyalty.events import CouponUsed, LoyaltyEvent, TierChanged
from loyalbot.loyalty.service import Loyalty
from loyalbot.scheduler.caps import caps_of
from loyalbot.scheduler.dispatcher import Dispatcher
from loyalbot.scheduler.kinds import RULES, param
from loyalbot.scheduler.notices import DEFAULT_DELAY, Notifier
from loyalbot.scheduler.offers import plan_offer_reminders
from loyalbot.scheduler.planner import Planner, PlanStats
from loyalbot.scheduler.rfm import ScoreRun, score_and_plan
from loyalbot.scheduler.stoploss import CHECK_EVERY, check_stop_losses
from loyalbot.scheduler.surveys import DEFAULT_CSAT_DELAY
from loyalbot.scheduler.templates import TemplateBook, default_templates
from loyalbot.scheduler.triggers import TriggerProblem, build_trigger, missed_run, parse_daily_time
from loyalbot.storage import Db, as_utc, utcnow
from loyalbot.storage.leases import PLANNER, LeaseStore
from loyalbot.storage.models import Schedule
from loyalbot.storage.rows import stored_id

if TYPE_CHECKING:
    from loyalbot.bot.app import App

log = logging.getLogger(__name__)

CSAT_TRIGGERS = ("coupon", "support")
SCORING_JOB = "campaigns:score"
DEFAULT_CSAT_SCHEDULES = {"coupon": "csat-after-coupon", "support": "csat-after-support"}


class SchedulerService:
    """Runs the operators' schedules, plans event-driven messages and drains the outbox."""

    def __init__(
        self,
        db: Db,
        loyalty: Loyalty,
        sender: ChatSender | None = None,
        *,
        sender_factory: Callable[[], ChatSender] | None = None,
        send_rate: float = MESSAGES_PER_SECOND,
        paid_broadcast: bool = False,
        poll_seconds: float = 5.0,
        dispatch: bool = True,
        clock: Callable[[], datetime] = utcnow,
        dispatcher_options: dict[str, Any] | None = None,
        notice_delay: float = DEFAULT_DELAY,
        notice_poll: float = 1.0,
        instance: str | None = None,
        lease_ttl: float = 10.0,
        lease_renew: float = 2.0,
        metrics: Metrics | None = None,
        upkeep_seconds: float = 60.0,
        reminder_every: float = 300.0,
        staff_group_id: int | None = None,
        stop_loss_every: float = CHECK_EVERY,
    ) -> None:
        self.db = db
        self.loyalty = loyalty
        self.clock = clock
        self.poll_seconds = poll_seconds
        self.planner = Planner(loyalty, templates=TemplateBook())
        self.notifier = Notifier(loyalty, templates=self.planner.templates, delay=notice_delay)
        self.notice_poll = notice_poll
        self.upkeep_seconds = upkeep_seconds
        self.staff_group_id = staff_group_id
        self.stop_loss_every = stop_loss_every
        self._sender = sender
        self._sender_factory = sender_factory
        # Telegram allows about 30 messages a second; paid broadcasts raise that to 1000.
        self.send_rate = min(send_rate, PAID_MESSAGES_PER_SECOND if paid_broadcast else MESSAGES_PER_SECOND)
        self.dispatch = dispatch
        self.dispatcher_options = dict(dispatcher_options or {})
        self.dispatcher: Dispatcher | None = None
        self.scheduler: AsyncIOScheduler | None = None
        self._fingerprint: tuple[Any, ...] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._running_runs: set[int] = set()
        self._subscribed = False
        # The lease holder's name: the replica's name and a random suffix, so a restarted replica is a new
        # holder (it waits for its old self's lease, never assumes it) and two with one name never share.
        self.instance = (instance or socket.gethostname() or "loyalbot")[:64]
        self.holder = f"{self.instance}:{secrets.token_hex(4)}"
        if not 0 < lease_renew < lease_ttl:
            raise ValueError("lease_renew must be above 0 and below lease_ttl")
        self.lease_ttl = lease_ttl
        self.lease_renew = lease_renew
        self.leases = LeaseStore(db)
        self.leader = False
        self._lease_until = 0.0  # our lease's end, by our own clock (time.time)
        self.metrics = metrics or Metrics()
        self.dispatcher_options.setdefault("metrics", self.metrics)
        # Frequency caps follow the programme in force (a new version applies from the next claim).
        self.dispatcher_options.setdefault("caps", lambda: caps_of(self.loyalty.programme))
        # Offer reminders are planned when a campaign's coupon comes within its reminder window; looking
        # every few minutes is close enough for a message about days.
        self.reminder_every = reminder_every
        self._reminded_at: float | None = None

    # --- life cycle ---------------------------------------------------------------------------------

    async def start(self) -> None:
        """Subscribe to events, plan missed runs, start the jobs, the watcher and the dispatcher."""
        if not self._subscribed:
            self.loyalty.subscribe(self.on_event)
            self._subscribed = True
        self.scheduler = AsyncIOScheduler(timezone="UTC")
        self.scheduler.start()
        await self._elect()
        await self.reload(catch_up=True)
        self._tasks.append(asyncio.create_task(self._elections(), name="scheduler-lease"))
        self._tasks.append(asyncio.create_task(self._watch(), name="scheduler-watch"))
        self._tasks.append(asyncio.create_task(self._tell(), name="scheduler-notices"))
        self._tasks.append(asyncio.create_task(self._upkeep(), name="scheduler-upkeep"))
        self._tasks.append(asyncio.create_task(self._stop_losses(), name="scheduler-stop-loss"))
        if self.dispatch:
            sender = self._sender or (self._sender_factory() if self._sender_factory else None)
            if sender is None:
                raise ValueError("SchedulerService needs a sender (or sender_factory) to dispatch")
            self.dispatcher = Dispatcher(self.db, sender, rate=self.send_rate, clock=self.clock,
                                         **self.dispatcher_options)
            self._tasks.append(asyncio.create_task(self.dispatcher.run(), name="outbox-dispatcher"))
        log.info("scheduler started: %s, %d jobs, dispatching at %g/s",
                 "planning" if self.leader else "another replica plans", len(self.scheduler.get_jobs()),
                 self.send_rate if self.dispatch else 0)

    async def stop(self) -> None:
        if self.dispatcher is not None:
            self.dispatcher.stop()
        if self.scheduler is not None:
            self.scheduler.shutdown(wait=False)
            self.scheduler = None
        for task in self._tasks:
            if task.get_name() in ("scheduler-watch", "scheduler-notices", "scheduler-lease", "scheduler-upkeep",
                                   "scheduler-stop-loss"):
                task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(task, timeout=35)
        self._tasks.clear()
        if self.leader:
            self._set_leader(False)
            try:  # the next replica need not wait for the lease to run out
                await self.leases.release(PLANNER, self.holder)
            except Exception as exc:
                log.warning("planner lease not released (it expires by itself): %s", type(exc).__name__)

    # --- one planner at a time ----------------------------------------------------------------------

    def _set_leader(self, leader: bool) -> None:
        if leader != self.leader:
            log.info("planner: %s (%s)", "this replica plans now" if leader else "this replica stopped planning",
                     self.instance)
        self.leader = leader
        self.metrics.planner_leader.labels(instance=self.instance).set(1 if leader else 0)

    async def _elect(self) -> bool:
        """Ask for (or renew) the planner lease; returns whether this replica just became the planner."""
        asked = time.time()
        try:
            holding = await self.leases.try_take(PLANNER, self.holder, self.lease_ttl)
        except Exception as exc:  # the store is away: keep planning only while our lease surely lasts
            log.warning("planner lease not renewed: %s", type(exc).__name__)
            if self.leader and time.time() >= self._lease_until - self.lease_renew:
                self._set_leader(False)
                self._clear_jobs()
            return False
        was = self.leader
        if holding.holder == self.holder:
            # Counted from before we asked, so our idea of its end is never later than the store's.
            self._lease_until = asked + self.lease_ttl
            self._set_leader(True)
        else:
            self._set_leader(False)
        if was and not self.leader:
            log.warning("planner lease taken over by another replica")
            self._clear_jobs()
        return self.leader and not was

    async def _elections(self) -> None:
        while True:
            await asyncio.sleep(self.lease_renew)
            try:
                if await self._elect():
                    await self.reload(catch_up=True)  # plan what was due while nobody planned
            except Exception:  # the election must survive anything a reload throws
                log.exception("planner election failed; trying again")

    def _clear_jobs(self) -> None:
        if self.scheduler is not None:
            for job in self.scheduler.get_jobs():
                job.remove()

    # --- jobs from the table ------------------------------------------------------------------------

    async def _table_fingerprint(self) -> tuple[Any, ...]:
        # Schedules are few (tens): reading every row's stamp is cheap and misses no edit.
        async with self.db.read() as s:
            rows = (await s.execute(sa.select(Schedule.id, Schedule.updated_at, Schedule.enabled)
                                    .order_by(Schedule.id))).all()
        return tuple(tuple(r) for r in rows)

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.poll_seconds)
            try:
                if await self._table_fingerprint() != self._fingerprint:
                    log.info("schedules changed: reloading jobs")
                    await self.reload(catch_up=True)
                due = self._reminded_at is None or time.monotonic() - self._reminded_at >= self.reminder_every
                if self.leader and due:
                    self._reminded_at = time.monotonic()
                    await self.plan_offer_reminders()
            except Exception:  # the watcher must survive a database hiccup
                log.exception("schedule watcher failed; retrying")

    async def plan_offer_reminders(self, *, now: datetime | None = None) -> dict[str, PlanStats]:
        """Plan the "about to expire" reminders of the campaigns' unused offer coupons (scheduler/offers.py)."""
        done = await plan_offer_reminders(self.planner, now=as_utc(now or self.clock()))
        for name, stats in done.items():
            if stats.planned:
                log.info("schedule %s: %d offer reminders planned", name, stats.planned)
        return done

    async def _tell(self) -> None:
        """Plan new notices into the outbox, now and every `notice_poll` seconds."""
        while True:
            try:
                await self.notifier.plan_new(now=self.clock())
            except Exception:  # a database hiccup: try again at the next poll
                log.exception("planning notices failed; retrying")
            await asyncio.sleep(self.notice_poll)

    async def _upkeep(self) -> None:
        """The ledger's clock-driven work, on the planner only, every `upkeep_seconds`: clear pending points,
        settle referrals, expire lots (and carry a yearly reset over). Each step is idempotent and safe when
        an old planner's run overlaps the new one's."""
        while True:
            if self.leader:
                await self.run_upkeep()
            await asyncio.sleep(self.upkeep_seconds)

    async def run_upkeep(self, *, now: datetime | None = None) -> dict[str, int] | None:
        """One run of the ledger upkeep (also what a test or the CLI calls); None if it failed (logged)."""
        try:
            done = await self.loyalty.ledger_upkeep(now=as_utc(now or self.clock()))
        except Exception:  # a database hiccup: the next run picks up what is left
            log.exception("ledger upkeep failed; trying again at the next run")
            return None
        if any(done.values()):
            log.info("ledger upkeep: %s", done)
        return done

    async def _stop_losses(self) -> None:
        """The planner (only the lease holder) checks the campaigns' stop-loss rules every `stop_loss_every` s."""
        while True:
            await asyncio.sleep(self.stop_loss_every)
            if not self.leader:
                continue
            try:
                await check_stop_losses(self.loyalty, staff_group_id=self.staff_group_id, now=self.clock())
            except Exception:  # a database hiccup: try again at the next check
                log.exception("stop-loss check failed; retrying")

    async def reload(self, *, catch_up: bool = False) -> None:
        """Rebuild the APScheduler jobs from the table; with catch_up, plan each missed run once now."""
        self._fingerprint = await self._table_fingerprint()
        async with self.db.read() as s:
            schedules = list((await s.execute(sa.select(Schedule).order_by(Schedule.id))).scalars())
        self._clear_jobs()
        if not self.leader:  # another replica plans; this one still follows the table, to be ready
            return
        now = self.clock()
        if self.scheduler is not None:
            at = parse_daily_time(self.loyalty.programme.lifecycle.score_at)
            self.scheduler.add_job(self.score, CronTrigger(hour=at.hour, minute=at.minute,
                                                           timezone=self.loyalty.programme.zone),
                                   id=SCORING_JOB, name="score members", coalesce=True, max_instances=1,
                                   misfire_grace_time=3600, replace_existing=True)
        for schedule in schedules:
            if not schedule.enabled or RULES[schedule.kind].event_driven:
                continue
            try:
                trigger = build_trigger(schedule)
            except TriggerProblem as exc:
                log.error("schedule %s cannot run: %s", schedule.name, exc)
                continue
            if trigger is None:
                continue
            if self.scheduler is not None:
                self.scheduler.add_job(self.run_due, trigger, args=[schedule.id], id=f"schedule:{schedule.id}",
                                       name=schedule.name, coalesce=True, max_instances=1,
                                       misfire_grace_time=600, replace_existing=True)
            if catch_up and missed_run(schedule, now):
                log.info("schedule %s missed a run while stopped: planning it once now", schedule.name)
                self._spawn(self.run_due(stored_id(schedule.id)))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.append(task)
        task.add_done_callback(self._forget)

    def _forget(self, task: asyncio.Task[Any]) -> None:
        if task in self._tasks:
            self._tasks.remove(task)

    # --- runs ---------------------------------------------------------------------------------------

    async def run_due(self, schedule_id: int, *, now: datetime | None = None) -> PlanStats | None:
        """A scheduled run (the job's function): plans for the window since the last run."""
        if schedule_id in self._running_runs or not self.leader:
            return None
        self._running_runs.add(schedule_id)
        try:
            now = as_utc(now or self.clock())
            async with self.db.read() as s:
                schedule = await s.get(Schedule, schedule_id)
            if schedule is None or not schedule.enabled:
                return None
            window = as_utc(schedule.last_run_at or schedule.created_at) if schedule.member_local_time else None
            stats = await self.planner.run(schedule, now=now, window_start=window)
            await self._mark_run(schedule_id, now)
            log.info("schedule %s planned %d, skipped %s, already planned %d", schedule.name, stats.planned,
                     dict(stats.skipped), stats.already_planned)
            return stats
        except Exception:
            log.exception("schedule %s failed to plan", schedule_id)
            return None
        finally:
            self._running_runs.discard(schedule_id)

    async def score(self, *, now: datetime | None = None) -> ScoreRun | None:
        """The nightly scoring job: RFM and lifecycle stages for every member, then the lifecycle_change messages."""
        if not self.leader:
            return None
        try:
            run, planned = await score_and_plan(self.planner, as_utc(now or self.clock()))
        except Exception:
            log.exception("scoring members failed; the next run tries again")
            return None
        log.info("scored %d members, %d changed stage, planned %d lifecycle messages", run.scored, run.changes,
                 sum(p.planned for p in planned))
        return run

    async def _mark_run(self, schedule_id: int, now: datetime) -> None:
        # last_run_at only: updated_at is the operators' edit stamp the watcher follows.
        # Only forward: a run that ends after a newer one (an old planner finishing late) leaves it alone.
        async with self.db.transaction() as tx:
            await tx.execute(sa.update(Schedule).where(
                Schedule.id == schedule_id,
                sa.or_(col(Schedule.last_run_at).is_(None), col(Schedule.last_run_at) < now)).values(last_run_at=now))

    # --- events -------------------------------------------------------------------------------------

    async def on_event(self, event: LoyaltyEvent) -> None:
        """Loyalty events: a tier change plans tier_change messages, a used coupon a CSAT survey."""
        if isinstance(event, TierChanged):
            await self.tier_changed(event)
        elif isinstance(event, CouponUsed):
            await self.schedule_csat(event.member_id, "coupon", f"coupon:{event.coupon_id}",
                                     staff_id=event.staff_id)

    async def tier_changed(self, event: TierChanged, *, now: datetime | None = None) -> list[PlanStats]:
        now = as_utc(now or self.clock())
        results = []
        for schedule in await self._enabled("tier_change"):
            if param(schedule, "upgrades_only") and not event.upgrade:
                continue
            results.append(await self.planner.plan_for_member(
                schedule, event.member_id, period=f"{event.to_tier}:{now.date().isoformat()}", now=now))
        return results

    async def schedule_csat(self, member_id: int, trigger: str, ref: str, conversation_id: int | None = None,
                            staff_id: int | None = None, delay: timedelta | None = None, *,
                            now: datetime | None = None) -> PlanStats | None:
        """Plan a CSAT survey after a used coupon (trigger "coupon") or a closed support conversation
        ("support"), sent after `delay` (the schedule's delay_minutes, 30 by default). `ref` makes it
        idempotent: the same coupon or conversation never asks twice. At most one survey is open per
        member; None when the operator paused CSAT for this trigger."""
        if trigger not in CSAT_TRIGGERS:
            raise ValueError(f"trigger must be one of {', '.join(CSAT_TRIGGERS)}")
        now = as_utc(now or self.clock())
        schedule = await self._csat_schedule(trigger, now)
        if schedule is None:
            return None
        minutes = param(schedule, "delay_minutes")
        # 0 is a real choice (ask at once), so only a missing value falls back to the default.
        wait = delay if delay is not None else (
            DEFAULT_CSAT_DELAY if minutes is None else timedelta(minutes=int(minutes)))
        return await self.planner.plan_for_member(
            schedule, member_id, period=ref[:64], now=now, not_before=now + wait,
            survey_trigger="handoff" if trigger == "support" else "coupon", trigger_ref=ref[:64],
            conversation_id=conversation_id, staff_id=staff_id)

    async def _enabled(self, kind: str) -> list[Schedule]:
        async with self.db.read() as s:
            return list((await s.execute(sa.select(Schedule).where(Schedule.kind == kind, Schedule.enabled)
                                         .order_by(Schedule.id))).scalars())

    async def _csat_schedule(self, trigger: str, now: datetime) -> Schedule | None:
        """The CSAT schedule for a trigger; the shipped default is created the first time it is needed."""
        async with self.db.read() as s:
            rows = list((await s.execute(sa.select(Schedule).where(Schedule.kind == "csat")
                                         .order_by(Schedule.id))).scalars())
        mine = [r for r in rows if param(r, "trigger") == trigger]
        if mine:
            enabled = [r for r in mine if r.enabled]
            return enabled[0] if enabled else None
        name = DEFAULT_CSAT_SCHEDULES[trigger]
        kind = "csat_support" if trigger == "support" else "csat"
        async with self.db.transaction() as tx:
            exists = (await tx.execute(sa.select(Schedule).where(Schedule.name == name))).scalar_one_or_none()
            if exists is None:
                tx.add(Schedule(name=name, kind="csat", enabled=True, templates=default_templates(kind),
                                params={"trigger": trigger, "delay_minutes": 30}, created_at=now, updated_at=now))
        async with self.db.read() as s:
            made = (await s.execute(sa.select(Schedule).where(Schedule.name == name))).scalar_one()
        return made if made.enabled else None


def attach(app: App) -> None:
    """Add the scheduler to the bot's assembly (bot/app.py calls this for the rooms present)."""
    holder: dict[str, SchedulerService] = {}

    async def start(app_: App) -> None:
        settings = app_.settings
        assert app_.db is not None and app_.loyalty is not None and app_.context is not None, "App.start() first"
        service = SchedulerService(app_.db, app_.loyalty, app_.sender, send_rate=settings.send_rate,
                                   paid_broadcast=settings.paid_broadcast, clock=app_.clock,
                                   notice_delay=settings.notice_delay, instance=settings.instance,
                                   lease_ttl=settings.planner_lease, lease_renew=settings.planner_lease / 5,
                                   metrics=app_.metrics, staff_group_id=settings.staff_group_id,
                                   dispatcher_options={"limits": app_.context.services.send_limits})
        app_.context.services.scheduler = service
        holder["service"] = service
        await service.start()

    async def stop() -> None:
        if "service" in holder:
            await holder.pop("service").stop()

    app.add_service(start, stop, name="scheduler")
