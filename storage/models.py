"""The SQL store's tables: members, the points ledger, the catalogue, coupons, surveys, schedules, outbox, handoff.

Every timestamp is an aware UTC datetime (SQLModel's UTCDateTime); `storage.clock.utcnow()` makes one.
Changing a table here needs a new Alembic revision (`alembic revision --autogenerate`); a test fails
when the models and the migrations drift apart.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from loyalbot.storage.clock import utcnow
from loyalbot.storage.rows import table_of

# Constraint names are fixed so that Alembic migrations are the same on SQLite and PostgreSQL.
SQLModel.metadata.naming_convention = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

JSON = sa.JSON()
MONEY = sa.Numeric(14, 2)


def _json(default: Any = None) -> Any:
    factory = (lambda: dict(default)) if isinstance(default, dict) else (lambda: list(default or []))
    return Field(default_factory=factory, sa_column=sa.Column(JSON, nullable=False))


class Member(SQLModel, table=True):
    """A person in the programme; personal fields are emptied by erasure, the row stays for the books."""

    __tablename__ = "members"

    id: int | None = Field(default=None, primary_key=True)
    telegram_id: int | None = Field(default=None, sa_column=sa.Column(sa.BigInteger, unique=True))
    chat_id: int | None = Field(default=None, sa_column=sa.Column(sa.BigInteger))
    member_no: str = Field(sa_column=sa.Column(sa.String(16), unique=True, nullable=False))
    first_name: str | None = Field(default=None, max_length=128)
    last_name: str | None = Field(default=None, max_length=128)
    language: str = Field(default="en", max_length=16)
    timezone: str = Field(default="UTC", max_length=64)
    birthday: date | None = None
    phone: str | None = Field(default=None, max_length=32)
    terms_accepted_at: datetime | None = None
    marketing_consent: bool = False
    marketing_consent_at: datetime | None = None
    # active | unreachable (bot blocked) | erased
    status: str = Field(default="active", max_length=16, index=True)
    tier: str = Field(default="", max_length=32, index=True)
    tier_since: datetime | None = None
    balance: int = 0
    # Which message kinds the member wants: care, reminders, surveys, offers -> bool.
    notify: dict[str, bool] = _json({"care": True, "reminders": True, "surveys": True, "offers": True})
    quiet_start: int | None = None  # minutes after local midnight
    quiet_end: int | None = None
    support_blocked: bool = False
    joined_at: datetime = Field(default_factory=utcnow)
    last_activity_at: datetime | None = None
    last_purchase_at: datetime | None = None
    erased_at: datetime | None = None

    __table_args__ = (sa.CheckConstraint("balance >= 0", name="balance_not_negative"),)


class LedgerEntry(SQLModel, table=True):
    """One movement of points. Append-only; an earn entry is also a lot whose `remaining` is spent down."""

    __tablename__ = "ledger_entries"

    id: int | None = Field(default=None, primary_key=True)
    member_id: int = Field(foreign_key="members.id", index=True)
    # earn | redeem | expire | adjust | refund | bonus
    kind: str = Field(max_length=16)
    delta: int
    expires_at: datetime | None = None
    remaining: int | None = None
    reference: str | None = Field(default=None, max_length=128)
    purchase_id: int | None = Field(default=None, foreign_key="purchases.id")
    note: str | None = Field(default=None, max_length=500)
    created_at: datetime = Field(default_factory=utcnow)

    __table_args__ = (
        sa.CheckConstraint("remaining IS NULL OR remaining >= 0", name="remaining_not_negative"),
        sa.Index("ix_ledger_lots_open", "member_id", "expires_at", "remaining"),
    )


class Purchase(SQLModel, table=True):
    """A purchase reported by a shop; `external_id` makes a repeated report a no-op."""

    __tablename__ = "purchases"

    id: int | None = Field(default=None, primary_key=True)
    external_id: str = Field(sa_column=sa.Column(sa.String(128), unique=True, nullable=False))
    member_id: int = Field(foreign_key="members.id", index=True)
    amount: Decimal = Field(sa_column=sa.Column(MONEY, nullable=False))
    currency: str = Field(default="EUR", max_length=3)
    occurred_at: datetime
    points_awarded: int = 0
    refunded_amount: Decimal = Field(default=Decimal("0"), sa_column=sa.Column(MONEY, nullable=False))
    points_refunded: int = 0
    refund_shortfall: int = 0
    source: str = Field(default="api", max_length=32)
    recorded_by: int | None = Field(default=None, sa_column=sa.Column(sa.BigInteger))
    created_at: datetime = Field(default_factory=utcnow)


class Refund(SQLModel, table=True):
    """A refund of part of a purchase; `external_id` makes a repeated refund a no-op."""

    __tablename__ = "refunds"

    id: int | None = Field(default=None, primary_key=True)
    external_id: str = Field(sa_column=sa.Column(sa.String(128), unique=True, nullable=False))
    purchase_id: int = Field(foreign_key="purchases.id", index=True)
    amount: Decimal = Field(sa_column=sa.Column(MONEY, nullable=False))
    points_taken: int = 0
    shortfall: int = 0
    pending_cancelled: int = 0  # points of the purchase still pending that the refund cancelled
    created_at: datetime = Field(default_factory=utcnow)


class PendingPoints(SQLModel, table=True):
    """A purchase's points inside its return window: in no balance and no ledger until cleared, when they
    become a lot (`entry_id`); a refund meanwhile lowers `points` (status cancelled when none is left).

    One row per purchase and `reason`: "purchase" for its own points, "bonus:<code>" for each bonus campaign
    it earned (loyalty/bonuses.py), which waits with it and clears as a bonus lot."""

    __tablename__ = "pending_points"

    id: int | None = Field(default=None, primary_key=True)
    member_id: int = Field(foreign_key="members.id", index=True)
    purchase_id: int = Field(foreign_key="purchases.id")
    reason: str = Field(default="purchase", sa_column=sa.Column(sa.String(40), nullable=False,
                                                                server_default="purchase"))
    points: int
    lot_expires_at: datetime
    available_at: datetime
    # pending | cleared | cancelled
    status: str = Field(default="pending", max_length=16)
    entry_id: int | None = Field(default=None, foreign_key="ledger_entries.id")
    created_at: datetime = Field(default_factory=utcnow)
    cleared_at: datetime | None = None

    __table_args__ = (
        sa.CheckConstraint("points >= 0", name="points_not_negative"),
        sa.Index("ix_pending_points_due", "status", "available_at"),
        sa.UniqueConstraint("purchase_id", "reason"),
    )


class ReferralCode(SQLModel, table=True):
    """A member's referral code (random, made once, kept): the payload of their t.me/<bot>?start= link."""

    __tablename__ = "referral_codes"

    member_id: int = Field(sa_column=sa.Column(sa.Integer, sa.ForeignKey("members.id"), primary_key=True))
    code: str = Field(sa_column=sa.Column(sa.String(32), unique=True, nullable=False))
    created_at: datetime = Field(default_factory=utcnow)


