"""Staff at the counter (private chat): check and use a coupon, record a purchase, look a member up.

Only users in the staff table may use these commands (the router checks before calling); the
services check again, so a forged button from anyone else changes nothing either.

- A member is found by member number, phone (read in the shop's country) or name (a short list of
  matches, as buttons).
- /award asks before it records: it shows member, amount and points, and records on Confirm. The
  pending award lives in the conversation state with a one-time token that its buttons carry, so an
  old or forged button is told so and records nothing. Its reference (the till's, or the Telegram
  message's) makes a double tap, or a redelivered update, record once. Once recorded, an Undo button
  refunds the purchase for `counter.undo_minutes` (see Loyalty.undo_counter_purchase).
- Look-ups (member number, phone, name, coupon code) are throttled per staff member, so neither
  member numbers nor coupon codes can be guessed at speed from a staff account.
- /stamp MEMBERNO|PHONE|NAME CARD gives one stamp, the member found as /member finds them (several
  matches: a list to choose from, then the member number). The Telegram update is the stamp's key, so a
  double tap or a redelivered update stamps once.
- /start for staff who are not members offers the staff menu, and still lets them join.
"""

from __future__ import annotations

import logging
import math
import secrets
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from loyalbot.chat.callbacks import encode
from loyalbot.chat.i18n import N_
from loyalbot.chat.limits import TOAST_LIMIT
from loyalbot.chat.port import Button, Reply
from loyalbot.handlers import registration
from loyalbot.handlers.menu import staff_help_lines
from loyalbot.handlers.stamps import progress_bar
from loyalbot.handlers.tiers import discount_text
from loyalbot.handlers.turn import Turn, clip
from loyalbot.loyalty.amounts import parse_counter_amount
from loyalbot.loyalty.bonuses import bonus_title
from loyalbot.loyalty.codes import normalise_coupon_code, valid_member_no
from loyalbot.loyalty.errors import NotPermitted, Refusal, UnknownCoupon, UnknownMember
from loyalbot.loyalty.phones import looks_like_phone
from loyalbot.storage.models import Member
from loyalbot.storage.rows import stored_id
from loyalbot.storage.throttle import MemoryThrottle

if TYPE_CHECKING:
    from loyalbot.handlers.router import Router

log = logging.getLogger(__name__)

NAMES_SHOWN = 8  # matches listed as buttons; more than that asks for more of the name
PENDING_STEP = "aw.confirm"
DONE_STEP = "awdone.recorded"  # no step handler: the next message clears it, a second tap still finds it

# Messages only looked up by code (turn.refusal), listed for the extractor and the catalogue test.
COUNTER_REFUSALS = (N_("error.amount_format"), N_("error.amount_too_large"), N_("error.undo_expired"),
                    N_("error.undo_not_possible"))


# --- look-ups ---------------------------------------------------------------------------------------------


async def _throttled(turn: Turn, what: str) -> list[Reply] | None:
    """None when this staff member may look something up now; else the answer saying when to try again."""
    services = turn.ctx.services
    if services.throttle is None:
        services.throttle = MemoryThrottle()
    throttle = services.throttle
    limit = turn.loyalty.programme.counter.lookups_per_minute
    wait = await throttle.hit("counter.lookup", str(turn.incoming.user_id), limit=limit, per=60.0)
    if not wait:
        return None
    log.info("counter: %s throttled, next look-up in %.0fs", what, math.ceil(wait))
    text = turn.t("staff.throttled", seconds=max(1, math.ceil(wait)))
    if turn.incoming.callback_id is not None:
        return [Reply(toast=clip(turn.label("staff.throttled", seconds=max(1, math.ceil(wait))), TOAST_LIMIT),
                      alert=True)]
    return [Reply(text=text)]


async def _find(turn: Turn, query: str) -> list[Member]:
    """The members `query` names: by member number (or card QR), by phone, else by (the start of a) name."""
    query = " ".join(query.split())[:64]
    number = query.upper().removeprefix("LBM:")
    if valid_member_no(number):
        return [await turn.loyalty.member_by_number(number)]
    if looks_like_phone(query):
        return await turn.loyalty.members_by_phone(query)
    return await turn.loyalty.members_by_name(query, limit=NAMES_SHOWN + 1)


