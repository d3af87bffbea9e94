"""The feedback inbox: an operator answers a member's feedback through the bot, or closes it.

A feedback item is new, answered (a reply went to the member) or closed. The reply is an outbox row with
the idempotency key ``feedback-reply:<feedback id>``, written in the transaction that marks the feedback
answered, so the dispatcher sends it at Telegram's limits exactly once: a second post of the same reply
(a double click, a reload) finds the row and changes nothing. One reply per feedback item.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlmodel import select

from loyalbot.chat.i18n import Translator
from loyalbot.loyalty import errors
from loyalbot.storage import Db, as_utc, utcnow
from loyalbot.storage.models import AuditLog, Feedback, Member, Outbox

# Telegram takes 4096 characters a message; the reply's heading ("A reply to your feedback #12:") fits in the rest.
MAX_REPLY_CHARS = 4000
REPLY_KIND = "feedback_reply"
STATES = ("new", "answered", "closed")
_ALLOWED_CONTROLS = {"\n", "\t", "\r"}


def reply_key(feedback_id: int) -> str:
    """The outbox idempotency key of the reply to one feedback item."""
    return f"feedback-reply:{feedback_id}"


def check_reply(text: str | None) -> str:
    """The reply as it will be sent, or InvalidReply: not empty, at most MAX_REPLY_CHARS, no control characters."""
    text = (text or "").replace("\r\n", "\n").strip()
    if not text or len(text) > MAX_REPLY_CHARS:
        raise errors.InvalidReply(limit=MAX_REPLY_CHARS)
    if any((ord(ch) < 32 or 0x7F <= ord(ch) < 0xA0) and ch not in _ALLOWED_CONTROLS for ch in text):
        raise errors.InvalidReply("the reply holds control characters", limit=MAX_REPLY_CHARS)
    return text


@dataclass(frozen=True)
class FeedbackReply:
    """What answering a feedback item did: its outbox row, and whether it was there already (`repeated`)."""

    feedback: Feedback
    outbox_id: int
    status: str  # the outbox row's: pending, or skipped (no chat, unreachable)
    repeated: bool


class FeedbackInbox:
    """Replies to feedback and closing it, each audited with the operator as actor."""

    def __init__(self, db: Db) -> None:
        self.db = db

    async def reply_to_feedback(self, feedback_id: int, text: str, *, actor: str,
                                now: datetime | None = None) -> FeedbackReply:
        """Send `text` to the member who gave the feedback (through the outbox) and mark it answered.
        A repeat (the same item answered again) returns the first reply and sends nothing new."""
        now = as_utc(now or utcnow())
        text = check_reply(text)
        async with self.db.transaction() as tx:
            feedback = (await tx.execute(select(Feedback).where(Feedback.id == feedback_id).with_for_update()
                                         .execution_options(populate_existing=True))).scalar_one_or_none()
            if feedback is None:
                raise errors.UnknownFeedback()
            sent = (await tx.execute(select(Outbox.id, Outbox.status)
                                     .where(Outbox.idempotency_key == reply_key(feedback_id)))).first()
            if sent is not None:
                return FeedbackReply(feedback=feedback, outbox_id=int(sent[0] or 0), status=str(sent[1]), repeated=True)
            if feedback.state == "closed":
                raise errors.FeedbackClosed()
            member = await tx.get(Member, feedback.member_id)
            if member is None:
                raise errors.UnknownMember()
            if member.status == "erased":
                raise errors.MemberErased()
            reason = "unreachable" if member.status == "unreachable" else "no_chat" if member.chat_id is None else None
            message = Translator(member.language).t("feedback.reply", ref=f"#{feedback_id}", text=text)
            row = Outbox(idempotency_key=reply_key(feedback_id), schedule_id=None, member_id=member.id or 0,
                         chat_id=member.chat_id or 0, kind=REPLY_KIND, period=f"feedback:{feedback_id}",
                         text=message, buttons=[], status="skipped" if reason else "pending", skip_reason=reason,
                         not_before=now, created_at=now)
            tx.add(row)
            feedback.state, feedback.reply = "answered", text
            feedback.answered_at, feedback.answered_by = now, actor[:64]
            tx.add(feedback)
            tx.add(AuditLog(actor=actor[:64], action="feedback_reply", member_id=feedback.member_id, created_at=now,
                            details={"feedback": feedback_id, "chars": len(text), "skipped": reason}))
            await tx.flush()
            return FeedbackReply(feedback=feedback, outbox_id=row.id or 0, status=row.status, repeated=False)

    async def close_feedback(self, feedback_id: int, *, actor: str, now: datetime | None = None) -> Feedback:
        """Close a feedback item (answered or not); closing it again changes nothing."""
        now = as_utc(now or utcnow())
        async with self.db.transaction() as tx:
            feedback = (await tx.execute(select(Feedback).where(Feedback.id == feedback_id).with_for_update()
                                         .execution_options(populate_existing=True))).scalar_one_or_none()
            if feedback is None:
                raise errors.UnknownFeedback()
            if feedback.state == "closed":
                return feedback
            feedback.state, feedback.closed_at = "closed", now
            tx.add(feedback)
            tx.add(AuditLog(actor=actor[:64], action="feedback_close", member_id=feedback.member_id,
                            details={"feedback": feedback_id}, created_at=now))
            return feedback


__all__ = ["MAX_REPLY_CHARS", "REPLY_KIND", "STATES", "FeedbackInbox", "FeedbackReply", "check_reply", "reply_key"]