class Referral(SQLModel, table=True):
    """A newcomer who joined through a member's link; one per newcomer. joined -> rewarded (both were
    rewarded once the first qualifying purchase cleared) or void (that purchase was refunded)."""

    __tablename__ = "referrals"

    id: int | None = Field(default=None, primary_key=True)
    referrer_id: int = Field(foreign_key="members.id", index=True)
    newcomer_id: int = Field(sa_column=sa.Column(sa.Integer, sa.ForeignKey("members.id"), unique=True,
                                                 nullable=False))
    # joined | rewarded | void
    status: str = Field(default="joined", max_length=16, index=True)
    purchase_id: int | None = Field(default=None, foreign_key="purchases.id")
    created_at: datetime = Field(default_factory=utcnow)
    settled_at: datetime | None = None


class Tier(SQLModel, table=True):
    """A tier of the programme, mirrored from the programme file."""

    __tablename__ = "tiers"

    code: str = Field(primary_key=True, max_length=32)
    rank: int
    names: dict[str, str] = _json({})  # language -> name
    threshold: Decimal = Field(sa_column=sa.Column(MONEY, nullable=False))
    multiplier: Decimal = Field(default=Decimal("1"), sa_column=sa.Column(sa.Numeric(6, 3), nullable=False))


class TierChange(SQLModel, table=True):
    """Why and when a member moved between tiers."""

    __tablename__ = "tier_changes"

    id: int | None = Field(default=None, primary_key=True)
    member_id: int = Field(foreign_key="members.id", index=True)
    from_tier: str = Field(max_length=32)
    to_tier: str = Field(max_length=32)
    reason: str = Field(max_length=200)
    created_at: datetime = Field(default_factory=utcnow)


class Reward(SQLModel, table=True):
    """An item of the catalogue that points can buy."""

    __tablename__ = "rewards"

    id: int | None = Field(default=None, primary_key=True)
    code: str = Field(sa_column=sa.Column(sa.String(64), unique=True, nullable=False))
    titles: dict[str, str] = _json({})  # language -> text
    descriptions: dict[str, str] = _json({})
    cost: int
    stock: int | None = None  # None: unlimited
    per_member_limit: int | None = None
    validity_days: int = 30
    min_tier: str | None = Field(default=None, max_length=32)
    active_from: datetime | None = None
    active_until: datetime | None = None
    active: bool = True
    sort_order: int = 0

    __table_args__ = (sa.CheckConstraint("stock IS NULL OR stock >= 0", name="stock_not_negative"),)


class Coupon(SQLModel, table=True):
    """A reward issued to a member; used once at the counter by staff."""

    __tablename__ = "coupons"

    id: int | None = Field(default=None, primary_key=True)
    code: str = Field(sa_column=sa.Column(sa.String(32), unique=True, nullable=False))
    request_id: str = Field(sa_column=sa.Column(sa.String(128), unique=True, nullable=False))
    reward_id: int = Field(foreign_key="rewards.id", index=True)
    member_id: int = Field(foreign_key="members.id", index=True)
    points_spent: int
    # active | used | expired | void
    status: str = Field(default="active", max_length=16, index=True)
    issued_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime
    used_at: datetime | None = None
    used_by: int | None = Field(default=None, sa_column=sa.Column(sa.BigInteger))


