"""The chat router: one `Incoming` in, the list of `Reply`s out, whatever framework delivered it.

Order of dispatch for a private chat: interceptors (e.g. support relaying free text while a human
holds the conversation), then a pressed button by its callback action, a command, a main-menu
label, the current conversation step, and finally a helpful answer to anything else. Group chats
go only to group handlers (the staff group); by default they are ignored.

Everything runs inside an error boundary: a refusal from a service becomes its message, any other
exception is logged without personal data and the member gets a polite apology in their language.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from datetime import timedelta

from loyalbot.chat.callbacks import decode
from loyalbot.chat.i18n import LANGUAGES, N_, Translator, pick_language, translations
from loyalbot.chat.limits import CAPTION_LIMIT, TEXT_LIMIT, TOAST_LIMIT
from loyalbot.chat.port import Incoming, Reply, clean_name, describe, incoming_problem, log_failure
from loyalbot.handlers.context import Context
from loyalbot.handlers.turn import Command, Handler, Interceptor, Turn, clip
from loyalbot.loyalty.errors import Refusal
from loyalbot.storage import as_utc
from loyalbot.storage.rows import stored_id

log = logging.getLogger(__name__)
ACTIVITY_GRANULARITY = timedelta(minutes=5)
# What a member is told when a text cannot be taken at all (see chat.port.text_problem).
INPUT_REFUSALS = {"control": N_("input.control_characters"), "too_long": N_("input.too_long")}


@dataclass(frozen=True)
class _Route:
    handler: Handler
    staff: bool = False
    open: bool = False  # allowed before the user has joined
    help: str | None = None
    menu: str | None = None


class Router:
    """Dispatches updates to the conversations registered on it."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self._commands: dict[str, _Route] = {}
        self._callbacks: dict[str, _Route] = {}
        self._steps: dict[str, Handler] = {}
        self._step_limits: dict[str, int] = {}
        self._interceptors: list[Interceptor] = []
        self._groups: list[Interceptor] = []
        self._menu_texts: dict[str, str] | None = None
        self._declared: tuple[Command, ...] | None = None
        # Set by handlers.registration: how to answer someone who has not joined (or not finished joining).
        self.join_prompt: Handler | None = None

    # --- registration of handlers (other rooms use these) -------------------------------------------

    def command(self, name: str, handler: Handler, staff: bool = False, *, open: bool = False,
                help: str | None = None, menu: str | None = None) -> None:
        """Answer `/name`. `staff`: only for users in the staff table; `open`: also before joining; `help`:
        the msgid of its /help line (and of its description in Telegram's command menu); `menu`: the
        msgid of its main-menu button. /help, the menu and setMyCommands list what is declared here, in
        this order. Registering a name again replaces the earlier handler and keeps its place, help and
        menu entry unless given anew (e.g. support replaces the /support stub)."""
        key = name.lower()
        if (earlier := self._commands.get(key)) is not None:
            help, menu = help or earlier.help, menu or earlier.menu
        self._commands[key] = _Route(handler, staff=staff, open=open or staff, help=help, menu=menu)
        self._declared = self._menu_texts = None

    def callback(self, action: str, handler: Handler, *, open: bool = False) -> None:
        """Answer pressed buttons whose callback data decodes to `action` (see chat.callbacks.ACTIONS)."""
        self._callbacks[action] = _Route(handler, open=open)

    def step(self, prefix: str, handler: Handler, *, max_chars: int | None = None) -> None:
        """Answer messages while the conversation state's step is `prefix.<something>`. `max_chars`: the
        longest text the step takes; a longer one is refused before the step sees it."""
        self._steps[prefix] = handler
        if max_chars is not None:
            self._step_limits[prefix] = max_chars

    def interceptor(self, handler: Interceptor) -> None:
        """Called first for every private update; returning a list (even empty) consumes the update."""
        self._interceptors.append(handler)

    def group(self, handler: Interceptor) -> None:
        """Called for updates from group chats (e.g. the staff group); the first non-None answer wins."""
        self._groups.append(handler)

    @property
    def commands(self) -> list[str]:
        return sorted(self._commands)

    @property
    def declared(self) -> tuple[Command, ...]:
        """Every command with its help line and menu label, in the order declared."""
        if self._declared is None:
            self._declared = tuple(Command(name, help=route.help, menu=route.menu, staff=route.staff)
                                   for name, route in self._commands.items())
        return self._declared

    def has_command(self, name: str) -> bool:
        return name in self._commands

    # --- dispatch -----------------------------------------------------------------------------------

    async def handle(self, incoming: Incoming) -> list[Reply]:
        """The replies to one update. Never raises."""
        incoming = _with_clean_names(incoming)
        tr = Translator(pick_language(incoming.language_code))
        where = describe(incoming)
        try:
            turn = await self._turn(incoming)
            tr = turn.tr
            problem = incoming_problem(incoming)
            if problem is None or problem[0] == "too_long":
                problem = self._over_step_limit(turn) or problem  # the step's own limit, when it is lower
            if problem is not None:
                replies = await self._refuse_input(turn, *problem)
            elif not incoming.is_private:
                replies = await self._group(turn)
            else:
                replies = await self._private(turn)
        except Refusal as refusal:
            log.info("refused %s: %s", where, refusal.code)
            text = Turn(incoming, self.ctx, self.ctx.clock(), tr, None, None).refusal(refusal)
            replies = [Reply(text=text, toast=clip(text, TOAST_LIMIT) if incoming.callback_id else None)]
        except Exception as exc:
            log_failure(log, "handler failed", incoming, exc)
            text = tr.t("error.unexpected")
            replies = [Reply(text=text, toast=clip(text, TOAST_LIMIT) if incoming.callback_id else None)]
        return [_within_limits(reply) for reply in replies]

    async def _turn(self, incoming: Incoming) -> Turn:
        await self.ctx.loyalty.keep_current()  # a newer programme version, saved in the console, swaps in here
        now = self.ctx.clock()
        member = await self.ctx.loyalty.member_by_telegram(incoming.user_id)
        if member is not None and member.status == "erased":
            member = None
        state = await self.ctx.states.get(incoming.chat_id, incoming.user_id) if incoming.is_private else None
        if state is not None and incoming.update_key is not None and state.applied == incoming.update_key:
            # This update was handled before a crash cut it short: start from the state it first saw.
            state = state.before
        if state is not None and not state.step:
            state = None  # a cleared state, kept only as a mark for a replay
        if member is not None:
            lang, zone = member.language, member.timezone
        else:
            chosen = (state.data.get("lang") if state and state.step.startswith("reg.") else None)
            lang = chosen if chosen in LANGUAGES else pick_language(incoming.language_code)
            zone = self.ctx.loyalty.programme.programme.timezone
        tr = Translator(lang, timezone=zone, format_locale=self.ctx.config.format_locales.get(lang))
        return Turn(incoming=incoming, ctx=self.ctx, now=now, tr=tr, member=member, state=state, origin=state,
                    commands=self.declared)

    def _over_step_limit(self, turn: Turn) -> tuple[str, int] | None:
        """("too_long", limit) when a typed text is longer than the current step takes."""
        text, state = turn.incoming.text, turn.state
        limit = self._step_limits.get(state.step.split(".", 1)[0]) if state is not None else None
        if text is not None and limit is not None and len(text.strip()) > limit:
            return "too_long", limit
        return None

    async def _refuse_input(self, turn: Turn, problem: str, limit: int) -> list[Reply]:
        """A text no step may take (control characters, over-long): said so, before anything is touched.

        Checked at the edge, before interceptors and steps, so no conversation has to think of it and
        nothing (a relayed copy, the conversation state, a stored text) is written from it."""
        log.info("input refused on %s: %s", describe(turn.incoming), problem)
        if not turn.incoming.is_private and await turn.staff_role() is None:
            return []  # a group's chatter is not ours to answer
        return [Reply(text=turn.t(INPUT_REFUSALS[problem], limit=limit))]

    async def _group(self, turn: Turn) -> list[Reply]:
        for handler in self._groups:
            replies = await handler(turn)
            if replies is not None:
                return replies
        return []

    async def _private(self, turn: Turn) -> list[Reply]:
        incoming = turn.incoming
        member = turn.member
        if member is not None and (
                member.status == "unreachable" or member.last_activity_at is None
                or as_utc(member.last_activity_at) < turn.now - ACTIVITY_GRANULARITY):
            # A write per message would serialise every chat on SQLite; activity only needs minutes' precision
            # (win-back counts days), but a member marked unreachable is reachable again at once.
            await turn.loyalty.touch(stored_id(member.id), now=turn.now)
        for interceptor in self._interceptors:
            replies = await interceptor(turn)
            if replies is not None:
                return replies
        if incoming.edited:
            return []  # an edit of an earlier message is not a new answer (support relays edits itself)
        if incoming.callback_data is not None or incoming.callback_id is not None:
            return await self._pressed(turn)
        if incoming.command is not None:
            return await self._command(turn, incoming.command)
        if incoming.text is not None and (menu_command := self.menu_command(incoming.text)) is not None:
            return await self._command(turn, menu_command)
        if turn.state is not None:
            handler = self._steps.get(turn.state.step.split(".", 1)[0])
            if handler is not None:
                return await handler(turn)
            await turn.clear_state()  # a step nobody answers any more (e.g. after an upgrade)
        if turn.member is None:
            return await self._join_first(turn)
        if incoming.contact is not None:
            return [Reply(text=turn.t("stray.contact"))]
        if incoming.media is not None:
            return [Reply(text=turn.t("stray.media"), keyboard=turn.menu_keyboard())]
        return [Reply(text=turn.t("stray.text"), keyboard=turn.menu_keyboard())]

    async def _pressed(self, turn: Turn) -> list[Reply]:
        callback = decode(turn.incoming.callback_data)
        route = self._callbacks.get(callback.action) if callback is not None else None
        if callback is None or route is None:
            log.info("stale or forged button on %s", describe(turn.incoming))
            return turn.toast("error.stale_button", alert=True)
        if turn.member is None and not route.open:
            return await self._join_first(turn)
        turn.callback = callback
        return await route.handler(turn)

    async def _command(self, turn: Turn, name: str) -> list[Reply]:
        route = self._commands.get(name)
        if route is None:
            log.info("unknown command on %s", describe(turn.incoming))
            if turn.member is None:
                return await self._join_first(turn)
            return [Reply(text=turn.t("stray.command", command="/" + name[:32]), keyboard=turn.menu_keyboard())]
        if route.staff:
            if await turn.staff_role() is None:
                log.info("non-staff user tried /%s", name)
                return [Reply(text=turn.t("error.not_permitted"))]
            return await route.handler(turn)
        if turn.member is None and not route.open:
            return await self._join_first(turn)
        if turn.state is not None and not turn.state.step.startswith("reg."):
            await turn.clear_state()  # a new command abandons whatever step was pending
        return await route.handler(turn)

    async def _join_first(self, turn: Turn) -> list[Reply]:
        if turn.incoming.callback_id is not None:
            return turn.toast("start.join_first", alert=True)
        if self.join_prompt is not None:
            return await self.join_prompt(turn)
        return [Reply(text=turn.t("start.join_first"))]

    def menu_command(self, text: str) -> str | None:
        """The command a main-menu label stands for, in any of our languages."""
        if self._menu_texts is None:
            self._menu_texts = {}
            for lang in LANGUAGES:
                tr = translations(lang)
                for command in self.declared:
                    if command.menu:
                        self._menu_texts[tr.gettext(command.menu).strip().casefold()] = command.name
        return self._menu_texts.get(text.strip().casefold())




