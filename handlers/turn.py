"""One update being answered: the update, the services, the member (if any), their language and step.

Every handler of the chat layer is ``async def handler(turn: Turn) -> list[Reply]``. A `Turn` carries
`incoming` and `ctx` (the port's contract) plus what nearly every handler needs first: the member
looked up by Telegram id, a `Translator` in their language, the conversation state, and `now`.
"""

from __future__ import annotations

import io
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import segno

from loyalbot.chat.callbacks import Callback
from loyalbot.chat.i18n import N_, Translator
from loyalbot.chat.limits import TOAST_LIMIT
from loyalbot.chat.port import Incoming, KeyButton, Reply
from loyalbot.handlers.context import Context
from loyalbot.handlers.state import State
from loyalbot.loyalty import Loyalty
from loyalbot.loyalty.errors import Refusal
from loyalbot.storage.models import Member


@dataclass(frozen=True)
class Command:
    """A command as its conversation declared it (`Router.command`): its /help line and main-menu label."""

    name: str
    help: str | None = None  # msgid of its line in /help and its description in Telegram's command menu
    menu: str | None = None  # msgid of its button on the main menu (two a row, in the order declared)
    staff: bool = False

# The message of every refusal a service can give (its `code`, see loyalty/errors.py), listed here so
# that `pybabel extract` finds them; tests/handlers/test_catalogues.py checks none is missing.
REFUSAL_MESSAGES = (
    N_("error.refused"), N_("error.unknown_member"), N_("error.member_erased"), N_("error.terms_required"),
    N_("error.invalid_birthday"), N_("error.invalid_setting"), N_("error.invalid_amount"),
    N_("error.purchase_conflict"), N_("error.unknown_purchase"), N_("error.refund_too_large"),
    N_("error.unknown_reward"), N_("error.reward_unavailable"), N_("error.out_of_stock"),
    N_("error.tier_too_low"), N_("error.limit_reached"), N_("error.not_enough_points"),
    N_("error.unknown_coupon"), N_("error.coupon_expired"), N_("error.coupon_used"), N_("error.coupon_void"),
    N_("error.not_permitted"), N_("error.reason_required"), N_("error.invalid_adjustment"),
    N_("error.score_out_of_range"), N_("error.unknown_survey"), N_("error.survey_closed"),
    N_("error.invalid_feedback"), N_("error.unknown_feedback"), N_("error.feedback_closed"),
    N_("error.invalid_reply"), N_("error.invalid_items"), N_("error.unknown_stamp_card"),
    N_("error.unknown_referral_code"), N_("error.self_referral"),
    N_("error.not_a_newcomer"), N_("error.already_referred"), N_("error.referrals_closed"),
)


@dataclass
class Turn:
    """An update in the making of its answer."""

    incoming: Incoming
    ctx: Context
    now: datetime
    tr: Translator
    member: Member | None
    state: State | None
    callback: Callback | None = None  # the decoded button, when a button was pressed
    origin: State | None = None  # the state before this update changed it (kept with each change, for a replay)
    commands: tuple[Command, ...] = ()  # every command the router answers, in the order declared
    _staff_role: Any = field(default=False, repr=False)  # False: not looked up yet

    # --- shortcuts ----------------------------------------------------------------------------------

    @property
    def loyalty(self) -> Loyalty:
        return self.ctx.loyalty

    @property
    def lang(self) -> str:
        return self.tr.lang

    def t(self, msgid: str, **params: Any) -> str:
        return self.tr.t(msgid, **params)

    def n(self, singular: str, plural: str, count: int, **params: Any) -> str:
        return self.tr.n(singular, plural, count, **params)

    def label(self, msgid: str, **params: Any) -> str:
        """Plain text for a button label or a toast (Telegram shows it as is: no HTML escaping)."""
        return self.tr.label(msgid, **params)

    @property
    def key(self) -> tuple[int, int]:
        return self.incoming.chat_id, self.incoming.user_id

    @property
    def step(self) -> str | None:
        return self.state.step if self.state else None

    async def set_state(self, step: str, data: dict[str, Any] | None = None) -> None:
        if self.incoming.update_key is None:
            await self.ctx.states.set(*self.key, step, data)
        else:
            await self.ctx.states.set(*self.key, step, data, update=self.incoming.update_key, before=self.origin)
        self.state = State(step=step, data=dict(data or {}))

    async def clear_state(self) -> None:
        if self.state is not None:
            if self.incoming.update_key is None:
                await self.ctx.states.clear(*self.key)
            else:
                await self.ctx.states.clear(*self.key, update=self.incoming.update_key, before=self.origin)
            self.state = None

    async def staff_role(self) -> str | None:
        """The user's staff role (agent/operator/admin) or None; looked up once per update."""
        if self._staff_role is False:
            self._staff_role = await self.loyalty.staff_role(self.incoming.user_id)
        return self._staff_role

    def translator_for(self, member: Member) -> Translator:
        return Translator(member.language, timezone=member.timezone,
                          format_locale=self.ctx.config.format_locales.get(member.language))

    # --- common replies -----------------------------------------------------------------------------

    def menu_keyboard(self) -> list[list[KeyButton]]:
        labels = [KeyButton(self.t(command.menu)) for command in self.commands if command.menu]
        return [labels[i:i + 2] for i in range(0, len(labels), 2)]

    def refusal(self, refusal: Refusal) -> str:
        """What the member is told when a service says no (every refusal code has a message)."""
        params: dict[str, Any] = {}
        for name, value in refusal.params.items():
            if name == "tier" and isinstance(value, str):
                params[name] = self.tier_name(value)
            elif value is not None:
                params[name] = value
        key = f"error.{refusal.code}"
        return self.t(key if self.tr.has(key) else "error.refused", **params)

    def refusal_reply(self, refusal: Refusal) -> list[Reply]:
        text = self.refusal(refusal)
        if self.incoming.callback_id is not None:
            return [Reply(text=text, toast=clip(text, TOAST_LIMIT))]
        return [Reply(text=text)]

    def toast(self, msgid: str, *, alert: bool = False, **params: Any) -> list[Reply]:
        """Answer a pressed button with a small notice and nothing else."""
        return [Reply(toast=clip(self.label(msgid, **params), TOAST_LIMIT), alert=alert)]

    def tier_name(self, code: str) -> str:
        level = self.loyalty.programme.tier(code)
        return level.names.get(self.lang) or level.names.get("en") or code

    def title(self, texts: dict[str, str], fallback: str) -> str:
        """A reward's title (or description) in the member's language."""
        return texts.get(self.lang) or texts.get("en") or fallback


Handler = Callable[[Turn], Awaitable[list[Reply]]]
Interceptor = Callable[[Turn], Awaitable[list[Reply] | None]]


def clip(text: str, limit: int) -> str:
    """`text` cut to `limit` characters (with an ellipsis) so Telegram accepts it."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def qr_png(payload: str) -> bytes:
    """A QR code of `payload` as PNG bytes, large enough to scan from a phone screen.

    Always a regular QR code: for short payloads segno would pick a Micro QR, which zbar, most phone
    camera apps and till scanners cannot read. The border is the standard's quiet zone of 4 modules.
    """
    buffer = io.BytesIO()
    segno.make(payload, error="m", micro=False).save(buffer, kind="png", scale=8, border=4)
    return buffer.getvalue()


__all__ = ["Command", "Handler", "Interceptor", "Turn", "clip",
           "qr_png"]
