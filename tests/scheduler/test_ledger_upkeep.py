"""The ledger upkeep runs on the planner only: two replicas on one store, one clears pending points and settles
referrals; the other, not holding the planner lease, does nothing of it."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from loyalbot.loyalty.programme import Pending
from loyalbot.loyalty.service import Loyalty
from loyalbot.scheduler.service import SchedulerService
from loyalbot.storage import utcnow


async def test_only_the_planner_clears_pending_points(db, programme):
    waiting = programme.model_copy(update={"pending": Pending(return_window_days=14)})
    loyalty = Loyalty(db, waiting)
    await loyalty.sync_programme()
    past = utcnow() - timedelta(days=20)
    ann = await loyalty.register_member(telegram_id=1, first_name="Ann", terms_accepted=True, now=past)
    bob = await loyalty.register_member(telegram_id=2, first_name="Bob", terms_accepted=True, now=past)
    await loyalty.link_referral(bob.id, await loyalty.referral_code(ann.id, now=past), now=past)
    await loyalty.award_purchase(bob.id, external_id="b-1", amount="30", occurred_at=past, now=past)

    planner = SchedulerService(db, loyalty, dispatch=False, instance="one", lease_ttl=30, lease_renew=10,
                               upkeep_seconds=3600)
    other = SchedulerService(db, Loyalty(db, waiting), dispatch=False, instance="two", lease_ttl=30,
                             lease_renew=10, upkeep_seconds=3600)
    await planner.start()
    await other.start()
    try:
        assert planner.leader and not other.leader
        for _ in range(2000):  # the planner's first upkeep runs as it starts
            if (await loyalty.member(ann.id)).balance:  # the referral is the last step
                break
            await asyncio.sleep(0.01)
        assert (await loyalty.member(bob.id)).balance == 30 + waiting.referrals.friend_points
        assert (await loyalty.member(ann.id)).balance == waiting.referrals.referrer_points
        assert await other.run_upkeep() == {"cleared": 0, "referrals": 0, "expired": 0, "carried": 0}
    finally:
        await other.stop()
        await planner.stop()
