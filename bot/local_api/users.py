"""Users and groups the tests and the demo page create, and the demo page's identities."""

from __future__ import annotations

from typing import Any

from .errors import ControlError
from .hub import Hub
from .params import int_field
from .records import ChatRec, UserRec

__all__ = ["add_identity", "create_group", "set_demo_config", "set_demo_info", "upsert_user"]


def upsert_user(hub: Hub, body: dict[str, Any]) -> UserRec:
    """Create a user or update the fields given."""
    user_id = int_field(body, "id")
    if user_id is None:
        user_id = int_field(body, "user_id")
    if user_id is None:
        user_id = hub.world.new_user_id()
    if user_id <= 0:
        raise ControlError(400, "user ids are positive")
    user = hub.world.users.get(user_id)
    if user is None:
        user = UserRec(id=user_id, first_name=str(body.get("first_name") or f"User {user_id}"))
        hub.world.users[user_id] = user
    for key in ("first_name", "last_name", "username", "language_code", "phone_number"):
        if key in body and body[key] is not None:
            value = str(body[key])
            if key == "first_name" and not value:
                continue
            setattr(user, key, value or None)
    for key in ("is_premium", "started", "blocked", "deactivated"):
        if key in body and body[key] is not None:
            setattr(user, key, bool(body[key]))
    hub.notify({"type": "user", "user_id": user_id})
    return user


def create_group(hub: Hub, body: dict[str, Any]) -> ChatRec:
    """Create a group or supergroup (negative id) with the given members."""
    chat_id = int_field(body, "id")
    if chat_id is None:
        chat_id = int_field(body, "chat_id")
    if chat_id is None:
        chat_id = hub.world.new_group_id()
    if chat_id >= 0:
        raise ControlError(400, "group ids are negative")
    chat_type = str(body.get("type") or "supergroup")
    if chat_type not in ("group", "supergroup"):
        raise ControlError(400, "type must be group or supergroup")
    is_forum = bool(body.get("is_forum", True)) and chat_type == "supergroup"
    members = [int(m) for m in body.get("members") or []]
    admins = [int(m) for m in body.get("admins") or []]
    for uid in members + admins:
        hub.world.user(uid)
    chat = ChatRec(
        id=chat_id,
        type=chat_type,
        title=str(body.get("title") or "Group"),
        username=body.get("username") or None,
        is_forum=is_forum,
        members=list(dict.fromkeys(members + admins)),
        admins=admins,
    )
    hub.world.chats[chat_id] = chat
    hub.notify({"type": "chat", "chat_id": chat_id})
    return chat


def set_demo_config(hub: Hub, body: dict[str, Any]) -> dict[str, Any]:
    """Replace the demo page's identities and staff group, creating users and the group."""
    identities = body.get("identities")
    if identities is None:
        identities = hub.demo_config["identities"]
    if not isinstance(identities, list):
        raise ControlError(400, "identities must be a list")
    cleaned = [ensure_identity(hub, item) for item in identities]
    staff_group = body.get("staff_group", hub.demo_config.get("staff_group"))
    if staff_group:
        if not isinstance(staff_group, dict):
            raise ControlError(400, "staff_group must be an object")
        staff_ids = [i["id"] for i in cleaned if i.get("role") == "staff"]
        chat_id = int_field(staff_group, "id")
        if chat_id is None:
            chat_id = int_field(staff_group, "chat_id")
        chat = hub.world.chats.get(chat_id) if chat_id is not None else None
        if chat is None:
            chat = create_group(
                hub,
                {
                    "id": chat_id,
                    "title": staff_group.get("title") or "Staff",
                    "is_forum": staff_group.get("is_forum", True),
                    "members": staff_ids,
                    "admins": staff_ids,
                },
            )
        else:
            for uid in staff_ids:
                if uid not in chat.members:
                    chat.members.append(uid)
        staff_group = {**staff_group, "id": chat.id, "title": chat.title, "is_forum": chat.is_forum}
    hub.demo_config = {
        "identities": cleaned,
        "staff_group": staff_group or None,
        "info": hub.demo_config.get("info") or {},
    }
    hub.notify({"type": "demo_config"})
    return hub.demo_config


def ensure_identity(hub: Hub, item: Any) -> dict[str, Any]:
    if not isinstance(item, dict) or not item.get("first_name"):
        raise ControlError(400, "each identity needs at least first_name")
    ident = dict(item)
    if ident.get("id") is None:
        ident["id"] = hub.world.new_user_id()
    ident["id"] = int(ident["id"])
    ident.setdefault("role", "member")
    ident.setdefault("language_code", "en")
    ident.setdefault("label", f"{ident['first_name']} ({ident['language_code']})")
    upsert_user(hub, {k: v for k, v in ident.items() if k not in ("label", "role")})
    return ident


def add_identity(hub: Hub, body: dict[str, Any]) -> dict[str, Any]:
    """Append one identity to the demo page's picker (replacing one with the same id)."""
    ident = ensure_identity(hub, body)
    hub.demo_config["identities"] = [i for i in hub.demo_config["identities"] if i["id"] != ident["id"]]
    hub.demo_config["identities"].append(ident)
    hub.notify({"type": "demo_config"})
    return ident


def set_demo_info(hub: Hub, body: dict[str, Any]) -> dict[str, Any]:
    """Merge ``{timezone?, console?, user?, password?}`` into what the demo page shows."""
    hub.demo_config["info"] = {**(hub.demo_config.get("info") or {}), **body}
    hub.notify({"type": "demo_config"})
    info: dict[str, Any] = hub.demo_config["info"]
    return info
