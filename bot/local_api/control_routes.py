"""The control API the tests and the demo page use to play users and look at what the bot did.

Control API (JSON in and out; errors are ``{"error": "..."}`` with status 400/404):

========================================  =====================================================
``GET  /control/health``                  ``{"ok": true}``
``POST /control/reset``                   forget everything (bots, users, chats, files, faults,
                                          limits, logs, demo config)
``GET  /control/bots``                    bots seen so far
``POST /control/bots``                    ``{token, first_name?, username?, invalid?}``: pre-create
                                          a bot; ``invalid: true`` makes the token answer 401
``GET  /control/users``                   all users
``POST /control/users``                   create or update a user: ``{id?, first_name, last_name?,
                                          username?, language_code?, phone_number?, is_premium?,
                                          started?=true, blocked?=false, deactivated?=false}``
``POST /control/groups``                  ``{id?, title, type?="supergroup", is_forum?=true,
                                          members?=[ids], admins?=[ids], username?}`` -> chat
``GET  /control/chats``                   all chats with their topics
``GET  /control/chat?chat_id=``           one chat with topics and current reply keyboard
``GET  /control/topics?chat_id=``         a forum's topics (including deleted ones, flagged)
``POST /control/topics``                  ``{chat_id, name, user_id?, icon_color?}``: a member
                                          creates a topic (the bot gets the service message)
``POST /control/topics/delete``           ``{chat_id, thread_id}``: staff deletes a topic
``POST /control/messages``                inject a user message: ``{user_id, chat_id?=user_id,
                                          thread_id?, reply_to_message_id?, text? | contact? |
                                          photo? | document?, caption?}``; ``contact`` is
                                          ``{phone_number?, first_name?, last_name?, user_id?}``
                                          (user_id may differ from the sender, or be null);
                                          ``photo`` / ``document`` is ``{data_b64?, file_id?,
                                          file_name?, mime_type?}`` (no bytes: a generated PNG /
                                          text file).  Returns the transcript entry.
``POST /control/edit``                    ``{user_id, chat_id?, message_id, text}`` ->
                                          ``edited_message`` update
``POST /control/press``                   ``{user_id, chat_id?, message_id, data}`` -> a
                                          ``callback_query`` (any data, forged or not);
                                          returns ``{"callback_query_id", "update_ids"}``
``POST /control/reply-press``             ``{user_id, chat_id?, text, strict?=true}``: press a
                                          reply-keyboard button (``request_contact`` sends the
                                          user's own contact)
``GET  /control/transcript?chat_id=&thread_id=&include_deleted=1``
                                          ``{chat, messages, reply_keyboard, reply_keyboard_hidden,
                                          topics}``; every message has direction, text, caption,
                                          entities, reply_markup, edits, deleted, file ids,
                                          thread_id, callback_answers and the API ``message``
``GET  /control/wait?chat_id=&after_id=0&contains=&thread_id=&timeout=10``
                                          long-poll for the first bot message after ``after_id``
                                          -> ``{"message": entry | null, "timed_out": bool}``
``GET  /control/events?since=0&timeout=0``  long-poll the change feed used by the demo page
                                          (``since=-1``: just the current ``seq``)
``GET  /control/calls?method=&chat_id=&since=``  bot method call log (method, chat_id, time,
                                          outcome, error_code, description, params)
``GET  /control/stats``                   ``{delivered, rate_limited, errors, calls, totals}``
``GET  /control/faults``                  queued faults
``POST /control/faults``                  ``{kind: "429"|"500"|"502"|"403"|"delay"|"error",
                                          method?="*", chat_id?, count?=1, retry_after?=1,
                                          delay?=0, error_code?, description?}``
``POST /control/faults/clear``            drop all queued faults
``GET  /control/limits`` / ``POST``       rate limits (see :class:`Limits`)
``GET  /control/files/{file_id}``         the file's bytes (``?download=1`` as attachment)
``GET  /control/callback-answers?callback_query_id=&chat_id=&message_id=&timeout=0``
                                          the bot's answers (long-polls until one exists)
``GET  /control/commands?bot_id=``        commands stored by setMyCommands
``GET  /control/updates?bot_id=``         updates not yet confirmed by the bot
``GET  /control/demo-config`` / ``POST``  ``{"identities": [...], "staff_group": {...} | null}``
``POST /control/demo-config/identities``  append one identity
``POST /control/demo-config/info``        merge ``{timezone?, console?, user?, password?}`` into what
                                          the page shows (bubble times in the shop's zone, the
                                          operator console's address)
========================================  =====================================================

Faults are described in :mod:`.faults`, flood limits in :mod:`.limits`.  Each route is registered once,
with :func:`route`, where it is written.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from typing import Any

from aiohttp import web

from . import user_actions, users
from .errors import ControlError
from .hub import Hub
from .params import TOKEN_RE, dumps, int_field, query_int, read_body
from .records import ChatRec, MsgRec

__all__ = ["ROUTES", "add_control_routes", "chat_control", "transcript_of"]


ControlHandler = Callable[[Hub, web.Request], Awaitable[Any]]
# (verb, path, handler, plain): a plain handler answers its own response, unwrapped.
ROUTES: list[tuple[str, str, ControlHandler, bool]] = []


def route(verb: str, path: str, *, plain: bool = False) -> Callable[[ControlHandler], ControlHandler]:
    """Register the decorated function as the control route ``verb path``."""

    def register(handler: ControlHandler) -> ControlHandler:
        ROUTES.append((verb, path, handler, plain))
        return handler

    return register


def add_control_routes(app: web.Application, hub: Hub) -> None:
    """Serve every control route of :data:`ROUTES` for ``hub`` on ``app``."""
    for verb, path, handler, plain in ROUTES:
        if plain:
            app.router.add_get(path, _bound(hub, handler))
        else:
            app.router.add_route(verb, path, _wrapped(hub, handler))


def _bound(hub: Hub, handler: ControlHandler) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def bound(request: web.Request) -> web.StreamResponse:
        response: web.StreamResponse = await handler(hub, request)
        return response

    return bound


def _wrapped(hub: Hub, handler: ControlHandler) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """Answer the handler's result as JSON, and its refusals as ``{"error": ...}`` with their status."""

    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            result = await handler(hub, request)
        except ControlError as exc:
            return web.json_response({"error": exc.message}, status=exc.status)
        except (ValueError, TypeError, KeyError) as exc:
            return web.json_response({"error": f"{type(exc).__name__}: {exc}"}, status=400)
        if isinstance(result, web.StreamResponse):
            return result
        return web.json_response(result, dumps=dumps)

    return wrapped


