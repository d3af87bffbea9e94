"""Support handoff: a member's conversation with staff as one explicit state, changed in one place.

States: ``bot`` (the bot answers), ``waiting`` (the member asked for a person), ``human`` (a staff
member holds it), ``closed``. Every change goes through `HandoffStore._move` (store.py), which checks
that the transition is allowed and writes a `HandoffEvent` (who, from, to, when) in the same transaction.
A member has at most one conversation that is not closed; asking again soon after a close
reopens the latest one instead of starting another. Only asking reopens: free text after a close is
the bot's to answer. First-response and resolution times are
stored on the conversation. Taking a conversation is atomic: the row is locked (PostgreSQL) or the
write is serialised (SQLite), so of two simultaneous takes exactly one wins and the other is told
who holds it.

Nothing here knows about Telegram: the support wing (handlers/support/) turns these calls into messages.

The package: states.py (the states, moves, refusals and `Transition`), records.py (what a conversation
keeps beside its state: messages, topics, notices) and store.py (`HandoffStore`, the state machine).
"""

from loyalbot.loyalty.handoff.states import (
    BOT,
    CLOSED,
    HUMAN,
    OPEN_STATES,
    STATES,
    TRANSITIONS,
    WAITING,
    ConversationClosed,
    ConversationHeld,
    NotHeld,
    SupportBlocked,
    Transition,
    UnknownConversation,
    actor_member,
    actor_staff,
)
from loyalbot.loyalty.handoff.store import HandoffStore

__all__ = [
    "BOT", "CLOSED", "HUMAN", "OPEN_STATES", "STATES", "TRANSITIONS", "WAITING",
    "ConversationClosed", "ConversationHeld", "HandoffStore", "NotHeld", "SupportBlocked", "Transition",
    "UnknownConversation", "actor_member", "actor_staff",
]
