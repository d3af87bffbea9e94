"""The handoff's states, the moves between them, its refusals and what a move did.

States: ``bot`` (the bot answers), ``waiting`` (the member asked for a person), ``human`` (a staff
member holds it), ``closed``. `TRANSITIONS` lists every move a conversation can make.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from loyalbot.loyalty.errors import Refusal
from loyalbot.storage import as_utc
from loyalbot.storage.models import HandoffConversation

BOT, WAITING, HUMAN, CLOSED = "bot", "waiting", "human", "closed"
STATES = (BOT, WAITING, HUMAN, CLOSED)
OPEN_STATES = (BOT, WAITING, HUMAN)
# The only moves a conversation can make (from, to).
TRANSITIONS = frozenset({
    (BOT, WAITING), (BOT, HUMAN), (BOT, CLOSED),
    (WAITING, HUMAN), (WAITING, CLOSED),
    (HUMAN, BOT), (HUMAN, CLOSED),
    (CLOSED, WAITING),
})


# --- refusals (their codes are message keys: error.<code>) ------------------------------------------


class SupportBlocked(Refusal):
    """Staff have blocked this member from support."""

    code = "support_blocked"
    http_status = 403


class UnknownConversation(Refusal):
    """No such support conversation."""

    code = "handoff_unknown"
    http_status = 404


class ConversationHeld(Refusal):
    """Another staff member holds the conversation (params: holder = their Telegram id)."""

    code = "handoff_held"
    http_status = 409


class ConversationClosed(Refusal):
    """The conversation is closed."""

    code = "handoff_closed"
    http_status = 409


class NotHeld(Refusal):
    """Nobody holds the conversation, so there is nothing to hand back."""

    code = "handoff_not_held"
    http_status = 409


# --- results ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Transition:
    """What a call did to a conversation: its state before and after (equal when nothing changed)."""

    conversation: HandoffConversation
    from_state: str
    to_state: str
    created: bool = False

    @property
    def changed(self) -> bool:
        return self.from_state != self.to_state or self.created

    @property
    def reopened(self) -> bool:
        return self.from_state == CLOSED and self.to_state == WAITING


def actor_member(member_id: int) -> str:
    return f"member:{member_id}"


def actor_staff(staff_id: int) -> str:
    return f"staff:{staff_id}"


def seconds_between(start: datetime, end: datetime) -> int:
    return max(0, int((as_utc(end) - as_utc(start)).total_seconds()))



__all__ = [
    "BOT", "CLOSED", "HUMAN", "OPEN_STATES", "STATES", "TRANSITIONS", "WAITING",
    "ConversationClosed", "ConversationHeld", "NotHeld", "SupportBlocked", "Transition",
    "UnknownConversation", "actor_member", "actor_staff", "seconds_between",
]
