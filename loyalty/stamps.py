"""Stamp cards: "buy 9 coffees, the 10th is free". A card per `[[stamp_cards]]` rule and member; a stamp per
qualifying item of a purchase (by SKU or category, from the shop's API) or given by staff at the counter
(/stamp). The stamp that fills the card issues the reward's coupon in the same transaction, and the card
starts again (stamps beyond the last carry over).

Every stamping is an event keyed by what caused it (the purchase's external id, or the counter's Telegram
update): the same key again stamps nothing. Coupons are keyed by (member, card, cycle), so a card completed
once issues one coupon whatever races around it (the member row is locked, the key is unique).

A refund takes back the stamps its purchase added (`take_back_stamps`, in the refund's transaction): all of
them for a full refund, in proportion to the amount refunded so far for a partial one, as a stamp event
with negative stamps keyed by the refund. When the card holds fewer stamps than that because they helped
complete it, the coupon of that completion is taken back (voided) while it is still unused, and the
card is as it was before; a coupon already used stays used, and the card is left in debt (`stamps` below
zero), which the next stamps pay first.
"""

from __future__ import annotations

import logging
import math
from datetime import datetime
from decimal import Decimal
from typing import Protocol

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from loyalbot.loyalty import errors
from loyalbot.loyalty.basket import Basket
from loyalbot.loyalty.codes import new_coupon_code
from loyalbot.loyalty.programme import FollowsProgramme, Programme, ProgrammeInForce, StampCardSpec
from loyalbot.loyalty.results import CardProgress, Stamped, StampsTakenBack
from loyalbot.loyalty.staff import StaffRoles
from loyalbot.storage import Db, as_utc, utcnow
from loyalbot.storage.models import Coupon, Member, Purchase, StampCard, StampEvent
from loyalbot.storage.rows import table_of
from loyalbot.storage.rule_writers import CoreRuleWriter, NewCoupon

log = logging.getLogger(__name__)


class StampWriter(Protocol):
    async def add_stamp_event(self, member_id: int, card_code: str, key: str, stamps: int, *,
                              purchase_id: int | None, staff_id: int | None, now: datetime) -> int | None: ...

    async def card(self, member_id: int, card_code: str) -> tuple[int, int]: ...

    async def save_card(self, member_id: int, card_code: str, stamps: int, cycles: int, now: datetime,
                        event_id: int, coupons: int) -> None: ...

    async def issue_coupon(self, coupon: NewCoupon) -> int | None: ...


def stamps_for(card: StampCardSpec, basket: Basket) -> int:
    """How many stamps the basket earns on `card`: the quantity of its items of the card's SKUs or categories."""
    return sum(item.quantity for item in basket.items
               if (item.sku is not None and item.sku in card.skus)
               or (item.category is not None and item.category in card.categories))


async def stamp(writer: StampWriter, card: StampCardSpec, member_id: int, *, key: str, stamps: int,
                purchase_id: int | None, staff_id: int | None, now: datetime) -> Stamped:
    """Add `stamps` to the member's `card` under `key` (in the caller's transaction, the member locked),
    issuing a coupon for each time the card fills. A key seen before changes nothing (`repeated`)."""
    before, cycles = await writer.card(member_id, card.code)
    event_id = await writer.add_stamp_event(member_id, card.code, key[:160], stamps, purchase_id=purchase_id,
                                            staff_id=staff_id, now=now)
    if event_id is None:
        return Stamped(card.code, 0, before, card.stamps_needed, cycles, repeated=True)
    # A card in debt (a refund took back stamps of a reward already used) pays it first.
    filled, left = divmod(before + stamps, card.stamps_needed) if before + stamps >= 0 else (0, before + stamps)
    coupons = []
    for cycle in range(cycles + 1, cycles + filled + 1):
        code = new_coupon_code()
        # The member is told (scheduler/notices.py), once: the notice is keyed on the coupon.
        if await writer.issue_coupon(NewCoupon(member_id, card.reward, code, f"stamp:{member_id}:{card.code}:{cycle}",
                                               card.validity_days, now, notice="stamp_card")) is not None:
            coupons.append(code)
    await writer.save_card(member_id, card.code, left, cycles + filled, now, event_id, len(coupons))
    return Stamped(card.code, stamps, left, card.stamps_needed, cycles + filled, tuple(coupons))


async def stamp_purchase(writer: StampWriter, programme: Programme, member_id: int, basket: Basket, *,
                         external_id: str, purchase_id: int | None, now: datetime) -> list[Stamped]:
    """The stamps a purchase's items earn, on every card they qualify for (inside the award)."""
    done = []
    for card in programme.stamp_cards:
        if (count := stamps_for(card, basket)) > 0:
            done.append(await stamp(writer, card, member_id, key=f"purchase:{external_id}", stamps=count,
                                    purchase_id=purchase_id, staff_id=None, now=now))
    return done


