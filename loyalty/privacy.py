"""Privacy: a member's data exported as one document, and erased on request."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlmodel import col, select

from loyalbot.loyalty.events import Events, MemberErased
from loyalbot.loyalty.handoff import CLOSED, OPEN_STATES, HandoffStore
from loyalbot.loyalty.ledger import consume
from loyalbot.loyalty.members import NOTIFY_KINDS, Members, lock_member
from loyalbot.loyalty.programme import FollowsProgramme, ProgrammeInForce
from loyalbot.storage import Db, as_utc, utcnow
from loyalbot.storage.inbox import remember_effect
from loyalbot.storage.models import (
    AuditLog,
    BonusGrant,
    ConversationState,
    Coupon,
    Feedback,
    HandoffConversation,
    HandoffMessage,
    InboxUpdate,
    LedgerEntry,
    Outbox,
    PendingPoints,
    Purchase,
    Referral,
    ReferralCode,
    StampCard,
    Survey,
    SurveyAnswer,
    TierChange,
)


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return as_utc(value).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    return value


class Privacy(FollowsProgramme):
    """What a member may ask of their data: a copy of it, or its erasure."""

    def __init__(self, db: Db, programme: ProgrammeInForce, events: Events, members: Members) -> None:
        self.db = db
        self._in_force = programme
        self.events = events
        self.members = members

    async def export_member_data(self, member_id: int, *, actor: str | None = None) -> dict[str, Any]:
        """Everything stored about the member, as a JSON-ready document. With `actor` (an operator exporting
        it from the console, not the member asking in the chat) the export is audited."""
        member = await self.members.member(member_id)
        if actor is not None:
            async with self.db.transaction() as tx:
                tx.add(AuditLog(actor=actor[:64], action="export", member_id=member_id, created_at=utcnow()))

        def dump(obj: Any, drop: tuple[str, ...] = ()) -> dict[str, Any]:
            data = obj.model_dump(exclude=set(drop))
            return {k: _jsonable(v) for k, v in data.items()}

        async with self.db.read() as s:
            async def rows(model: Any, where: Any, order: Any) -> list[Any]:
                return list((await s.execute(select(model).where(where).order_by(order))).scalars())

            ledger = await rows(LedgerEntry, LedgerEntry.member_id == member_id, LedgerEntry.id)
            purchases = await rows(Purchase, Purchase.member_id == member_id, Purchase.id)
            coupons = await rows(Coupon, Coupon.member_id == member_id, Coupon.id)
            feedback = await rows(Feedback, Feedback.member_id == member_id, Feedback.id)
            surveys = await rows(Survey, Survey.member_id == member_id, Survey.id)
            answers = await rows(SurveyAnswer, SurveyAnswer.member_id == member_id, SurveyAnswer.id)
            tiers = await rows(TierChange, TierChange.member_id == member_id, TierChange.id)
            cards = await rows(StampCard, StampCard.member_id == member_id, StampCard.id)
            bonuses = await rows(BonusGrant, BonusGrant.member_id == member_id, BonusGrant.id)
            conversations = await rows(HandoffConversation, HandoffConversation.member_id == member_id,
                                       HandoffConversation.id)
            messages = await rows(HandoffMessage, col(HandoffMessage.conversation_id).in_(
                [c.id for c in conversations] or [-1]), HandoffMessage.id)
            pending = await rows(PendingPoints, PendingPoints.member_id == member_id, PendingPoints.id)
            code = await s.get(ReferralCode, member_id)
            joined_by = await rows(Referral, Referral.newcomer_id == member_id, Referral.id)
            referred = await rows(Referral, Referral.referrer_id == member_id, Referral.id)
        # Cards and notices the bot posted to staff are the bot's own records, not the member's data.
        messages = [m for m in messages if m.direction in ("in", "out")]
        return {
            "exported_at": _jsonable(utcnow()),
            "programme": self.programme.programme.name,
            "member": dump(member),
            "ledger": [dump(e) for e in ledger],
            "purchases": [dump(p) for p in purchases],
            "coupons": [dump(c) for c in coupons],
            "feedback": [dump(f) for f in feedback],
            "surveys": [dump(x) for x in surveys],
            "survey_answers": [dump(a) for a in answers],
            "tier_changes": [dump(t) for t in tiers],
            "stamp_cards": [dump(c) for c in cards],
            "bonus_grants": [dump(b) for b in bonuses],
            "support_conversations": [dump(c) for c in conversations],
            "support_messages": [dump(m, ("staff_id",)) for m in messages],
            "pending_points": [dump(p) for p in pending],
            "referral_code": code.code if code else None,
            "joined_through_a_referral": [dump(r, ("referrer_id",)) for r in joined_by],
            # the friends they brought, without naming them (another member's data)
            "referrals_made": [dump(r, ("newcomer_id", "purchase_id")) for r in referred],
        }

    async def erase_member(self, member_id: int, *, actor: str, now: datetime | None = None,
                           update_key: str | None = None) -> None:
        """Erase the member's personal data. The ledger stays, anonymised, so the books still add up;
        the remaining balance is forfeited (recorded as an adjust entry), active coupons are voided.

        Every outbox row of the member, whatever its status, loses its text, buttons and chat id (rows
        not yet sent, `sending` included, are skipped as ``erased``); support messages lose their words
        and open conversations are closed. The staff topic is left to support, told by `MemberErased`
        after the commit (and found again at start-up if the process stops first)."""
        now = as_utc(now or utcnow())
        async with self.db.transaction() as tx:
            member = await lock_member(tx, member_id)
            if member.balance:
                forfeited = member.balance
                await consume(tx, member, forfeited)
                tx.add(LedgerEntry(member_id=member_id, kind="adjust", delta=-forfeited,
                                   note="forfeited on erasure", reference="erasure", created_at=now))
                member.balance = 0
            if member.telegram_id is not None:
                await tx.execute(sa.delete(ConversationState)
                                 .where(col(ConversationState.user_id) == member.telegram_id))
                # The updates they sent, as recorded on arrival: the lane names their Telegram id, and a
                # handled one keeps no payload (the one being handled now loses its payload when done).
                lane = f"erased:{member_id}"
                await tx.execute(sa.update(InboxUpdate).where(col(InboxUpdate.lane) == f"u:{member.telegram_id}")
                                 .values(lane=lane))
                await tx.execute(sa.update(InboxUpdate)
                                 .where(col(InboxUpdate.lane) == lane, col(InboxUpdate.status) != "pending")
                                 .values(payload=None))
            for attr in ("telegram_id", "chat_id", "first_name", "last_name", "birthday", "phone", "quiet_start",
                         "quiet_end", "last_activity_at"):
                setattr(member, attr, None)
            member.status, member.erased_at, member.marketing_consent = "erased", now, False
            member.notify = {k: False for k in NOTIFY_KINDS}
            tx.add(member)
            # Points still pending never clear for an erased member, and their link stops working.
            await tx.execute(sa.update(PendingPoints).where(col(PendingPoints.member_id) == member_id,
                                                            col(PendingPoints.status) == "pending")
                             .values(status="cancelled", cleared_at=now))
            await tx.execute(sa.delete(ReferralCode).where(col(ReferralCode.member_id) == member_id))
            await tx.execute(sa.update(Feedback).where(col(Feedback.member_id) == member_id)
                             .values(text="[erased]"))
            await tx.execute(sa.update(SurveyAnswer).where(col(SurveyAnswer.member_id) == member_id)
                             .values(comment=None))
            await tx.execute(sa.update(Coupon)
                             .where(col(Coupon.member_id) == member_id, col(Coupon.status) == "active")
                             .values(status="void"))
            await tx.execute(sa.update(Survey)
                             .where(col(Survey.member_id) == member_id, col(Survey.status) == "open")
                             .values(status="expired"))
            await tx.execute(sa.update(Outbox).where(col(Outbox.member_id) == member_id,
                                                     col(Outbox.status).in_(("pending", "sending")))
                             .values(status="skipped", skip_reason="erased", claimed_by=None))
            await tx.execute(sa.update(Outbox).where(col(Outbox.member_id) == member_id)
                             .values(text="", buttons=[], chat_id=0))
            conv_ids = select(HandoffConversation.id).where(col(HandoffConversation.member_id) == member_id)
            await tx.execute(sa.update(HandoffMessage).where(col(HandoffMessage.conversation_id).in_(conv_ids))
                             .values(text=None))
            open_conversations = (await tx.execute(
                select(HandoffConversation).where(HandoffConversation.member_id == member_id,
                                                  col(HandoffConversation.state).in_(OPEN_STATES))
                .with_for_update())).scalars().all()
            for conv in open_conversations:
                HandoffStore._move(tx, conv, CLOSED, actor[:64], now)  # noqa: SLF001 - the one place that moves
                conv.closed_at = now
                conv.resolution_seconds = max(0, int((now - as_utc(conv.opened_at)).total_seconds()))
            tx.add(AuditLog(actor=actor[:64], action="erase", member_id=member_id, created_at=now))
            if update_key:  # the member's own "yes": a replay of it is told "erased" again, not "join first"
                await remember_effect(tx, f"erase:{update_key}", {"lang": member.language}, now=now)
        await self.events.emit(MemberErased(member_id))


__all__ = ["Privacy"]
