"""One planner at a time: replicas on one store elect a planner through a lease row; when it dies another
takes over, and a schedule due during the handover is planned exactly once."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from datetime import date, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from loyalbot.loyalty.service import Loyalty
from loyalbot.scheduler.service import SchedulerService
from loyalbot.storage import Db
from loyalbot.storage.leases import PLANNER, LeaseStore
from loyalbot.storage.models import Outbox, Schedule
from tests.scheduler.conftest import add_member, at, schedule_jobs

ROOT = Path(__file__).resolve().parents[2]

# One replica's scheduler, as `loyalbot run` starts it, without a bot: it plans when it holds the lease.
REPLICA = """
import asyncio, sys
from loyalbot.loyalty.programme import load_programme
from loyalbot.loyalty.service import Loyalty
from loyalbot.scheduler.service import SchedulerService
from loyalbot.storage import Db

async def main(url, name):
    db = Db(url)
    loyalty = Loyalty(db, load_programme())
    service = SchedulerService(db, loyalty, dispatch=False, instance=name, lease_ttl=3.0, lease_renew=0.5)
    await service.start()
    print("started", flush=True)
    await asyncio.Event().wait()

asyncio.run(main(sys.argv[1], sys.argv[2]))
"""


@pytest.fixture
async def store(store_url) -> AsyncIterator[Db]:
    database = Db(store_url)
    yield database
    await database.dispose()


@pytest.fixture
async def store_loyalty(store, programme) -> Loyalty:
    service = Loyalty(store, programme)
    await service.sync_programme()
    return service


class Clock:
    """The planners' clock (what time the schedules see); leases run on real time."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


async def until(predicate, limit: float = 60.0) -> None:  # short polls of real I/O, not a timing assert
    deadline = time.monotonic() + limit
    while not await predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        await asyncio.sleep(0.05)


async def crash(service: SchedulerService) -> None:
    """What a SIGKILL leaves: the replica's tasks and jobs end, its lease row stays as it was."""
    for task in list(service._tasks):
        task.cancel()
    for task in list(service._tasks):
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
    service._tasks.clear()
    if service.scheduler is not None:
        service.scheduler.shutdown(wait=False)
        service.scheduler = None


async def test_a_lease_is_held_by_one_holder_until_it_expires_or_is_released(store):
    wall = [1000.0]
    leases = LeaseStore(store, clock=lambda: wall[0])
    assert (await leases.try_take(PLANNER, "a:1", ttl=10)).holder == "a:1"
    assert (await leases.try_take(PLANNER, "b:1", ttl=10)).holder == "a:1"  # held: b waits
    wall[0] = 1005.0
    renewed = await leases.try_take(PLANNER, "a:1", ttl=10)  # a renews: its end moves on, its start stays
    assert (renewed.holder, renewed.acquired_at, renewed.expires_at) == ("a:1", 1000.0, 1015.0)
    wall[0] = 1014.9
    assert (await leases.try_take(PLANNER, "b:1", ttl=10)).holder == "a:1"
    wall[0] = 1015.0  # a stopped renewing (it died): once it has expired, b takes it over
    taken = await leases.try_take(PLANNER, "b:1", ttl=10)
    assert (taken.holder, taken.acquired_at) == ("b:1", 1015.0)
    assert (await leases.try_take(PLANNER, "a:1", ttl=10)).holder == "b:1"  # a is back: too late
    assert await leases.release(PLANNER, "a:1") is False  # a cannot give away what it does not hold
    assert await leases.release(PLANNER, "b:1") is True  # b stops cleanly: free at once
    assert (await leases.try_take(PLANNER, "c:1", ttl=10)).holder == "c:1"
    assert (await leases.holding(PLANNER)).holder == "c:1"


async def test_many_replicas_asking_at_once_elect_exactly_one(store):
    leases = LeaseStore(store)
    holders = [f"r{n}:x" for n in range(8)]
    results = await asyncio.gather(*(leases.try_take(PLANNER, h, ttl=30) for h in holders))
    winners = {r.holder for r in results}
    assert len(winners) == 1 and winners <= set(holders)


