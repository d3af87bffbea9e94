"""The main menu, /help, /cancel, and the placeholder for talking to a person.

The menu is a reply keyboard (Card, Points, Rewards, Coupons, Feedback, Talk to a person, Settings,
Help); its labels, in any of the three languages, are read as the commands they stand for. Each
conversation declares its own command, /help line and menu button (`Router.command`); /help, the
menu and Telegram's command list (bot/app.py) are built from those declarations.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from loyalbot.chat.i18n import N_
from loyalbot.chat.port import Reply
from loyalbot.handlers.turn import Turn

if TYPE_CHECKING:
    from loyalbot.handlers.router import Router

# Support commands, typed in a member's topic of the staff group (handlers/support/staff.py answers them).
SUPPORT_COMMANDS = (
    ("take", N_("help.support_take")),
    ("handback", N_("help.support_handback")),
    ("close", N_("help.support_close")),
    ("note", N_("help.support_note")),
    ("block", N_("help.support_block")),
    ("unblock", N_("help.support_unblock")),
)


def help_lines(turn: Turn, *, staff: bool) -> list[str]:
    """The member (or counter) commands as their conversations declared them, in the reader's language."""
    return [f"/{command.name} — {turn.t(command.help)}" for command in turn.commands
            if command.help and command.staff == staff]


def staff_help_lines(turn: Turn) -> list[str]:
    """The counter and support commands, in the staff member's language (for /help and a staff /start)."""
    lines = [turn.t("help.staff_title"), *help_lines(turn, staff=True)]
    lines += ["", turn.t("help.support_title")]
    lines += [f"/{name} — {turn.t(key)}" for name, key in SUPPORT_COMMANDS]
    return lines


async def show_help(turn: Turn) -> list[Reply]:
    """/help: what the bot can do; staff also see the counter and support commands, members or not."""
    staff = await turn.staff_role() is not None
    if turn.member is None and not staff:
        return [Reply(text=turn.t("help.not_member"))]
    if turn.member is None:
        return [Reply(text="\n".join([*staff_help_lines(turn), "", turn.t("help.staff_join")]))]
    lines = [turn.t("help.title"), *help_lines(turn, staff=False)]
    if staff:
        lines += ["", *staff_help_lines(turn)]
    return [Reply(text="\n".join(lines), keyboard=turn.menu_keyboard())]


async def show_menu(turn: Turn) -> list[Reply]:
    """/menu: bring the keyboard back."""
    return [Reply(text=turn.t("menu.shown"), keyboard=turn.menu_keyboard())]


async def cancel(turn: Turn) -> list[Reply]:
    """/cancel: drop whatever step was pending (the router already cleared it) and say so."""
    return [Reply(text=turn.t("menu.cancelled"), keyboard=turn.menu_keyboard())]


async def support_placeholder(turn: Turn) -> list[Reply]:
    """Talk to a person, until the support room registers its own /support."""
    return [Reply(text=turn.t("support.unavailable", hours=turn.ctx.config.support_hours))]


def register(router: Router) -> None:
    router.command("help", show_help, open=True, menu=N_("menu.help"))
    router.command("menu", show_menu)
    router.command("cancel", cancel, help=N_("help.cancel"))
    if not router.has_command("support"):  # the support room, when present, declares its own
        router.command("support", support_placeholder, help=N_("help.support"), menu=N_("menu.support"))
