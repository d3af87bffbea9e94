"""The staff side of support, in the staff forum group (one topic per member conversation).

The topic's Take / Hand back / Close buttons and the commands /take, /handback, /close, /note TEXT,
/block and /unblock act on its conversation; what the holder writes in the topic is copied to the
member (answering a waiting member takes the conversation), and edits follow as edits. Only people
in the staff table act there; anyone else is ignored (and logged). The staff member who acted is
answered with the returned replies; the member is told by the desk.
"""

from __future__ import annotations

import html
import logging
from dataclasses import dataclass, replace

from loyalbot.chat.callbacks import decode
from loyalbot.chat.i18n import Translator
from loyalbot.chat.limits import CAPTION_LIMIT
from loyalbot.chat.outbound import Blocked, Outgoing, SendError
from loyalbot.chat.port import Reply
from loyalbot.handlers.support.config import split_text
from loyalbot.handlers.support.desk import Desk, reopen_button
from loyalbot.handlers.turn import Turn, clip
from loyalbot.loyalty.errors import Refusal
from loyalbot.loyalty.handoff import CLOSED, HUMAN, ConversationHeld, actor_staff
from loyalbot.storage.models import HandoffConversation, Member

log = logging.getLogger(__name__)

COMMANDS = ("take", "handback", "close", "note", "block", "unblock")
BUTTONS = {"t": "take", "h": "handback", "c": "close"}


