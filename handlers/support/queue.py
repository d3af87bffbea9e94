"""/queue (staff, private chat): who is waiting for a person, in the order to serve them: the tier's
support priority first (higher tiers' members are served first), then the longest waiting."""

from __future__ import annotations

from typing import TYPE_CHECKING

from loyalbot.chat.i18n import N_
from loyalbot.chat.port import Reply
from loyalbot.handlers.turn import Turn

if TYPE_CHECKING:
    from loyalbot.handlers.router import Router

SHOWN = 20


async def show_queue(turn: Turn) -> list[Reply]:
    queue = await turn.loyalty.support_queue(limit=SHOWN)
    if not queue:
        return [Reply(text=turn.t("support.queue_empty"))]
    lines = [turn.t("support.queue_title")]
    for n, waiting in enumerate(queue, 1):
        minutes = max(0, int((turn.now - waiting.waiting_since).total_seconds() // 60))
        mark = " ⭐" * min(waiting.rank, 3)
        lines.append(turn.t("support.queue_line", n=n, name=waiting.first_name or "—", member_no=waiting.member_no,
                            tier=turn.tier_name(waiting.tier), minutes=minutes) + mark)
    return [Reply(text="\n".join(lines))]


def register(router: Router) -> None:
    router.command("queue", show_queue, staff=True, help=N_("help.staff_queue"))