class Feedback(SQLModel, table=True):
    """Free-text feedback from a member, with an optional 1-5 rating."""

    __tablename__ = "feedback"

    id: int | None = Field(default=None, primary_key=True)
    member_id: int = Field(foreign_key="members.id", index=True)
    text: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    rating: int | None = None
    created_at: datetime = Field(default_factory=utcnow)
    # The console's inbox: new | answered (an operator replied through the bot) | closed
    state: str = Field(default="new", sa_column=sa.Column(sa.String(16), nullable=False, server_default="new",
                                                          index=True))
    reply: str | None = Field(default=None, sa_column=sa.Column(sa.Text))
    answered_at: datetime | None = None
    answered_by: str | None = Field(default=None, max_length=64)  # "console:<operator name>"
    closed_at: datetime | None = None


class Survey(SQLModel, table=True):
    """A satisfaction question put to a member (CSAT 1-5 or NPS 0-10) and what triggered it."""

    __tablename__ = "surveys"

    id: int | None = Field(default=None, primary_key=True)
    member_id: int = Field(foreign_key="members.id", index=True)
    kind: str = Field(max_length=8)  # csat | nps
    trigger: str = Field(max_length=16)  # schedule | coupon | handoff | manual
    trigger_ref: str | None = Field(default=None, max_length=64)
    schedule_id: int | None = Field(default=None, foreign_key="schedules.id")
    conversation_id: int | None = Field(default=None, foreign_key="handoff_conversations.id")
    staff_id: int | None = Field(default=None, sa_column=sa.Column(sa.BigInteger))
    status: str = Field(default="open", max_length=16, index=True)  # open | answered | expired
    created_at: datetime = Field(default_factory=utcnow)
    answered_at: datetime | None = None


class SurveyAnswer(SQLModel, table=True):
    """The member's answer to one survey: one per survey."""

    __tablename__ = "survey_answers"

    id: int | None = Field(default=None, primary_key=True)
    survey_id: int = Field(sa_column=sa.Column(sa.Integer, sa.ForeignKey("surveys.id"), unique=True, nullable=False))
    member_id: int = Field(foreign_key="members.id", index=True)
    kind: str = Field(max_length=8)
    score: int
    comment: str | None = Field(default=None, sa_column=sa.Column(sa.Text))
    staff_id: int | None = Field(default=None, sa_column=sa.Column(sa.BigInteger))
    created_at: datetime = Field(default_factory=utcnow)


class Schedule(SQLModel, table=True):
    """An operator's care message or reminder: when it runs, whom it reaches, what it says."""

    __tablename__ = "schedules"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(sa_column=sa.Column(sa.String(100), unique=True, nullable=False))
    # birthday | anniversary | winback | tier_change | points_expiry | coupon_expiry | nps | csat | broadcast
    kind: str = Field(max_length=32)
    enabled: bool = True
    cron: str | None = Field(default=None, max_length=100)
    daily_time: str | None = Field(default=None, max_length=5)  # "HH:MM"
    timezone: str = Field(default="UTC", max_length=64)
    member_local_time: bool = False
    offset_days: int = 0
    segment: dict[str, Any] = _json({})
    templates: dict[str, str] = _json({})  # language -> template source
    frequency_cap_days: int | None = None
    params: dict[str, Any] = _json({})
    one_off_at: datetime | None = None
    last_run_at: datetime | None = None
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    archived_at: datetime | None = None  # deleted after it had planned messages: kept as their history


def outbox_key(schedule_id: int, member_id: int, period: str) -> str:
    """The idempotency key of a scheduled outbox row: ``schedule:<schedule_id>:<member_id>:<period>``."""
    return f"schedule:{schedule_id}:{member_id}:{period}"


def _default_outbox_key(context: Any) -> str:
    # Rows inserted without a key (the ORM, Core executemany) get the scheduled form; a row without a
    # schedule must bring its own key, so it fails here instead of slipping past the unique constraint.
    row = context.get_current_parameters()
    if row.get("schedule_id") is None:
        raise ValueError("an outbox row without a schedule needs its own idempotency_key")
    return outbox_key(row["schedule_id"], row["member_id"], row["period"])