def _name(member: Member) -> str:
    return " ".join(p for p in (member.first_name, member.last_name) if p) or "—"


async def _card(turn: Turn, member: Member) -> Reply:
    coupons = await turn.loyalty.coupons_of(stored_id(member.id), status="active", now=turn.now)
    last = turn.tr.date(member.last_purchase_at) if member.last_purchase_at else turn.t("staff.never")
    text = turn.t("staff.member", name=_name(member), member_no=member.member_no, tier=turn.tier_name(member.tier),
                  points=member.balance, coupons=len(coupons), last=last)
    # The tier's standing discount, so the counter gives it when the card is shown.
    if (discount := discount_text(turn, turn.loyalty.programme.tier(member.tier))) is not None:
        text += "\n" + turn.t("staff.member_discount", discount=discount)
    for card in await turn.loyalty.stamp_cards_of(stored_id(member.id)):  # a stamp at the counter needs the card
        text += "\n" + turn.t("staff.member_stamps", card=turn.title(card.spec.titles, card.spec.code),
                               code=card.spec.code, progress=progress_bar(card.stamps, card.spec.stamps_needed))
    return Reply(text=text)


def _choices(turn: Turn, members: list[Member]) -> Reply:
    """A list of matching members to choose from, one button each."""
    shown = members[:NAMES_SHOWN]
    text = turn.n("staff.member_matches", "staff.member_matches_plural", len(shown))
    if len(members) > NAMES_SHOWN:
        text += "\n" + turn.t("staff.member_more", shown=NAMES_SHOWN)
    return Reply(text=text, buttons=[[Button(f"{_name(m)} · {m.member_no}", encode("sm", "s", m.id or 0))]
                                     for m in shown])


async def lookup(turn: Turn) -> list[Reply]:
    """/member MEMBERNO|PHONE|NAME: who it is, tier, points, active coupons, last purchase; a list if several."""
    query = turn.incoming.args.strip()
    if not query:
        return [Reply(text=turn.t("staff.member_usage"))]
    if (wait := await _throttled(turn, "member look-up")) is not None:
        return wait
    try:
        members = await _find(turn, query)
    except Refusal as refusal:
        log.info("counter: lookup refused: %s", refusal.code)
        return turn.refusal_reply(refusal)
    if not members:
        log.info("counter: lookup found nobody")
        return [Reply(text=turn.t("staff.member_none"))]
    if len(members) == 1:
        return [await _card(turn, members[0])]
    return [_choices(turn, members)]


async def member_pressed(turn: Turn) -> list[Reply]:
    """A button of the list of matches (show that member), or a staff member's 'Join as a member'."""
    callback = turn.callback
    assert callback is not None
    if callback.verb == "j":
        if turn.member is not None:
            return turn.toast("error.stale_button")
        return await registration.start(turn)
    if await turn.staff_role() is None:
        log.info("counter member button pressed by non-staff")
        return turn.refusal_reply(NotPermitted())
    if (wait := await _throttled(turn, "member look-up")) is not None:
        return wait
    try:
        member = await turn.loyalty.member(int(callback.args[1]))
    except Refusal as refusal:
        log.info("counter: member button refused: %s", refusal.code)
        return turn.refusal_reply(refusal)
    return [await _card(turn, member)]


# --- coupons ----------------------------------------------------------------------------------------------


async def use(turn: Turn) -> list[Reply]:
    """/use CODE: show whose coupon it is and for what, with Confirm / Cancel.
    /use MEMBERNO|PHONE: the member's active coupons, to pick the one to check (no code at hand)."""
    args = turn.incoming.args.strip()
    if not args:
        return [Reply(text=turn.t("staff.use_usage"))]
    if (wait := await _throttled(turn, "coupon check")) is not None:
        return wait
    code = normalise_coupon_code(args[:64])
    if code is None and (valid_member_no(args.upper().removeprefix("LBM:")) or looks_like_phone(args)):
        return await _coupons_to_pick(turn, args)
    return await _check(turn, code)


