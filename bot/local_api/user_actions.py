"""What a user does in a chat, as the tests and the demo page make them: write, share a contact or a
file, edit, press an inline button or a reply-keyboard button.  Each becomes an update for the bots."""

from __future__ import annotations

import base64
import mimetypes
import time
from typing import Any

from .errors import ControlError
from .formatting import is_bot_command_start, parse_text, utf16_len
from .hub import Hub
from .images import image_size, make_png
from .params import int_field
from .records import ChatRec, FileRec, UserRec

__all__ = ["edit_user_message", "inject_message", "press", "reply_press"]


def user_chat(hub: Hub, body: dict[str, Any]) -> tuple[UserRec, ChatRec]:
    """The user acting and the chat they act in (their private chat unless a group is named)."""
    user_id = int_field(body, "user_id", required=True)
    assert user_id is not None
    user = hub.world.user(user_id)
    chat_id = int_field(body, "chat_id")
    if chat_id is None or chat_id == user_id:
        chat = hub.world.private_chat(user_id)
        # Writing to the bot means the user has started it and (again) allows its messages.
        user.started = True
        user.blocked = False
    else:
        found = hub.world.chats.get(chat_id)
        if found is None or found.type == "private":
            raise ControlError(404, f"chat {chat_id} not found (create groups with POST /control/groups)")
        chat = found
        if user_id not in chat.members:
            chat.members.append(user_id)
    return user, chat


def user_thread(chat: ChatRec, body: dict[str, Any], reply_to: int | None) -> int | None:
    """The forum topic a user writes in (from the body or the message replied to), or ``None``."""
    thread_id = int_field(body, "thread_id")
    if thread_id is None:
        thread_id = int_field(body, "message_thread_id")
    if not chat.is_forum:
        return None
    if thread_id is None and reply_to is not None:
        target = chat.messages.get(reply_to)
        thread_id = target.thread_id if target else None
    if thread_id is None:
        return None
    topic = chat.topics.get(thread_id)
    if topic is None or topic.deleted:
        raise ControlError(400, f"thread {thread_id} not found in chat {chat.id}")
    return thread_id


def user_content(hub: Hub, user: UserRec, body: dict[str, Any]) -> dict[str, Any]:
    """What a user's message carries: a contact, a file (with caption) or text, with its entities."""
    if body.get("contact") is not None:
        given = body["contact"] if isinstance(body["contact"], dict) else {}
        contact: dict[str, Any] = {
            "phone_number": given.get("phone_number") or user.phone(),
            "first_name": given.get("first_name") or user.first_name,
        }
        last_name = given.get("last_name", user.last_name if "first_name" not in given else None)
        if last_name:
            contact["last_name"] = last_name
        contact_user = given["user_id"] if "user_id" in given else user.id
        if contact_user is not None:
            contact["user_id"] = int(contact_user)
        if given.get("vcard"):
            contact["vcard"] = given["vcard"]
        return {"contact": contact}
    for kind in ("photo", "document", "sticker", "voice", "video"):
        if body.get(kind) is None:
            continue
        spec = body[kind] if isinstance(body[kind], dict) else {}
        record: FileRec | None = None
        if spec.get("file_id"):
            record = hub.world.files.get(str(spec["file_id"]))
            if record is None:
                raise ControlError(404, f"file {spec['file_id']} not found")
        else:
            if spec.get("data_b64"):
                data = base64.b64decode(spec["data_b64"])
            elif kind in ("photo", "sticker"):
                data = make_png(64, 64)
            else:
                data = b"Local Bot API test file\n"
            if kind == "photo" and image_size(data) is None:
                raise ControlError(400, "photo bytes are not an image (PNG, JPEG, GIF, WEBP, BMP)")
            file_name = spec.get("file_name") or ("file.txt" if kind == "document" else None)
            mime = spec.get("mime_type") or (mimetypes.guess_type(file_name)[0] if file_name else None)
            record = hub.world.add_file(data, kind, file_name=file_name, mime_type=mime)
        content: dict[str, Any] = {kind: record.media()}
        caption = body.get("caption")
        if caption:
            content["caption"] = str(caption)
            entities = user_entities(str(caption))
            if entities:
                content["caption_entities"] = entities
        return content
    text = body.get("text")
    if text is None or str(text) == "":
        raise ControlError(400, "nothing to send: give text, contact, photo or document")
    content = {"text": str(text)}
    entities = user_entities(str(text))
    if entities:
        content["entities"] = entities
    return content


