"""The member's side of support, in their private chat.

/support or the "Talk to a person" menu button opens (or reopens) the member's conversation and says
how long the wait is (or when the team is back); while it waits or a staff member holds it, whatever
the member writes (text, photos, documents, voice, stickers) is copied into the conversation's staff
topic and the bot stays silent to free text (commands and the menu still work); /end finishes it.
Only the member's asking reopens a closed conversation (/support, the menu button, or the Reopen
button under the closing message); free text after a close gets the bot's normal answer.
"""

from __future__ import annotations

import logging
import math
import statistics
from dataclasses import dataclass
from typing import TYPE_CHECKING

from loyalbot.chat.callbacks import encode
from loyalbot.chat.limits import TEXT_LIMIT
from loyalbot.chat.outbound import Keyboard
from loyalbot.chat.port import Button, Reply
from loyalbot.handlers.support.desk import Desk, reopen_button, when
from loyalbot.handlers.support.relay import RelayItem
from loyalbot.handlers.turn import Turn, clip
from loyalbot.loyalty.handoff import BOT, HUMAN, WAITING, SupportBlocked, actor_member
from loyalbot.storage.models import HandoffConversation

if TYPE_CHECKING:
    from loyalbot.handlers.router import Router

log = logging.getLogger(__name__)


def _member_id(turn: Turn) -> int:
    """The id of the member in the turn (support's member commands are for members only)."""
    assert turn.member is not None and turn.member.id is not None
    return turn.member.id


def _end_button(turn: Turn, conv: HandoffConversation) -> Keyboard:
    return [[Button(turn.t("support.button.end"), encode("sp", "x", str(conv.id)))]]