def chat_control(hub: Hub, chat: ChatRec) -> dict[str, Any]:
    """A chat as the control API shows it: members, topics, the current reply keyboard."""
    return {
        **hub.world.chat_api(chat),
        "members": chat.members,
        "admins": chat.admins,
        "topics": [t.control() for t in chat.topics.values()],
        "reply_keyboard": chat.reply_keyboard,
        "reply_keyboard_hidden": chat.reply_keyboard_hidden,
        "message_count": len(chat.messages),
    }


def transcript_of(
    hub: Hub, chat_id: int, thread_id: int | None = None, include_deleted: bool = True, after_id: int = 0
) -> dict[str, Any]:
    """All messages of a chat (optionally one thread), both directions."""
    chat = hub.world.chats.get(chat_id)
    if chat is None:
        if chat_id in hub.world.users:
            chat = hub.world.private_chat(chat_id)
        else:
            raise ControlError(404, f"chat {chat_id} not found")
    messages = [
        hub.world.message_control(m)
        for m in sorted(chat.messages.values(), key=lambda m: m.message_id)
        if (include_deleted or not m.deleted)
        and (thread_id is None or m.thread_id == thread_id or (thread_id == 0 and m.thread_id is None))
        and m.message_id > after_id
    ]
    return {
        "chat": chat_control(hub, chat),
        "messages": messages,
        "reply_keyboard": None if chat.reply_keyboard_hidden else chat.reply_keyboard,
        "reply_keyboard_hidden": chat.reply_keyboard_hidden,
        "topics": [t.control() for t in chat.topics.values()],
    }