@dataclass
class StaffSide:
    """What staff do about a member's conversation, from its topic in the staff group."""

    desk: Desk

    async def on_group(self, turn: Turn) -> list[Reply] | None:
        """Updates from group chats: the staff group's topics and buttons; other groups are not ours."""
        desk, incoming = self.desk, turn.incoming
        if not desk.staffed or incoming.chat_id != desk.config.staff_group_id:
            return None
        if await turn.staff_role() is None:
            if incoming.command is not None or incoming.callback_id is not None:
                log.info("staff group: %s from someone not in the staff table ignored",
                         "a button" if incoming.callback_id else f"/{incoming.command}")
            return turn.toast("support.staff.only_staff", alert=True) if incoming.callback_id else []
        if incoming.first_name:
            desk.remember_name(incoming.user_id, incoming.first_name)
        tr = desk.staff_tr()
        try:
            if incoming.callback_id is not None:
                return await self._button(turn, tr)
            conv = await desk.store.by_topic(incoming.thread_id) if incoming.thread_id else None
            if incoming.command is not None:
                return await self._command(turn, tr, conv)
            if conv is None:
                return []  # staff talking among themselves outside member topics
            if incoming.edited:
                await self._relay_edit(turn, conv)
                return []
            return await self._relay_message(turn, tr, conv)
        except Refusal as refusal:
            return await self._refusal(turn, tr, refusal)

    async def _refusal(self, turn: Turn, tr: Translator, refusal: Refusal) -> list[Reply]:
        params = dict(refusal.params)
        if isinstance(refusal, ConversationHeld):
            params = {"holder": await self.desk.staff_name(refusal.params.get("holder"))}
        text = tr.t(f"error.{refusal.code}", **params)
        if turn.incoming.callback_id is not None:
            return [Reply(toast=clip(text, 200), alert=True)]
        return [Reply(text=text)]

    async def _button(self, turn: Turn, tr: Translator) -> list[Reply]:
        callback = decode(turn.incoming.callback_data)
        if callback is None or callback.action != "sp" or callback.verb not in BUTTONS:
            log.info("staff group: stale or foreign button")
            return [Reply(toast=tr.t("error.stale_button"))]
        try:
            conversation_id = int(str(callback.args[1]))
        except ValueError:
            return [Reply(toast=tr.t("error.stale_button"))]
        conv = await self.desk.store.get(conversation_id)
        replies = await self._act(turn, tr, conv, BUTTONS[callback.verb], "")
        if replies and replies[0].text:  # the presser sees what happened at once, the topic keeps the record
            replies[0] = replace(replies[0], toast=clip(replies[0].text, 200))
        return replies

    async def _command(self, turn: Turn, tr: Translator, conv: HandoffConversation | None) -> list[Reply]:
        name = turn.incoming.command or ""
        if name not in COMMANDS:
            return []  # other bots' or other rooms' commands
        if conv is None:
            return [Reply(text=tr.t("support.staff.use_in_topic"))]
        return await self._act(turn, tr, conv, name, turn.incoming.args)

    async def _act(self, turn: Turn, tr: Translator, conv: HandoffConversation, action: str,
                   args: str) -> list[Reply]:
        desk = self.desk
        staff_id = turn.incoming.user_id
        me = await desk.staff_name(staff_id)
        now = turn.now
        if action == "take":
            transition = await desk.store.take(conv.id or 0, staff_id, now=now)
            if not transition.changed:
                return [Reply(text=tr.t("support.staff.already_yours"))]
            desk.refresh_card(conv.id)
            await desk.tell_member(await self._member(conv), "support.taken", name=me)
            return [Reply(text=tr.t("support.staff.took", name=me))]
        if action == "handback":
            await desk.store.hand_back(conv.id or 0, staff_id, now=now)
            desk.refresh_card(conv.id)
            await desk.tell_member(await self._member(conv), "support.handed_back")
            return [Reply(text=tr.t("support.staff.handed_back", name=me))]
        if action == "close":
            return await self._close(turn, tr, conv, me)
        if action == "note":
            text = args.strip()
            if not text:
                return [Reply(text=tr.t("support.staff.note_empty"))]
            await desk.store.record_message(conv.id or 0, "note", staff_message_id=turn.incoming.message_id,
                                            staff_id=staff_id, text=text, now=now)
            return [Reply(text=tr.t("support.staff.note_saved"))]
        if action in ("block", "unblock"):
            blocked = action == "block"
            closing = await desk.store.set_blocked(conv.member_id, blocked, staff_id=staff_id, now=now)
            log.info("staff %s support for member %d", "blocked" if blocked else "unblocked", conv.member_id)
            if closing is not None and closing.changed:
                desk.refresh_card(conv.id)
                await desk.close_topic(closing.conversation)
            key = "support.staff.blocked" if blocked else "support.staff.unblocked"
            return [Reply(text=tr.t(key, name=me))]
        return []

    async def _close(self, turn: Turn, tr: Translator, conv: HandoffConversation, me: str) -> list[Reply]:
        desk, staff_id = self.desk, turn.incoming.user_id
        transition = await desk.store.close(conv.id or 0, actor=actor_staff(staff_id), staff_id=staff_id,
                                            now=turn.now)
        if not transition.changed:
            return [Reply(text=tr.t("error.handoff_closed"))]
        closed = transition.conversation
        desk.refresh_card(conv.id)
        member = await self._member(conv)
        await desk.tell_member(member, "support.closed", buttons=reopen_button(desk.member_tr(member), closed))
        survey = await desk.csat(closed, member, turn.now)
        if survey is not None and member.chat_id is not None:
            await desk.send_member(member, Outgoing(chat_id=member.chat_id, text=survey.text, buttons=survey.buttons))
        # The topic closes after the notice is out (the relay queue may hold more for it).
        desk.close_topic_when_posted(closed)
        return [Reply(text=tr.t("support.staff.closed", name=me))]

    async def _member(self, conv: HandoffConversation) -> Member:
        member: Member = await self.desk.loyalty.member(conv.member_id)
        return member

    async def _relay_message(self, turn: Turn, tr: Translator, conv: HandoffConversation) -> list[Reply]:
        desk, incoming = self.desk, turn.incoming
        staff_id = incoming.user_id
        if conv.state == CLOSED:
            return [Reply(text=tr.t("support.staff.not_sent_closed"))]
        if conv.state != HUMAN or conv.staff_id != staff_id:
            # Answering a waiting member takes the conversation (atomically, like /take).
            try:
                transition = await desk.store.take(conv.id or 0, staff_id, now=turn.now)
            except ConversationHeld as held:
                holder = await desk.staff_name(held.params.get("holder"))
                return [Reply(text=tr.t("support.staff.not_sent_held", holder=holder))]
            conv = transition.conversation
            if transition.changed:
                desk.refresh_card(conv.id)
                await desk.tell_member(await self._member(conv), "support.taken", name=await desk.staff_name(staff_id))
        member = await self._member(conv)
        if desk.ctx.sender is None or member.chat_id is None or incoming.message_id is None:
            return [Reply(text=tr.t("support.staff.not_delivered"))]
        done = await desk.store.message_by_staff_copy(conv.id or 0, incoming.message_id)
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
            sent = await desk.copy_to_member(member, incoming.chat_id, incoming.message_id, caption)
            for piece in rest:
                await desk.send_member(member, Outgoing(chat_id=member.chat_id, text=piece, html=False))
        except Blocked:
            return [Reply(text=tr.t("support.staff.member_blocked_bot"))]
        except SendError as exc:
            log.info("staff message not delivered: %s", type(exc).__name__)
            return [Reply(text=tr.t("support.staff.not_delivered"))]
        await desk.store.record_message(conv.id or 0, "out", member_message_id=sent.message_id,
                                        staff_message_id=incoming.message_id, staff_id=staff_id,
                                        content_type=media.kind if media else "text", text=words, now=turn.now)
        return []

    async def _relay_edit(self, turn: Turn, conv: HandoffConversation) -> None:
        desk, incoming = self.desk, turn.incoming
        sender = desk.ctx.sender
        if incoming.message_id is None or incoming.text is None or sender is None:
            return
        row = await desk.store.message_by_staff_copy(conv.id or 0, incoming.message_id)
        if row is None or row.direction != "out" or row.member_message_id is None:
            return
        member = await self._member(conv)
        if member.chat_id is None:
            return
        try:
            await sender.edit_text(member.chat_id, int(row.member_message_id), incoming.text, html=False)
        except SendError as exc:
            log.info("staff edit not relayed: %s", type(exc).__name__)


__all__ = ["StaffSide"]
