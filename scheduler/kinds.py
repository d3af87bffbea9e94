"""The kinds of scheduled message: which notification setting each obeys, and what each needs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from loyalbot.storage.models import Schedule

KINDS = ("birthday", "anniversary", "winback", "tier_change", "points_expiry", "coupon_expiry", "nps", "csat",
         "broadcast", "lifecycle_change")
LIFECYCLE_STAGES = ("new", "active", "repeat", "at_risk", "dormant", "churned")


@dataclass(frozen=True)
class KindRule:
    """How a kind of message is treated when planning."""

    notify: str  # the member's notify setting that must be on: care | reminders | surveys | offers
    needs_consent: bool  # marketing consent required (offers)
    event_driven: bool  # planned when something happens, not by the clock
    survey: str | None = None  # csat | nps: the message opens a survey and carries answer buttons


RULES: dict[str, KindRule] = {
    "birthday": KindRule("care", False, False),
    "anniversary": KindRule("care", False, False),
    "tier_change": KindRule("care", False, True),
    "points_expiry": KindRule("reminders", False, False),
    "coupon_expiry": KindRule("reminders", False, False),
    "nps": KindRule("surveys", False, False, survey="nps"),
    "csat": KindRule("surveys", False, True, survey="csat"),
    "winback": KindRule("offers", True, False),
    "broadcast": KindRule("offers", True, False),
    # planned when a scoring run finds members who moved to a stage (scheduler/lifecycle.py); a win-back offer
    "lifecycle_change": KindRule("offers", True, True),
}

# Defaults for a kind's params when the operator gives none; every key here is documented in the CLI help.
DEFAULT_PARAMS: dict[str, dict[str, Any]] = {
    "winback": {"inactive_days": 60},
    "points_expiry": {},
    "coupon_expiry": {},
    "nps": {"min_member_days": 14},
    "csat": {"trigger": "coupon", "delay_minutes": 30},
    "tier_change": {"upgrades_only": True},
    "lifecycle_change": {"to": "dormant", "from": None},  # the stage moved to (and, if given, from)
}
DEFAULT_OFFSET_DAYS = {"points_expiry": 14, "coupon_expiry": 3}
DEFAULT_CAP_DAYS = {"winback": 90, "nps": 90}
SEGMENT_KEYS = ("tiers", "languages", "min_balance", "max_balance", "member_ids", "joined_before_days",
                "rfm", "lifecycle", "days_since_purchase", "days_since_visit", "spend", "purchases", "birthday_month",
                "joined_within_days", "holds_coupon", "expiring_points_days", "marketing_consent", "segment", "any",
                "not")


# A broadcast may open a survey with its message (params["survey"]): the post-purchase thank-you asks for the CSAT.
BROADCAST_SURVEYS = ("csat",)


def survey_of(schedule: Schedule) -> str | None:
    """The survey a schedule's messages open (their answer buttons): the kind's own (csat, nps), or a broadcast's
    ``params["survey"]``; None for the rest."""
    own = RULES[schedule.kind].survey
    if own is not None or schedule.kind != "broadcast":
        return own
    asked = (schedule.params or {}).get("survey")
    return asked if asked in BROADCAST_SURVEYS else None


def unreachable_reason(member: Any, notify: str) -> str | None:
    """Why a member cannot get a message that obeys their `notify` setting (a skip reason), or None."""
    if member.status == "erased":
        return "erased"
    if member.status == "unreachable":
        return "unreachable"
    if member.chat_id is None:
        return "no_chat"
    if not (member.notify or {}).get(notify, True):
        return "opted_out"
    return None


def param(schedule: Schedule, key: str) -> Any:
    """A schedule's parameter, or its kind's default."""
    return (schedule.params or {}).get(key, DEFAULT_PARAMS.get(schedule.kind, {}).get(key))


def offset_days(schedule: Schedule) -> int:
    """How many days ahead the schedule looks (or warns), its kind's default when not set."""
    return schedule.offset_days or DEFAULT_OFFSET_DAYS.get(schedule.kind, 0)


def cap_days(schedule: Schedule) -> int | None:
    """The days a member gets this schedule's message at most once, if capped."""
    return schedule.frequency_cap_days or DEFAULT_CAP_DAYS.get(schedule.kind)


def template_kind(schedule: Schedule) -> str:
    """Which shipped template a schedule falls back to (CSAT after support has its own wording)."""
    if schedule.kind == "csat" and param(schedule, "trigger") == "support":
        return "csat_support"
    return schedule.kind
