"""The one table of Bot API methods this server answers, filled by :func:`method` where each is written.

Routing, the flood limits (``limited`` methods send a message) and any listing of what is supported all
read :data:`TABLE`; nothing else names the methods.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from ..hub import Hub
from ..params import Params
from ..records import BotRec

__all__ = ["TABLE", "Handler", "Method", "find", "method", "supported"]

Handler = Callable[[Hub, BotRec, Params], Awaitable[Any]]


@dataclass(frozen=True)
class Method:
    """A Bot API method: its canonical name, what runs it, and whether flood limits count it."""

    name: str
    handler: Handler
    limited: bool = False


# Keyed by the lower-cased name: Telegram matches method names case-insensitively.
TABLE: dict[str, Method] = {}


def method(name: str, *, limited: bool = False) -> Callable[[Handler], Handler]:
    """Register the decorated function as the Bot API method ``name`` (``limited``: a send)."""

    def register(handler: Handler) -> Handler:
        key = name.lower()
        if key in TABLE:
            raise RuntimeError(f"Bot API method {name} is registered twice")
        TABLE[key] = Method(name, handler, limited)
        return handler

    return register


def find(name: str) -> Method | None:
    """The method called ``name`` (any letter case), or ``None``."""
    return TABLE.get(name.lower())


def supported() -> list[str]:
    """The canonical names of every method the server answers, sorted."""
    return sorted(entry.name for entry in TABLE.values())
