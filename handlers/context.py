"""What every conversation is handed: the services and settings of this process, never globals."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from loyalbot.chat.outbound import ChatSender


@dataclass
class Context:
    """What handlers are given: services and settings, never globals."""

    loyalty: Any  # loyalty.Loyalty
    states: Any  # handlers.state.StateStore
    config: Any  # handlers.config.ChatConfig
    clock: Callable[[], datetime]
    sender: ChatSender | None = None
    services: dict[str, Any] = field(default_factory=dict)  # optional rooms: "handoff", "surveys", ...


__all__ = ["Context"]