async def _coupons_to_pick(turn: Turn, who: str) -> list[Reply]:
    try:
        members = await _find(turn, who)
    except Refusal as refusal:
        log.info("counter: coupon owner refused: %s", refusal.code)
        return turn.refusal_reply(refusal)
    if not members:
        return [Reply(text=turn.t("staff.member_none"))]
    if len(members) > 1:
        return [_choices(turn, members)]
    member = members[0]
    coupons = await turn.loyalty.coupons_of(stored_id(member.id), status="active", now=turn.now)
    if not coupons:
        return [Reply(text=turn.t("staff.use_no_coupons", name=_name(member), member_no=member.member_no))]
    buttons = [[Button(f"{turn.title(reward.titles, reward.code)} · {coupon.code}", encode("us", "c", coupon.code))]
               for coupon, reward in coupons[:NAMES_SHOWN]]
    return [Reply(text=turn.t("staff.use_pick", name=_name(member), member_no=member.member_no), buttons=buttons)]


async def _check(turn: Turn, code: str | None) -> list[Reply]:
    try:
        if code is None:
            raise UnknownCoupon()
        view = await turn.loyalty.coupon_for_counter(code, staff_id=turn.incoming.user_id, now=turn.now)
    except Refusal as refusal:
        log.info("counter: coupon refused: %s", refusal.code)
        return turn.refusal_reply(refusal)
    member, reward, coupon = view.member, view.reward, view.coupon
    return [Reply(text=turn.t("staff.use_check", code=coupon.code, title=turn.title(reward.titles, reward.code),
                              name=_name(member), member_no=member.member_no, date=coupon.expires_at),
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
    # These buttons carry the code itself: forged ones would be a way to guess codes, so they count too.
    if (wait := await _throttled(turn, "coupon use")) is not None:
        return wait
    if callback.verb == "c":
        return await _check(turn, normalise_coupon_code(str(callback.args[1])))
    try:
        view = await turn.loyalty.use_coupon(str(callback.args[1]), staff_id=turn.incoming.user_id, now=turn.now,
                                             update_key=turn.incoming.update_key)
    except Refusal as refusal:
        log.info("counter: use refused: %s", refusal.code)
        return turn.refusal_reply(refusal)
    return [Reply(text=turn.t("staff.used", code=view.coupon.code,
                              title=turn.title(view.reward.titles, view.reward.code),
                              member_no=view.member.member_no), edit=True)]


# --- recording a purchase -----------------------------------------------------------------------------------


async def award(turn: Turn) -> list[Reply]:
    """/award MEMBERNO|PHONE AMOUNT [REF]: show member, amount and points, and ask before recording."""
    parts = turn.incoming.args.split()
    if len(parts) not in (2, 3):
        return [Reply(text=turn.t("staff.award_usage"))]
    who, typed = parts[0], parts[1]
    programme = turn.loyalty.programme
    try:
        amount = parse_counter_amount(typed[:32], maximum=programme.counter.max_amount)
    except Refusal as refusal:
        log.info("counter: award refused: %s", refusal.code)
        return [Reply(text=turn.refusal(refusal) + "\n" + turn.t("staff.award_usage"))]
    if (wait := await _throttled(turn, "award look-up")) is not None:
        return wait
    try:
        if not valid_member_no(who.upper().removeprefix("LBM:")) and not looks_like_phone(who):
            raise UnknownMember()
        members = await _find(turn, who)
        if not members:
            raise UnknownMember()
    except Refusal as refusal:
        log.info("counter: award refused: %s", refusal.code)
        return turn.refusal_reply(refusal)
    if len(members) > 1:  # e.g. a family sharing one phone: choose by member number
        log.info("counter: award phone matches %d members", len(members))
        return [Reply(text=turn.t("staff.award_several")), _choices(turn, members)]
    member = members[0]
    # Without a till reference, the Telegram message itself is the purchase's identity: an update delivered
    # twice (a webhook retry, a restart before it was confirmed) records the purchase once.
    incoming = turn.incoming
    reference = parts[2][:128] if len(parts) == 3 else (
        f"counter:{incoming.user_id}:{incoming.chat_id}:{incoming.message_id}" if incoming.message_id is not None
        else f"counter:{incoming.user_id}:{secrets.token_hex(8)}")
    token = secrets.token_urlsafe(9)
    await turn.set_state(PENDING_STEP, {"token": token, "member_id": member.id, "amount": str(amount),
                                        "ref": reference, "at": turn.now.isoformat()})
    points = turn.loyalty.points_preview(member, amount, now=turn.now)
    text = turn.t("staff.award_confirm", amount=turn.tr.money(amount, programme.programme.currency),
                  name=_name(member), member_no=member.member_no, points=points, balance=member.balance)
    return [Reply(text=text, buttons=[[Button(turn.t("button.confirm"), encode("aw", "y", token)),
                                       Button(turn.t("button.cancel"), encode("aw", "n", token))]])]


async def award_pressed(turn: Turn) -> list[Reply]:
    """Confirm or Cancel of a pending /award, or Undo of a recorded one."""
    callback = turn.callback
    assert callback is not None
    if await turn.staff_role() is None:
        log.info("award button pressed by non-staff")
        return turn.refusal_reply(NotPermitted())
    if callback.verb == "u":
        return await _undo(turn, int(callback.args[1]))
    token = str(callback.args[1])
    data: dict[str, Any] = turn.state.data if turn.state is not None else {}
    if turn.step == DONE_STEP and data.get("token") == token:
        return turn.toast("staff.award_already_recorded")
    if turn.step != PENDING_STEP or data.get("token") != token:
        log.info("counter: stale or forged award button")
        return turn.toast("staff.award_stale", alert=True)
    if callback.verb == "n":
        await turn.clear_state()
        return [Reply(text=turn.t("staff.award_cancelled"), edit=True)]
    counter = turn.loyalty.programme.counter
    if turn.now - datetime.fromisoformat(data["at"]) > timedelta(minutes=counter.confirm_minutes):
        await turn.clear_state()
        log.info("counter: award confirmation expired")
        return [Reply(text=turn.t("staff.award_expired", minutes=counter.confirm_minutes), edit=True)]
    try:
        result = await turn.loyalty.award_purchase(int(data["member_id"]), external_id=data["ref"],
                                                   amount=Decimal(data["amount"]), source="counter",
                                                   recorded_by=turn.incoming.user_id, now=turn.now,
                                                   update_key=turn.incoming.update_key)
        member = await turn.loyalty.member(int(data["member_id"]))
    except Refusal as refusal:
        await turn.clear_state()
        log.info("counter: award refused: %s", refusal.code)
        return turn.refusal_reply(refusal)
    await turn.set_state(DONE_STEP, {"token": token, "purchase_id": result.purchase.id})
    amount = turn.tr.money(result.purchase.amount, result.purchase.currency)
    if result.repeated:
        return [Reply(text=turn.t("staff.award_repeated", points=result.points, balance=member.balance,
                                  ref=result.purchase.external_id), edit=True)]
    text = turn.t("staff.awarded", points=result.points, member_no=member.member_no, balance=member.balance,
                  amount=amount, ref=result.purchase.external_id)
    for bonus in result.bonuses:  # each campaign's points, by name, as the member's history shows them
        title = bonus_title(turn.loyalty.programme, f"bonus:{bonus.code}", turn.lang) or bonus.code
        text += "\n" + turn.t("staff.award_bonus", title=title, points=bonus.points)
    buttons = None
    if counter.undo_minutes > 0 and result.purchase.id is not None:
        text += "\n" + turn.t("staff.award_undo_hint", minutes=counter.undo_minutes)
        buttons = [[Button(turn.t("button.undo"), encode("aw", "u", result.purchase.id))]]
    return [Reply(text=text, buttons=buttons, edit=True)]


async def _undo(turn: Turn, purchase_id: int) -> list[Reply]:
    try:
        undone = await turn.loyalty.undo_counter_purchase(purchase_id, staff_id=turn.incoming.user_id,
                                                          now=turn.now, update_key=turn.incoming.update_key)
    except Refusal as refusal:
        log.info("counter: undo refused: %s", refusal.code)
        return turn.refusal_reply(refusal)
    if undone.refund.repeated:
        return turn.toast("staff.award_already_undone")
    purchase = undone.purchase
    return [Reply(text=turn.t("staff.award_undone", amount=turn.tr.money(purchase.amount, purchase.currency),
                              member_no=undone.member.member_no,
                              # still-pending points count as taken back too: the member never had them
                              points=undone.refund.points_taken + undone.refund.pending_cancelled,
                              balance=undone.member.balance), edit=True)]


async def pending_award(turn: Turn) -> list[Reply]:
    """A message while an /award waits for Confirm or Cancel: say so (the buttons are above)."""
    return [Reply(text=turn.t("staff.award_pending"))]


# --- /start for staff ---------------------------------------------------------------------------------------


# --- stamps -----------------------------------------------------------------------------------------------


def _stamp_key(turn: Turn) -> str:
    """What makes this /stamp once: its Telegram update, else its message (no update: a test or a replay)."""
    incoming = turn.incoming
    if incoming.update_key is not None:
        return incoming.update_key
    if incoming.message_id is not None:
        return f"message:{incoming.chat_id}:{incoming.message_id}"
    return f"once:{secrets.token_hex(8)}"


async def stamp(turn: Turn) -> list[Reply]:
    """/stamp MEMBERNO|PHONE|NAME CARD: one stamp on the member's card; the card and any coupon it issued."""
    parts = turn.incoming.args.rsplit(None, 1)
    cards = ", ".join(card.code for card in turn.loyalty.programme.stamp_cards) or "—"
    if len(parts) != 2 or not parts[0].strip():
        return [Reply(text=turn.t("staff.stamp_usage", cards=cards))]
    who, code = parts[0], parts[1][:32]
    if (wait := await _throttled(turn, "stamp look-up")) is not None:
        return wait
    try:
        members = await _find(turn, who)
        if not members:
            raise UnknownMember()
        if len(members) > 1:  # a shared phone, a common name: choose, then stamp by member number
            log.info("counter: stamp matches %d members", len(members))
            return [Reply(text=turn.t("staff.stamp_several")), _choices(turn, members)]
        member = members[0]
        done = await turn.loyalty.stamp_at_counter(stored_id(member.id), code, staff_id=turn.incoming.user_id,
                                                   update_key=_stamp_key(turn), now=turn.now)
    except Refusal as refusal:
        log.info("counter: stamp refused: %s", refusal.code)
        text = turn.refusal(refusal)
        if refusal.code == "unknown_stamp_card":
            text += "\n" + turn.t("staff.stamp_usage", cards=cards)
        return [Reply(text=text)]
    bar = progress_bar(done.stamps, done.needed)
    if done.repeated:
        return [Reply(text=turn.t("staff.stamp_repeated", member_no=member.member_no, progress=bar))]
    lines = [turn.t("staff.stamped", member_no=member.member_no, progress=bar)]
    lines += [turn.t("staff.stamp_coupon", code=code) for code in done.coupons]
    return [Reply(text="\n".join(lines))]


async def start(turn: Turn) -> list[Reply]:
    """/start: staff who are not members get the staff menu and a way to join; everyone else joins as before."""
    if turn.member is None and await turn.staff_role() is not None:
        await turn.clear_state()
        text = "\n".join([turn.t("staff.start"), "", *staff_help_lines(turn)])
        return [Reply(text=text, buttons=[[Button(turn.t("button.join_as_member"), encode("sm", "j"))]])]
    return await registration.start(turn)


def register(router: Router) -> None:
    router.command("use", use, staff=True, help=N_("help.staff_use"))
    router.command("award", award, staff=True, help=N_("help.staff_award"))
    router.command("member", lookup, staff=True, help=N_("help.staff_member"))
    router.command("stamp", stamp, staff=True, help=N_("help.staff_stamp"))
    router.callback("us", pressed, open=True)
    router.callback("aw", award_pressed, open=True)
    router.callback("sm", member_pressed, open=True)
    router.step("aw", pending_award)
    # Replaces registration's /start (registered before this room), which it calls for everyone but staff.
    router.command("start", start, open=True)
