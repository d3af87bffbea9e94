"""Reading and checking what a caller sent: Bot API parameters (types, text limits, parse_mode,
entities, captions) and control API bodies and query strings.

A Bot API call's parameters arrive as a query string, JSON, url-encoded or multipart body; :class:`Params`
reads them into one mapping and answers Telegram's 400s for values of the wrong type.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from .errors import ControlError, bad
from .formatting import EntityParseError, parse_text, utf16_len

__all__ = [
    "MAX_CAPTION",
    "MAX_PHOTO_BYTES",
    "MAX_TEXT",
    "MAX_UPLOAD_BYTES",
    "TOKEN_RE",
    "Params",
    "Upload",
    "caption_content",
    "dumps",
    "int_field",
    "loggable_chat_id",
    "message_text",
    "parse_entities",
    "query_int",
    "read_body",
]

# What a bot token looks like: ``<bot id>:<secret>``; any such token is a bot here.
TOKEN_RE = re.compile(r"(\d{1,20}):([A-Za-z0-9_-]{1,100})")
MAX_TEXT = 4096
MAX_CAPTION = 1024
MAX_PHOTO_BYTES = 10 * 1024 * 1024
MAX_UPLOAD_BYTES = 50 * 1024 * 1024


@dataclass
class Upload:
    """A file part received in a multipart request."""

    data: bytes
    filename: str | None
    content_type: str | None


class Params:
    """The parameters of one Bot API call, whatever encoding they arrived in."""

    def __init__(self, raw: dict[str, Any], files: dict[str, Upload] | None = None) -> None:
        self.raw = raw
        self.files = files or {}

    @classmethod
    async def from_request(cls, request: web.Request) -> Params:
        """Read query string and body (JSON, url-encoded or multipart) into one mapping."""
        raw: dict[str, Any] = dict(request.query)
        files: dict[str, Upload] = {}
        if request.can_read_body:
            ctype = request.content_type
            if ctype in ("application/x-www-form-urlencoded", "multipart/form-data"):
                form = await request.post()
                for key, value in form.items():
                    if isinstance(value, web.FileField):
                        files[key] = Upload(value.file.read(), value.filename, value.content_type)
                    elif isinstance(value, bytes | bytearray):
                        files[key] = Upload(bytes(value), None, None)
                    else:
                        raw[key] = value
            else:
                body = await request.read()
                if body.strip():
                    try:
                        data = json.loads(body)
                    except ValueError as exc:
                        raise bad("can't parse JSON encoded request") from exc
                    if not isinstance(data, dict):
                        raise bad("request body must be a JSON object")
                    raw.update(data)
        return cls(raw, files)

    def has(self, name: str) -> bool:
        """True when the parameter was sent (even if empty)."""
        return name in self.raw

    def string(self, name: str) -> str | None:
        """A string parameter, or ``None``."""
        value = self.raw.get(name)
        if value is None:
            return None
        if isinstance(value, str):
            return value
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, int | float):
            return str(value)
        return json.dumps(value, ensure_ascii=False)

    def integer(self, name: str) -> int | None:
        """An integer parameter, or ``None``; a non-number is a 400."""
        value = self.raw.get(name)
        if value is None or value == "":
            return None
        if isinstance(value, bool):
            return int(value)
        if isinstance(value, int):
            return value
        try:
            return int(str(value).strip())
        except ValueError as exc:
            raise bad(f"invalid {name} specified") from exc

    def number(self, name: str) -> float | None:
        """A float parameter, or ``None``."""
        value = self.raw.get(name)
        if value is None or value == "":
            return None
        try:
            return float(value)
        except (TypeError, ValueError) as exc:
            raise bad(f"invalid {name} specified") from exc

    def flag(self, name: str, default: bool = False) -> bool:
        """A boolean parameter (``true``/``false``/``1``/``0``)."""
        value = self.raw.get(name)
        if value is None or value == "":
            return default
        if isinstance(value, bool):
            return value
        if isinstance(value, int):
            return value != 0
        return str(value).strip().lower() in ("true", "1", "yes", "on")

    def json(self, name: str, error: str | None = None) -> Any:
        """A parameter that may be a JSON-encoded string (form bodies) or already decoded (JSON)."""
        value = self.raw.get(name)
        if value is None or value == "":
            return None
        if isinstance(value, str):
            try:
                return json.loads(value)
            except ValueError as exc:
                raise bad(error or f"can't parse {name} JSON object") from exc
        return value

    def summary(self) -> dict[str, Any]:
        """A short, log-friendly copy of the parameters (long strings cut, files described)."""
        out: dict[str, Any] = {}
        for key, value in self.raw.items():
            if isinstance(value, str) and len(value) > 300:
                value = value[:300] + "…"
            out[key] = value
        for key, upload in self.files.items():
            out[key] = f"<file {upload.filename or key} {len(upload.data)} bytes>"
        return out


def parse_entities(text: str, params: Params, prefix: str = "") -> tuple[str, list[dict[str, Any]]]:
    """Plain text and entities of ``text`` under the call's ``parse_mode`` or ``<prefix>entities``."""
    entities = params.json(f"{prefix}entities", "can't parse entities JSON object")
    if entities is not None and not isinstance(entities, list):
        raise bad("can't parse entities JSON object")
    parse_mode = params.string("parse_mode")
    try:
        return parse_text(text, parse_mode, entities)
    except EntityParseError as exc:
        if str(exc).startswith("Unsupported parse_mode"):
            raise bad("unsupported parse_mode") from exc
        raise bad(f"can't parse entities: {exc}") from exc