@dataclass
class MemberSide:
    """What a member does about support: ask, write while a person is waited for or holds the talk, end."""

    desk: Desk
    router: Router | None = None  # to let main-menu labels through while a person holds the talk

    async def ask(self, turn: Turn) -> list[Reply]:
        """/support and "Talk to a person": open or reopen the conversation and say how long the wait is."""
        desk, member = self.desk, turn.member
        assert member is not None
        if not desk.staffed:
            return [Reply(text=turn.t("support.unavailable", hours=desk.config.hours))]
        try:
            transition = await desk.store.request(_member_id(turn), now=turn.now,
                                                  reopen_within=desk.config.reopen_within)
        except SupportBlocked:
            log.info("support refused: member %d is blocked from support", member.id)
            return [Reply(text=turn.t("error.support_blocked"), keyboard=turn.menu_keyboard())]
        conv = transition.conversation
        if not transition.changed:
            key = "support.already_human" if conv.state == HUMAN else "support.already_waiting"
            return [Reply(text=turn.t(key), buttons=_end_button(turn, conv))]
        await desk.announce(transition, member)
        return [await self._waiting_reply(turn, conv)]

    async def _waiting_reply(self, turn: Turn, conv: HandoffConversation) -> Reply:
        desk = self.desk
        opening = desk.next_opening(turn.now)
        if opening is None:
            text = turn.t("support.waiting", minutes=await self.expected_wait_minutes())
        else:
            await desk.store.claim_out_of_hours_notice(conv.id or 0, now=turn.now, every=desk.config.out_of_hours_every)
            text = turn.t("support.waiting_closed", when=when(turn.tr, opening))
        return Reply(text=text, buttons=_end_button(turn, conv))

    async def expected_wait_minutes(self) -> int:
        """The median first response of recent conversations, in whole minutes (the configured guess before any)."""
        recent = await self.desk.store.recent_first_responses()
        if not recent:
            return self.desk.config.expected_wait_minutes
        return max(1, math.ceil(statistics.median(recent) / 60))

    async def end(self, turn: Turn) -> list[Reply]:
        """/end: the member finishes the conversation."""
        conv = await self.desk.store.active_of(_member_id(turn))
        if conv is None:
            return [Reply(text=turn.t("support.not_open"), keyboard=turn.menu_keyboard())]
        return await self._end(turn, conv)

    async def _end(self, turn: Turn, conv: HandoffConversation) -> list[Reply]:
        desk, member = self.desk, turn.member
        assert member is not None
        transition = await desk.store.close(conv.id or 0, actor=actor_member(_member_id(turn)), now=turn.now)
        if not transition.changed:
            return [Reply(text=turn.t("support.not_open"), keyboard=turn.menu_keyboard())]
        desk.post(conv.id, "support.staff.member_ended")
        desk.refresh_card(conv.id)
        await desk.close_topic(transition.conversation)
        replies = [Reply(text=turn.t("support.ended"), buttons=reopen_button(turn.tr, conv))]
        if (survey := await desk.csat(transition.conversation, member, turn.now)) is not None:
            replies.append(survey)
        return replies

    async def pressed(self, turn: Turn) -> list[Reply]:
        """A member's support button: open (sp:o), reopen (sp:r:<conversation>) or end (sp:x:<conversation>)."""
        callback, member = turn.callback, turn.member
        assert callback is not None and member is not None
        if callback.verb == "o":
            return await self.ask(turn)
        if callback.verb == "r":
            # "Reopen" under a closing message: the member asks again (a person, not free text, reopens).
            return [Reply(edit=True, buttons=None), *await self.ask(turn)]
        if callback.verb == "x":
            conv = await self.desk.store.active_of(_member_id(turn))
            # A button of another (or an older) conversation ends nothing: members only reach their own.
            if conv is None or str(conv.id) != str(callback.args[1]):
                return turn.toast("support.not_open")
            return [Reply(edit=True, buttons=None), *await self._end(turn, conv)]
        log.info("member pressed a staff-only support button")
        return turn.toast("error.stale_button")

    async def intercept(self, turn: Turn) -> list[Reply] | None:
        """While a person is waited for or holds the talk, the member's messages go to staff (the bot is silent)."""
        desk, incoming, member = self.desk, turn.incoming, turn.member
        if (member is None or incoming.callback_id is not None or incoming.command is not None
                or incoming.contact is not None or not desk.staffed):
            return None
        if turn.state is not None:
            return None  # a step in progress (feedback, a survey comment...) gets its answer first
        if incoming.text is not None and self.router is not None and self.router.menu_command(incoming.text):
            return None  # menu buttons keep working
        if incoming.text is None and incoming.media is None:
            return None
        conv = await desk.store.active_of(_member_id(turn))
        if conv is None or conv.state == BOT:
            return None  # closed or handed back: the bot answers; only asking brings a person back
        if incoming.edited:
            await self._relay_edit(turn, conv)
            return []
        await self.relay_message(turn, conv)
        if conv.state == WAITING and (opening := desk.next_opening(turn.now)) is not None:
            if await desk.store.claim_out_of_hours_notice(conv.id or 0, now=turn.now,
                                                          every=desk.config.out_of_hours_every):
                return [Reply(text=turn.t("support.out_of_hours", when=when(turn.tr, opening)))]
        return []

    async def relay_message(self, turn: Turn, conv: HandoffConversation) -> None:
        """Store the member's message, then queue its copy for the staff topic (a long caption is split)."""
        incoming = turn.incoming
        if incoming.message_id is not None and await self.desk.store.message_by_member_copy(
                conv.id or 0, incoming.message_id) is not None:
            # The same message again (its update handled again after a crash): stored and queued once
            # already; if its copy never went out, `resume` queued it again at start-up.
            log.info("support: member message already recorded; not relayed twice")
            return
        media = incoming.media
        words = incoming.text if media is None else media.caption
        row = await self.desk.store.record_message(conv.id or 0, "in", member_message_id=incoming.message_id,
                                                   content_type=media.kind if media else "text", text=words,
                                                   now=turn.now)
        self.desk.queue_member_copy(conv.id or 0, incoming.chat_id, incoming.message_id or 0,
                                    media is not None, words, row.id or 0)

    async def _relay_edit(self, turn: Turn, conv: HandoffConversation) -> None:
        desk, incoming = self.desk, turn.incoming
        words = incoming.text if incoming.media is None else incoming.media.caption
        if not words or incoming.message_id is None:
            return
        row = await desk.store.message_by_member_copy(conv.id or 0, incoming.message_id)
        if (row is not None and row.staff_message_id is not None and row.content_type == "text"
                and not await desk.store.shares_staff_copy(row) and len(words) <= TEXT_LIMIT):
            desk.relay.put(RelayItem(conversation_id=conv.id, kind="edit", message_id=int(row.staff_message_id),
                                     text=words))
            return
        # Not relayed yet, merged with other messages, or a caption: staff get the new words as a note.
        desk.post(conv.id, "support.staff.member_edited", text=clip(words, 3500))


__all__ = ["MemberSide"]
