"""Chats and forum topics: chat actions, chat and member look-ups, creating and changing topics."""

from __future__ import annotations

from typing import Any

from ..errors import bad
from ..hub import Hub
from ..params import Params
from ..records import TOPIC_COLORS, BotRec, ChatRec, TopicRec
from .common import chat_param, send_target, topic_param
from .table import method

__all__: list[str] = []

CHAT_ACTIONS = frozenset(
    {
        "typing",
        "upload_photo",
        "record_video",
        "upload_video",
        "record_voice",
        "upload_voice",
        "upload_document",
        "choose_sticker",
        "find_location",
        "record_video_note",
        "upload_video_note",
    }
)
ADMIN_RIGHTS = (
    "can_manage_chat",
    "can_delete_messages",
    "can_manage_video_chats",
    "can_restrict_members",
    "can_promote_members",
    "can_change_info",
    "can_invite_users",
    "can_post_stories",
    "can_edit_stories",
    "can_delete_stories",
    "can_pin_messages",
    "can_manage_topics",
)
# What the staff's administrators may not do (the bot may do everything).
STAFF_WITHHELD = frozenset(
    {"can_promote_members", "can_post_stories", "can_edit_stories", "can_delete_stories"}
)


@method("sendChatAction")
async def send_chat_action(hub: Hub, bot: BotRec, params: Params) -> Any:
    chat = send_target(hub, params)
    action = params.string("action") or ""
    if action not in CHAT_ACTIONS:
        raise bad("wrong parameter action in request")
    thread_id = params.integer("message_thread_id")
    if chat.is_forum and thread_id is not None:
        topic = chat.topics.get(thread_id)
        if topic is None or topic.deleted:
            raise bad("message thread not found")
    hub.notify({"type": "chat_action", "chat_id": chat.id, "thread_id": thread_id, "action": action})
    return True


@method("getChat")
async def get_chat(hub: Hub, bot: BotRec, params: Params) -> Any:
    return hub.world.chat_full_api(chat_param(hub, params))


def administrator(user: dict[str, Any], withheld: frozenset[str] = frozenset()) -> dict[str, Any]:
    """A ChatMemberAdministrator with every right except those ``withheld``."""
    rights = {key: key not in withheld for key in ADMIN_RIGHTS}
    return {"status": "administrator", "user": user, "can_be_edited": False, "is_anonymous": False, **rights}


def member(hub: Hub, bot: BotRec, chat: ChatRec, user_id: int) -> dict[str, Any]:
    """The ChatMember of ``user_id`` in ``chat``: the bot administers every group it is in."""
    if user_id == bot.id:
        if chat.type == "private":
            return {"status": "member", "user": bot.api()}
        return administrator(bot.api())
    user = hub.world.users.get(user_id)
    if user is None:
        raise bad("PARTICIPANT_ID_INVALID")
    if chat.type == "private":
        status = "member" if user_id == chat.id else "left"
        return {"status": status, "user": user.api()}
    if user_id in chat.admins:
        if chat.admins and chat.admins[0] == user_id:
            return {"status": "creator", "user": user.api(), "is_anonymous": False}
        return administrator(user.api(), STAFF_WITHHELD)
    if user_id in chat.members:
        return {"status": "member", "user": user.api()}
    return {"status": "left", "user": user.api()}


@method("getChatMember")
async def get_chat_member(hub: Hub, bot: BotRec, params: Params) -> Any:
    chat = chat_param(hub, params)
    user_id = params.integer("user_id")
    if user_id is None:
        raise bad("user_id is empty")
    return member(hub, bot, chat, user_id)


@method("getChatAdministrators")
async def get_chat_administrators(hub: Hub, bot: BotRec, params: Params) -> Any:
    chat = chat_param(hub, params)
    if chat.type == "private":
        raise bad("there are no administrators in the private chat")
    return [member(hub, bot, chat, uid) for uid in chat.admins] + [member(hub, bot, chat, bot.id)]


@method("getChatMemberCount")
async def get_chat_member_count(hub: Hub, bot: BotRec, params: Params) -> Any:
    chat = chat_param(hub, params)
    return 2 if chat.type == "private" else len(set(chat.members) | set(chat.admins)) + 1


def topic_changed(
    hub: Hub, bot: BotRec, chat: ChatRec, topic: TopicRec, content: dict[str, Any], method: str, action: str
) -> None:
    """The bot changed a topic: its service message goes into the topic, and the feed hears of it."""
    msg = hub.world.add_message(
        chat, from_id=bot.id, from_bot=True, content=content, thread_id=topic.thread_id, method=method
    )
    hub.notify_message(msg)
    hub.notify({"type": "topic", "chat_id": chat.id, "thread_id": topic.thread_id, "action": action})


async def set_closed(hub: Hub, bot: BotRec, params: Params, closed: bool) -> Any:
    """Close or reopen a topic; changing nothing is TOPIC_NOT_MODIFIED."""
    chat = chat_param(hub, params)
    topic = topic_param(chat, params)
    if topic.closed == closed:
        raise bad("TOPIC_NOT_MODIFIED")
    topic.closed = closed
    if closed:
        topic_changed(hub, bot, chat, topic, {"forum_topic_closed": {}}, "closeForumTopic", "closed")
    else:
        topic_changed(hub, bot, chat, topic, {"forum_topic_reopened": {}}, "reopenForumTopic", "reopened")
    return True


@method("createForumTopic")
async def create_forum_topic(hub: Hub, bot: BotRec, params: Params) -> Any:
    chat = chat_param(hub, params)
    if not chat.is_forum:
        raise bad("the chat is not a forum")
    name = params.string("name") or ""
    if not name.strip():
        raise bad("TOPIC_TITLE_EMPTY")
    if len(name) > 128:
        raise bad("TOPIC_TITLE_INVALID")
    color = params.integer("icon_color")
    if color is not None and color not in TOPIC_COLORS:
        raise bad("TOPIC_COLOR_INVALID")
    topic = hub.create_topic(
        chat, name, color, params.string("icon_custom_emoji_id"), from_id=bot.id, from_bot=True
    )
    return topic.api()


@method("editForumTopic")
async def edit_forum_topic(hub: Hub, bot: BotRec, params: Params) -> Any:
    chat = chat_param(hub, params)
    topic = topic_param(chat, params)
    edited: dict[str, Any] = {}
    name = params.string("name")
    if name is not None and name != "" and name != topic.name:
        if len(name) > 128:
            raise bad("TOPIC_TITLE_INVALID")
        topic.name = name
        edited["name"] = name
    emoji = params.string("icon_custom_emoji_id")
    if emoji is not None and emoji != (topic.icon_custom_emoji_id or ""):
        topic.icon_custom_emoji_id = emoji or None
        edited["icon_custom_emoji_id"] = emoji
    if not edited:
        raise bad("TOPIC_NOT_MODIFIED")
    topic_changed(hub, bot, chat, topic, {"forum_topic_edited": edited}, "editForumTopic", "edited")
    return True


@method("closeForumTopic")
async def close_forum_topic(hub: Hub, bot: BotRec, params: Params) -> Any:
    return await set_closed(hub, bot, params, True)


@method("reopenForumTopic")
async def reopen_forum_topic(hub: Hub, bot: BotRec, params: Params) -> Any:
    return await set_closed(hub, bot, params, False)


@method("deleteForumTopic")
async def delete_forum_topic(hub: Hub, bot: BotRec, params: Params) -> Any:
    chat = chat_param(hub, params)
    topic = topic_param(chat, params)
    hub.remove_topic(chat, topic)
    return True
