"""What a tier brings beyond its multiplier (the programme's tier keys): a standing discount the counter gives
(shown on the card and the counter's look-up), a birthday gift coupon, priority in the support queue, and a
longer life for points (`points_validity_months`, applied where the award prices a lot: Programme.lot_expiry).

The birthday gift is issued here, once per member and year: the coupon's request id is
`birthday:<member>:<year>`, so the birthday schedule planning twice (a restart, two replicas) gives one.
Its notice (`birthday_gift:<coupon id>`, in the same transaction) tells the member, unless the birthday
message of that year, sent to them, names the gift already (scheduler/notices.py).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlmodel import col

from loyalbot.loyalty import errors
from loyalbot.loyalty.codes import new_coupon_code
from loyalbot.loyalty.handoff.states import WAITING
from loyalbot.loyalty.programme import FollowsProgramme, Programme, ProgrammeInForce
from loyalbot.loyalty.results import BirthdayGift
from loyalbot.storage import Db, as_utc, utcnow
from loyalbot.storage.models import Coupon, HandoffConversation, HandoffEvent, Member
from loyalbot.storage.rows import table_of
from loyalbot.storage.rule_writers import CoreRuleWriter, NewCoupon

log = logging.getLogger(__name__)


def support_rank(programme: Programme, tier: str | None) -> int:
    """How far up the support queue a member of `tier` waits (higher: served first); 0 for an unknown tier."""
    if tier is None or all(level.code != tier for level in programme.tiers.levels):
        return 0
    return programme.tier(tier).support_priority


@dataclass(frozen=True)
class QueuedConversation:
    """A conversation waiting for a person, as the staff queue lists it."""

    conversation_id: int
    member_no: str
    first_name: str | None
    tier: str
    rank: int  # the tier's support priority
    waiting_since: datetime


class Benefits(FollowsProgramme):
    """Tier benefits that need the store: the birthday gift coupon, the support queue's order."""

    def __init__(self, db: Db, programme: ProgrammeInForce) -> None:
        self.db = db
        self._in_force = programme

    async def give_birthday_gift(self, member_id: int, year: int, *, now: datetime | None = None
                                 ) -> BirthdayGift | None:
        """Issue the member's tier's birthday gift coupon for `year`, once; None when the tier gives none.
        A repeat for the same year returns the coupon already given (`repeated`)."""
        now = as_utc(now or utcnow())
        members, coupons = table_of(Member), table_of(Coupon)
        request_id = f"birthday:{member_id}:{year}"
        async with self.db.connection() as conn:
            row = (await conn.execute(sa.select(members.c.status, members.c.tier).where(members.c.id == member_id)
                                      .with_for_update())).first()
            if row is None:
                raise errors.UnknownMember()
            if row.status == "erased":
                raise errors.MemberErased()
            gift = self.programme.tier(row.tier).birthday_gift
            if gift is None:
                return None
            # Told as a notice keyed on the coupon (scheduler/notices.py), unless the birthday message names it.
            issued = await CoreRuleWriter(conn).issue_coupon(NewCoupon(member_id, gift, new_coupon_code(), request_id,
                                                                       None, now, notice="birthday_gift")) is not None
            code = (await conn.execute(sa.select(coupons.c.code).where(coupons.c.request_id == request_id))
                    ).scalar_one_or_none()
        if code is None:  # the programme names a reward the store does not hold yet
            log.warning("birthday gift %s not in the rewards table", gift)
            return None
        return BirthdayGift(reward_code=gift, coupon_code=code, repeated=not issued)

    async def support_queue(self, *, limit: int = 20) -> list[QueuedConversation]:
        """Conversations waiting for a person: higher tiers' support priority first, then the longest waiting."""
        since = (sa.select(HandoffEvent.conversation_id, sa.func.max(HandoffEvent.created_at).label("since"))
                 .where(HandoffEvent.to_state == WAITING).group_by(col(HandoffEvent.conversation_id)).subquery())
        async with self.db.read() as s:
            rows = (await s.execute(
                sa.select(HandoffConversation.id, Member.member_no, Member.first_name, Member.tier,
                          HandoffConversation.opened_at, since.c.since)
                .join(Member, col(Member.id) == HandoffConversation.member_id)
                .outerjoin(since, since.c.conversation_id == HandoffConversation.id)
                .where(HandoffConversation.state == WAITING))).all()
        queue = [QueuedConversation(row.id, row.member_no, row.first_name, row.tier,
                                    support_rank(self.programme, row.tier), as_utc(row.since or row.opened_at))
                 for row in rows]
        queue.sort(key=lambda q: (-q.rank, q.waiting_since, q.conversation_id))
        return queue[:limit]


__all__ = ["Benefits", "QueuedConversation", "support_rank"]