class Outbox(SQLModel, table=True):
    """A planned message; its `idempotency_key` is unique, so planning (or enqueueing) twice adds nothing new.

    Every row carries a key (NOT NULL, unique). Scheduled rows use ``schedule:<schedule_id>:<member_id>:<period>``
    (`outbox_key`; filled in when a scheduled row is inserted without one). Rows without a schedule (e.g.
    transactional messages) must set their own key, namespaced by what causes them, e.g.
    ``<kind>:<member_id>:<event id>``; they may not start with ``schedule:``. Rows that existed before keys
    did and had no schedule carry ``legacy:<id>``. (schedule, member, period) stays unique as well.
    """

    __tablename__ = "outbox"

    id: int | None = Field(default=None, primary_key=True)
    idempotency_key: str | None = Field(default=None, sa_column=sa.Column(
        sa.String(255), unique=True, nullable=False, default=_default_outbox_key))
    schedule_id: int | None = Field(default=None, foreign_key="schedules.id")
    # None only for a notice to the staff group (e.g. a campaign's stop-loss), which is about no member.
    member_id: int | None = Field(default=None, foreign_key="members.id", index=True)
    chat_id: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))
    kind: str = Field(max_length=32)
    period: str = Field(max_length=64)
    variant: str | None = Field(default=None, max_length=16)  # the A/B variant a campaign's row was rendered from
    text: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    buttons: list[list[dict[str, str]]] = _json([])  # rows of {text, data | url}
    survey_id: int | None = Field(default=None, foreign_key="surveys.id")
    # pending | sending | sent | failed | skipped
    status: str = Field(default="pending", max_length=16)
    skip_reason: str | None = Field(default=None, max_length=64)
    not_before: datetime = Field(default_factory=utcnow)
    attempts: int = 0
    last_error: str | None = Field(default=None, max_length=500)
    claimed_by: str | None = Field(default=None, max_length=64)
    claimed_at: datetime | None = None
    sent_at: datetime | None = None
    telegram_message_id: int | None = Field(default=None, sa_column=sa.Column(sa.BigInteger))
    created_at: datetime = Field(default_factory=utcnow)
    # A campaign's offer (scheduler/offers.py): the coupon the message promises, {"code", "reward_id",
    # "expires_at"}, fixed when planned so the text can show it; the coupon itself is issued (`coupon_id`)
    # in the transaction that hands the row over to Telegram, never for a row that is not sent.
    offer: dict[str, Any] | None = Field(default=None, sa_column=sa.Column(sa.JSON(none_as_null=True), nullable=True))
    coupon_id: int | None = Field(default=None, foreign_key="coupons.id")

    __table_args__ = (
        sa.UniqueConstraint("schedule_id", "member_id", "period", name="uq_outbox_schedule_member_period"),
        sa.Index("ix_outbox_due", "status", "not_before"),
    )


class CampaignHoldout(SQLModel, table=True):
    """A member a campaign's run kept back as its control group: recorded, sent nothing.

    One row per (schedule, member, period), the period being the outbox row's the member would have got, so
    a recurring schedule's control group is per run and planning a run twice records nobody twice.
    """

    __tablename__ = "campaign_holdouts"

    id: int | None = Field(default=None, primary_key=True)
    schedule_id: int = Field(foreign_key="schedules.id")
    member_id: int = Field(foreign_key="members.id", index=True)
    period: str = Field(max_length=64)
    assigned_at: datetime

    __table_args__ = (
        sa.UniqueConstraint("schedule_id", "member_id", "period", name="uq_campaign_holdouts_schedule_member_period"),
    )


class HandoffConversation(SQLModel, table=True):
    """A member's conversation with support; one state, changed in one place."""

    __tablename__ = "handoff_conversations"

    id: int | None = Field(default=None, primary_key=True)
    member_id: int = Field(foreign_key="members.id", index=True)
    # bot | waiting | human | closed
    state: str = Field(default="bot", max_length=16, index=True)
    topic_id: int | None = Field(default=None, sa_column=sa.Column(sa.BigInteger))
    staff_id: int | None = Field(default=None, sa_column=sa.Column(sa.BigInteger))
    opened_at: datetime = Field(default_factory=utcnow)
    first_response_at: datetime | None = None
    closed_at: datetime | None = None
    closed_by: int | None = Field(default=None, sa_column=sa.Column(sa.BigInteger))
    first_response_seconds: int | None = None
    resolution_seconds: int | None = None
    waiting_notice_at: datetime | None = None
    out_of_hours_notice_at: datetime | None = None


class HandoffEvent(SQLModel, table=True):
    """A state change of a handoff conversation: who moved it, from what to what, when."""

    __tablename__ = "handoff_events"

    id: int | None = Field(default=None, primary_key=True)
    conversation_id: int = Field(foreign_key="handoff_conversations.id", index=True)
    from_state: str = Field(max_length=16)
    to_state: str = Field(max_length=16)
    actor: str = Field(max_length=64)
    created_at: datetime = Field(default_factory=utcnow)


class HandoffMessage(SQLModel, table=True):
    """A relayed message, pairing the member's copy with the staff group's copy (so edits can follow)."""

    __tablename__ = "handoff_messages"

    id: int | None = Field(default=None, primary_key=True)
    conversation_id: int = Field(foreign_key="handoff_conversations.id", index=True)
    # in (member->staff) | out (staff->member) | note | card (summary card) | post (other bot posts in the topic)
    direction: str = Field(max_length=8)
    member_message_id: int | None = Field(default=None, sa_column=sa.Column(sa.BigInteger))
    staff_message_id: int | None = Field(default=None, sa_column=sa.Column(sa.BigInteger))
    staff_id: int | None = Field(default=None, sa_column=sa.Column(sa.BigInteger))
    content_type: str = Field(default="text", max_length=16)
    text: str | None = Field(default=None, sa_column=sa.Column(sa.Text))
    created_at: datetime = Field(default_factory=utcnow)


class Staff(SQLModel, table=True):
    """Someone allowed to act as staff: agent, operator or admin."""

    __tablename__ = "staff"

    telegram_id: int = Field(sa_column=sa.Column(sa.BigInteger, primary_key=True, autoincrement=False))
    role: str = Field(max_length=16)
    name: str | None = Field(default=None, max_length=128)
    added_at: datetime = Field(default_factory=utcnow)


