"""`Loyalty`: the programme's services over one store, one facade over the services by concept.

Each public call is one transaction that either does all or nothing. After every call: balance on the
member row == sum of the ledger == sum of the lots' remaining, and nothing is below zero (checks.py).
Calls that can arrive twice carry an idempotency key; a repeat returns the first result and changes
nothing. Where each call lives:

    members.py   joining, look-ups (number, Telegram user, phone, name), a member's own settings
    award.py     points for a purchase: the one earning rule and the one award path (both stores)
    bonuses.py   bonus campaigns (multipliers, member days, spend thresholds), applied inside the award
    stamps.py    stamp cards: stamps from purchases' items or the counter, the reward coupon of a full card
    benefits.py  what each tier brings: discount, birthday gift, support priority, points validity
    points.py    refunds, adjustments, bonuses, expiry, what a member holds; the counter's undo
    pending.py   points waiting out the return window, and the job that clears them into the ledger
    referrals.py referral codes, links, the rewards once a friend's first purchase cleared, milestones
    expiry.py    the expiry modes: per-tier validity, extension by purchases, the yearly reset's carry-over
    tiers.py     the one tier change, the scheduled evaluation, progress and history
    rewards.py   the catalogue, redeeming points for coupons, coupons at the counter
    surveys.py   feedback, surveys, answers, CSAT and NPS
    feedback.py  the feedback inbox: an operator's reply through the outbox, closing
    privacy.py   export and erasure
    versions.py  the programme's versions in the store: start-up, saving (audited, no lost update), live swap
    staff.py     staff roles
    events.py    what listeners are told after commit; results.py what the calls return
    update_effect: what a Telegram update already did (replay-safe conversations; storage/inbox.py)
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from loyalbot.loyalty.award import Awards
from loyalbot.loyalty.benefits import Benefits
from loyalbot.loyalty.checks import ledger_check
from loyalbot.loyalty.events import Events
from loyalbot.loyalty.expiry import ExpiryVariants
from loyalbot.loyalty.feedback import FeedbackInbox
from loyalbot.loyalty.members import Members
from loyalbot.loyalty.pending import Pending
from loyalbot.loyalty.points import Points
from loyalbot.loyalty.privacy import Privacy
from loyalbot.loyalty.programme import Programme, ProgrammeInForce
from loyalbot.loyalty.referrals import Referrals
from loyalbot.loyalty.rewards import Rewards
from loyalbot.loyalty.staff import StaffRoles
from loyalbot.loyalty.stamps import StampCards
from loyalbot.loyalty.surveys import Surveys
from loyalbot.loyalty.tiers import Tiers
from loyalbot.loyalty.versions import CHECK_EVERY, ProgrammeVersions
from loyalbot.storage import Db, as_utc, utcnow
from loyalbot.storage.inbox import effect_of


class Loyalty:
    """The loyalty programme's services over one store.

    The services by concept are attributes (`loyalty.points`, `loyalty.rewards`, ...); every call is
    also offered here under its own name, so `loyalty.award_purchase(...)` is `loyalty.awards.award_purchase(...)`.
    """

    def __init__(self, db: Db, programme: Programme, *, check_every: float = CHECK_EVERY) -> None:
        self.db = db
        # The programme in force: this one until `sync_programme` reads the store's newest version, then
        # whatever version is newest (every service reads it at each call; `keep_current` swaps it).
        self.in_force = current = ProgrammeInForce(programme)
        self.events = Events()
        self.staff = StaffRoles(db)
        self.members = Members(db, current, self.events)
        self.awards = Awards(db, current, self.events)
        self.points = Points(db, current, self.members, self.staff)
        self.pending = Pending(db, current, self.events)
        self.referrals = Referrals(db, current)
        self.expiry = ExpiryVariants(db, current)
        self.tiers = Tiers(db, current, self.events, self.members)
        self.rewards = Rewards(db, current, self.events, self.members, self.staff)
        self.stamp_cards = StampCards(db, current, self.staff)
        self.benefits = Benefits(db, current)
        self.surveys = Surveys(db)
        self.feedback = FeedbackInbox(db)
        self.privacy = Privacy(db, current, self.events, self.members)
        self.programmes = ProgrammeVersions(db, current, check_every=check_every)

        self.subscribe = self.events.subscribe
        # the programme: the store's newest version at start-up (or this one as version 1), then kept current
        self.sync_programme = self.programmes.adopt
        self.keep_current = self.programmes.keep_current
        self.save_programme = self.programmes.save
        # members
        self.register_member = self.members.register_member
        self.member = self.members.member
        self.member_by_telegram = self.members.member_by_telegram
        self.member_by_number = self.members.member_by_number
        self.members_by_phone = self.members.members_by_phone
        self.members_by_name = self.members.members_by_name
        self.search_members = self.members.search_members
        self.update_member = self.members.update_member
        self.touch = self.members.touch
        # points
        self.award_purchase = self.awards.award_purchase
        self.points_preview = self.awards.points_preview
        self.refund_purchase = self.points.refund_purchase
        self.undo_counter_purchase = self.points.undo_counter_purchase
        self.adjust_points = self.points.adjust_points
        self.grant_bonus = self.points.grant_bonus
        self.expire_points = self.points.expire_points
        self.points_expiring = self.points.points_expiring
        self.points_summary = self.points.points_summary
        self.pending_points = self.pending.pending_points
        # referrals
        self.referral_code = self.referrals.code_for
        self.link_referral = self.referrals.link
        self.referral_stats = self.referrals.stats
        # tiers
        self.evaluate_tiers = self.tiers.evaluate_tiers
        self.tier_progress = self.tiers.tier_progress
        self.tier_history = self.tiers.tier_history
        # rewards and coupons
        self.set_reward_stock = self.rewards.set_reward_stock
        self.catalogue = self.rewards.catalogue
        self.reward = self.rewards.reward
        self.redeem_reward = self.rewards.redeem_reward
        self.coupons_of = self.rewards.coupons_of
        self.coupon_for_counter = self.rewards.coupon_for_counter
        self.use_coupon = self.rewards.use_coupon
        self.expire_coupons = self.rewards.expire_coupons
        self.void_coupon = self.rewards.void_coupon
        # stamp cards
        self.stamp_at_counter = self.stamp_cards.stamp_at_counter
        self.stamp_cards_of = self.stamp_cards.stamp_cards_of
        self.give_stamps = self.stamp_cards.give_stamps
        # tier benefits
        self.give_birthday_gift = self.benefits.give_birthday_gift
        self.support_queue = self.benefits.support_queue
        # staff
        self.staff_role = self.staff.staff_role
        self.require_staff = self.staff.require_staff
        self.add_staff = self.staff.add_staff
        self.remove_staff = self.staff.remove_staff
        self.list_staff = self.staff.list_staff
        # feedback and surveys
        self.record_feedback = self.surveys.record_feedback
        self.open_survey = self.surveys.open_survey
        self.record_survey_answer = self.surveys.record_survey_answer
        self.add_survey_comment = self.surveys.add_survey_comment
        self.scores = self.surveys.scores
        self.reply_to_feedback = self.feedback.reply_to_feedback
        self.close_feedback = self.feedback.close_feedback
        # privacy
        self.export_member_data = self.privacy.export_member_data
        self.erase_member = self.privacy.erase_member

    async def ledger_upkeep(self, *, now: datetime | None = None) -> dict[str, int]:
        """The clearing and expiry job (the scheduler's planner runs it): pending points whose window passed
        become spendable, referrals whose friend's purchase cleared are rewarded, due lots expire, a yearly
        reset carries over. Each step is idempotent and safe to run twice at once."""
        now = as_utc(now or utcnow())
        cleared = await self.pending.clear_due(now=now)
        rewarded = await self.referrals.settle_due(now=now)
        expired = await self.points.expire_points(now=now)
        carried = await self.expiry.carry_over_due(now=now)
        return {"cleared": cleared, "referrals": rewarded, "expired": expired, "carried": carried}

    @property
    def programme(self) -> Programme:
        """The programme in force now (read it at each use: a newer version may have swapped in)."""
        return self.in_force.programme

    async def ledger_check(self, member_id: int) -> tuple[int, int, int]:
        """(cached balance, ledger sum, lots remaining) for a member: all three must be equal."""
        return await ledger_check(self.db, member_id)

    async def update_effect(self, name: str, update_key: str | None) -> dict[str, Any] | None:
        """What the Telegram update `update_key` already did as `name` (remembered with its write), or None."""
        if not update_key:
            return None
        async with self.db.read() as s:
            return await effect_of(s, f"{name}:{update_key}")


__all__ = ["Loyalty"]
