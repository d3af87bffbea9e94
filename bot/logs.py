"""How a loyalbot process logs: human text (the default, for the demo and a terminal) or JSON lines.

`LOYALBOT_LOG_FORMAT=json` writes one JSON object a line through python-json-logger: `time` (ISO 8601,
UTC), `level`, `logger`, `message`, `instance` (LOYALBOT_INSTANCE or the host's name), and where known
`update_id` (the update being handled) and `request_id` (the HTTP request being answered), plus
`exc_info` for an error's traceback. What the lines say is the same as in text: no names, phone
numbers, message texts or tokens (members appear as salted tags); the format changes nothing of that.
"""

from __future__ import annotations

import logging
import socket
import sys

from pythonjsonlogger.json import JsonFormatter

from loyalbot.chat.logids import LogIds

HANDLER_NAME = "loyalbot"
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def json_formatter(instance: str) -> logging.Formatter:
    return JsonFormatter("%(levelname)s %(name)s %(message)s", timestamp="time",
                         rename_fields={"levelname": "level", "name": "logger"},
                         static_fields={"instance": instance}, json_ensure_ascii=False)


def configure_logging(settings: object, *, level: str | None = None, stream: object = None) -> None:
    """Set the root logger up from the settings (LOYALBOT_LOG_LEVEL, LOYALBOT_LOG_FORMAT, LOYALBOT_INSTANCE)."""
    fmt = getattr(settings, "log_format", "text")
    instance = getattr(settings, "instance", None) or socket.gethostname() or "loyalbot"
    handler = logging.StreamHandler(stream or sys.stderr)  # type: ignore[arg-type]
    handler.setFormatter(json_formatter(instance) if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    handler.addFilter(LogIds())
    handler.set_name(HANDLER_NAME)
    root = logging.getLogger()
    if any(h.get_name() != HANDLER_NAME for h in root.handlers):
        return  # someone else set logging up (a test runner): leave it, as logging.basicConfig would
    for old in list(root.handlers):  # a second call replaces ours, never doubles the lines
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(str(level or getattr(settings, "log_level", None) or "INFO").upper())


__all__ = ["HANDLER_NAME", "TEXT_FORMAT", "configure_logging", "json_formatter"]
