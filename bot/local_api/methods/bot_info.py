"""Who the bot is, and the calls that are accepted without changing anything here."""

from __future__ import annotations

from typing import Any

from ..hub import Hub
from ..params import Params
from ..records import BotRec
from .common import chat_param
from .table import method

__all__: list[str] = []

# Accepted and answered True; nothing the tests or the demo page look at changes.
ACCEPTED = (
    "pinChatMessage",
    "unpinChatMessage",
    "unpinAllChatMessages",
    "unpinAllForumTopicMessages",
    "setMessageReaction",
    "setMyDescription",
    "setMyShortDescription",
    "setMyName",
    "setChatMenuButton",
    "setMyDefaultAdministratorRights",
    "leaveChat",
)


@method("getMe")
async def get_me(hub: Hub, bot: BotRec, params: Params) -> Any:
    return bot.me()


@method("logOut")
async def log_out(hub: Hub, bot: BotRec, params: Params) -> Any:
    return True


@method("close")
async def close(hub: Hub, bot: BotRec, params: Params) -> Any:
    return True


async def accept(hub: Hub, bot: BotRec, params: Params) -> Any:
    """A no-op method: checks the chat when one is named, then answers True."""
    if "chat_id" in params.raw:
        chat_param(hub, params)
    return True


for _name in ACCEPTED:
    method(_name)(accept)


@method("getMyDescription")
async def get_my_description(hub: Hub, bot: BotRec, params: Params) -> Any:
    return {"description": ""}


@method("getMyShortDescription")
async def get_my_short_description(hub: Hub, bot: BotRec, params: Params) -> Any:
    return {"short_description": ""}


@method("getMyName")
async def get_my_name(hub: Hub, bot: BotRec, params: Params) -> Any:
    return {"name": bot.first_name}


@method("getChatMenuButton")
async def get_chat_menu_button(hub: Hub, bot: BotRec, params: Params) -> Any:
    return {"type": "commands"}


@method("getForumTopicIconStickers")
async def get_forum_topic_icon_stickers(hub: Hub, bot: BotRec, params: Params) -> Any:
    return []
