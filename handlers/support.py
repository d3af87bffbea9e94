"""Talking to a person: members ask for help, staff take the conversation over in the staff forum group.

Member side (private chat): /support or the "Talk to a person" menu button opens (or reopens) the
member's conversation and says how long the wait is (or when the team is back); while it waits or a
staff member holds it, whatever the member writes (text, photos, documents, voice, stickers) is
copied into the conversation's staff topic and the bot stays silent to free text (commands and the
menu still work); /end finishes it. Only the member's asking reopens a closed conversation (/support,
the menu button, or the Reopen button under the closing message); free text after a close gets the
bot's normal answer.

Staff side (the staff supergroup, one forum topic per conversation): the topic opens with a summary
card (tier, points, active coupons, last feedback, language, open since, state) and Take / Hand back /
Close buttons; the card is edited on every change of state, so it always says where things stand; the commands /take, /handback, /close, /note TEXT, /block and /unblock work in the topic;
what the holder writes is copied to the member, and edits follow as edits. Only people in the staff
table act there; anyone else is ignored (and logged).

When a member erases their data (`loyalty.service.MemberErased`), their topics are deleted; where the
bot may not delete a topic, it is closed, renamed to an anonymous title, its card says the member
erased their data and the bot's copies of what the member wrote are deleted (or blanked). The staff
group is told, without the name. Erased members' topics left over by a stop are cleared at start.

The state machine is `loyalty.handoff.HandoffStore`; everything bound for the staff group goes through
`handlers.relay.StaffRelay` (the group's rate budget, merging, retries, recreated topics).
`register_support(router, ctx)` wires it all in and puts the `SupportService` in
`ctx.services["handoff"]` and its feedback poster in `ctx.services["feedback_sink"]`.
"""

from __future__ import annotations

import asyncio
import html
import logging
import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, time, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from handlers.i18n import N_, Translator
from handlers.port import Button, Reply
from handlers.relay import NoTopic, RelayItem, StaffRelay
from handlers.turn import Turn, clip
from loyalty.callbacks import decode, encode, survey_answer
from loyalty.errors import MemberErased as MemberGone
from loyalty.errors import Refusal
from loyalty.handoff import (
    BOT,
    CLOSED,
    HUMAN,
    WAITING,
    ConversationHeld,
    HandoffStore,
    SupportBlocked,
    Transition,
    actor_member,
    actor_staff,
)
from loyalty.outbound import Blocked, Outgoing, RetryAfter, SendError, Sent, ThreadNotFound
from loyalty.service import LoyaltyEvent, MemberErased
from storage.models import HandoffConversation, Member

if TYPE_CHECKING:
    from handlers.port import Context
    from handlers.router import Router

log = logging.getLogger(__name__)

CAPTION_LIMIT = 1024
TEXT_LIMIT = 4096
DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


# --- configuration and business hours -----------------------------------------------------------------


@dataclass(frozen=True)
class SupportConfig:
    """What an operator may tune about support; `from_chat_config` takes the group and hours from ChatConfig."""

    staff_group_id: int | None = None
    hours: str = "09:00-18:00"  # when staff answer, in `timezone`
    days: str = "mon-sun"  # e.g. "mon-fri" or "mon-fri,sat"
    timezone: str = "Europe/Amsterdam"
    staff_language: str = "en"  # the language of what the bot posts in the staff group
    expected_wait_minutes: int = 10  # said while no conversation has a measured first response yet
    waiting_notice_after: timedelta = timedelta(minutes=15)
    out_of_hours_every: timedelta = timedelta(minutes=30)
    reopen_within: timedelta = timedelta(hours=2)
    csat_cooldown: timedelta = timedelta(days=7)
    relay_per_minute: float = 20.0
    relay_burst: int = 5
    tick_seconds: float = 60.0

    @classmethod
    def from_chat_config(cls, config: Any, **overrides: Any) -> SupportConfig:
        values: dict[str, Any] = {
            "staff_group_id": getattr(config, "staff_group_id", None),
            "hours": getattr(config, "support_hours", cls.hours),
            "timezone": getattr(config, "support_timezone", cls.timezone),
        }
        for name in ("support_days", "support_staff_language"):
            if getattr(config, name, None):
                values[name.removeprefix("support_")] = getattr(config, name)
        values.update(overrides)
        return cls(**values)


@dataclass(frozen=True)
class BusinessHours:
    """Opening hours on some weekdays in one time zone."""

    opens: time
    closes: time
    days: frozenset[int]
    zone: ZoneInfo

    @classmethod
    def parse(cls, hours: str, days: str, timezone: str) -> BusinessHours:
        """From "09:00-18:00" ("00:00-24:00": all day), "mon-fri" and an IANA zone; ValueError says what is wrong."""
        try:
            start, end = (time.max if part.strip() == "24:00" else time.fromisoformat(part.strip())
                          for part in hours.split("-"))
        except ValueError:
            raise ValueError(f"support hours must look like 09:00-18:00, not {hours!r}") from None
        if start >= end:
            raise ValueError("support hours must open before they close")
        chosen: set[int] = set()
        for part in days.lower().replace(" ", "").split(","):
            first, _, last = part.partition("-")
            if first not in DAY_NAMES or (last and last not in DAY_NAMES):
                raise ValueError(f"support days must look like mon-fri, not {days!r}")
            a, b = DAY_NAMES.index(first), DAY_NAMES.index(last or first)
            chosen.update(range(a, b + 1) if a <= b else [*range(a, 7), *range(0, b + 1)])
        try:
            zone = ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {timezone!r}") from None
        return cls(opens=start, closes=end, days=frozenset(chosen), zone=zone)

    def next_opening(self, now: datetime) -> datetime | None:
        """None while open; otherwise when staff are next there (aware UTC)."""
        local = now.astimezone(self.zone)
        for offset in range(8):
            day = local.date() + timedelta(days=offset)
            if day.weekday() not in self.days:
                continue
            start = datetime.combine(day, self.opens, self.zone)
            end = datetime.combine(day, self.closes, self.zone)
            if offset == 0 and start <= local < end:
                return None
            if local < start:
                return start.astimezone(UTC)
        return None  # unreachable with at least one day chosen


