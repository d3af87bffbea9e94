"""Inline and reply keyboards: checking a ``reply_markup`` the way Telegram does."""

from __future__ import annotations

import copy
import json
import re
from typing import Any

from .errors import ApiError, bad
from .params import Params

__all__ = ["markup_param", "not_modified", "same_markup", "validate_markup"]

MAX_CALLBACK_DATA = 64
INLINE_ACTIONS = (
    "url",
    "callback_data",
    "web_app",
    "login_url",
    "switch_inline_query",
    "switch_inline_query_current_chat",
    "switch_inline_query_chosen_chat",
    "copy_text",
    "callback_game",
    "pay",
)


def markup_param(params: Params, *, inline_only: bool = False) -> dict[str, Any] | None:
    """The call's ``reply_markup``, checked and normalised, or ``None`` when none was sent."""
    markup = params.json("reply_markup", "can't parse reply keyboard markup JSON object")
    if markup is None:
        return None
    return validate_markup(markup, inline_only=inline_only)


def validate_markup(markup: Any, *, inline_only: bool = False) -> dict[str, Any]:
    """Check a reply_markup object the way Telegram does and return a normalised copy."""
    if not isinstance(markup, dict):
        raise bad("can't parse reply keyboard markup JSON object")
    if "inline_keyboard" in markup:
        rows = markup["inline_keyboard"]
        if not isinstance(rows, list) or not all(isinstance(row, list) for row in rows):
            raise bad("can't parse inline keyboard button: InlineKeyboardButton must be an Object")
        for row in rows:
            for button in row:
                if not isinstance(button, dict):
                    raise bad("can't parse inline keyboard button: InlineKeyboardButton must be an Object")
                if not str(button.get("text", "")):
                    raise bad("can't parse inline keyboard button: Text must be non-empty")
                if not any(key in button for key in INLINE_ACTIONS):
                    raise bad(
                        "can't parse inline keyboard button: Text buttons are unallowed in the inline keyboard"
                    )
                if "callback_data" in button:
                    data = str(button["callback_data"])
                    if not data or len(data.encode("utf-8")) > MAX_CALLBACK_DATA:
                        raise bad("BUTTON_DATA_INVALID")
                if "url" in button and not re.match(r"(https?|tg)://\S+$", str(button["url"])):
                    raise bad(f"inline keyboard button URL '{button['url']}' is invalid: Wrong HTTP URL")
        return copy.deepcopy(markup)
    if inline_only:
        raise bad("inline keyboard expected")
    if "keyboard" in markup:
        rows = markup["keyboard"]
        if not isinstance(rows, list):
            raise bad("can't parse reply keyboard markup JSON object")
        normal_rows = []
        for row in rows:
            if not isinstance(row, list):
                raise bad("can't parse reply keyboard markup JSON object")
            normal_row = []
            for button in row:
                item = {"text": button} if isinstance(button, str) else dict(button)
                if not str(item.get("text", "")):
                    raise bad("can't parse keyboard button: Text must be non-empty")
                normal_row.append(item)
            normal_rows.append(normal_row)
        return {**markup, "keyboard": normal_rows}
    if markup.get("remove_keyboard") or markup.get("force_reply"):
        return copy.deepcopy(markup)
    raise bad("can't parse reply keyboard markup JSON object")


def same_markup(new: dict[str, Any] | None, old: dict[str, Any] | None) -> bool:
    """True when two markups show the same inline keyboard (or none)."""

    def norm(markup: dict[str, Any] | None) -> Any:
        if not markup or not markup.get("inline_keyboard"):
            return None
        return json.dumps(markup.get("inline_keyboard"), sort_keys=True)

    return bool(norm(new) == norm(old))


def not_modified() -> ApiError:
    """Telegram's answer to an edit that changes nothing."""
    return bad(
        "message is not modified: specified new message content and reply markup are exactly the "
        "same as a current content and reply markup of the message"
    )
