"""/points: the balance, what expires next and when, what is pending until when, and the latest movements."""

from __future__ import annotations

from typing import TYPE_CHECKING

from loyalbot.chat.i18n import N_
from loyalbot.chat.port import Reply
from loyalbot.handlers.turn import Turn
from loyalbot.loyalty.bonuses import bonus_title
from loyalbot.storage.rows import stored_id

if TYPE_CHECKING:
    from loyalbot.handlers.router import Router

LEDGER_KINDS = {
    "earn": N_("ledger.earn"),
    "redeem": N_("ledger.redeem"),
    "expire": N_("ledger.expire"),
    "adjust": N_("ledger.adjust"),
    "refund": N_("ledger.refund"),
    "bonus": N_("ledger.bonus"),
    "referral": N_("ledger.referral"),
    "carry": N_("ledger.carry"),
}


async def show_points(turn: Turn) -> list[Reply]:
    member = turn.member
    assert member is not None
    summary = await turn.loyalty.points_summary(stored_id(member.id), now=turn.now,
                                                recent=turn.ctx.config.ledger_entries_shown)
    lines = [turn.n("points.balance", "points.balance_plural", summary.balance)]
    upcoming = summary.next_expiry
    if upcoming is not None:
        lines.append(turn.n("points.expiring", "points.expiring_plural", upcoming.points,
                            date=upcoming.expires_at))
    elif summary.balance:
        lines.append(turn.t("points.no_expiry"))
    for pending in summary.pending:  # inside the return window: shown, not spendable yet
        if pending.bonus is None:
            lines.append(turn.n("points.pending", "points.pending_plural", pending.points, date=pending.available_at))
        else:  # a bonus campaign's points wait with the purchase that earned them, named
            title = bonus_title(turn.loyalty.programme, f"bonus:{pending.bonus}", turn.lang) or pending.bonus
            lines.append(turn.n("points.pending_bonus", "points.pending_bonus_plural", pending.points,
                                date=pending.available_at, bonus=title))
    if summary.recent:
        lines += ["", turn.t("points.recent")]
        for entry in summary.recent:
            sign = "+" if entry.delta > 0 else "−"
            kind = bonus_title(turn.loyalty.programme, entry.reference, turn.lang) if entry.kind == "bonus" else None
            kind = kind or turn.t(LEDGER_KINDS.get(entry.kind, "ledger.adjust"))
            lines.append(f"{turn.tr.date(entry.created_at)} · {kind} · {sign}{turn.tr.number(abs(entry.delta))}")
    else:
        lines += ["", turn.t("points.none_yet")]
    return [Reply(text="\n".join(lines))]


def register(router: Router) -> None:
    router.command("points", show_points, help=N_("help.points"), menu=N_("menu.points"))