class ApiKey(SQLModel, table=True):
    """A shop system's key for the HTTP API; only its hash is stored."""

    __tablename__ = "api_keys"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=100)
    prefix: str = Field(max_length=12)
    key_hash: str = Field(sa_column=sa.Column(sa.String(128), unique=True, nullable=False))
    created_at: datetime = Field(default_factory=utcnow)
    revoked_at: datetime | None = None
    last_used_at: datetime | None = None  # http: recorded on use, at most once a minute per key


class AuditLog(SQLModel, table=True):
    """Who did what to whom: staff and operator actions that change a member's standing."""

    __tablename__ = "audit_log"

    id: int | None = Field(default=None, primary_key=True)
    actor: str = Field(max_length=64)
    action: str = Field(max_length=64)
    member_id: int | None = Field(default=None, foreign_key="members.id", index=True)
    details: dict[str, Any] = _json({})
    created_at: datetime = Field(default_factory=utcnow)

    __table_args__ = (sa.Index("ix_audit_log_action_created_at", "action", "created_at"),)


class ConversationState(SQLModel, table=True):
    """Where a chat user is in a multi-step conversation (registration, redeeming, feedback...)."""

    __tablename__ = "conversation_states"

    chat_id: int = Field(sa_column=sa.Column(sa.BigInteger, primary_key=True, autoincrement=False))
    user_id: int = Field(sa_column=sa.Column(sa.BigInteger, primary_key=True, autoincrement=False))
    step: str = Field(max_length=64)
    data: dict[str, Any] = _json({})
    updated_at: datetime = Field(default_factory=utcnow)


# --- the counter: staff find a member by phone (0007) --------------------------------------------------

sa.Index("ix_members_phone", table_of(Member).c.phone)

# --- transactional notifications (notify; migration 0005) ------------------------------------------------


class Notice(SQLModel, table=True):
    """Something that happened to a member that they are told about: points credited, a tier change, a coupon
    used at the counter, the welcome bonus.

    Written in the transaction of the event itself, so no event is lost; `key` names the event (e.g.
    ``points:purchase:42``, ``tier:7``, ``coupon_used:3``, ``welcome:12``) and is unique, so none is told
    twice. The scheduler turns new notices into outbox rows (status ``new`` -> ``planned``, in the
    transaction that writes the row); bursts of one member's points fold into one pending message.
    """

    __tablename__ = "notices"

    id: int | None = Field(default=None, primary_key=True)
    member_id: int = Field(foreign_key="members.id", index=True)
    # points | tier | coupon_used | welcome
    kind: str = Field(max_length=16)
    key: str = Field(sa_column=sa.Column(sa.String(128), unique=True, nullable=False))
    # new | planned
    status: str = Field(default="new", max_length=16)
    outbox_id: int | None = Field(default=None, foreign_key="outbox.id", index=True)
    created_at: datetime = Field(default_factory=utcnow)
    planned_at: datetime | None = None

    __table_args__ = (sa.Index("ix_notices_status_id", "status", "id"),)

# --- http: throttling counters (migration 0004) -----------------------------------------------------


class ThrottleCounter(SQLModel, table=True):
    """Attempts in the current fixed window of one (scope, key), shared by every replica on this store.

    `key` is a hash of what is counted (a client address, an API key's prefix), never the thing itself.
    """

    __tablename__ = "throttle_counters"

    scope: str = Field(sa_column=sa.Column(sa.String(32), primary_key=True))
    key: str = Field(sa_column=sa.Column(sa.String(64), primary_key=True))
    window_start: float = Field(sa_column=sa.Column(sa.Float, nullable=False))  # seconds since the epoch
    count: int = Field(sa_column=sa.Column(sa.Integer, nullable=False))
    expires_at: float = Field(sa_column=sa.Column(sa.Float, nullable=False, index=True))

# --- Durable inbox of Telegram updates (issue 9: updates survive a crash) ------------------------------


class InboxUpdate(SQLModel, table=True):
    """A Telegram update as received: recorded before Telegram is told it arrived, then handled from here.

    Keyed by (bot, update_id), so a redelivered update is recognised. `lane` keeps one member's updates
    in order, also across processes: only the oldest unfinished update of a lane may be claimed. The
    payload (which holds what the member wrote) is dropped when the update is done; the key row stays
    a while longer to recognise redeliveries, then is pruned.
    """

    __tablename__ = "inbox_updates"

    bot_id: int = Field(sa_column=sa.Column(sa.BigInteger, primary_key=True, autoincrement=False))
    update_id: int = Field(sa_column=sa.Column(sa.BigInteger, primary_key=True, autoincrement=False))
    lane: str = Field(max_length=64)
    # A hash of what makes the update itself (chat, message, date or callback id): tells a redelivery
    # (same update) from a reused update_id (Telegram restarts numbering after a week of silence).
    fingerprint: str = Field(max_length=32)
    payload: dict[str, Any] | None = Field(default=None, sa_column=sa.Column(sa.JSON(none_as_null=True), nullable=True))
    # pending | done | failed (gave up after too many attempts)
    status: str = Field(default="pending", max_length=16)
    attempts: int = 0
    claimed_by: str | None = Field(default=None, max_length=64)
    lease_until: datetime | None = None
    received_at: datetime = Field(default_factory=utcnow)
    done_at: datetime | None = None

    __table_args__ = (
        sa.Index("ix_inbox_updates_lane", "bot_id", "lane", "status", "update_id"),
        sa.Index("ix_inbox_updates_due", "status", "update_id"),
    )