@route("GET", "/control/health")
async def health(hub: Hub, request: web.Request) -> Any:
    return {"ok": True}


@route("POST", "/control/reset")
async def reset(hub: Hub, request: web.Request) -> Any:
    hub.reset()
    return {"ok": True}


@route("GET", "/control/bots")
async def bots(hub: Hub, request: web.Request) -> Any:
    return [
        {
            **b.me(),
            "token": b.token,
            "invalid": b.invalid,
            "pending_updates": len(b.updates),
            "webhook_url": b.webhook.url if b.webhook else None,
        }
        for b in hub.world.bots.values()
    ]


@route("POST", "/control/bots")
async def create_bot(hub: Hub, request: web.Request) -> Any:
    body = await read_body(request)
    token = str(body.get("token") or "")
    if not TOKEN_RE.fullmatch(token):
        raise ControlError(400, "token must look like <digits>:<letters>")
    bot = hub.world.bot_for_token(token)
    if body.get("first_name"):
        bot.first_name = str(body["first_name"])
    if body.get("username"):
        bot.username = str(body["username"])
    if "invalid" in body:
        bot.invalid = bool(body["invalid"])
    return {**bot.me(), "token": bot.token, "invalid": bot.invalid}


@route("GET", "/control/users")
async def list_users(hub: Hub, request: web.Request) -> Any:
    return [u.control() for u in hub.world.users.values()]


@route("POST", "/control/users")
async def upsert_user(hub: Hub, request: web.Request) -> Any:
    return users.upsert_user(hub, await read_body(request)).control()


@route("POST", "/control/groups")
async def create_group(hub: Hub, request: web.Request) -> Any:
    return chat_control(hub, users.create_group(hub, await read_body(request)))


@route("GET", "/control/chats")
async def chats(hub: Hub, request: web.Request) -> Any:
    return [chat_control(hub, c) for c in hub.world.chats.values()]


@route("GET", "/control/chat")
async def chat(hub: Hub, request: web.Request) -> Any:
    chat_id = query_int(request, "chat_id", required=True)
    chat = hub.find_chat(chat_id)
    if chat is None:
        raise ControlError(404, f"chat {chat_id} not found")
    return chat_control(hub, chat)


@route("GET", "/control/topics")
async def topics(hub: Hub, request: web.Request) -> Any:
    chat = hub.world.chats.get(query_int(request, "chat_id", required=True) or 0)
    if chat is None:
        raise ControlError(404, "chat not found")
    return [t.control() for t in chat.topics.values()]


@route("POST", "/control/topics")
async def create_topic(hub: Hub, request: web.Request) -> Any:
    body = await read_body(request)
    chat = hub.world.chats.get(int_field(body, "chat_id", required=True) or 0)
    if chat is None or not chat.is_forum:
        raise ControlError(404, "forum chat not found")
    user_id = int_field(body, "user_id")
    if user_id is None:
        user_id = chat.admins[0] if chat.admins else (chat.members[0] if chat.members else None)
    if user_id is None:
        raise ControlError(400, "user_id is required (the group has no members)")
    hub.world.user(user_id)
    topic = hub.create_topic(
        chat,
        str(body.get("name") or "Topic"),
        int_field(body, "icon_color"),
        None,
        from_id=user_id,
        from_bot=False,
    )
    return topic.control()


