"""A local Telegram Bot API server for tests and the demo: no network, same JSON as Telegram.

``LocalBotApi`` serves the Bot API plus a control API and a demo chat page;
``LocalApiControl`` is the async client tests use to play users and inspect what the bot did.
"""

from .control import SELF, LocalApiControl, LocalApiControlError
from .errors import ApiError
from .limits import Limits
from .server import LocalBotApi

__all__ = ["SELF", "ApiError", "Limits", "LocalApiControl", "LocalApiControlError", "LocalBotApi"]
