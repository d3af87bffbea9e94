"""/stamps: the member's stamp cards and how far each is (●●●●○○○○○○ 4/10).

Stamps come with purchases whose items qualify (the shop's API) or from staff at the counter (`/stamp`,
handlers/staff.py, which finds the member as /award and /member do); the stamp that fills the card issues
the reward's coupon (loyalty/stamps.py). A card a refund left in debt shows empty, with what it owes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from loyalbot.chat.i18n import N_
from loyalbot.chat.port import Reply
from loyalbot.handlers.turn import Turn
from loyalbot.storage.rows import stored_id

if TYPE_CHECKING:
    from loyalbot.handlers.router import Router


def progress_bar(stamps: int, needed: int) -> str:
    """A card's stamps as a row of dots, e.g. ●●●●○○○○○○ 4/10."""
    stamps = max(0, stamps)  # a card in debt shows empty; its debt is said beside it
    return "●" * stamps + "○" * max(0, needed - stamps) + f" {stamps}/{needed}"


async def show_stamps(turn: Turn) -> list[Reply]:
    """/stamps: each card with its progress, the reward it leads to and how often it was completed."""
    member = turn.member
    assert member is not None
    cards = await turn.loyalty.stamp_cards_of(stored_id(member.id))
    if not cards:
        return [Reply(text=turn.t("stamps.none"))]
    lines = [turn.t("stamps.title")]
    rewards = {r.code: r for r in turn.loyalty.programme.rewards}
    for card in cards:
        spec = card.spec
        reward = rewards.get(spec.reward)
        lines += ["", f"<b>{turn.title(spec.titles, spec.code)}</b>", progress_bar(card.stamps, spec.stamps_needed),
                  turn.n("stamps.to_go", "stamps.to_go_plural", spec.stamps_needed - card.stamps,
                         reward=turn.title(reward.titles, spec.reward) if reward else spec.reward)]
        if card.stamps < 0:  # a refund took back stamps of a completed card whose coupon was used
            lines.append(turn.n("stamps.owed", "stamps.owed_plural", -card.stamps))
        if card.cycles:
            lines.append(turn.n("stamps.completed", "stamps.completed_plural", card.cycles))
    return [Reply(text="\n".join(lines))]


def register(router: Router) -> None:
    router.command("stamps", show_stamps, help=N_("help.stamps"), menu=N_("menu.stamps"))