@route("POST", "/control/topics/delete")
async def delete_topic(hub: Hub, request: web.Request) -> Any:
    body = await read_body(request)
    chat = hub.world.chats.get(int_field(body, "chat_id", required=True) or 0)
    thread_id = int_field(body, "thread_id", required=True)
    if thread_id is None:
        thread_id = int_field(body, "message_thread_id")
    topic = chat.topics.get(thread_id or 0) if chat else None
    if chat is None or topic is None:
        raise ControlError(404, "topic not found")
    hub.remove_topic(chat, topic)
    return {"ok": True}


@route("POST", "/control/messages")
async def inject_message(hub: Hub, request: web.Request) -> Any:
    return user_actions.inject_message(hub, await read_body(request))


@route("POST", "/control/edit")
async def edit(hub: Hub, request: web.Request) -> Any:
    return user_actions.edit_user_message(hub, await read_body(request))


@route("POST", "/control/press")
async def press(hub: Hub, request: web.Request) -> Any:
    return user_actions.press(hub, await read_body(request))


@route("POST", "/control/reply-press")
async def reply_press(hub: Hub, request: web.Request) -> Any:
    return user_actions.reply_press(hub, await read_body(request))


@route("GET", "/control/transcript")
async def transcript(hub: Hub, request: web.Request) -> Any:
    chat_id = query_int(request, "chat_id", required=True)
    assert chat_id is not None
    include_deleted = request.query.get("include_deleted", "1").lower() not in ("0", "false", "no")
    return transcript_of(
        hub, chat_id, query_int(request, "thread_id"), include_deleted, query_int(request, "after_id") or 0
    )


@route("GET", "/control/wait")
async def wait(hub: Hub, request: web.Request) -> Any:
    chat_id = query_int(request, "chat_id", required=True)
    after_id = query_int(request, "after_id") or 0
    thread_id = query_int(request, "thread_id")
    contains = request.query.get("contains") or None
    timeout = min(float(request.query.get("timeout", "10")), 300.0)

    def found() -> MsgRec | None:
        chat = hub.world.chats.get(chat_id or 0)
        if chat is None:
            return None
        for msg in sorted(chat.messages.values(), key=lambda m: m.message_id):
            if (
                msg.from_bot
                and not msg.deleted
                and msg.message_id > after_id
                and (thread_id is None or msg.thread_id == thread_id)
                and (contains is None or contains in msg.text_or_caption())
            ):
                return msg
        return None

    msg = await hub.wait_until(found, timeout)
    if msg is None:
        return {"message": None, "timed_out": True}
    return {"message": hub.world.message_control(msg), "timed_out": False}


@route("GET", "/control/events")
async def events(hub: Hub, request: web.Request) -> Any:
    since = query_int(request, "since") or 0
    if since < 0:
        # A client that is just starting only wants to know where the feed is.
        return {"seq": hub.event_seq, "events": [], "gap": False, "instance": hub.instance}
    if since > hub.event_seq:
        # The client followed an earlier run of this server: it must reload, not wait for seq to catch up.
        return {"seq": hub.event_seq, "events": [], "gap": True, "instance": hub.instance}
    timeout = min(float(request.query.get("timeout", "0")), 60.0)

    def newer() -> list[dict[str, Any]]:
        return [e for e in hub.events if e["seq"] > since]

    events = await hub.wait_until(newer, timeout)
    oldest = hub.events[0]["seq"] if hub.events else hub.event_seq + 1
    return {
        "seq": hub.event_seq,
        "events": events or [],
        "gap": since + 1 < oldest and since > 0,
        "instance": hub.instance,
    }


@route("GET", "/control/calls")
async def calls(hub: Hub, request: web.Request) -> Any:
    method = request.query.get("method")
    chat_id = query_int(request, "chat_id")
    since = query_int(request, "since") or 0
    return [
        c
        for c in hub.calls
        if c["seq"] > since
        and (method is None or c["method"].lower() == method.lower())
        and (chat_id is None or c["chat_id"] == chat_id)
    ]