async def take_back_stamps(tx: AsyncSession, programme: Programme, purchase: Purchase, *, refund_id: str,
                           now: datetime) -> list[StampsTakenBack]:
    """Take back the stamps a refunded purchase added (inside the refund's transaction, the member locked), up
    to the share of the purchase refunded so far (`refunded_amount` already counts this refund)."""
    assert purchase.id is not None
    rows = (await tx.execute(sa.select(StampEvent.card_code, StampEvent.stamps).where(
        StampEvent.purchase_id == purchase.id))).all()
    given: dict[str, int] = {}
    back: dict[str, int] = {}
    for code, stamps in rows:
        if stamps > 0:
            given[code] = given.get(code, 0) + stamps
        else:
            back[code] = back.get(code, 0) - stamps
    amount, refunded = Decimal(purchase.amount), Decimal(purchase.refunded_amount)
    specs = {card.code: card for card in programme.stamp_cards}
    done = []
    for code, stamps in sorted(given.items()):
        due = stamps if refunded >= amount else math.floor(stamps * refunded / amount)
        take = due - back.get(code, 0)
        if take <= 0:
            continue
        card = (await tx.execute(sa.select(StampCard).where(
            StampCard.member_id == purchase.member_id, StampCard.card_code == code).with_for_update()
            .execution_options(populate_existing=True))).scalar_one()
        left, voided = card.stamps - take, []
        spec = specs.get(code)
        while left < 0 and card.cycles > 0 and spec is not None:
            # The stamps taken back helped fill the card: its last coupon goes back too, while unused.
            coupon = (await tx.execute(sa.select(Coupon).where(
                Coupon.request_id == f"stamp:{purchase.member_id}:{code}:{card.cycles}").with_for_update()
                .execution_options(populate_existing=True))).scalar_one_or_none()
            if coupon is not None and coupon.status in ("used", "void"):
                break  # used: the card owes the stamps instead
            if coupon is not None:  # its key freed, so that completing the card again issues a new one
                coupon.status, coupon.request_id = "void", f"{coupon.request_id}~void:{coupon.id}"[:128]
                tx.add(coupon)
                voided.append(coupon.code)
            card.cycles -= 1
            left += spec.stamps_needed
        card.stamps, card.updated_at = left, now
        tx.add(card)
        tx.add(StampEvent(member_id=purchase.member_id, card_code=code, key=f"refund:{refund_id}"[:160],
                          stamps=-take, purchase_id=purchase.id, coupons_issued=0, created_at=now))
        done.append(StampsTakenBack(code, take, left, tuple(voided)))
    return done


def card_spec(programme: Programme, code: str) -> StampCardSpec:
    """The programme's stamp card `code` (case-insensitive), or UnknownStampCard."""
    for card in programme.stamp_cards:
        if card.code == code.strip().lower():
            return card
    raise errors.UnknownStampCard(card=code[:32])


class StampCards(FollowsProgramme):
    """The member's stamp cards: their progress, and a stamp given by staff at the counter."""

    def __init__(self, db: Db, programme: ProgrammeInForce, staff: StaffRoles) -> None:
        self.db = db
        self._in_force = programme
        self.staff = staff

    async def stamp_at_counter(self, member_id: int, card_code: str, *, staff_id: int, update_key: str,
                               now: datetime | None = None) -> Stamped:
        """One stamp on the member's card, given by staff. The Telegram update is the key: the same update
        handled again (a redelivery, a double tap) stamps once."""
        await self.staff.require_staff(staff_id)
        done = await self.give_stamps(member_id, card_code, 1, key=f"counter:{update_key}", staff_id=staff_id, now=now)
        log.info("stamp card %s: counter stamp (%s)", done.card, "repeat" if done.repeated else "new")
        return done

    async def give_stamps(self, member_id: int, card_code: str, stamps: int, *, key: str,
                          staff_id: int | None = None, now: datetime | None = None) -> Stamped:
        """`stamps` on the member's card without a purchase (the counter's stamp; the demo's first coffees),
        once per `key`, in one transaction on the locked member row."""
        now = as_utc(now or utcnow())
        if not 1 <= stamps <= 50:
            raise errors.InvalidSetting("stamps must be from 1 to 50", setting="stamps")
        card = card_spec(self.programme, card_code)
        members = table_of(Member)
        async with self.db.connection() as conn:
            row = (await conn.execute(sa.select(members.c.status).where(members.c.id == member_id)
                                      .with_for_update())).first()
            if row is None:
                raise errors.UnknownMember()
            if row.status == "erased":
                raise errors.MemberErased()
            return await stamp(CoreRuleWriter(conn), card, member_id, key=key, stamps=stamps, purchase_id=None,
                               staff_id=staff_id, now=now)

    async def stamp_cards_of(self, member_id: int) -> list[CardProgress]:
        """Each card of the programme with the member's stamps on it (none yet: zero)."""
        async with self.db.read() as s:
            rows = (await s.execute(sa.select(StampCard.card_code, StampCard.stamps, StampCard.cycles)
                                    .where(StampCard.member_id == member_id))).all()
        held = {code: (stamps, cycles) for code, stamps, cycles in rows}
        return [CardProgress(card, *held.get(card.code, (0, 0))) for card in self.programme.stamp_cards]


__all__ = ["CardProgress", "StampCards", "Stamped", "StampsTakenBack", "card_spec", "stamp", "stamp_purchase",
           "stamps_for", "take_back_stamps"]