def split_text(text: str, first: int, rest: int = TEXT_LIMIT) -> list[str]:
    """`text` in pieces: the first at most `first` characters, the others at most `rest`; nothing lost."""
    pieces = [text[:first]]
    remaining = text[first:]
    while remaining:
        pieces.append(remaining[:rest])
        remaining = remaining[rest:]
    return pieces


# --- the service ----------------------------------------------------------------------------------------


@dataclass
class SupportService:
    """Support handoff for one bot: member and staff conversations, the staff relay, notices, CSAT."""

    ctx: Context
    router: Router | None
    config: SupportConfig
    store: HandoffStore
    relay_clock: Callable[[], float] | None = None
    relay_sleep: Any = None
    _relay: StaffRelay | None = field(default=None, init=False, repr=False)
    _hours: BusinessHours | None = field(default=None, init=False, repr=False)
    _names: dict[int, str] = field(default_factory=dict, init=False, repr=False)
    _ticker: asyncio.Task[None] | None = field(default=None, init=False, repr=False)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set, init=False, repr=False)
    _forgetting: set[int] = field(default_factory=set, init=False, repr=False)

    def __post_init__(self) -> None:
        try:
            self._hours = BusinessHours.parse(self.config.hours, self.config.days, self.config.timezone)
        except ValueError as exc:
            log.error("support hours ignored (always open): %s", exc)
            self._hours = None

    # --- plumbing -----------------------------------------------------------------------------------------

    @property
    def loyalty(self) -> Any:
        return self.ctx.loyalty

    @property
    def relay(self) -> StaffRelay:
        """The staff group's queue (made on first use, inside the running event loop)."""
        if self._relay is None:
            assert self.config.staff_group_id is not None
            self._relay = StaffRelay(lambda: self.ctx.sender, self.config.staff_group_id, self,
                                     per_minute=self.config.relay_per_minute, burst=self.config.relay_burst,
                                     clock=self.relay_clock, sleep=self.relay_sleep)
        return self._relay

    def staff_tr(self) -> Translator:
        return Translator(self.config.staff_language, timezone=self.config.timezone,
                          format_locale=self.ctx.config.format_locales.get(self.config.staff_language))

    def member_tr(self, member: Member) -> Translator:
        return Translator(member.language, timezone=member.timezone,
                          format_locale=self.ctx.config.format_locales.get(member.language))

    def next_opening(self, now: datetime) -> datetime | None:
        return self._hours.next_opening(now) if self._hours is not None else None

    async def start(self, *, now: datetime | None = None) -> None:
        """Resend member messages that were stored but never relayed, and start the waiting-notice ticker."""
        if self.config.staff_group_id is None:
            return
        await self.resume(now=now or self.ctx.clock())
        await self.forget_erased()
        if self._ticker is None:
            self._ticker = asyncio.get_running_loop().create_task(self._tick_forever())

    async def stop(self) -> None:
        """Stop the ticker and send what the relay still holds (call before the runtime closes its bot)."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._ticker is not None:
            self._ticker.cancel()
            try:
                await self._ticker
            except asyncio.CancelledError:
                pass
            self._ticker = None
        if self._relay is not None:
            await self._relay.stop()

    async def _tick_forever(self) -> None:
        while True:
            await asyncio.sleep(self.config.tick_seconds)
            try:
                await self.tick(self.ctx.clock())
            except Exception:  # the next tick tries again
                log.exception("support tick failed")

    async def _send_member(self, member: Member, message: Outgoing) -> Sent | None:
        """Send to a member's private chat, waiting out a short rate limit; None when it cannot be delivered."""
        sender = self.ctx.sender
        if sender is None:
            log.warning("no sender: message to member %d not sent", member.id or 0)
            return None
        for _ in range(3):
            try:
                return await sender.send(message)
            except RetryAfter as exc:
                await asyncio.sleep(min(exc.seconds, 30.0))
            except SendError as exc:
                log.info("message to member %d not delivered: %s", member.id or 0, type(exc).__name__)
                return None
        return None

    async def _tell_member(self, member: Member, msgid: str, *, buttons: Any = None, **params: Any) -> None:
        if member.chat_id is None:
            return
        text = self.member_tr(member).t(msgid, **params)
        await self._send_member(member, Outgoing(chat_id=member.chat_id, text=text, buttons=buttons))

    def _post(self, conversation_id: int | None, msgid: str, **params: Any) -> None:
        """Queue a notice (in the staff language) into a conversation's topic."""
        if self.config.staff_group_id is None:
            return
        self.relay.put(RelayItem(conversation_id=conversation_id, kind="text", html=True,
                                 text=self.staff_tr().t(msgid, **params)))

    async def staff_name(self, staff_id: int | None) -> str:
        """How staff are named to each other and to members: their staff-table name, first name, or #id."""
        if staff_id is None:
            return "?"
        for staff in await self.loyalty.list_staff():
            if staff.telegram_id == staff_id and staff.name:
                return str(staff.name)
        return self._names.get(staff_id) or f"#{staff_id}"

    # --- the topic resolver (called by the relay's worker) ----------------------------------------------

    async def thread_for(self, conversation_id: int, *, gone: int | None = None) -> tuple[int, list[RelayItem]]:
        conv = await self.store.get(conversation_id)
        try:
            member = await self.loyalty.member(conv.member_id)
        except MemberGone:
            raise NoTopic() from None  # nothing more goes to staff about a member who erased their data
        if conv.topic_id is not None and (gone is None or conv.topic_id != gone):
            return int(conv.topic_id), []
        sender = self.ctx.sender
        assert sender is not None and self.config.staff_group_id is not None
        name = f"{member.member_no} · {member.first_name or ''}".strip(" ·")
        thread = await sender.create_topic(self.config.staff_group_id, clip(name, 128))
        await self.store.set_topic(conversation_id, thread)
        conv.topic_id = thread
        if gone is not None:
            log.info("conversation %d moved to a new staff topic", conversation_id)
        return thread, [await self.card(conv, member, recreated=gone is not None)]

    async def relayed(self, item: RelayItem, sent: Sent) -> None:
        if item.refs:
            await self.store.set_staff_copy(item.refs, sent.message_id)
        elif item.conversation_id is not None and item.kind in ("text", "copy"):
            # The bot's own posts in the topic are remembered (without their words), so the card can be
            # edited later and everything can be cleared away if the member erases their data.
            await self.store.record_message(item.conversation_id, "card" if item.card else "post",
                                            staff_message_id=sent.message_id, now=self.ctx.clock())

    async def fresh_card(self, conversation_id: int) -> RelayItem | None:
        """An edit that makes the topic's summary card say what is true now (None: no card posted yet)."""
        row = await self.store.latest_card(conversation_id)
        if row is None or row.staff_message_id is None:
            return None
        conv = await self.store.get(conversation_id)
        try:
            member = await self.loyalty.member(conv.member_id)
        except MemberGone:
            return RelayItem(conversation_id=conversation_id, kind="edit", html=True,
                             message_id=int(row.staff_message_id), text=self.staff_tr().t("support.staff.card_erased"))
        card = await self.card(conv, member)
        return replace(card, kind="edit", message_id=int(row.staff_message_id), card=False)

    def refresh_card(self, conversation_id: int | None) -> None:
        """Queue an edit of the conversation's card (after what is queued already; one pending is enough)."""
        if conversation_id is None or self.config.staff_group_id is None:
            return
        relay = self.relay
        if any(i.kind == "refresh" and i.conversation_id == conversation_id for i in relay._queue):  # noqa: SLF001
            return
        relay.put(RelayItem(conversation_id=conversation_id, kind="refresh"))

    async def undeliverable(self, item: RelayItem, error: SendError) -> None:
        log.error("support: an item for conversation %s could not reach the staff group (%s)",
                  item.conversation_id, type(error).__name__)

    async def card(self, conv: HandoffConversation, member: Member, *, recreated: bool = False) -> RelayItem:
        """The summary card that opens a topic: who the member is and what they have, with the buttons."""
        tr = self.staff_tr()
        now = self.ctx.clock()
        summary = await self.loyalty.points_summary(member.id, now=now)
        coupons = await self.loyalty.coupons_of(member.id, now=now)
        titles = [html.escape(r.titles.get(tr.lang) or r.titles.get("en") or r.code, quote=False)
                  for _, r in coupons[:5]]
        if len(coupons) > len(titles):
            titles.append("…")
        feedback = await self.store.last_feedback(member.id)
        tier = self.loyalty.programme.tier(member.tier) if member.tier else None
        tier_name = (tier.names.get(tr.lang) or tier.names.get("en") or tier.code) if tier else "-"
        if conv.state == HUMAN and conv.staff_id is not None:
            state = tr.t("support.state.human_by", name=html.escape(await self.staff_name(conv.staff_id)))
        else:
            state = tr.t(f"support.state.{conv.state}")
        language = (tr.t(f"support.language.{member.language}") if member.language in LANGUAGE_KEYS
                    else member.language)
        text = tr.t(
            "support.staff.card",
            member_no=member.member_no, name=html.escape(member.first_name or "-", quote=False), tier=tier_name,
            points=summary.balance,
            coupons=f"{len(coupons)} — {', '.join(titles)}" if coupons else tr.t("support.staff.no_coupons"),
            feedback=html.escape(clip(feedback, 300), quote=False) if feedback else "-", language=language,
            since=f"{tr.date(conv.opened_at)} {tr.time(conv.opened_at)}",
            state=state,
        )
        if recreated:
            text = tr.t("support.staff.recreated") + "\n\n" + text
        cid = str(conv.id)
        buttons = [[Button(tr.t("support.button.take"), encode("sp", "t", cid)),
                    Button(tr.t("support.button.handback"), encode("sp", "h", cid)),
                    Button(tr.t("support.button.close"), encode("sp", "c", cid))]]
        return RelayItem(conversation_id=conv.id, kind="text", text=text, html=True, buttons=buttons, card=True)

    # --- member side ----------------------------------------------------------------------------------------

    async def ask(self, turn: Turn) -> list[Reply]:
        """/support and "Talk to a person": open or reopen the conversation and say how long the wait is."""
        member = turn.member
        assert member is not None
        if self.config.staff_group_id is None:
            return [Reply(text=turn.t("support.unavailable", hours=self.config.hours))]
        try:
            transition = await self.store.request(member.id, now=turn.now, reopen_within=self.config.reopen_within)
        except SupportBlocked:
            log.info("support refused: member %d is blocked from support", member.id)
            return [Reply(text=turn.t("error.support_blocked"), keyboard=turn.menu_keyboard())]
        conv = transition.conversation
        if not transition.changed:
            key = "support.already_human" if conv.state == HUMAN else "support.already_waiting"
            return [Reply(text=turn.t(key), buttons=self._end_button(turn, conv))]
        await self._announce(transition, member)
        return [await self._waiting_reply(turn, conv)]

    async def _announce(self, transition: Transition, member: Member) -> None:
        """Tell the staff topic that the member is (back) waiting."""
        conv = transition.conversation
        if transition.created:
            self.relay.put(await self.card(conv, member))
            return
        if transition.reopened:
            await self._reopen_topic(conv)
            self._post(conv.id, "support.staff.reopened")
            self.refresh_card(conv.id)
            return
        self._post(conv.id, "support.staff.asked_again")
        self.refresh_card(conv.id)

    async def _reopen_topic(self, conv: HandoffConversation) -> None:
        sender = self.ctx.sender
        if sender is None or conv.topic_id is None or self.config.staff_group_id is None:
            return
        try:
            await sender.reopen_topic(self.config.staff_group_id, int(conv.topic_id))
        except ThreadNotFound:
            # The relay opens a new topic (with the card) when it next posts for this conversation.
            log.info("topic of conversation %d is gone; a new one will be made", conv.id or 0)
        except SendError as exc:  # e.g. TOPIC_NOT_MODIFIED: it was open already
            log.info("reopen topic: %s", exc.description)

    async def _waiting_reply(self, turn: Turn, conv: HandoffConversation) -> Reply:
        opening = self.next_opening(turn.now)
        if opening is None:
            minutes = await self.expected_wait_minutes()
            text = turn.t("support.waiting", minutes=minutes)
        else:
            await self.store.claim_out_of_hours_notice(conv.id or 0, now=turn.now,
                                                       every=self.config.out_of_hours_every)
            text = turn.t("support.waiting_closed", when=self._when(turn.tr, opening))
        return Reply(text=text, buttons=self._end_button(turn, conv))

    @staticmethod
    def _when(tr: Translator, moment: datetime) -> str:
        return f"{tr.date(moment)} {tr.time(moment)}"

    def _end_button(self, turn: Turn, conv: HandoffConversation) -> list[list[Button]]:
        return [[Button(turn.t("support.button.end"), encode("sp", "x", str(conv.id)))]]

    async def expected_wait_minutes(self) -> int:
        """The median first response of recent conversations, in whole minutes (the configured guess before any)."""
        recent = await self.store.recent_first_responses()
        if not recent:
            return self.config.expected_wait_minutes
        return max(1, math.ceil(statistics.median(recent) / 60))

    async def end(self, turn: Turn) -> list[Reply]:
        """/end: the member finishes the conversation."""
        member = turn.member
        assert member is not None
        conv = await self.store.active_of(member.id)
        if conv is None:
            return [Reply(text=turn.t("support.not_open"), keyboard=turn.menu_keyboard())]
        return await self._end(turn, conv)

    async def _end(self, turn: Turn, conv: HandoffConversation) -> list[Reply]:
        member = turn.member
        assert member is not None
        transition = await self.store.close(conv.id or 0, actor=actor_member(member.id), now=turn.now)
        if not transition.changed:
            return [Reply(text=turn.t("support.not_open"), keyboard=turn.menu_keyboard())]
        self._post(conv.id, "support.staff.member_ended")
        self.refresh_card(conv.id)
        await self._close_topic(transition.conversation)
        replies = [Reply(text=turn.t("support.ended"), buttons=self._reopen_button(turn.tr, conv))]
        await self._after_close(transition.conversation, member, turn.now)
        return replies

    async def pressed(self, turn: Turn) -> list[Reply]:
        """A member's support button: open (sp:o) or end (sp:x:<conversation>)."""
        callback = turn.callback
        member = turn.member
        assert callback is not None and member is not None
        if callback.verb == "o":
            return await self.ask(turn)
        if callback.verb == "r":
            # "Reopen" under a closing message: the member asks again (a person, not free text, reopens).
            return [Reply(edit=True, buttons=None), *await self.ask(turn)]
        if callback.verb == "x":
            conv = await self.store.active_of(member.id)
            # A button of another (or an older) conversation ends nothing: members only reach their own.
            if conv is None or str(conv.id) != str(callback.args[1]):
                return turn.toast("support.not_open")
            return [Reply(edit=True, buttons=None), *await self._end(turn, conv)]
        log.info("member pressed a staff-only support button")
        return turn.toast("error.stale_button")

    async def intercept(self, turn: Turn) -> list[Reply] | None:
        """While a person is waited for or holds the talk, the member's messages go to staff (the bot is silent)."""
        incoming = turn.incoming
        member = turn.member
        if (member is None or incoming.callback_id is not None or incoming.command is not None
                or incoming.contact is not None or self.config.staff_group_id is None):
            return None
        if turn.state is not None:
            return None  # a step in progress (feedback, a survey comment...) gets its answer first
        if incoming.text is not None and self.router is not None and self.router.menu_command(incoming.text):
            return None  # menu buttons keep working
        if incoming.text is None and incoming.media is None:
            return None
        conv = await self.store.active_of(member.id)
        replies: list[Reply] = []
        if conv is None or conv.state == BOT:
            return None  # closed or handed back: the bot answers; only asking brings a person back
        if incoming.edited:
            await self._relay_member_edit(turn, conv)
            return []
        await self.relay_member_message(turn, conv)
        if conv.state == WAITING and not replies and (opening := self.next_opening(turn.now)) is not None:
            if await self.store.claim_out_of_hours_notice(conv.id or 0, now=turn.now,
                                                          every=self.config.out_of_hours_every):
                replies.append(Reply(text=turn.t("support.out_of_hours", when=self._when(turn.tr, opening))))
        return replies

    async def relay_member_message(self, turn: Turn, conv: HandoffConversation) -> None:
        """Store the member's message, then queue its copy for the staff topic (a long caption is split)."""
        incoming = turn.incoming
        if incoming.message_id is not None and await self.store.message_by_member_copy(
                conv.id or 0, incoming.message_id) is not None:
            # The same message again (its update handled again after a crash): stored and queued once
            # already; if its copy never went out, `resume` queued it again at start-up.
            log.info("support: member message already recorded; not relayed twice")
            return
        media = incoming.media
        words = incoming.text if media is None else media.caption
        row = await self.store.record_message(conv.id or 0, "in", member_message_id=incoming.message_id,
                                              content_type=media.kind if media else "text", text=words,
                                              now=turn.now)
        self._queue_member_copy(conv.id or 0, incoming.chat_id, incoming.message_id or 0,
                                media is not None, words, row.id or 0)

    def _queue_member_copy(self, conversation_id: int, chat_id: int, message_id: int, is_media: bool,
                           words: str | None, ref: int) -> None:
        if not is_media:
            self.relay.put(RelayItem(conversation_id=conversation_id, kind="copy", from_chat_id=chat_id,
                                     message_id=message_id, text=words, mergeable=True, refs=[ref]))
            return
        if words is None or len(words) <= CAPTION_LIMIT:
            self.relay.put(RelayItem(conversation_id=conversation_id, kind="copy", from_chat_id=chat_id,
                                     message_id=message_id, refs=[ref]))
            return
        # Telegram refuses captions over 1024 characters: the rest follows as text, nothing is lost.
        first, *rest = split_text(words, CAPTION_LIMIT)
        self.relay.put(RelayItem(conversation_id=conversation_id, kind="copy", from_chat_id=chat_id,
                                 message_id=message_id, caption=html.escape(first, quote=False), refs=[ref]))
        for piece in rest:
            self.relay.put(RelayItem(conversation_id=conversation_id, kind="text", text=piece))

    async def _relay_member_edit(self, turn: Turn, conv: HandoffConversation) -> None:
        incoming = turn.incoming
        words = incoming.text if incoming.media is None else (incoming.media.caption if incoming.media else None)
        if not words or incoming.message_id is None:
            return
        row = await self.store.message_by_member_copy(conv.id or 0, incoming.message_id)
        if (row is not None and row.staff_message_id is not None and row.content_type == "text"
                and not await self.store.shares_staff_copy(row) and len(words) <= TEXT_LIMIT):
            self.relay.put(RelayItem(conversation_id=conv.id, kind="edit", message_id=int(row.staff_message_id),
                                     text=words))
            return
        # Not relayed yet, merged with other messages, or a caption: staff get the new words as a note.
        self._post(conv.id, "support.staff.member_edited", text=clip(words, 3500))

    # --- staff side ------------------------------------------------------------------------------------------

    async def on_group(self, turn: Turn) -> list[Reply] | None:
        """Updates from group chats: the staff group's topics and buttons; other groups are not ours."""
        incoming = turn.incoming
        if self.config.staff_group_id is None or incoming.chat_id != self.config.staff_group_id:
            return None
        if await turn.staff_role() is None:
            if incoming.command is not None or incoming.callback_id is not None:
                log.info("staff group: %s from someone not in the staff table ignored",
                         "a button" if incoming.callback_id else f"/{incoming.command}")
            return turn.toast("support.staff.only_staff", alert=True) if incoming.callback_id else []
        if incoming.first_name:
            self._names[incoming.user_id] = incoming.first_name
        tr = self.staff_tr()
        try:
            if incoming.callback_id is not None:
                return await self._staff_button(turn, tr)
            conv = await self.store.by_topic(incoming.thread_id) if incoming.thread_id else None
            if incoming.command is not None:
                return await self._staff_command(turn, tr, conv)
            if conv is None:
                return []  # staff talking among themselves outside member topics
            if incoming.edited:
                await self._relay_staff_edit(turn, tr, conv)
                return []
            return await self._relay_staff_message(turn, tr, conv)
        except Refusal as refusal:
            return await self._staff_refusal(turn, tr, refusal)

    async def _staff_refusal(self, turn: Turn, tr: Translator, refusal: Refusal) -> list[Reply]:
        params = dict(refusal.params)
        if isinstance(refusal, ConversationHeld):
            params = {"holder": await self.staff_name(refusal.params.get("holder"))}
        text = tr.t(f"error.{refusal.code}", **params)
        if turn.incoming.callback_id is not None:
            return [Reply(toast=clip(text, 200), alert=True)]
        return [Reply(text=text)]

    async def _staff_button(self, turn: Turn, tr: Translator) -> list[Reply]:
        callback = decode(turn.incoming.callback_data)
        if callback is None or callback.action != "sp" or callback.verb not in ("t", "h", "c"):
            log.info("staff group: stale or foreign button")
            return [Reply(toast=tr.t("error.stale_button"))]
        try:
            conversation_id = int(str(callback.args[1]))
        except ValueError:
            return [Reply(toast=tr.t("error.stale_button"))]
        conv = await self.store.get(conversation_id)
        action = {"t": "take", "h": "handback", "c": "close"}[callback.verb]
        replies = await self._staff_action(turn, tr, conv, action, "")
        if replies and replies[0].text:  # the presser sees what happened at once, the topic keeps the record
            replies[0] = replace(replies[0], toast=clip(replies[0].text, 200))
        return replies

    async def _staff_command(self, turn: Turn, tr: Translator, conv: HandoffConversation | None) -> list[Reply]:
        name = turn.incoming.command or ""
        if name not in ("take", "handback", "close", "note", "block", "unblock"):
            return []  # other bots' or other rooms' commands
        if conv is None:
            return [Reply(text=tr.t("support.staff.use_in_topic"))]
        return await self._staff_action(turn, tr, conv, name, turn.incoming.args)

    async def _staff_action(self, turn: Turn, tr: Translator, conv: HandoffConversation, action: str,
                            args: str) -> list[Reply]:
        staff_id = turn.incoming.user_id
        me = await self.staff_name(staff_id)
        now = turn.now
        if action == "take":
            transition = await self.store.take(conv.id or 0, staff_id, now=now)
            if not transition.changed:
                return [Reply(text=tr.t("support.staff.already_yours"))]
            self.refresh_card(conv.id)
            member = await self.loyalty.member(conv.member_id)
            await self._tell_member(member, "support.taken", name=me)
            return [Reply(text=tr.t("support.staff.took", name=me))]
        if action == "handback":
            await self.store.hand_back(conv.id or 0, staff_id, now=now)
            self.refresh_card(conv.id)
            member = await self.loyalty.member(conv.member_id)
            await self._tell_member(member, "support.handed_back")
            return [Reply(text=tr.t("support.staff.handed_back", name=me))]
        if action == "close":
            transition = await self.store.close(conv.id or 0, actor=actor_staff(staff_id), staff_id=staff_id,
                                                now=now)
            if not transition.changed:
                return [Reply(text=tr.t("error.handoff_closed"))]
            self.refresh_card(conv.id)
            member = await self.loyalty.member(conv.member_id)
            await self._tell_member(member, "support.closed",
                                    buttons=self._reopen_button(self.member_tr(member), transition.conversation))
            await self._after_close(transition.conversation, member, now)
            replies = [Reply(text=tr.t("support.staff.closed", name=me))]
            # The topic closes after the notice is out (the relay queue may hold more for it).
            task = asyncio.get_running_loop().create_task(self._close_topic_later(transition.conversation))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            return replies
        if action == "note":
            text = args.strip()
            if not text:
                return [Reply(text=tr.t("support.staff.note_empty"))]
            await self.store.record_message(conv.id or 0, "note", staff_message_id=turn.incoming.message_id,
                                            staff_id=staff_id, text=text, now=now)
            return [Reply(text=tr.t("support.staff.note_saved"))]
        if action in ("block", "unblock"):
            blocked = action == "block"
            transition = await self.store.set_blocked(conv.member_id, blocked, staff_id=staff_id, now=now)
            log.info("staff %s support for member %d", "blocked" if blocked else "unblocked", conv.member_id)
            if transition is not None and transition.changed:
                self.refresh_card(conv.id)
                await self._close_topic(transition.conversation)
            key = "support.staff.blocked" if blocked else "support.staff.unblocked"
            return [Reply(text=tr.t(key, name=me))]
        return []

    async def _close_topic_later(self, conv: HandoffConversation) -> None:
        if self._relay is not None:
            await self._relay.drain(30.0)
        await self._close_topic(conv)

    async def _close_topic(self, conv: HandoffConversation) -> None:
        sender = self.ctx.sender
        if sender is None or conv.topic_id is None or self.config.staff_group_id is None:
            return
        try:
            await sender.close_topic(self.config.staff_group_id, int(conv.topic_id))
        except SendError as exc:  # already closed, or deleted: nothing to close
            log.info("close topic: %s", exc.description)

    @staticmethod
    def _reopen_button(tr: Translator, conv: HandoffConversation) -> list[list[Button]]:
        return [[Button(tr.t("support.button.reopen"), encode("sp", "r", str(conv.id)))]]

    # --- erasure: nothing about the member stays in the staff group ------------------------------------------

    async def on_loyalty_event(self, event: LoyaltyEvent) -> None:
        if isinstance(event, MemberErased) and self.config.staff_group_id is not None:
            task = asyncio.get_running_loop().create_task(self.forget_member(event.member_id, announce=True))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def forget_erased(self) -> int:
        """Clear the topics of members erased while support was not running (or stopped half-way)."""
        members = dict.fromkeys(conv.member_id for conv in await self.store.erased_topics())
        cleared = 0
        for member_id in members:
            cleared += await self.forget_member(member_id)
        return cleared

    async def forget_member(self, member_id: int, *, announce: bool = False) -> int:
        """Delete (or, where the bot may not, close and anonymise) an erased member's staff topics.

        A topic is forgotten in the store only after Telegram has done its part, so a stop in between
        leaves it to `forget_erased` at the next start. Returns how many topics were cleared."""
        if self.config.staff_group_id is None or self.ctx.sender is None:
            return 0
        if member_id in self._forgetting:
            return 0
        self._forgetting.add(member_id)
        try:
            cleared = 0
            for conv in await self.store.erased_topics(member_id):
                assert conv.topic_id is not None and conv.id is not None
                if self._relay is not None:
                    self._relay.forget(conv.id)
                topic = int(conv.topic_id)
                if not await self._delete_topic(topic):
                    await self._anonymise_topic(conv, topic)
                if await self.store.forget_topic(conv.id, topic):
                    cleared += 1
            if cleared or announce:
                # The General topic: no name, no member number, nothing that points at the person.
                self._post(None, "support.staff.member_erased")
            log.info("support: staff topics of an erased member cleared (%d)", cleared)
            return cleared
        finally:
            self._forgetting.discard(member_id)

    async def _staff_call(self, call: Callable[[], Any]) -> bool:
        """One Bot API call into the staff group within the group's budget; False when Telegram refused it."""
        for _ in range(3):
            await self.relay.acquire()
            try:
                await call()
                return True
            except RetryAfter as exc:
                self.relay.budget.hold(exc.seconds)
            except SendError as exc:
                log.info("staff group call refused: %s", exc.description)
                return False
        return False

    async def _delete_topic(self, topic: int) -> bool:
        sender, group = self.ctx.sender, self.config.staff_group_id
        assert sender is not None and group is not None
        for _ in range(3):
            await self.relay.acquire()
            try:
                await sender.delete_topic(group, topic)
                return True
            except ThreadNotFound:
                return True  # deleted already (by staff, or by us before a stop)
            except RetryAfter as exc:
                self.relay.budget.hold(exc.seconds)
            except SendError as exc:  # e.g. not allowed to delete topics in this group
                log.info("erased member's topic not deleted (%s); anonymising it", exc.description)
                return False
        return False

    async def _anonymise_topic(self, conv: HandoffConversation, topic: int) -> None:
        """Where a topic cannot be deleted: no name on it, the card says so, the member's words are gone."""
        sender, group = self.ctx.sender, self.config.staff_group_id
        assert sender is not None and group is not None and conv.id is not None
        tr = self.staff_tr()
        await self._staff_call(lambda: sender.edit_topic(group, topic, tr.t("support.staff.erased_title",
                                                                             ref=conv.id)))
        for direction, message_id in await self.store.staff_group_posts(conv.id):
            if direction == "card":
                await self._staff_call(lambda m=message_id: sender.edit_text(
                    group, m, tr.t("support.staff.card_erased"), None, html=True))
                continue
            if await self._staff_call(lambda m=message_id: sender.delete_message(group, m)):
                continue
            if direction in ("in", "post"):  # the bot's own copies can at least be blanked
                await self._staff_call(lambda m=message_id: sender.edit_text(
                    group, m, tr.t("support.staff.erased_message"), None, html=False))
        await self._staff_call(lambda: sender.close_topic(group, topic))

    async def _relay_staff_message(self, turn: Turn, tr: Translator, conv: HandoffConversation) -> list[Reply]:
        incoming = turn.incoming
        staff_id = incoming.user_id
        if conv.state == CLOSED:
            return [Reply(text=tr.t("support.staff.not_sent_closed"))]
        if conv.state != HUMAN or conv.staff_id != staff_id:
            # Answering a waiting member takes the conversation (atomically, like /take).
            try:
                transition = await self.store.take(conv.id or 0, staff_id, now=turn.now)
            except ConversationHeld as held:
                holder = await self.staff_name(held.params.get("holder"))
                return [Reply(text=tr.t("support.staff.not_sent_held", holder=holder))]
            conv = transition.conversation
            if transition.changed:
                self.refresh_card(conv.id)
                member = await self.loyalty.member(conv.member_id)
                await self._tell_member(member, "support.taken", name=await self.staff_name(staff_id))
        member = await self.loyalty.member(conv.member_id)
        sender = self.ctx.sender
        if sender is None or member.chat_id is None or incoming.message_id is None:
            return [Reply(text=tr.t("support.staff.not_delivered"))]
        done = await self.store.message_by_staff_copy(conv.id or 0, incoming.message_id)
        if done is not None and done.direction == "out":
            log.info("support: staff message already delivered; not copied twice")  # its update, again
            return []
        media = incoming.media
        words = incoming.text if media is None else media.caption
        caption = None
        rest: list[str] = []
        if media is not None and words and len(words) > CAPTION_LIMIT:
            first, *rest = split_text(words, CAPTION_LIMIT)
            caption = html.escape(first, quote=False)
        try:
            sent = await self._copy_to_member(member, incoming.chat_id, incoming.message_id, caption)
            for piece in rest:
                await self._send_member(member, Outgoing(chat_id=member.chat_id, text=piece, html=False))
        except Blocked:
            return [Reply(text=tr.t("support.staff.member_blocked_bot"))]
        except SendError as exc:
            log.info("staff message not delivered: %s", type(exc).__name__)
            return [Reply(text=tr.t("support.staff.not_delivered"))]
        await self.store.record_message(conv.id or 0, "out", member_message_id=sent.message_id,
                                        staff_message_id=incoming.message_id, staff_id=staff_id,
                                        content_type=media.kind if media else "text", text=words, now=turn.now)
        return []

    async def _copy_to_member(self, member: Member, from_chat: int, message_id: int, caption: str | None) -> Sent:
        sender = self.ctx.sender
        assert sender is not None and member.chat_id is not None
        for attempt in range(3):
            try:
                return await sender.copy_message(member.chat_id, from_chat, message_id, caption=caption)
            except RetryAfter as exc:
                if attempt == 2:
                    raise
                await asyncio.sleep(min(exc.seconds, 30.0))
        raise AssertionError("unreachable")

    async def _relay_staff_edit(self, turn: Turn, tr: Translator, conv: HandoffConversation) -> None:
        incoming = turn.incoming
        if incoming.message_id is None or incoming.text is None or self.ctx.sender is None:
            return
        row = await self.store.message_by_staff_copy(conv.id or 0, incoming.message_id)
        if row is None or row.direction != "out" or row.member_message_id is None:
            return
        member = await self.loyalty.member(conv.member_id)
        if member.chat_id is None:
            return
        try:
            await self.ctx.sender.edit_text(member.chat_id, int(row.member_message_id), incoming.text, html=False)
        except SendError as exc:
            log.info("staff edit not relayed: %s", type(exc).__name__)

    # --- after a close: CSAT ----------------------------------------------------------------------------------

    async def _after_close(self, conv: HandoffConversation, member: Member, now: datetime) -> None:
        """Ask the member how well we helped (once per conversation, not within the cooldown).

        With the scheduler present (ctx.services["scheduler"]) it plans the survey; without it the
        survey is opened here and its 1-5 buttons are sent at once.
        """
        if not await self.store.csat_due(conv, now=now, cooldown=self.config.csat_cooldown):
            return
        scheduler = self.ctx.services.get("scheduler")
        if scheduler is not None and hasattr(scheduler, "schedule_csat"):
            # The scheduler sends it later through the outbox (its delay, quiet hours, opt-outs).
            try:
                await scheduler.schedule_csat(member.id, "support", f"handoff:{conv.id}", conversation_id=conv.id,
                                              staff_id=conv.staff_id, now=now)
            except Exception:  # the conversation is closed either way; a lost survey is only logged
                log.exception("CSAT for conversation %d could not be scheduled", conv.id or 0)
            return
        survey = await self.loyalty.open_survey(member.id, "csat", trigger="handoff", trigger_ref=f"handoff:{conv.id}",
                                                conversation_id=conv.id, staff_id=conv.staff_id, now=now)
        if survey is None:
            log.info("no CSAT for conversation %d: the member has a survey open", conv.id or 0)
            return
        buttons = [[Button(str(score), survey_answer(survey.id or 0, score)) for score in range(1, 6)]]
        await self._tell_member(member, "support.csat", buttons=buttons)

    # --- periodic: waiting notices ---------------------------------------------------------------------------

    async def tick(self, now: datetime) -> int:
        """Send the one polite update to members waiting longer than configured; returns how many were told."""
        told = 0
        for conv in await self.store.due_waiting_notices(now=now, after=self.config.waiting_notice_after):
            if not await self.store.claim_waiting_notice(conv.id or 0, now=now):
                continue
            try:
                member = await self.loyalty.member(conv.member_id)
            except Refusal:
                continue
            opening = self.next_opening(now)
            if opening is None:
                await self._tell_member(member, "support.still_waiting")
            else:
                await self._tell_member(member, "support.still_waiting_closed",
                                        when=self._when(self.member_tr(member), opening))
            told += 1
        return told

    async def resume(self, *, now: datetime) -> int:
        """Queue again the member messages stored in the last day but never copied to staff."""
        rows = await self.store.unrelayed(since=now - timedelta(days=1))
        for row in rows:
            try:
                conv = await self.store.get(row.conversation_id)
                member = await self.loyalty.member(conv.member_id)
            except Refusal:
                continue
            if member.chat_id is None or row.member_message_id is None:
                continue
            self._queue_member_copy(row.conversation_id, int(member.chat_id), int(row.member_message_id),
                                    row.content_type != "text", row.text, row.id or 0)
        if rows:
            log.info("support: %d unrelayed member message(s) queued again", len(rows))
        return len(rows)

    # --- feedback to the staff group -------------------------------------------------------------------------

    async def feedback_sink(self, member: Member, feedback: Any) -> None:
        """Post a member's /feedback to the staff group's General topic."""
        if self.config.staff_group_id is None:
            return
        tr = self.staff_tr()
        stars = "⭐" * feedback.rating if feedback.rating else "-"
        self.relay.put(RelayItem(conversation_id=None, kind="text", html=True, text=tr.t(
            "support.staff.feedback", ref=f"FB-{(feedback.id or 0):06d}", member_no=member.member_no,
            name=member.first_name or "-", rating=stars, text=clip(feedback.text or "", 3500))))


