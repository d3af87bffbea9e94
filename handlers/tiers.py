"""/tiers: every tier, what it takes and what it brings (benefits, discount, birthday gift, support
priority, how long points last), the member's own tier marked."""

from __future__ import annotations

from typing import TYPE_CHECKING

from loyalbot.chat.i18n import N_
from loyalbot.chat.port import Reply
from loyalbot.handlers.turn import Turn
from loyalbot.loyalty.programme import TierLevel

if TYPE_CHECKING:
    from loyalbot.handlers.router import Router


def discount_text(turn: Turn, level: TierLevel) -> str | None:
    """The tier's standing discount as the member reads it ("10% off"), or None when it has none."""
    if not level.discount_pct:
        return None
    return turn.t("tiers.discount", percent=turn.tr.number(level.discount_pct))


def benefit_lines(turn: Turn, level: TierLevel) -> list[str]:
    """What a tier brings, one line each, in the member's language."""
    programme = turn.loyalty.programme
    lines = []
    if level.benefits:
        lines.append(turn.title(level.benefits, ""))
    if (discount := discount_text(turn, level)) is not None:
        lines.append(discount)
    if level.birthday_gift is not None:
        gift = next((r for r in programme.rewards if r.code == level.birthday_gift), None)
        lines.append(turn.t("tiers.birthday_gift", gift=turn.title(gift.titles, level.birthday_gift)
                            if gift else level.birthday_gift))
    if level.support_priority:
        lines.append(turn.t("tiers.support_priority"))
    lines.append(turn.n("tiers.validity", "tiers.validity_plural",
                        level.points_validity_months or programme.expiry.months))
    return [line for line in lines if line]


async def show_tiers(turn: Turn) -> list[Reply]:
    member = turn.member
    assert member is not None
    programme = turn.loyalty.programme
    currency = programme.programme.currency
    lines = [turn.t("tiers.title")]
    for level in programme.tiers.levels:
        name = turn.tier_name(level.code)
        head = turn.t("tiers.yours", tier=name) if level.code == member.tier else f"<b>{name}</b>"
        lines += ["", head, turn.t("tiers.threshold", amount=turn.tr.money(level.threshold, currency),
                                   months=programme.tiers.window_months)]
        lines += [f"· {line}" for line in benefit_lines(turn, level)]
    return [Reply(text="\n".join(lines))]


def register(router: Router) -> None:
    router.command("tiers", show_tiers, help=N_("help.tiers"), menu=N_("menu.tiers"))
