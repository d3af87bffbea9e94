"""Answering pressed inline buttons, and the bot's command lists per scope and language."""

from __future__ import annotations

import copy
import json
import re
import time
from typing import Any

from ..errors import bad
from ..hub import Hub
from ..params import Params
from ..records import BotRec
from .table import method

__all__: list[str] = []

QUERY_INVALID = "query is too old and response timeout expired or query ID is invalid"
COMMAND_RE = re.compile(r"[a-z0-9_]{1,32}")
LANGUAGE_RE = re.compile(r"[a-z]{2}")
COMMAND_SCOPES = (
    "default",
    "all_private_chats",
    "all_group_chats",
    "all_chat_administrators",
    "chat",
    "chat_administrators",
    "chat_member",
)


@method("answerCallbackQuery")
async def answer_callback_query(hub: Hub, bot: BotRec, params: Params) -> Any:
    query_id = params.string("callback_query_id") or ""
    callback = hub.world.callbacks.get(query_id)
    if callback is None or callback["answered"] or callback["bot_id"] != bot.id:
        raise bad(QUERY_INVALID)
    text = params.string("text")
    if text is not None and len(text) > 200:
        raise bad("MESSAGE_TOO_LONG")
    answer = {
        "callback_query_id": query_id,
        "text": text,
        "show_alert": params.flag("show_alert"),
        "url": params.string("url"),
        "cache_time": params.integer("cache_time") or 0,
        "date": time.time(),
    }
    callback["answered"] = True
    callback["answer"] = answer
    chat = hub.world.chats.get(callback["chat_id"])
    msg = chat.messages.get(callback["message_id"]) if chat else None
    if msg is not None:
        msg.callback_answers.append({**answer, "user_id": callback["user_id"], "data": callback["data"]})
    hub.notify(
        {
            "type": "callback_answer",
            "chat_id": callback["chat_id"],
            "message_id": callback["message_id"],
            "callback_query_id": query_id,
            "text": text,
            "show_alert": answer["show_alert"],
            "user_id": callback["user_id"],
        }
    )
    return True


def commands_key(hub: Hub, params: Params) -> tuple[str, str]:
    """Where a command list is kept: the call's scope (as sorted JSON) and language code."""
    scope = params.json("scope") or {"type": "default"}
    if not isinstance(scope, dict) or "type" not in scope:
        raise bad("can't parse BotCommandScope")
    if scope["type"] not in COMMAND_SCOPES:
        raise bad("wrong BotCommandScope type specified")
    if scope["type"] in ("chat", "chat_administrators", "chat_member"):
        chat = hub.find_chat(scope.get("chat_id"))
        if chat is None:
            raise bad("chat not found")
        scope = {**scope, "chat_id": chat.id}
    language = params.string("language_code") or ""
    if language and not LANGUAGE_RE.fullmatch(language):
        # Telegram wants a two-letter ISO 639-1 code here ("zh", not "zh-hans").
        raise bad("invalid language code specified")
    return json.dumps(scope, sort_keys=True), language


@method("setMyCommands")
async def set_my_commands(hub: Hub, bot: BotRec, params: Params) -> Any:
    commands = params.json("commands", "can't parse commands JSON object")
    if commands is None:
        commands = []
    if not isinstance(commands, list) or len(commands) > 100:
        raise bad("can't parse commands JSON object")
    cleaned: list[dict[str, str]] = []
    for item in commands:
        if not isinstance(item, dict):
            raise bad("can't parse BotCommand")
        for needed in ("command", "description"):
            if needed not in item:
                raise bad(f"can't parse BotCommand: Can't find field \"{needed}\"")
        command = str(item["command"])
        description = str(item["description"])
        if not COMMAND_RE.fullmatch(command):
            raise bad("BOT_COMMAND_INVALID")
        if not description.strip() or len(description) > 256:
            raise bad("BOT_COMMAND_DESCRIPTION_INVALID")
        cleaned.append({"command": command, "description": description})
    key = commands_key(hub, params)
    if cleaned:
        bot.commands[key] = cleaned
    else:
        bot.commands.pop(key, None)
    return True


@method("getMyCommands")
async def get_my_commands(hub: Hub, bot: BotRec, params: Params) -> Any:
    return copy.deepcopy(bot.commands.get(commands_key(hub, params), []))


@method("deleteMyCommands")
async def delete_my_commands(hub: Hub, bot: BotRec, params: Params) -> Any:
    bot.commands.pop(commands_key(hub, params), None)
    return True