class UpdateEffect(SQLModel, table=True):
    """What one update's write produced (e.g. the feedback row), so handling it again writes nothing new."""

    __tablename__ = "update_effects"

    key: str = Field(sa_column=sa.Column(sa.String(96), primary_key=True, autoincrement=False))
    result: dict[str, Any] = _json({})
    created_at: datetime = Field(default_factory=utcnow, index=True)


class Operator(SQLModel, table=True):
    """A person who signs in to the web console: role operator (programme, schedules, members) or admin (also
    staff, operators and API keys). Only an argon2 hash of the password is stored."""

    __tablename__ = "operators"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(sa_column=sa.Column(sa.String(64), unique=True, nullable=False))
    role: str = Field(default="operator", max_length=16)
    password_hash: str = Field(max_length=256)
    language: str = Field(default="en", max_length=8)
    created_at: datetime = Field(default_factory=utcnow)
    disabled_at: datetime | None = None
    failed_signins: int = 0  # wrong passwords since the last good one
    locked_until: datetime | None = None  # after too many wrong passwords, no sign-in until then
    last_signin_at: datetime | None = None


class ConsoleSession(SQLModel, table=True):
    """A signed-in browser: the cookie carries the signed session id, the row says whose it is and until when.
    Signing out (or an admin removing the operator) revokes it; the CSRF token of its forms is kept here."""

    __tablename__ = "console_sessions"

    id: str = Field(sa_column=sa.Column(sa.String(64), primary_key=True))
    operator_id: int = Field(foreign_key="operators.id", index=True)
    csrf: str = Field(max_length=64)
    created_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime
    revoked_at: datetime | None = None


class ConsoleKey(SQLModel, table=True):
    """The key that signs the console's cookies when LOYALBOT_CONSOLE_SECRET is not set: made once, in the
    store, so every replica signs and checks with the same key."""

    __tablename__ = "console_keys"

    id: int = Field(default=1, primary_key=True)
    secret: str = Field(max_length=128)
    created_at: datetime = Field(default_factory=utcnow)


# --- One planner at a time: leases shared by the replicas (migration 0011) ------------------------------


class Lease(SQLModel, table=True):
    """Who holds a job only one replica may do at a time (the planner), and until when (seconds since the
    epoch). The holder renews it every few seconds; once it has expired, any replica may take it over."""

    __tablename__ = "planner_leases"

    name: str = Field(sa_column=sa.Column(sa.String(32), primary_key=True))
    holder: str = Field(sa_column=sa.Column(sa.String(96), nullable=False))
    acquired_at: float = Field(sa_column=sa.Column(sa.Float, nullable=False))
    expires_at: float = Field(sa_column=sa.Column(sa.Float, nullable=False))


class RateLimit(SQLModel, table=True):
    """One shared send limit (storage/rates.py, when no Redis is configured): a rate's GCRA moment, or a chat's
    next allowed send, in seconds since the epoch by the database's clock."""

    __tablename__ = "rate_limits"

    key: str = Field(sa_column=sa.Column(sa.String(96), primary_key=True))
    at: float = Field(sa_column=sa.Column(sa.Float(precision=53), nullable=False))

# --- the console's member search (migration 0013): a trigram index on the lower-cased full name --------
# PostgreSQL only (pg_trgm); it serves `lower(coalesce(first_name,'') || ' ' || coalesce(last_name,'')) LIKE
# '%text%'`, which is exactly how loyalty.members.search_members writes the name test.
MEMBER_NAME_TEXT = "lower(coalesce(first_name, '') || ' ' || coalesce(last_name, ''))"
sa.Index("ix_members_name_trgm", sa.text(f"({MEMBER_NAME_TEXT}) gin_trgm_ops"),
         postgresql_using="gin", _table=table_of(Member)).ddl_if(dialect="postgresql")
# ... and the names in code-point order (migration 0016), so names that start with the text come a page at a
# time from the index, however many members share a common name.
sa.Index("ix_members_name_order", sa.text(f'({MEMBER_NAME_TEXT} COLLATE "C")'), table_of(Member).c.id,
         _table=table_of(Member)).ddl_if(dialect="postgresql")

class DailyStat(SQLModel, table=True):
    """One aggregate figure of the console's dashboard for one bucket (a local day, or a week from its Monday)
    in one time zone: e.g. (Europe/Amsterdam, 2026-12-01, "points", "earn") -> 1234. Derived from the other
    tables and rebuilt from them at will; a `_done` row per bucket says when it was computed."""

    __tablename__ = "daily_stats"

    zone: str = Field(sa_column=sa.Column(sa.String(64), primary_key=True))
    day: date = Field(sa_column=sa.Column(sa.Date, primary_key=True))
    metric: str = Field(sa_column=sa.Column(sa.String(32), primary_key=True))
    dimension: str = Field(default="", sa_column=sa.Column(sa.String(64), primary_key=True))
    value: int = Field(default=0, sa_column=sa.Column(sa.BigInteger, nullable=False))


