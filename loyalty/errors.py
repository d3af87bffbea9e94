"""Named refusals: each says what the member (or staff, or a shop system) should be told.

`code` is the key of the message in the gettext catalogues (handlers translate it) and the
`error` field of an API 4xx answer; `params` fill the message's placeholders.
"""

from __future__ import annotations

from typing import Any


class Refusal(Exception):
    """A service said no; nothing was changed."""

    code = "refused"
    http_status = 422

    def __init__(self, detail: str = "", **params: Any) -> None:
        self.params = params
        self.detail = detail or self.__doc__ or self.code
        super().__init__(self.detail)


class UnknownMember(Refusal):
    """No such member."""

    code = "unknown_member"
    http_status = 404


class MemberErased(Refusal):
    """The member's data was erased."""

    code = "member_erased"
    http_status = 410


class TermsRequired(Refusal):
    """The terms must be accepted to join."""

    code = "terms_required"


class InvalidBirthday(Refusal):
    """The birthday is not a plausible date."""

    code = "invalid_birthday"


class InvalidSetting(Refusal):
    """A setting has a value that cannot be used."""

    code = "invalid_setting"


class InvalidAmount(Refusal):
    """The amount must be a positive number."""

    code = "invalid_amount"


class PurchaseConflict(Refusal):
    """The purchase id was already used for a different purchase."""

    code = "purchase_conflict"
    http_status = 409


class UnknownReferralCode(Refusal):
    """No member has that referral code."""

    code = "unknown_referral_code"
    http_status = 404


class SelfReferral(Refusal):
    """A member cannot use their own referral link."""

    code = "self_referral"


class NotANewcomer(Refusal):
    """Referral links are for people joining now; this member joined earlier (or has bought already)."""

    code = "not_a_newcomer"


class AlreadyReferred(Refusal):
    """This member already joined through a referral link."""

    code = "already_referred"
    http_status = 409


class ReferralsClosed(Refusal):
    """The programme has no referrals at the moment."""

    code = "referrals_closed"


class UnknownPurchase(Refusal):
    """No purchase with that id."""

    code = "unknown_purchase"
    http_status = 404


class RefundTooLarge(Refusal):
    """The refund is larger than what is left of the purchase."""

    code = "refund_too_large"


class UnknownReward(Refusal):
    """No such reward."""

    code = "unknown_reward"
    http_status = 404


class RewardUnavailable(Refusal):
    """The reward is not offered right now."""

    code = "reward_unavailable"


class OutOfStock(Refusal):
    """The reward is out of stock."""

    code = "out_of_stock"


class TierTooLow(Refusal):
    """The member's tier cannot take this reward yet."""

    code = "tier_too_low"


class LimitReached(Refusal):
    """The member already has as many of this reward as allowed."""

    code = "limit_reached"


class NotEnoughPoints(Refusal):
    """The member's balance does not cover the reward."""

    code = "not_enough_points"


class UnknownCoupon(Refusal):
    """No coupon with that code."""

    code = "unknown_coupon"
    http_status = 404


class CouponExpired(Refusal):
    """The coupon has expired."""

    code = "coupon_expired"


class CouponAlreadyUsed(Refusal):
    """The coupon was already used."""

    code = "coupon_used"


class CouponVoid(Refusal):
    """The coupon was voided."""

    code = "coupon_void"


class NotPermitted(Refusal):
    """Only staff may do that."""

    code = "not_permitted"
    http_status = 403


class ReasonRequired(Refusal):
    """A reason is required."""

    code = "reason_required"


class InvalidAdjustment(Refusal):
    """The adjustment is not a non-zero whole number of points."""

    code = "invalid_adjustment"


class ScoreOutOfRange(Refusal):
    """The score is outside the survey's scale."""

    code = "score_out_of_range"


class UnknownSurvey(Refusal):
    """No such survey for this member."""

    code = "unknown_survey"
    http_status = 404


class SurveyClosed(Refusal):
    """The survey was already answered or has closed."""

    code = "survey_closed"
    http_status = 409


class InvalidFeedback(Refusal):
    """Feedback must be some text (or a rating), not too long."""

    code = "invalid_feedback"


class UnknownFeedback(Refusal):
    """There is no such feedback."""

    code = "unknown_feedback"
    http_status = 404


class FeedbackClosed(Refusal):
    """The feedback was closed; it takes no reply."""

    code = "feedback_closed"


class InvalidReply(Refusal):
    """A reply must be some text, not too long, without control characters."""

    code = "invalid_reply"


# --- the counter (staff at the till): typed amounts, look-ups, undo -----------------------------------


class AmountFormat(InvalidAmount):
    """The typed amount is not plain digits with at most one decimal separator and two decimals."""

    code = "amount_format"


class AmountTooLarge(InvalidAmount):
    """The typed amount is above the counter's limit."""

    code = "amount_too_large"


class UndoExpired(Refusal):
    """The purchase is too old to be undone at the counter."""

    code = "undo_expired"
    http_status = 409


class UndoNotPossible(Refusal):
    """Only an untouched counter purchase can be undone, by whoever recorded it (or an operator)."""

    code = "undo_not_possible"
    http_status = 409


class InvalidItems(Refusal):
    """The purchase's items or store cannot be read; the detail names the field."""

    code = "invalid_items"


class UnknownStampCard(Refusal):
    """No stamp card with that code in the programme."""

    code = "unknown_stamp_card"
    http_status = 404