def message_text(params: Params) -> tuple[str, str, list[dict[str, Any]]]:
    """The ``text`` parameter checked as Telegram does: ``(raw, plain, entities)``."""
    text = params.string("text")
    if not text:
        raise bad("message text is empty")
    plain, entities = parse_entities(text, params)
    if not plain.strip():
        raise bad("message text is empty")
    if utf16_len(plain) > MAX_TEXT:
        raise bad("message is too long")
    return text, plain, entities


def caption_content(params: Params) -> dict[str, Any]:
    """The caption fields of a media message (empty when no caption was sent)."""
    caption = params.string("caption")
    if not caption:
        return {}
    plain, entities = parse_entities(caption, params, "caption_")
    if utf16_len(plain) > MAX_CAPTION:
        raise bad("message caption is too long")
    content: dict[str, Any] = {"caption": plain}
    if entities:
        content["caption_entities"] = entities
    if params.flag("show_caption_above_media"):
        content["show_caption_above_media"] = True
    return content


def loggable_chat_id(raw: Any) -> Any:
    """A chat id as the call log shows it: an int when it is one, else as sent."""
    if raw is None or raw == "":
        return None
    try:
        return int(raw)
    except (TypeError, ValueError):
        return raw


# ------------------------------------------------------------------------------ control API


def int_field(body: dict[str, Any], name: str, *, required: bool = False) -> int | None:
    """An integer field of a control body, or ``None``; a 400 when it is missing (if required) or not a number."""
    value = body.get(name)
    if value is None or value == "":
        if required:
            raise ControlError(400, f"{name} is required")
        return None
    try:
        return int(value)
    except (TypeError, ValueError) as exc:
        raise ControlError(400, f"{name} must be an integer") from exc


def query_int(request: web.Request, name: str, *, required: bool = False) -> int | None:
    """An integer from the query string of a control request."""
    return int_field(dict(request.query), name, required=required)


async def read_body(request: web.Request) -> dict[str, Any]:
    """The JSON object a control request carries (empty without a body)."""
    if not request.can_read_body:
        return {}
    try:
        data = await request.json()
    except ValueError as exc:
        raise ControlError(400, "body must be JSON") from exc
    if not isinstance(data, dict):
        raise ControlError(400, "body must be a JSON object")
    return data


def dumps(data: Any) -> str:
    """JSON as both APIs send it (UTF-8 text, not ASCII escapes)."""
    return json.dumps(data, ensure_ascii=False)