def _with_clean_names(incoming: Incoming) -> Incoming:
    """The update with its profile names fit to store (see chat.port.clean_name)."""
    names = (incoming.first_name, incoming.last_name, incoming.username)
    first_name, last_name, username = cleaned = tuple(clean_name(name) for name in names)
    if cleaned == names:
        return incoming
    return replace(incoming, first_name=first_name, last_name=last_name, username=username)


def _within_limits(reply: Reply) -> Reply:
    """Keep a reply inside Telegram's limits (text 4096, caption 1024, toast 200)."""
    text, toast = reply.text, reply.toast
    limit = CAPTION_LIMIT if reply.media is not None else TEXT_LIMIT
    if text is not None and len(text) > limit:
        log.warning("reply text of %d characters cut to %d", len(text), limit)
        text = clip(text, limit)
    if toast is not None and len(toast) > TOAST_LIMIT:
        toast = clip(toast, TOAST_LIMIT)
    if text is reply.text and toast is reply.toast:
        return reply
    return replace(reply, text=text, toast=toast)


def build_router(ctx: Context) -> Router:
    """The router with every member and counter conversation registered."""
    from loyalbot.handlers import (
        card,
        coupons,
        feedback,
        menu,
        points,
        privacy,
        referrals,
        registration,
        rewards,
        settings,
        staff,
        stamps,
        support,
        surveys,
        tiers,
    )

    router = Router(ctx)
    # The order of /help, the main menu and Telegram's command menu is the order commands are declared in.
    for module in (registration, card, points, stamps, tiers, rewards, coupons, referrals, feedback, support, settings,
                   privacy, menu, staff, surveys):
        module.register(router)
    return router


__all__ = ["Router", "build_router"]
