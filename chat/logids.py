"""What a log line is about, where it is known: the update being handled, the HTTP request being answered.

The inbox pipeline sets `update_id` while it handles an update, the console sets `request_id` while it
answers a request; `LogIds` (a logging filter) copies them onto every record made meanwhile, so a JSON
log line carries them (bot/logs.py). Ids only: an update id and a request id are not personal data.
"""

from __future__ import annotations

import logging
from contextvars import ContextVar

update_id: ContextVar[int | None] = ContextVar("loyalbot_update_id", default=None)
request_id: ContextVar[str | None] = ContextVar("loyalbot_request_id", default=None)


class LogIds(logging.Filter):
    """Adds `update_id` / `request_id` to a record when the code that logs runs on behalf of one."""

    def filter(self, record: logging.LogRecord) -> bool:
        if (update := update_id.get()) is not None:
            record.update_id = update
        if (request := request_id.get()) is not None:
            record.request_id = request
        return True


__all__ = ["LogIds", "request_id", "update_id"]