class DailyMembers(SQLModel, table=True):
    """The members behind a day's distinct counts (active, buyers, buyers2 = bought twice or more that day), as
    packed ids, so that the dashboard counts distinct members over any range by a union of days."""

    __tablename__ = "daily_members"

    zone: str = Field(sa_column=sa.Column(sa.String(64), primary_key=True))
    day: date = Field(sa_column=sa.Column(sa.Date, primary_key=True))
    metric: str = Field(sa_column=sa.Column(sa.String(16), primary_key=True))
    members: bytes = Field(sa_column=sa.Column(sa.LargeBinary, nullable=False))


# The dashboard reads each table by the moment its rows happened (see console/dashboard_stats.py).
sa.Index("ix_members_joined_at", table_of(Member).c.joined_at)
sa.Index("ix_members_status_tier_balance", table_of(Member).c.status, table_of(Member).c.tier,
         table_of(Member).c.balance)
# Kind and delta too, so a day's sums and active members are index-only scans (migration 0023).
sa.Index("ix_ledger_entries_created_at_cover", table_of(LedgerEntry).c.created_at, table_of(LedgerEntry).c.member_id,
         table_of(LedgerEntry).c.kind, table_of(LedgerEntry).c.delta)
sa.Index("ix_purchases_occurred_at_member", table_of(Purchase).c.occurred_at, table_of(Purchase).c.member_id)
sa.Index("ix_coupons_issued_at", table_of(Coupon).c.issued_at)
sa.Index("ix_coupons_used_at", table_of(Coupon).c.used_at)
sa.Index("ix_outbox_created_at", table_of(Outbox).c.created_at)
sa.Index("ix_survey_answers_created_at", table_of(SurveyAnswer).c.created_at)
sa.Index("ix_handoff_conversations_closed_at", table_of(HandoffConversation).c.closed_at)
# The console's support list, newest first (migration 0016).
sa.Index("ix_handoff_conversations_opened", table_of(HandoffConversation).c.opened_at,
         table_of(HandoffConversation).c.id)
sa.Index("ix_tier_changes_created_at", table_of(TierChange).c.created_at)

class ProgrammeVersion(SQLModel, table=True):
    """One version of the programme (tiers, earning, expiry, rewards) as a whole, as JSON: the newest is the one
    every process runs on. Versions are only added, never changed; `version` counts up from 1."""

    __tablename__ = "programme_versions"

    id: int | None = Field(default=None, primary_key=True)
    version: int = Field(sa_column=sa.Column(sa.Integer, unique=True, nullable=False))
    programme: dict[str, Any] = _json({})
    author: str = Field(max_length=64)
    summary: list[str] = _json([])  # what changed from the version before, one line per field
    created_at: datetime = Field(default_factory=utcnow)


class RewardImage(SQLModel, table=True):
    """A reward's picture, checked as a real PNG, JPEG or WebP; named by the SHA-256 of its bytes, so every
    programme version that names it shows the same picture."""

    __tablename__ = "reward_images"

    sha256: str = Field(sa_column=sa.Column(sa.String(64), primary_key=True))
    content_type: str = Field(max_length=32)
    data: bytes = Field(sa_column=sa.Column(sa.LargeBinary, nullable=False))
    width: int
    height: int
    created_at: datetime = Field(default_factory=utcnow)


class BonusGrant(SQLModel, table=True):
    """A bonus campaign's points given to a member: once per (member, bonus, period). The period is the
    purchase (multipliers, member days) or the week, month or year a spend threshold was reached in."""

    __tablename__ = "bonus_grants"

    id: int | None = Field(default=None, primary_key=True)
    member_id: int = Field(foreign_key="members.id", index=True)
    bonus_code: str = Field(max_length=32)
    period: str = Field(max_length=140)
    points: int
    purchase_id: int | None = Field(default=None, foreign_key="purchases.id")
    created_at: datetime = Field(default_factory=utcnow)

    __table_args__ = (sa.UniqueConstraint("member_id", "bonus_code", "period"),)


class StampCard(SQLModel, table=True):
    """A member's progress on one stamp card: the stamps on it now and how many times it was completed.

    `stamps` is below zero when a refund took back stamps whose completed card's coupon was already used:
    the card is in debt, and the next stamps pay it first (loyalty/stamps.py)."""

    __tablename__ = "stamp_cards"

    id: int | None = Field(default=None, primary_key=True)
    member_id: int = Field(foreign_key="members.id", index=True)
    card_code: str = Field(max_length=32)
    stamps: int = 0
    cycles: int = 0
    updated_at: datetime = Field(default_factory=utcnow)

    __table_args__ = (sa.UniqueConstraint("member_id", "card_code"),)


