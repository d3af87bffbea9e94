"""A small world for the console's member pages: two members with purchases, a refund, a coupon, feedback,
a survey answer with a comment, a tier change and a support conversation with messages."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

from loyalbot.loyalty import Loyalty
from loyalbot.storage import Db, utcnow
from loyalbot.storage.models import HandoffConversation, HandoffEvent, HandoffMessage, Staff, TierChange


@dataclass
class World:
    ann_id: int
    ann_no: str
    bob_id: int
    bob_no: str
    coupon_id: int
    coupon_code: str
    feedback_id: int
    conversation_id: int


async def build_world(db: Db, loyalty: Loyalty) -> World:
    now = utcnow()
    ann = await loyalty.register_member(telegram_id=9101, first_name="Annabel", last_name="Smith-Jones",
                                        phone="31612345678", terms_accepted=True, marketing_consent=True,
                                        language="en", now=now - timedelta(days=40))
    bob = await loyalty.register_member(telegram_id=9102, first_name="Bob", last_name="Quist", terms_accepted=True,
                                        language="zh_Hans", now=now - timedelta(days=20))
    assert ann.id is not None and bob.id is not None
    await loyalty.award_purchase(ann.id, external_id="till-1", amount=Decimal("420.00"),
                                 occurred_at=now - timedelta(days=10))
    await loyalty.refund_purchase("till-1", refund_id="till-1-r", amount=Decimal("20.00"))
    items = await loyalty.catalogue(ann.id)
    coffee = next(i.reward for i in items if i.reward.code == "coffee")
    redeemed = await loyalty.redeem_reward(ann.id, coffee.id or 0, request_id="r-1")
    feedback = await loyalty.record_feedback(ann.id, "The oat latte was cold <b>twice</b>.", rating=2)
    survey = await loyalty.open_survey(ann.id, "nps", trigger="manual")
    assert survey is not None and survey.id is not None
    await loyalty.record_survey_answer(ann.id, survey.id, 9, comment="Friendly staff, slow queue.")
    async with db.transaction() as tx:
        tx.add(TierChange(member_id=ann.id, from_tier="green", to_tier="silver", reason="spend", created_at=now))
        tx.add(Staff(telegram_id=777, role="agent", name="Sam"))
        conv = HandoffConversation(member_id=ann.id, state="closed", staff_id=777, opened_at=now - timedelta(hours=2),
                                   first_response_at=now - timedelta(hours=2) + timedelta(seconds=95),
                                   first_response_seconds=95, closed_at=now - timedelta(hours=1),
                                   resolution_seconds=3600)
        tx.add(conv)
        await tx.flush()
        assert conv.id is not None
        tx.add_all([
            HandoffEvent(conversation_id=conv.id, from_state="bot", to_state="waiting", actor="member",
                         created_at=now - timedelta(hours=2)),
            HandoffEvent(conversation_id=conv.id, from_state="waiting", to_state="human", actor="staff:777",
                         created_at=now - timedelta(hours=2) + timedelta(seconds=95)),
            HandoffMessage(conversation_id=conv.id, direction="in", text="Where is my coupon?",
                           created_at=now - timedelta(hours=2)),
            HandoffMessage(conversation_id=conv.id, direction="out", staff_id=777, text="Under /coupons.",
                           created_at=now - timedelta(hours=1, minutes=50)),
        ])
        conv_id = conv.id
    return World(ann_id=ann.id, ann_no=ann.member_no, bob_id=bob.id, bob_no=bob.member_no,
                 coupon_id=redeemed.coupon.id or 0, coupon_code=redeemed.coupon.code, feedback_id=feedback.id or 0,
                 conversation_id=conv_id)
