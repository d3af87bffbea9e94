"""Staff at the counter (private chat): check and use a coupon, record a purchase, look a member up.

Only users in the staff table may use these commands (the router checks before calling); the
services check again, so a forged button from anyone else changes nothing either.
"""

from __future__ import annotations

import logging
import secrets
from typing import TYPE_CHECKING

from handlers.i18n import N_
from handlers.port import Button, Reply
from handlers.turn import Turn
from loyalty.callbacks import encode
from loyalty.codes import normalise_coupon_code
from loyalty.errors import NotPermitted, Refusal, UnknownCoupon

if TYPE_CHECKING:
    from handlers.router import Router

log = logging.getLogger(__name__)


async def use(turn: Turn) -> list[Reply]:
    """/use CODE: show whose coupon it is and for what, with Confirm / Cancel."""
    args = turn.incoming.args.strip()
    if not args:
        return [Reply(text=turn.t("staff.use_usage"))]
    code = normalise_coupon_code(args[:64])
    try:
        if code is None:
            raise UnknownCoupon()
        view = await turn.loyalty.coupon_for_counter(code, staff_id=turn.incoming.user_id, now=turn.now)
    except Refusal as refusal:
        log.info("counter: coupon refused: %s", refusal.code)
        return turn.refusal_reply(refusal)
    member, reward, coupon = view.member, view.reward, view.coupon
    name = " ".join(p for p in (member.first_name, member.last_name) if p) or "—"
    return [Reply(text=turn.t("staff.use_check", code=coupon.code, title=turn.title(reward.titles, reward.code),
                              name=name, member_no=member.member_no, date=coupon.expires_at),
                  buttons=[[Button(turn.t("button.confirm"), encode("us", "y", coupon.code)),
                            Button(turn.t("button.cancel"), encode("us", "n"))]])]


async def pressed(turn: Turn) -> list[Reply]:
    callback = turn.callback
    assert callback is not None
    if await turn.staff_role() is None:
        log.info("counter button pressed by non-staff")
        return turn.refusal_reply(NotPermitted())
    if callback.verb == "n":
        return [Reply(text=turn.t("staff.use_cancelled"), edit=True)]
    try:
        view = await turn.loyalty.use_coupon(str(callback.args[1]), staff_id=turn.incoming.user_id, now=turn.now)
    except Refusal as refusal:
        log.info("counter: use refused: %s", refusal.code)
        return turn.refusal_reply(refusal)
    return [Reply(text=turn.t("staff.used", code=view.coupon.code,
                              title=turn.title(view.reward.titles, view.reward.code),
                              member_no=view.member.member_no), edit=True)]


async def award(turn: Turn) -> list[Reply]:
    """/award MEMBERNO AMOUNT [REF]: record a purchase at the counter and award its points."""
    parts = turn.incoming.args.split()
    if len(parts) not in (2, 3):
        return [Reply(text=turn.t("staff.award_usage"))]
    number, amount = parts[0], parts[1]
    if "," in amount and "." not in amount:
        amount = amount.replace(",", ".")
    # Without a till reference, the Telegram message itself is the purchase's identity: an update delivered
    # twice (a webhook retry, a restart before it was confirmed) records the purchase once.
    incoming = turn.incoming
    reference = parts[2] if len(parts) == 3 else (
        f"counter:{incoming.user_id}:{incoming.chat_id}:{incoming.message_id}" if incoming.message_id is not None
        else f"counter:{incoming.user_id}:{secrets.token_hex(8)}")
    staff_id = turn.incoming.user_id
    try:
        member = await turn.loyalty.member_by_number(number[:32])
        result = await turn.loyalty.award_purchase(member.id, external_id=reference[:128], amount=amount[:32],
                                                   source="counter", recorded_by=staff_id, now=turn.now)
        member = await turn.loyalty.member(member.id)
    except Refusal as refusal:
        log.info("counter: award refused: %s", refusal.code)
        return turn.refusal_reply(refusal)
    key = N_("staff.award_repeated") if result.repeated else N_("staff.awarded")
    return [Reply(text=turn.t(key, points=result.points, member_no=member.member_no, balance=member.balance,
                              amount=turn.tr.money(result.purchase.amount, result.purchase.currency),
                              ref=result.purchase.external_id))]


async def lookup(turn: Turn) -> list[Reply]:
    """/member MEMBERNO: who it is, tier, points, active coupons, last purchase."""
    number = turn.incoming.args.strip()
    if not number:
        return [Reply(text=turn.t("staff.member_usage"))]
    try:
        member = await turn.loyalty.member_by_number(number[:32])
    except Refusal as refusal:
        log.info("counter: lookup refused: %s", refusal.code)
        return turn.refusal_reply(refusal)
    coupons = await turn.loyalty.coupons_of(member.id, status="active", now=turn.now)
    name = " ".join(p for p in (member.first_name, member.last_name) if p) or "—"
    last = turn.tr.date(member.last_purchase_at) if member.last_purchase_at else turn.t("staff.never")
    return [Reply(text=turn.t("staff.member", name=name, member_no=member.member_no,
                              tier=turn.tier_name(member.tier), points=member.balance, coupons=len(coupons),
                              last=last))]


def register(router: Router) -> None:
    router.command("use", use, staff=True)
    router.command("award", award, staff=True)
    router.command("member", lookup, staff=True)
    router.callback("us", pressed, open=True)
