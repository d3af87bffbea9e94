"""The support desk: the staff group's topics and everything the bot itself says about a conversation.

One topic per conversation, opened (or, when staff deleted it, made again) with a summary card that
is edited on every change of state; notices in the topic (asked again, reopened, ended, edited);
the member's out-of-hours and still-waiting notices; the CSAT after a close; the feedback posted to
the General topic; and, when a member erases their data, their topics deleted (or, where the bot may
not delete them, closed and made anonymous).

Everything bound for the staff group goes through the `StaffRelay` (the group's budget); messages to
a member who did not act (staff took their conversation, a long wait) are sent here, with the relay's
`retrying`. What answers the person who acted is returned as a `Reply` by member.py and staff.py.
"""

from __future__ import annotations

import asyncio
import html
import logging
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING, Any

from loyalbot.chat.callbacks import encode, survey_answer
from loyalbot.chat.i18n import N_, Translator
from loyalbot.chat.limits import CAPTION_LIMIT
from loyalbot.chat.outbound import Keyboard, Outgoing, SendError, Sent, ThreadNotFound
from loyalbot.chat.port import Button, Reply
from loyalbot.handlers.support.config import BusinessHours, SupportConfig, split_text
from loyalbot.handlers.support.relay import NoTopic, RelayItem, StaffRelay, retrying
from loyalbot.handlers.turn import clip
from loyalbot.loyalty.errors import MemberErased as MemberGone
from loyalbot.loyalty.errors import Refusal
from loyalbot.loyalty.handoff import HUMAN, HandoffStore, Transition
from loyalbot.storage.models import HandoffConversation, Member
from loyalbot.storage.rows import stored_id

if TYPE_CHECKING:
    from loyalbot.handlers.context import Context

log = logging.getLogger(__name__)

# Message keys used below through variables, for extraction.
_KEYS = (N_("support.state.bot"), N_("support.state.waiting"), N_("support.state.human"),
         N_("support.state.closed"), N_("support.language.en"), N_("support.language.zh_Hans"),
         N_("support.language.zh_Hant"))
LANGUAGE_KEYS = ("en", "zh_Hans", "zh_Hant")


async def _member_wait(seconds: float) -> None:
    """How long a send to a member waits out Telegram's RetryAfter before trying again (at most 30 s)."""
    await asyncio.sleep(min(seconds, 30.0))


def when(tr: Translator, moment: datetime) -> str:
    """A moment as the member reads it: their date and time."""
    return f"{tr.date(moment)} {tr.time(moment)}"


def reopen_button(tr: Translator, conv: HandoffConversation) -> Keyboard:
    return [[Button(tr.t("support.button.reopen"), encode("sp", "r", str(conv.id)))]]