def inject_message(hub: Hub, body: dict[str, Any]) -> dict[str, Any]:
    """Store a user's message and queue it as an update; returns the transcript entry."""
    user, chat = user_chat(hub, body)
    content = user_content(hub, user, body)
    reply_to = int_field(body, "reply_to_message_id")
    if reply_to is None:
        reply_to = int_field(body, "reply_to")
    if reply_to is not None:
        target = chat.messages.get(reply_to)
        if target is None or target.deleted:
            raise ControlError(400, f"message {reply_to} to reply to not found")
    thread_id = user_thread(chat, body, reply_to)
    msg = hub.world.add_message(
        chat, from_id=user.id, from_bot=False, content=content, thread_id=thread_id, reply_to=reply_to
    )
    update_ids = hub.push_to_bots({"message": hub.world.message_api(msg)})
    hub.notify_message(msg)
    return {**hub.world.message_control(msg), "update_ids": update_ids}


def press(hub: Hub, body: dict[str, Any]) -> dict[str, Any]:
    """A user presses an inline button: queue a ``callback_query`` carrying ``data``."""
    user, chat = user_chat(hub, {**body, "chat_id": body.get("chat_id") or body.get("user_id")})
    message_id = int_field(body, "message_id", required=True)
    assert message_id is not None
    msg = chat.messages.get(message_id)
    if msg is None or msg.deleted:
        raise ControlError(404, f"message {message_id} not found in chat {chat.id}")
    if not msg.from_bot:
        raise ControlError(400, "only bot messages carry inline keyboards")
    data = body.get("data")
    query_id = hub.world.new_callback_id()
    query: dict[str, Any] = {
        "id": query_id,
        "from": user.api(),
        "message": hub.world.message_api(msg),
        "chat_instance": chat.chat_instance,
    }
    if data is not None:
        query["data"] = str(data)
    bot = hub.world.bot_by_id(msg.from_id)
    hub.world.callbacks[query_id] = {
        "id": query_id,
        "bot_id": msg.from_id,
        "user_id": user.id,
        "chat_id": chat.id,
        "message_id": message_id,
        "data": query.get("data"),
        "answered": False,
        "answer": None,
        "date": time.time(),
    }
    payload = {"callback_query": query}
    if bot is not None and not bot.invalid:
        update_ids = [hub.world.push_update(bot, payload)["update_id"]]
        hub.wake()
    else:
        update_ids = hub.push_to_bots(payload)
    hub.notify({"type": "press", "chat_id": chat.id, "message_id": message_id, "callback_query_id": query_id})
    return {"callback_query_id": query_id, "update_ids": update_ids}


def edit_user_message(hub: Hub, body: dict[str, Any]) -> dict[str, Any]:
    """A user edits their text message: queue an ``edited_message`` update."""
    user, chat = user_chat(hub, body)
    message_id = int_field(body, "message_id", required=True)
    assert message_id is not None
    msg = chat.messages.get(message_id)
    if msg is None or msg.deleted:
        raise ControlError(404, f"message {message_id} not found in chat {chat.id}")
    if msg.from_bot or msg.from_id != user.id:
        raise ControlError(400, "a user can only edit their own messages")
    text = str(body.get("text") or "")
    if not text:
        raise ControlError(400, "text is required")
    key = "text" if "text" in msg.content else "caption"
    hub.record_edit(msg)
    msg.content[key] = text
    entities = user_entities(text)
    msg.content.pop("entities" if key == "text" else "caption_entities", None)
    if entities:
        msg.content["entities" if key == "text" else "caption_entities"] = entities
    update_ids = hub.push_to_bots({"edited_message": hub.world.message_api(msg)})
    return {**hub.world.message_control(msg), "update_ids": update_ids}


def reply_press(hub: Hub, body: dict[str, Any]) -> dict[str, Any]:
    """A user presses a reply-keyboard button: sends its text, or the user's contact."""
    user, chat = user_chat(hub, body)
    text = str(body.get("text") or "")
    keyboard = chat.reply_keyboard
    button: dict[str, Any] | None = None
    if keyboard:
        for row in keyboard.get("keyboard", []):
            for item in row:
                if item.get("text") == text:
                    button = item
    if button is None and body.get("strict", True):
        raise ControlError(400, f"no reply-keyboard button {text!r} in chat {chat.id}")
    if keyboard and keyboard.get("one_time_keyboard"):
        chat.reply_keyboard_hidden = True
    message: dict[str, Any] = {"user_id": user.id, "chat_id": chat.id}
    if body.get("thread_id") is not None:
        message["thread_id"] = body["thread_id"]
    if button is not None and button.get("request_contact"):
        message["contact"] = {}
    else:
        message["text"] = text
    return inject_message(hub, message)


def user_entities(text: str) -> list[dict[str, Any]]:
    """Entities Telegram clients attach to what a user types (bot commands, links, mentions)."""
    _plain, entities = parse_text(text, None)
    if is_bot_command_start(text):
        # A leading command is always an entity, even when glued to other text.
        if not any(e["type"] == "bot_command" and e["offset"] == 0 for e in entities):
            length = len(text.split()[0]) if text.split() else len(text)
            entities.insert(0, {"type": "bot_command", "offset": 0, "length": utf16_len(text[:length])})
    return entities