# Message keys used above through variables, for extraction.
_KEYS = (N_("support.state.bot"), N_("support.state.waiting"), N_("support.state.human"),
         N_("support.state.closed"), N_("support.language.en"), N_("support.language.zh_Hans"),
         N_("support.language.zh_Hant"))
LANGUAGE_KEYS = ("en", "zh_Hans", "zh_Hant")


def register_support(router: Router, ctx: Context, config: SupportConfig | None = None, *,
                     relay_clock: Callable[[], float] | None = None, relay_sleep: Any = None) -> SupportService:
    """Wire support into the router; the service goes to ctx.services["handoff"] (and its feedback poster
    to ctx.services["feedback_sink"]). `config` defaults to ctx.services["support_config"] or ChatConfig."""
    chosen = config or ctx.services.get("support_config") or SupportConfig.from_chat_config(ctx.config)
    service = SupportService(ctx=ctx, router=router, config=chosen, store=HandoffStore(ctx.loyalty.db),
                             relay_clock=relay_clock, relay_sleep=relay_sleep)
    ctx.services["handoff"] = service
    ctx.services["feedback_sink"] = service.feedback_sink
    if hasattr(ctx.loyalty, "subscribe"):
        ctx.loyalty.subscribe(service.on_loyalty_event)
    router.command("support", service.ask)
    router.command("end", service.end)
    router.callback("sp", service.pressed)
    router.interceptor(service.intercept)
    router.group(service.on_group)
    return service


def register(router: Router) -> None:
    """The `module.register(router)` form used by handlers.router.build_router."""
    register_support(router, router.ctx)


__all__ = ["BusinessHours", "SupportConfig", "SupportService", "register", "register_support", "split_text"]
