"""/rewards: browse the catalogue page by page, choose a reward, confirm, and get its coupon.

The confirmation carries a request id made when it is shown; Confirm redeems with that id, so a
double tap (or a retried update) issues one coupon, and the second tap adds nothing to the chat: it
is answered with a small notice only (the coupon arrived with the first tap, and /coupons shows it).
"""

from __future__ import annotations

import logging
import secrets
from typing import TYPE_CHECKING

from loyalbot.chat.callbacks import encode
from loyalbot.chat.i18n import N_
from loyalbot.chat.outbound import Media
from loyalbot.chat.port import Button, Reply
from loyalbot.handlers.coupons import coupon_photo
from loyalbot.handlers.turn import Turn
from loyalbot.loyalty.errors import Refusal
from loyalbot.loyalty.results import CatalogueItem
from loyalbot.storage.rows import stored_id

if TYPE_CHECKING:
    from loyalbot.handlers.router import Router

log = logging.getLogger(__name__)

WHY_NOT = {
    "not_enough_points": N_("rewards.why_points"),
    "tier_too_low": N_("rewards.why_tier"),
    "out_of_stock": N_("rewards.why_stock"),
    "limit_reached": N_("rewards.why_limit"),
    "reward_unavailable": N_("rewards.why_unavailable"),
}


def _why_not(turn: Turn, item: CatalogueItem, balance: int) -> str:
    reward = item.reward
    if item.available:
        return turn.t("rewards.available")
    return turn.t(WHY_NOT.get(item.reason or "", "rewards.why_unavailable"),
                  short=max(reward.cost - balance, 0), tier=turn.tier_name(reward.min_tier or ""),
                  limit=reward.per_member_limit or 0)


async def show_page(turn: Turn, page: int = 0, *, edit: bool = False) -> list[Reply]:
    member = turn.member
    assert member is not None
    items = await turn.loyalty.catalogue(stored_id(member.id), now=turn.now)
    if not items:
        return [Reply(text=turn.t("rewards.empty"), edit=edit)]
    size = max(turn.ctx.config.rewards_per_page, 1)
    pages = (len(items) + size - 1) // size
    page = min(max(page, 0), pages - 1)
    lines = [turn.t("rewards.title", points=member.balance, page=str(page + 1), pages=str(pages)), ""]
    buttons: list[list[Button]] = []
    for item in items[page * size:(page + 1) * size]:
        reward = item.reward
        title = turn.title(reward.titles, reward.code)
        lines.append(turn.t("rewards.item", title=title, cost=reward.cost))
        if reward.stock is not None:
            lines.append("   " + turn.t("rewards.stock", count=reward.stock))
        lines.append("   " + ("✅ " if item.available else "✖️ ") + _why_not(turn, item, member.balance))
        label = turn.label("rewards.button", title=title, cost=reward.cost)
        buttons.append([Button(("" if item.available else "🔒 ") + label[:60], encode("rw", "s", reward.id or 0))])
    nav = []
    if page > 0:
        nav.append(Button(turn.t("button.previous"), encode("rw", "p", page - 1)))
    if page + 1 < pages:
        nav.append(Button(turn.t("button.next"), encode("rw", "p", page + 1)))
    if nav:
        buttons.append(nav)
    return [Reply(text="\n".join(lines), buttons=buttons, edit=edit)]


async def show_rewards(turn: Turn) -> list[Reply]:
    return await show_page(turn, 0)


async def choose(turn: Turn, reward_id: int) -> list[Reply]:
    """A reward was chosen: explain why not, or ask to confirm with a fresh request id."""
    member = turn.member
    assert member is not None
    items = await turn.loyalty.catalogue(stored_id(member.id), now=turn.now)
    item = next((i for i in items if i.reward.id == reward_id), None)
    if item is None:
        return turn.toast("error.unknown_reward", alert=True)
    reward = item.reward
    title = turn.title(reward.titles, reward.code)
    if not item.available:
        return turn.toast("rewards.cannot", alert=True, title=title, why=_why_not(turn, item, member.balance))
    request = secrets.token_urlsafe(9)
    description = turn.title(reward.descriptions, "")
    text = turn.t("rewards.confirm", title=title, cost=reward.cost, after=member.balance - reward.cost,
                  days=reward.validity_days)
    if description:
        text += "\n" + turn.t("rewards.description", text=description)
    buttons = [[Button(turn.t("button.confirm"), encode("rw", "c", reward_id, request)),
                Button(turn.t("button.cancel"), encode("rw", "x"))]]
    question = Reply(text=text, buttons=buttons)
    picture = await _picture(turn, reward.code)
    # The picture goes first, on its own: Confirm edits the question's text, which a photo's caption is not.
    return [Reply(text=title, media=picture), question] if picture is not None else [question]


async def _picture(turn: Turn, code: str) -> Media | None:
    """The picture an operator gave the reward in the console, if any (stored once, named by its digest)."""
    spec = next((r for r in turn.loyalty.programme.rewards if r.code == code), None)
    if spec is None or spec.image is None:
        return None
    image = await turn.loyalty.programmes.image(spec.image)
    if image is None:
        log.warning("reward picture missing from the store")
        return None
    extension = image.content_type.partition("/")[2] or "png"
    return Media(kind="photo", data=bytes(image.data), filename=f"reward.{extension}")


async def confirm(turn: Turn, reward_id: int, request: str) -> list[Reply]:
    member = turn.member
    assert member is not None
    try:
        result = await turn.loyalty.redeem_reward(stored_id(member.id), reward_id, request_id=f"chat:{member.id}:{request}",
                                                  now=turn.now, update_key=turn.incoming.update_key)
    except Refusal as refusal:
        log.info("redeem refused: %s", refusal.code)
        text = turn.refusal(refusal)
        return [Reply(text=text, toast=text[:200])]
    if result.repeated:
        log.info("redeem repeated: the coupon was already issued")
        return turn.toast("rewards.already_redeemed")
    photo = coupon_photo(turn, result.coupon, result.reward)
    title = turn.title(result.reward.titles, result.reward.code)
    return [Reply(text=turn.t("rewards.done", title=title, cost=result.coupon.points_spent), edit=True), photo]


async def pressed(turn: Turn) -> list[Reply]:
    callback = turn.callback
    assert callback is not None
    verb = callback.verb
    if verb == "p":
        return await show_page(turn, int(callback.args[1]), edit=True)
    if verb == "s":
        return await choose(turn, int(callback.args[1]))
    if verb == "c":
        return await confirm(turn, int(callback.args[1]), str(callback.args[2]))
    return [Reply(text=turn.t("rewards.cancelled"), edit=True)]


def register(router: Router) -> None:
    router.command("rewards", show_rewards, help=N_("help.rewards"), menu=N_("menu.rewards"))
    router.callback("rw", pressed)