@dataclass
class Desk:
    """The staff group's side of support for one bot: its relay, topics, cards, notices and CSAT."""

    ctx: Context
    config: SupportConfig
    store: HandoffStore
    relay_clock: Callable[[], float] | None = None
    relay_sleep: Callable[[float], Awaitable[None]] | None = None
    _relay: StaffRelay | None = field(default=None, init=False, repr=False)
    _hours: BusinessHours | None = field(default=None, init=False, repr=False)
    _names: dict[int, str] = field(default_factory=dict, init=False, repr=False)
    _tasks: set[asyncio.Task[Any]] = field(default_factory=set, init=False, repr=False)
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
    def staffed(self) -> bool:
        """Whether support has a staff group at all (without one, members are told it is unavailable)."""
        return self.config.staff_group_id is not None

    @property
    def relay(self) -> StaffRelay:
        """The staff group's queue (made on first use, inside the running event loop)."""
        if self._relay is None:
            assert self.config.staff_group_id is not None
            self._relay = StaffRelay(lambda: self.ctx.sender, self.config.staff_group_id, self,
                                     per_minute=self.config.relay_per_minute, burst=self.config.relay_burst,
                                     clock=self.relay_clock, sleep=self.relay_sleep,
                                     shared=self.ctx.services.send_limits)
        return self._relay

    @property
    def relay_started(self) -> StaffRelay | None:
        """The relay if anything was queued yet, else None."""
        return self._relay

    def staff_tr(self) -> Translator:
        return Translator(self.config.staff_language, timezone=self.config.timezone,
                          format_locale=self.ctx.config.format_locales.get(self.config.staff_language))

    def member_tr(self, member: Member) -> Translator:
        return Translator(member.language, timezone=member.timezone,
                          format_locale=self.ctx.config.format_locales.get(member.language))

    def next_opening(self, now: datetime) -> datetime | None:
        """None while staff are there; otherwise when they are next."""
        return self._hours.next_opening(now) if self._hours is not None else None

    def spawn(self, work: Coroutine[Any, Any, Any]) -> None:
        """Run `work` beside the update being handled; `settle` waits for it."""
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def settle(self) -> None:
        """Wait for the work started with `spawn`."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def remember_name(self, user_id: int, first_name: str) -> None:
        self._names[user_id] = first_name

    async def staff_name(self, staff_id: int | None) -> str:
        """How staff are named to each other and to members: their staff-table name, first name, or #id."""
        if staff_id is None:
            return "?"
        for staff in await self.loyalty.list_staff():
            if staff.telegram_id == staff_id and staff.name:
                return str(staff.name)
        return self._names.get(staff_id) or f"#{staff_id}"

    # --- to a member who did not act ------------------------------------------------------------------

    async def send_member(self, member: Member, message: Outgoing) -> Sent | None:
        """Send to a member's private chat, waiting out a short rate limit; None when it cannot be delivered."""
        sender = self.ctx.sender
        if sender is None:
            log.warning("no sender: message to member %d not sent", member.id or 0)
            return None
        try:
            return await retrying(lambda: sender.send(message), wait=_member_wait)
        except SendError as exc:
            log.info("message to member %d not delivered: %s", member.id or 0, type(exc).__name__)
            return None

    async def tell_member(self, member: Member, msgid: str, *, buttons: Keyboard | None = None,
                          **params: Any) -> None:
        if member.chat_id is None:
            return
        text = self.member_tr(member).t(msgid, **params)
        await self.send_member(member, Outgoing(chat_id=member.chat_id, text=text, buttons=buttons))

    async def copy_to_member(self, member: Member, from_chat: int, message_id: int, caption: str | None) -> Sent:
        """Copy a staff message into the member's chat; the send errors are the caller's to answer."""
        sender = self.ctx.sender
        chat_id = member.chat_id
        assert sender is not None and chat_id is not None
        return await retrying(lambda: sender.copy_message(chat_id, from_chat, message_id, caption=caption),
                              wait=_member_wait)

    # --- into the staff group -------------------------------------------------------------------------

    def post(self, conversation_id: int | None, msgid: str, **params: Any) -> None:
        """Queue a notice (in the staff language) into a conversation's topic (None: the General topic)."""
        if self.config.staff_group_id is None:
            return
        self.relay.put(RelayItem(conversation_id=conversation_id, kind="text", html=True,
                                 text=self.staff_tr().t(msgid, **params)))

    def queue_member_copy(self, conversation_id: int, chat_id: int, message_id: int, is_media: bool,
                          words: str | None, ref: int) -> None:
        """Queue the copy of a member's stored message `ref` for the topic (a long caption is split)."""
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

    async def group_call(self, call: Callable[[], Awaitable[Any]], what: str) -> bool:
        """One Bot API call into the staff group within its budget; False (logged) when Telegram refused it."""
        try:
            await self.relay.call(call)
        except SendError as exc:
            log.info("%s: %s", what, exc.description)
            return False
        return True

    async def announce(self, transition: Transition, member: Member) -> None:
        """Tell the staff topic that the member is (back) waiting."""
        conv = transition.conversation
        if transition.created:
            self.relay.put(await self.card(conv, member))
            return
        if transition.reopened:
            await self.reopen_topic(conv)
            self.post(conv.id, "support.staff.reopened")
            self.refresh_card(conv.id)
            return
        self.post(conv.id, "support.staff.asked_again")
        self.refresh_card(conv.id)

    async def reopen_topic(self, conv: HandoffConversation) -> None:
        sender, group = self.ctx.sender, self.config.staff_group_id
        if sender is None or conv.topic_id is None or group is None:
            return
        topic = int(conv.topic_id)
        try:
            await self.relay.call(lambda: sender.reopen_topic(group, topic))
        except ThreadNotFound:
            # The relay opens a new topic (with the card) when it next posts for this conversation.
            log.info("topic of conversation %d is gone; a new one will be made", conv.id or 0)
        except SendError as exc:  # e.g. TOPIC_NOT_MODIFIED: it was open already
            log.info("reopen topic: %s", exc.description)

    async def close_topic(self, conv: HandoffConversation) -> None:
        sender, group = self.ctx.sender, self.config.staff_group_id
        if sender is None or conv.topic_id is None or group is None:
            return
        topic = int(conv.topic_id)
        # Already closed, or deleted: nothing to close.
        await self.group_call(lambda: sender.close_topic(group, topic), "close topic")

    def close_topic_when_posted(self, conv: HandoffConversation) -> None:
        """Close the topic once the relay has posted what it holds (the closing notice among it)."""
        async def later() -> None:
            if self._relay is not None:
                await self._relay.drain(30.0)
            await self.close_topic(conv)

        self.spawn(later())

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
        # Creating a topic is a post into the group: it takes a call of the group's budget (every replica's).
        await self.relay.acquire()
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
        if not self.relay.holds(conversation_id, "refresh"):
            self.relay.put(RelayItem(conversation_id=conversation_id, kind="refresh"))

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
        feedback = await self.store.last_feedback(member.id or 0)
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

    # --- waiting: notices -------------------------------------------------------------------

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
                await self.tell_member(member, "support.still_waiting")
            else:
                await self.tell_member(member, "support.still_waiting_closed",
                                       when=when(self.member_tr(member), opening))
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
            self.queue_member_copy(row.conversation_id, int(member.chat_id), int(row.member_message_id),
                                   row.content_type != "text", row.text, row.id or 0)
        if rows:
            log.info("support: %d unrelayed member message(s) queued again", len(rows))
        return len(rows)

    # --- after a close: CSAT ------------------------------------------------------------------------------

    async def csat(self, conv: HandoffConversation, member: Member, now: datetime) -> Reply | None:
        """Ask the member how well we helped (once per conversation, not within the cooldown).

        With the scheduler present (ctx.services.scheduler) it plans the survey and returns None;
        without it the survey is opened here and the returned reply (the member's, in their language)
        carries its 1-5 buttons: returned to a member who ended the talk, sent when staff closed it.
        """
        if not await self.store.csat_due(conv, now=now, cooldown=self.config.csat_cooldown):
            return None
        scheduler = self.ctx.services.scheduler
        if scheduler is not None:
            # The scheduler sends it later through the outbox (its delay, quiet hours, opt-outs).
            try:
                await scheduler.schedule_csat(stored_id(member.id), "support", f"handoff:{conv.id}", conversation_id=conv.id,
                                              staff_id=conv.staff_id, now=now)
            except Exception:  # the conversation is closed either way; a lost survey is only logged
                log.exception("CSAT for conversation %d could not be scheduled", conv.id or 0)
            return None
        survey = await self.loyalty.open_survey(member.id, "csat", trigger="handoff", trigger_ref=f"handoff:{conv.id}",
                                                conversation_id=conv.id, staff_id=conv.staff_id, now=now)
        if survey is None:
            log.info("no CSAT for conversation %d: the member has a survey open", conv.id or 0)
            return None
        buttons = [[Button(str(score), survey_answer(survey.id or 0, score)) for score in range(1, 6)]]
        return Reply(text=self.member_tr(member).t("support.csat"), buttons=buttons)

    # --- feedback to the staff group ----------------------------------------------------------------------

    async def feedback_sink(self, member: Member, feedback: Any) -> None:
        """Post a member's /feedback to the staff group's General topic."""
        if self.config.staff_group_id is None:
            return
        tr = self.staff_tr()
        stars = "⭐" * feedback.rating if feedback.rating else "-"
        self.relay.put(RelayItem(conversation_id=None, kind="text", html=True, text=tr.t(
            "support.staff.feedback", ref=f"FB-{(feedback.id or 0):06d}", member_no=member.member_no,
            name=member.first_name or "-", rating=stars, text=clip(feedback.text or "", 3500))))

    # --- erasure: nothing about the member stays in the staff group ----------------------------------------

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
                self.post(None, "support.staff.member_erased")
            log.info("support: staff topics of an erased member cleared (%d)", cleared)
            return cleared
        finally:
            self._forgetting.discard(member_id)

    async def _delete_topic(self, topic: int) -> bool:
        sender, group = self.ctx.sender, self.config.staff_group_id
        assert sender is not None and group is not None
        try:
            await self.relay.call(lambda: sender.delete_topic(group, topic))
        except ThreadNotFound:
            return True  # deleted already (by staff, or by us before a stop)
        except SendError as exc:  # e.g. not allowed to delete topics in this group
            log.info("erased member's topic not deleted (%s); anonymising it", exc.description)
            return False
        return True

    async def _anonymise_topic(self, conv: HandoffConversation, topic: int) -> None:
        """Where a topic cannot be deleted: no name on it, the card says so, the member's words are gone."""
        sender, group = self.ctx.sender, self.config.staff_group_id
        assert sender is not None and group is not None and conv.id is not None
        tr = self.staff_tr()
        refused = "staff group call refused"
        await self.group_call(partial(sender.edit_topic, group, topic,
                                      tr.t("support.staff.erased_title", ref=conv.id)), refused)
        for direction, message_id in await self.store.staff_group_posts(conv.id):
            if direction == "card":
                await self.group_call(partial(sender.edit_text, group, message_id, tr.t("support.staff.card_erased"),
                                              None, html=True), refused)
                continue
            if await self.group_call(partial(sender.delete_message, group, message_id), refused):
                continue
            if direction in ("in", "post"):  # the bot's own copies can at least be blanked
                await self.group_call(partial(sender.edit_text, group, message_id,
                                              tr.t("support.staff.erased_message"), None, html=False), refused)
        await self.group_call(partial(sender.close_topic, group, topic), refused)


__all__ = ["LANGUAGE_KEYS", "Desk", "reopen_button", "when"]