class StampEvent(SQLModel, table=True):
    """Stamps given once: `key` is the purchase (`purchase:<external id>`) or the counter's Telegram update."""

    __tablename__ = "stamp_events"

    id: int | None = Field(default=None, primary_key=True)
    member_id: int = Field(foreign_key="members.id", index=True)
    card_code: str = Field(max_length=32)
    key: str = Field(max_length=160)
    stamps: int
    purchase_id: int | None = Field(default=None, foreign_key="purchases.id")
    staff_id: int | None = Field(default=None, sa_column=sa.Column(sa.BigInteger))
    coupons_issued: int = 0
    created_at: datetime = Field(default_factory=utcnow)

    __table_args__ = (sa.UniqueConstraint("card_code", "key"),)

# --- campaigns (migration 0018): members' RFM scores and lifecycle stages, their changes, named segments -----

class MemberScore(SQLModel, table=True):
    """A member's latest RFM scores (quintiles 1-5) and lifecycle stage, from the last scoring run, with the
    figures they come from. Derived from members and purchases; rebuilt by every run (scheduler/rfm.py)."""

    __tablename__ = "member_scores"

    member_id: int = Field(sa_column=sa.Column(sa.Integer, sa.ForeignKey("members.id"), primary_key=True))
    r: int = Field(sa_column=sa.Column(sa.SmallInteger, nullable=False))
    f: int = Field(sa_column=sa.Column(sa.SmallInteger, nullable=False))
    m: int = Field(sa_column=sa.Column(sa.SmallInteger, nullable=False))
    # new | active | repeat | at_risk | dormant | churned
    lifecycle: str = Field(max_length=16)
    spend: Decimal = Field(default=Decimal("0"), sa_column=sa.Column(MONEY, nullable=False))  # net, in the window
    purchases: int = 0  # in the window
    last_purchase_at: datetime | None = None
    computed_at: datetime = Field(default_factory=utcnow)
    # Net spend and purchases over fixed windows as of the run (SCORE_WINDOWS), for segments' windows: valid for
    # a member without a purchase_changes row (scheduler/segments.py)
    spend_30d: Decimal = Field(default=Decimal("0"), sa_column=sa.Column(MONEY, nullable=False, server_default="0"))
    purchases_30d: int = Field(default=0, sa_column=sa.Column(sa.Integer, nullable=False, server_default="0"))
    spend_90d: Decimal = Field(default=Decimal("0"), sa_column=sa.Column(MONEY, nullable=False, server_default="0"))
    purchases_90d: int = Field(default=0, sa_column=sa.Column(sa.Integer, nullable=False, server_default="0"))
    spend_180d: Decimal = Field(default=Decimal("0"), sa_column=sa.Column(MONEY, nullable=False, server_default="0"))
    purchases_180d: int = Field(default=0, sa_column=sa.Column(sa.Integer, nullable=False, server_default="0"))
    spend_365d: Decimal = Field(default=Decimal("0"), sa_column=sa.Column(MONEY, nullable=False, server_default="0"))
    purchases_365d: int = Field(default=0, sa_column=sa.Column(sa.Integer, nullable=False, server_default="0"))

    __table_args__ = (sa.Index("ix_member_scores_lifecycle", "lifecycle"),
                      sa.Index("ix_member_scores_r_f_m", "r", "f", "m"))


SCORE_WINDOWS = (30, 90, 180, 365)  # the days of member_scores' spend_<N>d and purchases_<N>d


class PurchaseChange(SQLModel, table=True):
    """A member whose purchases were written (inserted or refunded) since the scoring run that last stored their
    window figures; `version` goes up with each write. Kept by triggers on `purchases` (migration 0024), so no
    writer can forget it; a scoring run deletes the rows whose version it read (scheduler/rfm.py)."""

    __tablename__ = "purchase_changes"

    member_id: int = Field(sa_column=sa.Column(sa.Integer, sa.ForeignKey("members.id"), primary_key=True,
                                               autoincrement=False))
    version: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))


class MemberStageChange(SQLModel, table=True):
    """A member moving from one lifecycle stage to another, as a scoring run found it; the history of stages and
    what lifecycle_change schedules are planned from."""

    __tablename__ = "member_stage_changes"

    id: int | None = Field(default=None, primary_key=True)
    member_id: int = Field(foreign_key="members.id", index=True)
    from_stage: str = Field(max_length=16)
    to_stage: str = Field(max_length=16)
    at: datetime

    __table_args__ = (sa.Index("ix_member_stage_changes_at_to_stage", "at", "to_stage"),)


class Segment(SQLModel, table=True):
    """A named segment operators save and reuse in schedules as {"segment": "<name>"} (scheduler/segments.py)."""

    __tablename__ = "segments"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(sa_column=sa.Column(sa.String(64), unique=True, nullable=False))
    definition: dict[str, Any] = _json({})
    created_by: str = Field(max_length=64)
    updated_at: datetime = Field(default_factory=utcnow)


# Segments filter on the days since the last purchase or visit, counted from joining for a member without one
# (scheduler/segments.py writes exactly these expressions).
sa.Index("ix_members_since_purchase", sa.func.coalesce(table_of(Member).c.last_purchase_at,
                                                       table_of(Member).c.joined_at))
sa.Index("ix_members_since_visit", sa.func.coalesce(table_of(Member).c.last_activity_at,
                                                    table_of(Member).c.joined_at))