async def test_only_the_leader_plans_and_a_run_due_during_the_handover_is_planned_once(store, store_loyalty):
    members = [await add_member(store_loyalty, now=at("2024-01-01 10:00"), first_name=f"B{n}",
                                birthday=date(1990, 6, 10)) for n in range(3)]
    async with store.transaction() as tx:  # ran yesterday; today's run is due at 09:00
        tx.add(Schedule(name="bday", kind="birthday", daily_time="09:00", timezone="UTC",
                        created_at=at("2025-01-01 00:00"), updated_at=at("2025-01-01 00:00"),
                        last_run_at=at("2025-06-09 09:00")))
    clock = Clock(at("2025-06-10 08:59"))
    replicas = [SchedulerService(store, store_loyalty, dispatch=False, poll_seconds=0.2, clock=clock,
                                 instance=f"replica-{n}", lease_ttl=1.5, lease_renew=0.2) for n in range(3)]
    for replica in replicas:
        await replica.start()
    try:
        assert [r.leader for r in replicas] == [True, False, False]  # the first to ask plans
        assert [len(schedule_jobs(r)) for r in replicas] == [1, 0, 0]
        # and only the planner scores members at night
        assert [[j.id for j in r.scheduler.get_jobs() if j.id == "campaigns:score"] for r in replicas] == [
            ["campaigns:score"], [], []]
        assert await replicas[1].run_due(1) is None  # a replica that does not hold the lease never plans
        holding = await LeaseStore(store).holding(PLANNER)
        assert holding.holder == replicas[0].holder and holding.holder.startswith("replica-0:")

        # The planner dies just before 09:00; the run falls due while nobody plans.
        await crash(replicas[0])
        clock.now = at("2025-06-10 09:00:30")

        async def taken_over() -> bool:
            return any(r.leader for r in replicas[1:])

        await until(taken_over)
        (new,) = [r for r in replicas[1:] if r.leader]
        assert (await LeaseStore(store).holding(PLANNER)).acquired_at >= holding.expires_at  # never two at once

        async def planned() -> bool:
            async with store.read() as s:
                return (await s.execute(sa.select(sa.func.count()).select_from(Outbox))).scalar_one() == 3

        await until(planned)
        assert len(schedule_jobs(new)) == 1
        # The dead planner's run, had it got as far, finishes late: it plans nothing new and leaves the
        # schedule's bookkeeping where the new planner put it.
        late = SchedulerService(store, store_loyalty, dispatch=False, clock=clock)
        late.leader = True
        await late.run_due(1, now=at("2025-06-10 09:00:01"))
        async with store.read() as s:
            rows = list((await s.execute(sa.select(Outbox.member_id))).scalars())
            last_run = (await s.execute(sa.select(Schedule.last_run_at))).scalar_one()
        assert sorted(rows) == sorted(m.id for m in members)
        assert last_run >= at("2025-06-10 09:00:30")
    finally:
        for replica in replicas[1:]:
            await replica.stop()
    # A clean stop releases the lease: the next start plans at once.
    assert (await LeaseStore(store).holding(PLANNER)).expires_at <= time.time()


async def test_a_planner_that_cannot_renew_its_lease_stops_planning(store, store_loyalty):
    async with store.transaction() as tx:
        tx.add(Schedule(name="news", kind="broadcast", cron="0 10 * * *", created_at=at("2025-01-01 00:00"),
                        updated_at=at("2025-01-01 00:00")))
    service = SchedulerService(store, store_loyalty, dispatch=False, clock=Clock(at("2025-06-10 08:00")),
                               lease_ttl=1.0, lease_renew=0.2)
    await service.start()
    try:
        assert service.leader and len(schedule_jobs(service)) == 1

        async def away(*_args, **_kwargs):
            raise ConnectionError("store away")

        service.leases.try_take = away  # the store stops answering

        async def stepped_down() -> bool:
            return not service.leader

        await until(stepped_down)
        assert schedule_jobs(service) == []
        assert service.metrics.registry.get_sample_value("loyalbot_planner_leader",
                                                         {"instance": service.instance}) == 0
    finally:
        await service.stop()


@pytest.mark.postgres
async def test_sigkill_of_the_planners_process_hands_the_lease_to_another_replica(pg_url):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    processes = {}
    for n in range(3):
        name = f"proc-{n}"
        processes[name] = await asyncio.create_subprocess_exec(
            sys.executable, "-c", REPLICA, pg_url, name, cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE)
    db = Db(pg_url)
    leases = LeaseStore(db)
    try:
        for process in processes.values():
            assert (await asyncio.wait_for(process.stdout.readline(), timeout=120)).strip() == b"started"
        first = await leases.holding(PLANNER)
        leader = first.holder.split(":")[0]
        assert leader in processes
        processes[leader].send_signal(signal.SIGKILL)
        await processes[leader].wait()
        killed_at = time.time()

        async def taken_over() -> bool:
            now = await leases.holding(PLANNER)
            return now.holder != first.holder and now.expires_at > time.time()

        await until(taken_over, limit=120)
        after = await leases.holding(PLANNER)
        assert after.holder.split(":")[0] in set(processes) - {leader}  # a live replica plans now
        assert after.acquired_at >= first.expires_at  # and never while the dead one's lease still ran
        # For the report (not asserted: the machine may be loaded): seconds from the kill to the takeover.
        print(f"takeover {after.acquired_at - killed_at:.2f}s after SIGKILL (lease 3 s)")
        survivors = [p for name, p in processes.items() if name != leader]
        await asyncio.sleep(1.5)  # three renewals: the new planner keeps it, nobody else takes it
        assert (await leases.holding(PLANNER)).holder == after.holder
        assert all(p.returncode is None for p in survivors)
    finally:
        for process in processes.values():
            if process.returncode is None:
                process.send_signal(signal.SIGKILL)
                await process.wait()
        await db.dispose()
