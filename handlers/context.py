"""What every conversation is handed: the services and settings of this process, never globals.

The optional rooms (the scheduler, support, the console) are named here by what the conversations
need of them (Protocols), so handlers never import the rooms above them; bot/ fills `Services`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from loyalbot.chat.outbound import ChatSender
from loyalbot.handlers.config import ChatConfig
from loyalbot.handlers.state import StateStore
from loyalbot.loyalty import Loyalty
from loyalbot.storage.models import Feedback, Member
from loyalbot.storage.rates import SendLimits
from loyalbot.storage.throttle import Throttle

if TYPE_CHECKING:
    from loyalbot.handlers.support import SupportConfig


class SurveyScheduler(Protocol):
    """What support needs of the scheduler: plan a CSAT survey through the outbox."""

    async def schedule_csat(self, member_id: int, trigger: str, ref: str, conversation_id: int | None = None,
                            staff_id: int | None = None, delay: timedelta | None = None, *,
                            now: datetime | None = None) -> Any: ...


class SupportRoom(Protocol):
    """What the assembly needs of support: started after the runtime opens, stopped before it closes."""

    async def start(self, *, now: datetime | None = None) -> None: ...

    async def stop(self) -> None: ...


class ConsoleRoom(Protocol):
    """The running console, as the demo announces it."""

    @property
    def url(self) -> str: ...


FeedbackSink = Callable[[Member, Feedback], Awaitable[None]]


@dataclass
class Services:
    """The optional rooms of this process; None where a room is not present."""

    scheduler: SurveyScheduler | None = None
    handoff: SupportRoom | None = None
    feedback_sink: FeedbackSink | None = None  # where /feedback is posted for staff (support sets it)
    throttle: Throttle | None = None  # shared by counter look-ups, console sign-ins, webhook secrets
    send_limits: SendLimits | None = None  # Telegram's limits shared by every sender of the bot (storage/rates.py)
    console: ConsoleRoom | None = None
    support_config: SupportConfig | None = None  # support's settings, else taken from ChatConfig


@dataclass
class Context:
    """What handlers are given: services and settings, never globals."""

    loyalty: Loyalty
    states: StateStore
    config: ChatConfig
    clock: Callable[[], datetime]
    sender: ChatSender | None = None
    services: Services = field(default_factory=Services)


__all__ = ["ConsoleRoom", "Context", "FeedbackSink", "Services", "SupportRoom", "SurveyScheduler"]
