"""/invite: the member's referral link, a button to share it, and how many friends joined and bought.

The link is t.me/<bot>?start=<code> (the code from loyalty/referrals.py); a newcomer who opens it starts
joining with the code, and handlers/registration.py links them to the referrer once they have joined.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import quote

from loyalbot.chat.i18n import N_
from loyalbot.chat.port import Button, Reply
from loyalbot.handlers.turn import Turn
from loyalbot.storage.rows import stored_id

if TYPE_CHECKING:
    from loyalbot.handlers.router import Router


def referral_link(username: str, code: str) -> str:
    """The deep link that starts the bot with the member's code."""
    return f"https://t.me/{username}?start={code}"


def share_url(link: str, text: str) -> str:
    """Telegram's share dialog, pre-filled with the link and a line of text."""
    return f"https://t.me/share/url?url={quote(link, safe='')}&text={quote(text, safe='')}"


async def show_invite(turn: Turn) -> list[Reply]:
    """The referral page: what both get, the link and its share button, and the friends so far."""
    assert turn.member is not None
    rules = turn.loyalty.programme.referrals
    if not rules.enabled:
        return [Reply(text=turn.t("invite.closed"))]
    stats = await turn.loyalty.referral_stats(stored_id(turn.member.id))
    programme = turn.loyalty.programme
    lines = [turn.t("invite.title"),
             turn.t("invite.how", amount=turn.tr.money(rules.min_purchase, programme.programme.currency),
                    days=programme.pending.return_window_days, referrer=turn.tr.number(rules.referrer_points),
                    friend=turn.tr.number(rules.friend_points)),
             "", turn.t("invite.friends", joined=stats.joined, bought=stats.rewarded)]
    if stats.next_milestone is not None:
        lines.append(turn.n("invite.milestone", "invite.milestone_plural", stats.next_milestone - stats.rewarded,
                            friends=stats.next_milestone))
    username = turn.ctx.config.bot_username
    if not username:
        return [Reply(text="\n".join([*lines, "", turn.t("invite.no_link")]))]
    link = referral_link(username, stats.code)
    lines += ["", turn.t("invite.link", link=link)]
    share = share_url(link, turn.label("invite.share_text", programme=programme.programme.name))
    return [Reply(text="\n".join(lines), buttons=[[Button(turn.label("button.share_link"), url=share)]])]


def register(router: Router) -> None:
    router.command("invite", show_invite, help=N_("help.invite"), menu=N_("menu.invite"))
