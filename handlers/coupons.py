"""/coupons: the member's active coupons (code, QR, expiry), and on request the used and expired ones."""

from __future__ import annotations

from typing import TYPE_CHECKING

from loyalbot.chat.callbacks import encode
from loyalbot.chat.i18n import N_
from loyalbot.chat.port import Button, Media, Reply
from loyalbot.handlers.turn import Turn, qr_png
from loyalbot.loyalty.codes import coupon_qr_payload
from loyalbot.storage.models import Coupon, Reward
from loyalbot.storage.rows import stored_id

if TYPE_CHECKING:
    from loyalbot.handlers.router import Router

STATUS = {"used": N_("coupons.status_used"), "expired": N_("coupons.status_expired"),
          "void": N_("coupons.status_void"), "active": N_("coupons.status_expired")}


def coupon_caption(turn: Turn, coupon: Coupon, reward: Reward) -> str:
    return turn.t("coupons.caption", title=turn.title(reward.titles, reward.code), code=coupon.code,
                  date=coupon.expires_at)


def coupon_photo(turn: Turn, coupon: Coupon, reward: Reward) -> Reply:
    """A coupon as a photo of its QR code, captioned with its code and expiry."""
    return Reply(text=coupon_caption(turn, coupon, reward),
                 media=Media(kind="photo", data=qr_png(coupon_qr_payload(coupon.code)), filename="coupon.png"))


async def show_active(turn: Turn) -> list[Reply]:
    """The active coupons, each with a button that shows its QR; and a way to see old ones."""
    member = turn.member
    assert member is not None
    coupons = await turn.loyalty.coupons_of(stored_id(member.id), status="active", now=turn.now)
    limit = turn.ctx.config.coupons_shown
    old = [[Button(turn.t("coupons.show_old"), encode("cp", "o"))]]
    if not coupons:
        return [Reply(text=turn.t("coupons.none"), buttons=old)]
    if len(coupons) == 1:
        coupon, reward = coupons[0]
        return [coupon_photo(turn, coupon, reward), Reply(text=turn.t("coupons.one"), buttons=old)]
    lines = [turn.n("coupons.title", "coupons.title_plural", len(coupons))]
    buttons = []
    for coupon, reward in coupons[:limit]:
        title = turn.title(reward.titles, reward.code)
        lines.append(turn.t("coupons.line", title=title, code=coupon.code, date=coupon.expires_at))
        buttons.append([Button(turn.label("coupons.show_qr", title=title)[:60], encode("cp", "q", coupon.id or 0))])
    if len(coupons) > limit:
        lines.append(turn.t("coupons.more", count=len(coupons) - limit))
    return [Reply(text="\n".join(lines), buttons=buttons + old)]


async def show_old(turn: Turn) -> list[Reply]:
    member = turn.member
    assert member is not None
    coupons = await turn.loyalty.coupons_of(stored_id(member.id), status="inactive", now=turn.now)
    if not coupons:
        return [Reply(text=turn.t("coupons.none_old"))]
    lines = [turn.t("coupons.old_title")]
    for coupon, reward in coupons[: turn.ctx.config.coupons_shown]:
        status = turn.t(STATUS.get(coupon.status, "coupons.status_expired"))
        lines.append(turn.t("coupons.old_line", title=turn.title(reward.titles, reward.code), code=coupon.code,
                            status=status, date=coupon.used_at or coupon.expires_at))
    return [Reply(text="\n".join(lines))]


async def pressed(turn: Turn) -> list[Reply]:
    assert turn.callback is not None and turn.member is not None
    verb = turn.callback.verb
    if verb == "a":
        return await show_active(turn)
    if verb == "o":
        return await show_old(turn)
    wanted = turn.callback.args[1]
    # "q" names the coupon by id (the /coupons list); "c" by code (a campaign's offer, planned before the
    # coupon had an id). Either way only the member's own active coupons are looked at.
    for coupon, reward in await turn.loyalty.coupons_of(stored_id(turn.member.id), status="active", now=turn.now):
        if (coupon.id if verb == "q" else coupon.code) == wanted:
            return [coupon_photo(turn, coupon, reward)]
    # Someone else's coupon, one that was used or expired since it was shown, or an offer not yet issued.
    return turn.toast("coupons.gone", alert=True)


def register(router: Router) -> None:
    router.command("coupons", show_active, help=N_("help.coupons"), menu=N_("menu.coupons"))
    router.callback("cp", pressed)