@route("GET", "/control/stats")
async def stats(hub: Hub, request: web.Request) -> Any:
    return hub.stats()


@route("GET", "/control/faults")
async def faults(hub: Hub, request: web.Request) -> Any:
    return hub.faults.listing()


@route("POST", "/control/faults")
async def add_fault(hub: Hub, request: web.Request) -> Any:
    return asdict(hub.faults.add(await read_body(request)))


@route("POST", "/control/faults/clear")
async def clear_faults(hub: Hub, request: web.Request) -> Any:
    hub.faults.clear()
    return {"ok": True}


@route("GET", "/control/limits")
async def limits(hub: Hub, request: web.Request) -> Any:
    return asdict(hub.limits)


@route("POST", "/control/limits")
async def set_limits(hub: Hub, request: web.Request) -> Any:
    return hub.limiter.update(await read_body(request))


@route("GET", "/control/files/{file_id}", plain=True)
async def file_bytes(hub: Hub, request: web.Request) -> web.StreamResponse:
    record = hub.world.files.get(request.match_info["file_id"])
    if record is None:
        return web.json_response({"error": "file not found"}, status=404)
    headers = {"Cache-Control": "max-age=3600"}
    if request.query.get("download"):
        name = record.file_name or record.file_path.rsplit("/", 1)[-1]
        headers["Content-Disposition"] = f'attachment; filename="{name}"'
    return web.Response(
        body=record.data, content_type=record.mime_type or "application/octet-stream", headers=headers
    )


@route("GET", "/control/callback-answers")
async def callback_answers(hub: Hub, request: web.Request) -> Any:
    query_id = request.query.get("callback_query_id")
    chat_id = query_int(request, "chat_id")
    message_id = query_int(request, "message_id")
    timeout = min(float(request.query.get("timeout", "0")), 300.0)

    def answers() -> list[dict[str, Any]]:
        return [
            {
                **c["answer"],
                "user_id": c["user_id"],
                "chat_id": c["chat_id"],
                "message_id": c["message_id"],
                "data": c["data"],
            }
            for c in hub.world.callbacks.values()
            if c["answered"]
            and (query_id is None or c["id"] == query_id)
            and (chat_id is None or c["chat_id"] == chat_id)
            and (message_id is None or c["message_id"] == message_id)
        ]

    # With a timeout this long-polls until at least one matching answer exists.
    return await hub.wait_until(answers, timeout)


@route("GET", "/control/commands")
async def commands(hub: Hub, request: web.Request) -> Any:
    bot_id = query_int(request, "bot_id")
    return [
        {"bot_id": bot.id, "scope": json.loads(scope), "language_code": language, "commands": commands}
        for bot in hub.world.bots.values()
        if bot_id is None or bot.id == bot_id
        for (scope, language), commands in bot.commands.items()
    ]


@route("GET", "/control/updates")
async def updates(hub: Hub, request: web.Request) -> Any:
    bot_id = query_int(request, "bot_id")
    return {
        "bots": {str(b.id): b.updates for b in hub.world.bots.values() if bot_id is None or b.id == bot_id},
        "orphans": hub.world.orphan_updates,
    }


@route("GET", "/control/demo-config")
async def demo_config(hub: Hub, request: web.Request) -> Any:
    bot = next(iter(hub.world.live_bots()), None)
    return {**hub.demo_config, "bot": bot.me() if bot else None}


@route("POST", "/control/demo-config")
async def set_demo_config(hub: Hub, request: web.Request) -> Any:
    return users.set_demo_config(hub, await read_body(request))


@route("POST", "/control/demo-config/info")
async def set_demo_info(hub: Hub, request: web.Request) -> Any:
    return users.set_demo_info(hub, await read_body(request))


@route("POST", "/control/demo-config/identities")
async def add_identity(hub: Hub, request: web.Request) -> Any:
    return users.add_identity(hub, await read_body(request))
