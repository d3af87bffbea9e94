"""/card: the member card -- number, tier, progress to the next tier, points -- with a QR code to scan."""

from __future__ import annotations

from typing import TYPE_CHECKING

from loyalbot.chat.i18n import N_
from loyalbot.chat.port import Media, Reply
from loyalbot.handlers.tiers import discount_text
from loyalbot.handlers.turn import Turn, qr_png
from loyalbot.loyalty.codes import member_qr_payload
from loyalbot.storage.rows import stored_id

if TYPE_CHECKING:
    from loyalbot.handlers.router import Router


async def card_text(turn: Turn) -> str:
    """The card's caption: who, which tier, how far to the next, how many points."""
    member = turn.member
    assert member is not None
    progress = await turn.loyalty.tier_progress(stored_id(member.id), now=turn.now)
    currency = turn.loyalty.programme.programme.currency
    lines = [
        turn.t("card.title", name=turn.ctx.config.bot_name),
        turn.t("card.member_no", member_no=member.member_no),
        turn.t("card.tier", tier=turn.tier_name(member.tier)),
        turn.t("card.points", points=member.balance),
    ]
    level = turn.loyalty.programme.tier(member.tier)
    if level.benefits:
        lines.append(turn.title(level.benefits, ""))
    if (discount := discount_text(turn, level)) is not None:
        lines.append(turn.t("card.discount", discount=discount))
    pending = await turn.loyalty.pending_points(stored_id(member.id))
    if pending:  # inside the return window: on the card, but not in the balance
        lines.append(turn.n("card.pending", "card.pending_plural", sum(p.points for p in pending),
                            date=pending[0].available_at))
    if progress.next_tier is not None and progress.needed is not None:
        lines.append(turn.t("card.progress", amount=turn.tr.money(progress.needed, currency),
                            months=progress.window_months, tier=turn.tier_name(progress.next_tier)))
    else:
        lines.append(turn.t("card.top_tier"))
    lines.append(turn.t("card.show_at_counter"))
    return "\n".join(lines)


async def show_card(turn: Turn) -> list[Reply]:
    assert turn.member is not None
    qr = qr_png(member_qr_payload(turn.member.member_no))
    return [Reply(text=await card_text(turn), media=Media(kind="photo", data=qr, filename="card.png"))]


def register(router: Router) -> None:
    router.command("card", show_card, help=N_("help.card"), menu=N_("menu.card"))
