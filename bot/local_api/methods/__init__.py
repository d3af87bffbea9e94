"""The Bot API methods, one module per concept; importing this package fills the one :data:`TABLE`.

Each method is a function ``async (hub, bot, params) -> result`` registered once by its Bot API name
with ``@method("sendMessage", limited=True)`` (see :mod:`.table`).  Unknown methods answer
``404 Not Found: method not found``.
"""

from . import bot_info, callbacks_commands, chats_topics, editing, media_files, messages, updates_webhook
from .table import TABLE, Method, find, method, supported

__all__ = [
    "TABLE",
    "Method",
    "bot_info",
    "callbacks_commands",
    "chats_topics",
    "editing",
    "find",
    "media_files",
    "messages",
    "method",
    "supported",
    "updates_webhook",
]
