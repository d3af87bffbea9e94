"""A local stand-in for the Telegram Bot API server, with a control API and a demo chat page.

``LocalBotApi`` is an aiohttp application that answers Bot API calls at
``<url>/bot<token>/<method>`` (GET or POST; JSON, url-encoded or multipart bodies, ``attach://``
files) the way api.telegram.org does, so aiogram 3 and python-telegram-bot 22 run against it
unmodified.  A bot is whatever token calls it: any ``<digits>:<chars>`` token is accepted and the
bot's id is the digits.  Files are downloaded at ``<url>/file/bot<token>/<file_path>``.

Bot API methods: getMe, logOut, close, getUpdates (offset, limit, long-poll timeout,
allowed_updates; 409 while a webhook is set or when a newer getUpdates supersedes a waiting one),
setWebhook / deleteWebhook / getWebhookInfo (updates are POSTed as JSON with
``X-Telegram-Bot-Api-Secret-Token``; non-2xx answers are retried with back-off; a JSON or form
reply carrying ``method`` is executed like Telegram does), sendMessage, sendPhoto, sendDocument,
sendSticker, sendVoice, sendVideo, sendAudio, sendAnimation, sendContact, sendLocation,
sendMediaGroup, copyMessage, forwardMessage, editMessageText, editMessageCaption,
editMessageReplyMarkup, deleteMessage, deleteMessages, answerCallbackQuery, setMyCommands /
getMyCommands / deleteMyCommands (per scope and language), sendChatAction, getChat,
getChatMember, getChatAdministrators, getChatMemberCount, getFile, createForumTopic,
editForumTopic, closeForumTopic, reopenForumTopic, deleteForumTopic, plus accepting no-ops
(pinChatMessage, setMyDescription, setChatMenuButton, ...).  Unknown methods answer
``404 Not Found: method not found``.  Text is parsed with ``parse_mode`` into plain text +
entities (UTF-16 offsets); bad markup answers ``400 Bad Request: can't parse entities: ...``.

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

Faults: ``method: "*"`` matches every method except getUpdates, getMe and the webhook methods
(so a poller cannot swallow a fault meant for a send).  A ``delay`` fault sleeps and then
answers normally, so the message *is* delivered even if the client gave up waiting.

The demo page is served at ``/`` (files in ``page/``) and talks only to the control API.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import copy
import email.parser
import email.policy
import itertools
import json
import logging
import math
import mimetypes
import re
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from .formatting import EntityParseError, is_bot_command_start, parse_text, utf16_len
from .saved import COUNTERS, SavedWorld
from .world import (
    CONTENT_KEYS,
    MEDIA_KINDS,
    TOPIC_COLORS,
    BotRec,
    ChatRec,
    FileRec,
    MsgRec,
    TopicRec,
    UserRec,
    WebhookRec,
    World,
    image_size,
    make_png,
    now,
)

__all__ = ["ApiError", "Limits", "LocalBotApi"]

log = logging.getLogger(__name__)

PAGE_DIR = Path(__file__).with_name("page")
TOKEN_RE = re.compile(r"(\d{1,20}):([A-Za-z0-9_-]{1,100})")
MAX_TEXT = 4096
MAX_CAPTION = 1024
MAX_CALLBACK_DATA = 64
MAX_PHOTO_BYTES = 10 * 1024 * 1024
MAX_UPLOAD_BYTES = 50 * 1024 * 1024

SEND_METHODS = frozenset(
    {
        "sendMessage",
        "sendPhoto",
        "sendDocument",
        "sendSticker",
        "sendVoice",
        "sendVideo",
        "sendAudio",
        "sendAnimation",
        "sendContact",
        "sendLocation",
        "sendMediaGroup",
        "copyMessage",
        "forwardMessage",
    }
)
# A "*" fault must not be eaten by the poller or by start-up calls.
WILDCARD_EXEMPT = frozenset({"getUpdates", "getMe", "setWebhook", "deleteWebhook", "getWebhookInfo"})
DEFAULT_UPDATE_TYPES = frozenset(
    {
        "message",
        "edited_message",
        "channel_post",
        "edited_channel_post",
        "callback_query",
        "inline_query",
        "chosen_inline_result",
        "my_chat_member",
        "chat_join_request",
        "poll",
        "poll_answer",
    }
)
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
COMMAND_RE = re.compile(r"[a-z0-9_]{1,32}")
LANGUAGE_RE = re.compile(r"[a-z]{2}")

DEFAULT_IDENTITIES: list[dict[str, Any]] = [
    {
        "id": 1001,
        "first_name": "Ann",
        "last_name": "Lee",
        "username": "ann_lee",
        "language_code": "en",
        "label": "Ann (English)",
        "role": "member",
    },
    {
        "id": 1002,
        "first_name": "小明",
        "language_code": "zh-hans",
        "label": "小明 (简体中文)",
        "role": "member",
    },
    {
        "id": 1003,
        "first_name": "阿美",
        "language_code": "zh-hant",
        "label": "阿美 (繁體中文)",
        "role": "member",
    },
]


QUERY_INVALID = "query is too old and response timeout expired or query ID is invalid"


class ApiError(Exception):
    """A Bot API error answer: ``{"ok": false, "error_code": ..., "description": ...}``."""

    def __init__(self, code: int, description: str, *, retry_after: int | None = None) -> None:
        super().__init__(description)
        self.code = code
        self.description = description
        self.retry_after = retry_after

    def body(self) -> dict[str, Any]:
        """The JSON body Telegram sends for this error."""
        data: dict[str, Any] = {"ok": False, "error_code": self.code, "description": self.description}
        if self.retry_after is not None:
            data["parameters"] = {"retry_after": self.retry_after}
        return data


def bad(description: str) -> ApiError:
    """A 400 Bad Request error."""
    return ApiError(400, f"Bad Request: {description}")


class ControlError(Exception):
    """A control API error (status plus message)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


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


@dataclass
class Fault:
    """A queued failure: the next ``remaining`` matching calls misbehave."""

    id: int
    kind: str
    method: str = "*"
    chat_id: int | None = None
    remaining: int = 1
    retry_after: int = 1
    delay: float = 0.0
    error_code: int | None = None
    description: str | None = None

    def matches(self, method: str, chat_id: int | None) -> bool:
        """True when this fault applies to a call of ``method`` for ``chat_id``."""
        if self.remaining <= 0:
            return False
        if self.method == "*":
            if method in WILDCARD_EXEMPT:
                return False
        elif self.method.lower() != method.lower():
            return False
        return self.chat_id is None or self.chat_id == chat_id


@dataclass
class Limits:
    """Flood limits, off by default.

    Defaults follow Telegram's published guidance: about 30 messages a second per bot overall,
    one message a second per private chat and 20 messages a minute per group.  Per-chat limits
    are token buckets: a private chat may burst ``private_burst`` (3) messages and then refills
    at ``private_per_second``; a group may burst ``group_burst`` (20) and refills at
    ``group_per_minute``/60 per second.  Telegram itself tolerates short bursts the same way.
    """

    enabled: bool = False
    global_per_second: float = 30.0
    private_per_second: float = 1.0
    private_burst: int = 3
    group_per_minute: float = 20.0
    group_burst: int = 20


class _Bucket:
    """A token bucket: ``capacity`` tokens, refilled at ``rate`` per second."""

    def __init__(self, capacity: float, rate: float) -> None:
        self.capacity = max(capacity, 1.0)
        self.rate = max(rate, 1e-9)
        self.tokens = self.capacity
        self.stamp = time.monotonic()

    def refill(self, moment: float) -> None:
        if moment > self.stamp:
            self.tokens = min(self.capacity, self.tokens + (moment - self.stamp) * self.rate)
            self.stamp = moment

    def wait_time(self) -> float:
        """Seconds until one token is available (0 when one is)."""
        return 0.0 if self.tokens >= 1 else (1 - self.tokens) / self.rate


Handler = Callable[[BotRec, Params], Awaitable[Any]]
ControlHandler = Callable[[web.Request], Awaitable[Any]]


class LocalBotApi:
    """The local Bot API server: ``await start()``, point a bot at :attr:`url`, ``await stop()``."""

    def __init__(
        self,
        *,
        serve_page: bool = True,
        webhook_retry_delay: float = 0.2,
        webhook_retry_max: float = 5.0,
        webhook_timeout: float = 10.0,
        call_log_size: int = 10_000,
        state_path: str | Path | None = None,
    ) -> None:
        """``state_path``: a SQLite file that keeps users, chats, topics, files and ids across restarts."""
        self.world = World()
        self._saved = SavedWorld(state_path) if state_path is not None else None
        # Changes with every start, so a page that outlived a restart knows to reload what it shows.
        self.instance = secrets.token_hex(6)
        self.limits = Limits()
        self.serve_page = serve_page
        self.webhook_retry_delay = webhook_retry_delay
        self.webhook_retry_max = webhook_retry_max
        self.webhook_timeout = webhook_timeout
        self._call_log_size = call_log_size
        self._runner: web.AppRunner | None = None
        self._url = ""
        self._client: aiohttp.ClientSession | None = None
        self._changed = asyncio.Event()
        self._stopping = False
        self._webhook_tasks: dict[str, asyncio.Task[None]] = {}
        self._methods: dict[str, tuple[str, Handler]] = {}
        self._register_methods()
        self._reset_state()

    # ------------------------------------------------------------------------------- lifecycle

    @property
    def url(self) -> str:
        """The server root, e.g. ``http://127.0.0.1:8080`` (empty before :meth:`start`)."""
        return self._url

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        """Start listening; returns once the socket accepts connections."""
        if self._runner is not None:
            raise RuntimeError("LocalBotApi is already running")
        self._stopping = False
        self._changed = asyncio.Event()
        if self._saved is not None:
            saved_config = self._saved.load(self.world)
            if saved_config:
                self._demo_config = saved_config
            self._saved.follow(lambda: (self.world, self._demo_config))
        app = web.Application(client_max_size=MAX_UPLOAD_BYTES + 1024 * 1024)
        self._add_routes(app)
        # handler_cancellation: a client that gives up on a long poll must not leave a handler behind.
        runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=1.0, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            if self._saved is not None:
                await self._saved.close(self.world, self._demo_config)
            raise
        self._runner = runner
        addresses = runner.addresses
        bound_port = int(addresses[0][1]) if addresses else port
        shown_host = host if host not in ("0.0.0.0", "::", "") else "127.0.0.1"
        self._url = f"http://{shown_host}:{bound_port}"
        self._client = aiohttp.ClientSession()

    async def stop(self) -> None:
        """Stop listening, end long polls and webhook deliveries."""
        self._stopping = True
        self._wake()
        for task in list(self._webhook_tasks.values()):
            task.cancel()
        for task in list(self._webhook_tasks.values()):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._webhook_tasks.clear()
        if self._client is not None:
            await self._client.close()
            self._client = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._saved is not None:
            await self._saved.close(self.world, self._demo_config)

    async def __aenter__(self) -> LocalBotApi:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def _reset_state(self) -> None:
        for task in self._webhook_tasks.values():
            task.cancel()
        self._webhook_tasks = {}
        self.world = World()
        self.limits = Limits()
        self._faults: list[Fault] = []
        self._fault_ids = itertools.count(1)
        self._buckets: dict[tuple[int, int | None], _Bucket] = {}
        self._calls: collections.deque[dict[str, Any]] = collections.deque(maxlen=self._call_log_size)
        self._call_seq = itertools.count(1)
        self._stats: dict[str, collections.Counter[str]] = {
            "calls": collections.Counter(),
            "delivered": collections.Counter(),
            "rate_limited": collections.Counter(),
            "errors": collections.Counter(),
        }
        self._events: collections.deque[dict[str, Any]] = collections.deque(maxlen=5000)
        self._event_seq = 0
        self._demo_config: dict[str, Any] = {
            "identities": copy.deepcopy(DEFAULT_IDENTITIES),
            "staff_group": None,
            "info": {},
        }

    def reset(self) -> None:
        """Forget everything, as ``POST /control/reset`` does."""
        old = self.world
        self._reset_state()
        if self._saved is not None:
            for name in COUNTERS:  # a reset forgets the chats, never the ids it handed out
                setattr(self.world, name, getattr(old, name))
            self._saved.clear(self.world)
        self._notify({"type": "reset"})

    # --------------------------------------------------------------------------- notification

    def _wake(self) -> None:
        if self._saved is not None:
            self._saved.changed()
        event = self._changed
        self._changed = asyncio.Event()
        event.set()

    def _notify(self, event: dict[str, Any]) -> None:
        self._event_seq += 1
        self._events.append({"seq": self._event_seq, "time": time.time(), **event})
        self._wake()

    async def _wait_until(self, predicate: Callable[[], Any], timeout: float) -> Any:  # noqa: ASYNC109
        """Re-check ``predicate`` on every change until it is truthy or ``timeout`` passes."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(timeout, 0.0)
        while True:
            result = predicate()
            if result or self._stopping:
                return result
            remaining = deadline - loop.time()
            if remaining <= 0:
                return result
            event = self._changed
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), remaining)

    # --------------------------------------------------------------------------------- routes

    def _add_routes(self, app: web.Application) -> None:
        app.router.add_route("*", r"/bot{token}/{method}", self._bot_endpoint)
        app.router.add_get(r"/file/bot{token}/{path:.+}", self._file_endpoint)
        control: list[tuple[str, str, ControlHandler]] = [
            ("GET", "/control/health", self._c_health),
            ("POST", "/control/reset", self._c_reset),
            ("GET", "/control/bots", self._c_bots),
            ("POST", "/control/bots", self._c_create_bot),
            ("GET", "/control/users", self._c_users),
            ("POST", "/control/users", self._c_upsert_user),
            ("POST", "/control/groups", self._c_create_group),
            ("GET", "/control/chats", self._c_chats),
            ("GET", "/control/chat", self._c_chat),
            ("GET", "/control/topics", self._c_topics),
            ("POST", "/control/topics", self._c_create_topic),
            ("POST", "/control/topics/delete", self._c_delete_topic),
            ("POST", "/control/messages", self._c_inject_message),
            ("POST", "/control/edit", self._c_edit),
            ("POST", "/control/press", self._c_press),
            ("POST", "/control/reply-press", self._c_reply_press),
            ("GET", "/control/transcript", self._c_transcript),
            ("GET", "/control/wait", self._c_wait),
            ("GET", "/control/events", self._c_events),
            ("GET", "/control/calls", self._c_calls),
            ("GET", "/control/stats", self._c_stats),
            ("GET", "/control/faults", self._c_faults),
            ("POST", "/control/faults", self._c_add_fault),
            ("POST", "/control/faults/clear", self._c_clear_faults),
            ("GET", "/control/limits", self._c_limits),
            ("POST", "/control/limits", self._c_set_limits),
            ("GET", "/control/callback-answers", self._c_callback_answers),
            ("GET", "/control/commands", self._c_commands),
            ("GET", "/control/updates", self._c_updates),
            ("GET", "/control/demo-config", self._c_demo_config),
            ("POST", "/control/demo-config", self._c_set_demo_config),
            ("POST", "/control/demo-config/identities", self._c_add_identity),
            ("POST", "/control/demo-config/info", self._c_set_demo_info),
        ]
        for verb, path, handler in control:
            app.router.add_route(verb, path, self._control_wrapper(handler))
        app.router.add_get("/control/files/{file_id}", self._c_file)
        if self.serve_page:
            app.router.add_get("/", self._page_index)
            app.router.add_get("/static/{name}", self._page_static)

    # ------------------------------------------------------------------------- Bot API plumbing

    def _register_methods(self) -> None:
        names = [
            "getMe",
            "logOut",
            "close",
            "getUpdates",
            "setWebhook",
            "deleteWebhook",
            "getWebhookInfo",
            "sendMessage",
            "sendPhoto",
            "sendDocument",
            "sendSticker",
            "sendVoice",
            "sendVideo",
            "sendAudio",
            "sendAnimation",
            "sendContact",
            "sendLocation",
            "sendMediaGroup",
            "copyMessage",
            "forwardMessage",
            "editMessageText",
            "editMessageCaption",
            "editMessageReplyMarkup",
            "deleteMessage",
            "deleteMessages",
            "answerCallbackQuery",
            "setMyCommands",
            "getMyCommands",
            "deleteMyCommands",
            "sendChatAction",
            "getChat",
            "getChatMember",
            "getChatAdministrators",
            "getChatMemberCount",
            "getFile",
            "createForumTopic",
            "editForumTopic",
            "closeForumTopic",
            "reopenForumTopic",
            "deleteForumTopic",
            "getMyDescription",
            "getMyShortDescription",
            "getMyName",
            "getChatMenuButton",
            "getForumTopicIconStickers",
        ]
        for name in names:
            self._methods[name.lower()] = (name, getattr(self, f"_m_{name}"))
        for name in (
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
        ):
            self._methods[name.lower()] = (name, self._m_accept)

    async def _bot_endpoint(self, request: web.Request) -> web.Response:
        token = request.match_info["token"]
        if not TOKEN_RE.fullmatch(token):
            return _api_response(404, {"ok": False, "error_code": 404, "description": "Not Found"})
        try:
            params = await Params.from_request(request)
        except ApiError as exc:
            return _api_response(exc.code, exc.body())
        bot = self.world.bot_for_token(token)
        status, body = await self.execute(bot, request.match_info["method"], params)
        return _api_response(status, body)

    async def execute(self, bot: BotRec, method: str, params: Params) -> tuple[int, dict[str, Any]]:
        """Run one Bot API call for ``bot``; returns ``(http_status, json_body)``."""
        started = time.time()
        entry = self._methods.get(method.lower())
        canonical = entry[0] if entry else method
        chat_id = _loggable_chat_id(params.raw.get("chat_id"))
        outcome = "ok"
        try:
            if bot.invalid:
                raise ApiError(401, "Unauthorized")
            if entry is None:
                raise ApiError(404, "Not Found: method not found")
            fault = self._take_fault(canonical, chat_id)
            if fault is not None:
                outcome = "fault"
                await self._apply_fault(fault)
                outcome = "delayed"
            if canonical in SEND_METHODS and self.limits.enabled:
                self._check_limits(bot, params)
            result = await entry[1](bot, params)
            status, body = 200, {"ok": True, "result": result}
        except ApiError as exc:
            status, body = exc.code, exc.body()
            if exc.code == 429:
                self._stats["rate_limited"][canonical] += 1
                outcome = "fault" if outcome == "fault" else "rate_limited"
            elif outcome != "fault":
                outcome = "error"
            self._stats["errors"][f"{canonical} {exc.code}"] += 1
        self._stats["calls"][canonical] += 1
        record: dict[str, Any] = {
            "seq": next(self._call_seq),
            "time": started,
            "duration": round(time.time() - started, 4),
            "bot_id": bot.id,
            "method": canonical,
            "chat_id": chat_id,
            "thread_id": _loggable_chat_id(params.raw.get("message_thread_id")),
            "outcome": outcome,
            "ok": body.get("ok", False),
            "error_code": body.get("error_code"),
            "description": body.get("description"),
            "params": params.summary(),
        }
        result = body.get("result")
        if isinstance(result, dict) and "message_id" in result:
            record["message_id"] = result["message_id"]
        self._calls.append(record)
        if canonical != "getUpdates":
            self._notify({"type": "call", "method": canonical, "chat_id": chat_id, "outcome": outcome})
        return status, body

    def _take_fault(self, method: str, chat_id: int | None) -> Fault | None:
        for fault in self._faults:
            if fault.matches(method, chat_id):
                fault.remaining -= 1
                if fault.remaining <= 0:
                    self._faults.remove(fault)
                return fault
        return None

    async def _apply_fault(self, fault: Fault) -> None:
        if fault.kind == "delay":
            await asyncio.sleep(fault.delay)
            return
        if fault.kind == "429":
            raise ApiError(
                429, f"Too Many Requests: retry after {fault.retry_after}", retry_after=fault.retry_after
            )
        if fault.kind == "500":
            raise ApiError(500, fault.description or "Internal Server Error")
        if fault.kind == "502":
            raise ApiError(502, fault.description or "Bad Gateway")
        if fault.kind == "403":
            raise ApiError(403, fault.description or "Forbidden: bot was blocked by the user")
        raise ApiError(fault.error_code or 400, fault.description or "Bad Request: injected fault")

    def _check_limits(self, bot: BotRec, params: Params) -> None:
        chat = self._find_chat(params.raw.get("chat_id"))
        moment = time.monotonic()
        buckets: list[_Bucket] = []
        key_global = (bot.id, None)
        if key_global not in self._buckets:
            self._buckets[key_global] = _Bucket(self.limits.global_per_second, self.limits.global_per_second)
        buckets.append(self._buckets[key_global])
        if chat is not None:
            key_chat = (bot.id, chat.id)
            if key_chat not in self._buckets:
                if chat.type == "private":
                    self._buckets[key_chat] = _Bucket(
                        self.limits.private_burst, self.limits.private_per_second
                    )
                else:
                    self._buckets[key_chat] = _Bucket(
                        self.limits.group_burst, self.limits.group_per_minute / 60
                    )
            buckets.append(self._buckets[key_chat])
        for bucket in buckets:
            bucket.refill(moment)
        wait = max(bucket.wait_time() for bucket in buckets)
        if wait > 0:
            retry_after = max(1, math.ceil(wait))
            raise ApiError(429, f"Too Many Requests: retry after {retry_after}", retry_after=retry_after)
        for bucket in buckets:
            bucket.tokens -= 1

    # ----------------------------------------------------------------------------- resolution

    def _find_chat(self, raw: Any) -> ChatRec | None:
        if raw is None or raw == "":
            return None
        if isinstance(raw, str) and raw.startswith("@"):
            name = raw[1:].lower()
            for chat in self.world.chats.values():
                if chat.type != "private" and chat.username and chat.username.lower() == name:
                    return chat
            return None
        try:
            chat_id = int(raw)
        except (TypeError, ValueError):
            return None
        chat = self.world.chats.get(chat_id)
        if chat is None and chat_id in self.world.users:
            chat = self.world.private_chat(chat_id)
        return chat

    def _chat_param(self, params: Params, name: str = "chat_id") -> ChatRec:
        raw = params.raw.get(name)
        if raw is None or raw == "":
            raise bad(f"{name} is empty")
        chat = self._find_chat(raw)
        if chat is None:
            raise bad("chat not found")
        return chat

    def _send_target(self, params: Params) -> ChatRec:
        """The chat a message is sent to, refusing users who cannot receive it."""
        chat = self._chat_param(params)
        if chat.type == "private":
            user = self.world.user(chat.id)
            if user.deactivated:
                raise ApiError(403, "Forbidden: user is deactivated")
            if user.blocked:
                raise ApiError(403, "Forbidden: bot was blocked by the user")
            if not user.started:
                raise ApiError(403, "Forbidden: bot can't initiate conversation with a user")
        return chat

    def _thread_and_reply(self, chat: ChatRec, params: Params) -> tuple[int | None, int | None]:
        """Resolve ``message_thread_id`` and the reply target, with Telegram's errors."""
        reply_to: int | None = None
        allow_without = params.flag("allow_sending_without_reply")
        reply_params = params.json("reply_parameters")
        if isinstance(reply_params, dict) and reply_params.get("message_id") is not None:
            reply_to = int(reply_params["message_id"])
            allow_without = bool(reply_params.get("allow_sending_without_reply", allow_without))
            other_chat = reply_params.get("chat_id")
            if other_chat is not None and self._find_chat(other_chat) is not chat:
                reply_to = None  # a reply into another chat is an external reply; not modelled
        elif params.integer("reply_to_message_id") is not None:
            reply_to = params.integer("reply_to_message_id")
        target: MsgRec | None = None
        if reply_to is not None:
            target = chat.messages.get(reply_to)
            if target is None or target.deleted:
                if not allow_without:
                    raise bad("message to be replied not found")
                reply_to, target = None, None
        thread_id = params.integer("message_thread_id")
        if not chat.is_forum:
            # Outside forums Telegram ignores the thread for sending purposes.
            return None, reply_to
        if thread_id is None and target is not None:
            thread_id = target.thread_id
        if thread_id is None:
            return None, reply_to
        topic = chat.topics.get(thread_id)
        if topic is None or topic.deleted:
            raise bad("message thread not found")
        if target is not None and target.thread_id != thread_id:
            if not allow_without:
                raise bad("message to be replied not found")
            reply_to = None
        return thread_id, reply_to

    def _markup(self, params: Params, *, inline_only: bool = False) -> dict[str, Any] | None:
        markup = params.json("reply_markup", "can't parse reply keyboard markup JSON object")
        if markup is None:
            return None
        return validate_markup(markup, inline_only=inline_only)

    def _parse(self, text: str, params: Params, prefix: str = "") -> tuple[str, list[dict[str, Any]]]:
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

    def _caption_content(self, params: Params) -> dict[str, Any]:
        caption = params.string("caption")
        if not caption:
            return {}
        plain, entities = self._parse(caption, params, "caption_")
        if utf16_len(plain) > MAX_CAPTION:
            raise bad("message caption is too long")
        content: dict[str, Any] = {"caption": plain}
        if entities:
            content["caption_entities"] = entities
        if params.flag("show_caption_above_media"):
            content["show_caption_above_media"] = True
        return content

    def _deliver(
        self,
        bot: BotRec,
        chat: ChatRec,
        params: Params,
        content: dict[str, Any],
        *,
        method: str,
        raw_text: str | None = None,
        thread_and_reply: tuple[int | None, int | None] | None = None,
        markup: dict[str, Any] | None = None,
        media_group_id: str | None = None,
    ) -> MsgRec:
        """Store a bot message after all validation passed; count it as delivered."""
        thread_id, reply_to = thread_and_reply or self._thread_and_reply(chat, params)
        if markup is None:
            markup = self._markup(params)
        msg = self.world.add_message(
            chat,
            from_id=bot.id,
            from_bot=True,
            content=content,
            thread_id=thread_id,
            reply_to=reply_to,
            reply_markup=markup,
            parse_mode=params.string("parse_mode"),
            raw_text=raw_text,
            method=method,
        )
        msg.media_group_id = media_group_id
        if markup and "keyboard" in markup:
            chat.reply_keyboard = markup
            chat.reply_keyboard_message_id = msg.message_id
            chat.reply_keyboard_hidden = False
        elif markup and markup.get("remove_keyboard"):
            chat.reply_keyboard = None
            chat.reply_keyboard_message_id = None
        self._stats["delivered"][method] += 1
        self._notify(
            {
                "type": "message",
                "chat_id": chat.id,
                "thread_id": thread_id,
                "message_id": msg.message_id,
                "direction": "bot",
            }
        )
        return msg

    def _input_file(self, params: Params, name: str, kind: str) -> FileRec:
        """Resolve an InputFile parameter: an upload, ``attach://``, a known file_id or a URL."""
        value = params.raw.get(name)
        upload = params.files.get(name)
        if upload is None and isinstance(value, str) and value.startswith("attach://"):
            upload = params.files.get(value[len("attach://") :])
            if upload is None:
                raise bad(f'can\'t find attached file "{value}"')
        if upload is not None:
            return self._store_upload(upload, kind, params)
        if value is None or value == "":
            raise bad(f"there is no {kind} in the request")
        if not isinstance(value, str):
            raise bad(f"wrong type of the {kind} parameter")
        if value.startswith(("http://", "https://")):
            # No internet here: stand in a placeholder so the flow goes on; the URL is kept.
            placeholder = (
                make_png(8, 8) if kind in ("photo", "sticker") else b"placeholder for " + value.encode()
            )
            file_name = value.rstrip("/").rsplit("/", 1)[-1] or None
            return self.world.add_file(placeholder, kind, file_name=file_name, source_url=value)
        record = self.world.files.get(value)
        if record is None:
            raise bad("wrong file identifier/HTTP URL specified")
        if (record.kind == "photo") != (kind == "photo"):
            raise bad("type of file mismatch")
        return record

    def _store_upload(self, upload: Upload, kind: str, params: Params) -> FileRec:
        data = upload.data
        if not data:
            raise bad("file must be non-empty")
        if len(data) > MAX_UPLOAD_BYTES:
            raise ApiError(413, "Request Entity Too Large")
        if kind == "photo":
            if len(data) > MAX_PHOTO_BYTES:
                raise bad("file is too big")
            if image_size(data) is None:
                raise bad("IMAGE_PROCESS_FAILED")
        mime = None
        if upload.filename:
            mime = mimetypes.guess_type(upload.filename)[0]
        if mime is None and upload.content_type and upload.content_type != "application/octet-stream":
            mime = upload.content_type
        file_name = upload.filename if kind in ("document", "audio", "video", "animation") else None
        return self.world.add_file(
            data,
            kind,
            file_name=file_name,
            mime_type=mime,
            width=params.integer("width"),
            height=params.integer("height"),
            duration=params.integer("duration"),
        )

    def _bot_message(self, bot: BotRec, params: Params, missing: str) -> tuple[ChatRec, MsgRec]:
        if params.raw.get("inline_message_id"):
            raise bad("MESSAGE_ID_INVALID")
        chat = self._chat_param(params)
        message_id = params.integer("message_id")
        if message_id is None:
            raise bad("message identifier is not specified")
        msg = chat.messages.get(message_id)
        if msg is None or msg.deleted:
            raise bad(missing)
        if not msg.from_bot or msg.from_id != bot.id:
            raise bad("message can't be edited")
        return chat, msg

    def _record_edit(self, msg: MsgRec) -> None:
        msg.edits.append(
            {
                "date": msg.edit_date or msg.date,
                "text": msg.content.get("text"),
                "caption": msg.content.get("caption"),
                "entities": msg.content.get("entities") or msg.content.get("caption_entities"),
                "reply_markup": msg.reply_markup,
            }
        )
        msg.edit_date = now()
        self._notify(
            {"type": "edit", "chat_id": msg.chat_id, "thread_id": msg.thread_id, "message_id": msg.message_id}
        )

    def _topic_param(self, chat: ChatRec, params: Params) -> TopicRec:
        if not chat.is_forum:
            raise bad("the chat is not a forum")
        thread_id = params.integer("message_thread_id")
        topic = chat.topics.get(thread_id) if thread_id is not None else None
        if topic is None or topic.deleted:
            raise bad("message thread not found")
        return topic

    def _service_message(
        self, chat: ChatRec, bot: BotRec, topic: TopicRec, content: dict[str, Any], method: str
    ) -> None:
        msg = self.world.add_message(
            chat, from_id=bot.id, from_bot=True, content=content, thread_id=topic.thread_id, method=method
        )
        self._notify(
            {
                "type": "message",
                "chat_id": chat.id,
                "thread_id": topic.thread_id,
                "message_id": msg.message_id,
                "direction": "bot",
            }
        )

    # ------------------------------------------------------------------------- Bot API: basics

    async def _m_getMe(self, bot: BotRec, params: Params) -> Any:
        return bot.me()

    async def _m_logOut(self, bot: BotRec, params: Params) -> Any:
        return True

    async def _m_close(self, bot: BotRec, params: Params) -> Any:
        return True

    async def _m_accept(self, bot: BotRec, params: Params) -> Any:
        if "chat_id" in params.raw:
            self._chat_param(params)
        return True

    async def _m_getMyDescription(self, bot: BotRec, params: Params) -> Any:
        return {"description": ""}

    async def _m_getMyShortDescription(self, bot: BotRec, params: Params) -> Any:
        return {"short_description": ""}

    async def _m_getMyName(self, bot: BotRec, params: Params) -> Any:
        return {"name": bot.first_name}

    async def _m_getChatMenuButton(self, bot: BotRec, params: Params) -> Any:
        return {"type": "commands"}

    async def _m_getForumTopicIconStickers(self, bot: BotRec, params: Params) -> Any:
        return []

    # ----------------------------------------------------------------------- Bot API: updates

    async def _m_getUpdates(self, bot: BotRec, params: Params) -> Any:
        if bot.webhook is not None:
            raise ApiError(
                409,
                "Conflict: can't use getUpdates method while webhook is active; "
                "use deleteWebhook to delete the webhook first",
            )
        offset = params.integer("offset")
        limit = params.integer("limit") or 100
        limit = max(1, min(limit, 100))
        timeout = max(0, params.integer("timeout") or 0)
        allowed = params.json("allowed_updates")
        if isinstance(allowed, list):
            bot.allowed_updates = [str(a) for a in allowed]
        if offset is not None:
            if offset < 0:
                bot.updates = bot.updates[offset:]
            else:
                bot.updates = [u for u in bot.updates if u["update_id"] >= offset]
        # Telegram lets only one getUpdates run per bot; a newer one ends the older with 409.
        bot.poll_generation += 1
        generation = bot.poll_generation
        self._wake()

        def ready() -> list[dict[str, Any]] | None:
            if bot.poll_generation != generation:
                raise ApiError(
                    409,
                    "Conflict: terminated by other getUpdates request; "
                    "make sure that only one bot instance is running",
                )
            self._filter_updates(bot, bot.allowed_updates)
            return bot.updates[:limit] or None

        result = await self._wait_until(ready, timeout)
        return result or []

    def _filter_updates(self, bot: BotRec, allowed: list[str] | None) -> None:
        allowed_set = set(allowed) if allowed else DEFAULT_UPDATE_TYPES
        bot.updates = [u for u in bot.updates if _update_type(u) in allowed_set]

    async def _m_setWebhook(self, bot: BotRec, params: Params) -> Any:
        url = params.string("url") or ""
        if not url:
            return await self._m_deleteWebhook(bot, params)
        if not url.startswith(("http://", "https://")):
            raise bad("bad webhook: An HTTPS URL must be provided for webhook")
        secret = params.string("secret_token")
        if secret is not None and not re.fullmatch(r"[A-Za-z0-9_-]{1,256}", secret):
            raise bad("secret token contains unallowed characters")
        allowed = params.json("allowed_updates")
        if params.flag("drop_pending_updates"):
            bot.updates.clear()
        bot.webhook = WebhookRec(
            url=url,
            secret_token=secret,
            max_connections=params.integer("max_connections") or 40,
            allowed_updates=[str(a) for a in allowed] if isinstance(allowed, list) else bot.allowed_updates,
            ip_address=params.string("ip_address"),
        )
        if isinstance(allowed, list):
            bot.allowed_updates = [str(a) for a in allowed]
        self._start_webhook(bot)
        return True

    async def _m_deleteWebhook(self, bot: BotRec, params: Params) -> Any:
        bot.webhook = None
        task = self._webhook_tasks.pop(bot.token, None)
        if task is not None:
            task.cancel()
        if params.flag("drop_pending_updates"):
            bot.updates.clear()
        self._wake()
        return True

    async def _m_getWebhookInfo(self, bot: BotRec, params: Params) -> Any:
        hook = bot.webhook
        info: dict[str, Any] = {
            "url": hook.url if hook else "",
            "has_custom_certificate": False,
            "pending_update_count": len(bot.updates),
        }
        if hook is not None:
            info["max_connections"] = hook.max_connections
            if hook.ip_address:
                info["ip_address"] = hook.ip_address
            if hook.allowed_updates:
                info["allowed_updates"] = hook.allowed_updates
            if hook.last_error_date:
                info["last_error_date"] = hook.last_error_date
                info["last_error_message"] = hook.last_error_message
        return info

    def _start_webhook(self, bot: BotRec) -> None:
        old = self._webhook_tasks.pop(bot.token, None)
        if old is not None:
            old.cancel()
        self._webhook_tasks[bot.token] = asyncio.create_task(
            self._webhook_loop(bot), name=f"webhook-{bot.id}"
        )

    async def _webhook_loop(self, bot: BotRec) -> None:
        """Deliver ``bot``'s updates one by one to its webhook, retrying failures with back-off."""
        failures = 0
        while not self._stopping and bot.webhook is not None:
            hook = bot.webhook
            self._filter_updates(bot, hook.allowed_updates)
            if not bot.updates:

                def pending(current: WebhookRec = hook) -> bool:
                    return bool(bot.updates) or bot.webhook is not current

                await self._wait_until(pending, 30)
                continue
            update = bot.updates[0]
            headers = {"Content-Type": "application/json"}
            if hook.secret_token:
                headers["X-Telegram-Bot-Api-Secret-Token"] = hook.secret_token
            error: str | None = None
            reply: tuple[bytes, str] | None = None
            try:
                assert self._client is not None
                async with self._client.post(
                    hook.url,
                    data=json.dumps(update, ensure_ascii=False).encode(),
                    headers=headers,
                    timeout=aiohttp.ClientTimeout(total=self.webhook_timeout),
                ) as resp:
                    body = await resp.read()
                    if 200 <= resp.status < 300:
                        reply = (body, resp.headers.get("Content-Type", ""))
                    else:
                        error = f"Wrong response from the webhook: {resp.status} {resp.reason}"
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                error = f"Connection failed: {type(exc).__name__}: {exc}"
            if bot.webhook is not hook:
                continue
            if error is not None:
                failures += 1
                hook.last_error_date = now()
                hook.last_error_message = error
                self._stats["errors"]["webhook"] += 1
                self._notify({"type": "webhook_error", "bot_id": bot.id, "error": error})
                await asyncio.sleep(
                    min(self.webhook_retry_delay * (2 ** min(failures - 1, 8)), self.webhook_retry_max)
                )
                continue
            failures = 0
            if bot.updates and bot.updates[0] is update:
                bot.updates.pop(0)
            self._stats["delivered"]["webhook"] += 1
            self._notify({"type": "webhook_delivered", "bot_id": bot.id, "update_id": update["update_id"]})
            if reply is not None:
                await self._webhook_reply(bot, *reply)

    async def _webhook_reply(self, bot: BotRec, body: bytes, content_type: str) -> None:
        """Execute a method returned in a webhook answer, as Telegram allows."""
        data: dict[str, Any] | None = None
        files: dict[str, Upload] = {}
        if not body.strip():
            return
        if "multipart/form-data" in content_type:
            message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
                b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body
            )
            data = {}
            for part in message.iter_parts():
                name = part.get_param("name", header="content-disposition")
                if not isinstance(name, str):
                    continue
                payload = part.get_payload(decode=True) or b""
                filename = part.get_filename()
                if filename:
                    files[name] = Upload(payload, filename, part.get_content_type())
                else:
                    data[name] = payload.decode("utf-8", "replace")
        else:
            with contextlib.suppress(ValueError):
                parsed = json.loads(body)
                if isinstance(parsed, dict):
                    data = parsed
        if not data or not data.get("method"):
            return
        method = str(data.pop("method"))
        await self.execute(bot, method, Params(data, files))

    # ---------------------------------------------------------------------- Bot API: sending

    async def _m_sendMessage(self, bot: BotRec, params: Params) -> Any:
        chat = self._send_target(params)
        text = params.string("text")
        if not text:
            raise bad("message text is empty")
        plain, entities = self._parse(text, params)
        if not plain.strip():
            raise bad("message text is empty")
        if utf16_len(plain) > MAX_TEXT:
            raise bad("message is too long")
        content: dict[str, Any] = {"text": plain}
        if entities:
            content["entities"] = entities
        msg = self._deliver(bot, chat, params, content, method="sendMessage", raw_text=text)
        return self.world.message_api(msg)

    async def _send_media(self, bot: BotRec, params: Params, kind: str, method: str) -> Any:
        chat = self._send_target(params)
        thread_and_reply = self._thread_and_reply(chat, params)
        markup = self._markup(params)
        caption = self._caption_content(params) if kind != "sticker" else {}
        record = self._input_file(params, kind, kind)
        media = record.media()
        if kind == "sticker" and params.string("emoji"):
            media["emoji"] = params.string("emoji")
        content: dict[str, Any] = {kind: media, **caption}
        if params.flag("has_spoiler"):
            content["has_media_spoiler"] = True
        msg = self._deliver(
            bot,
            chat,
            params,
            content,
            method=method,
            raw_text=params.string("caption"),
            thread_and_reply=thread_and_reply,
            markup=markup,
        )
        return self.world.message_api(msg)

    async def _m_sendPhoto(self, bot: BotRec, params: Params) -> Any:
        return await self._send_media(bot, params, "photo", "sendPhoto")

    async def _m_sendDocument(self, bot: BotRec, params: Params) -> Any:
        return await self._send_media(bot, params, "document", "sendDocument")

    async def _m_sendSticker(self, bot: BotRec, params: Params) -> Any:
        return await self._send_media(bot, params, "sticker", "sendSticker")

    async def _m_sendVoice(self, bot: BotRec, params: Params) -> Any:
        return await self._send_media(bot, params, "voice", "sendVoice")

    async def _m_sendVideo(self, bot: BotRec, params: Params) -> Any:
        return await self._send_media(bot, params, "video", "sendVideo")

    async def _m_sendAudio(self, bot: BotRec, params: Params) -> Any:
        return await self._send_media(bot, params, "audio", "sendAudio")

    async def _m_sendAnimation(self, bot: BotRec, params: Params) -> Any:
        return await self._send_media(bot, params, "animation", "sendAnimation")

    async def _m_sendContact(self, bot: BotRec, params: Params) -> Any:
        chat = self._send_target(params)
        phone = params.string("phone_number")
        first_name = params.string("first_name")
        if not phone:
            raise bad("phone number is empty")
        if not first_name:
            raise bad("first name is empty")
        contact: dict[str, Any] = {"phone_number": phone, "first_name": first_name}
        if params.string("last_name"):
            contact["last_name"] = params.string("last_name")
        if params.string("vcard"):
            contact["vcard"] = params.string("vcard")
        msg = self._deliver(bot, chat, params, {"contact": contact}, method="sendContact")
        return self.world.message_api(msg)

    async def _m_sendLocation(self, bot: BotRec, params: Params) -> Any:
        chat = self._send_target(params)
        latitude, longitude = params.number("latitude"), params.number("longitude")
        if latitude is None or longitude is None:
            raise bad("wrong latitude or longitude specified")
        msg = self._deliver(
            bot,
            chat,
            params,
            {"location": {"latitude": latitude, "longitude": longitude}},
            method="sendLocation",
        )
        return self.world.message_api(msg)

    async def _m_sendMediaGroup(self, bot: BotRec, params: Params) -> Any:
        chat = self._send_target(params)
        media = params.json("media")
        if not isinstance(media, list) or not 2 <= len(media) <= 10:
            raise bad("wrong number of messages in the media group")
        thread_and_reply = self._thread_and_reply(chat, params)
        prepared: list[dict[str, Any]] = []
        for item in media:
            if not isinstance(item, dict) or item.get("type") not in ("photo", "document", "video", "audio"):
                raise bad("can't parse InputMedia")
            kind = str(item["type"])
            item_params = Params(
                {
                    "media": item.get("media"),
                    "caption": item.get("caption"),
                    "parse_mode": item.get("parse_mode"),
                    "caption_entities": item.get("caption_entities"),
                },
                params.files,
            )
            record = self._input_file(item_params, "media", kind)
            prepared.append({kind: record.media(), **self._caption_content(item_params)})
        group_id = str(13_000_000_000_000_000 + int(time.time() * 1000))
        results = []
        for content in prepared:
            msg = self._deliver(
                bot,
                chat,
                params,
                content,
                method="sendMediaGroup",
                thread_and_reply=thread_and_reply,
                markup={},
                media_group_id=group_id,
            )
            results.append(self.world.message_api(msg))
        return results

    def _source_message(self, params: Params, missing: str) -> MsgRec:
        source_chat = self._chat_param(params, "from_chat_id")
        message_id = params.integer("message_id")
        if message_id is None:
            raise bad("message identifier is not specified")
        msg = source_chat.messages.get(message_id)
        if msg is None or msg.deleted:
            raise bad(missing)
        return msg

    async def _m_copyMessage(self, bot: BotRec, params: Params) -> Any:
        chat = self._send_target(params)
        source = self._source_message(params, "message to copy not found")
        content = {key: copy.deepcopy(value) for key, value in source.content.items() if key in CONTENT_KEYS}
        if not content:
            raise bad("message can't be copied")
        is_media = any(kind in content for kind in MEDIA_KINDS)
        if params.has("caption") and is_media:
            for key in ("caption", "caption_entities"):
                content.pop(key, None)
            content.update(self._caption_content(params))
        msg = self._deliver(
            bot,
            chat,
            params,
            content,
            method="copyMessage",
            raw_text=content.get("text") or content.get("caption"),
        )
        return {"message_id": msg.message_id}

    async def _m_forwardMessage(self, bot: BotRec, params: Params) -> Any:
        chat = self._send_target(params)
        source = self._source_message(params, "message to forward not found")
        content = {key: copy.deepcopy(value) for key, value in source.content.items() if key in CONTENT_KEYS}
        if not content:
            raise bad("message can't be forwarded")
        origin = {"type": "user", "date": source.date, "sender_user": self.world.sender_api(source)}
        thread_and_reply = (self._thread_and_reply(chat, params)[0], None)
        msg = self._deliver(
            bot, chat, params, content, method="forwardMessage", thread_and_reply=thread_and_reply, markup={}
        )
        msg.forward_origin = origin
        return self.world.message_api(msg)

    # ---------------------------------------------------------------------- Bot API: editing

    async def _m_editMessageText(self, bot: BotRec, params: Params) -> Any:
        _chat, msg = self._bot_message(bot, params, "message to edit not found")
        if "text" not in msg.content:
            raise bad("there is no text in the message to edit")
        text = params.string("text")
        if not text:
            raise bad("message text is empty")
        plain, entities = self._parse(text, params)
        if not plain.strip():
            raise bad("message text is empty")
        if utf16_len(plain) > MAX_TEXT:
            raise bad("message is too long")
        markup = self._markup(params, inline_only=True)
        same_text = plain == msg.content.get("text") and entities == (msg.content.get("entities") or [])
        if same_text and _same_markup(markup, msg.reply_markup):
            raise bad(
                "message is not modified: specified new message content and reply markup are exactly the "
                "same as a current content and reply markup of the message"
            )
        self._record_edit(msg)
        msg.content["text"] = plain
        msg.content.pop("entities", None)
        if entities:
            msg.content["entities"] = entities
        msg.reply_markup = markup  # no reply_markup in the edit removes the old inline keyboard
        msg.raw_text = text
        msg.parse_mode = params.string("parse_mode")
        return self.world.message_api(msg)

    async def _m_editMessageCaption(self, bot: BotRec, params: Params) -> Any:
        _chat, msg = self._bot_message(bot, params, "message to edit not found")
        if not any(kind in msg.content for kind in MEDIA_KINDS):
            raise bad("there is no caption in the message to edit")
        caption = self._caption_content(params)
        markup = self._markup(params, inline_only=True)
        same = caption.get("caption") == msg.content.get("caption") and caption.get(
            "caption_entities"
        ) == msg.content.get("caption_entities")
        if same and _same_markup(markup, msg.reply_markup):
            raise bad(
                "message is not modified: specified new message content and reply markup are exactly the "
                "same as a current content and reply markup of the message"
            )
        self._record_edit(msg)
        for key in ("caption", "caption_entities", "show_caption_above_media"):
            msg.content.pop(key, None)
        msg.content.update(caption)
        msg.reply_markup = markup
        msg.raw_text = params.string("caption")
        return self.world.message_api(msg)

    async def _m_editMessageReplyMarkup(self, bot: BotRec, params: Params) -> Any:
        _chat, msg = self._bot_message(bot, params, "message to edit not found")
        markup = self._markup(params, inline_only=True)
        if _same_markup(markup, msg.reply_markup):
            raise bad(
                "message is not modified: specified new message content and reply markup are exactly the "
                "same as a current content and reply markup of the message"
            )
        self._record_edit(msg)
        msg.reply_markup = markup
        return self.world.message_api(msg)

    def _delete(self, chat: ChatRec, message_id: int) -> bool:
        msg = chat.messages.get(message_id)
        if msg is None or msg.deleted:
            return False
        msg.deleted = True
        self._notify(
            {"type": "delete", "chat_id": chat.id, "thread_id": msg.thread_id, "message_id": message_id}
        )
        return True

    async def _m_deleteMessage(self, bot: BotRec, params: Params) -> Any:
        chat = self._chat_param(params)
        message_id = params.integer("message_id")
        if message_id is None:
            raise bad("message identifier is not specified")
        if not self._delete(chat, message_id):
            raise bad("message to delete not found")
        return True

    async def _m_deleteMessages(self, bot: BotRec, params: Params) -> Any:
        chat = self._chat_param(params)
        ids = params.json("message_ids")
        if not isinstance(ids, list) or not ids:
            raise bad("message identifiers are not specified")
        for message_id in ids:
            self._delete(chat, int(message_id))
        return True

    # --------------------------------------------------------------------- Bot API: callbacks

    async def _m_answerCallbackQuery(self, bot: BotRec, params: Params) -> Any:
        query_id = params.string("callback_query_id") or ""
        callback = self.world.callbacks.get(query_id)
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
        chat = self.world.chats.get(callback["chat_id"])
        msg = chat.messages.get(callback["message_id"]) if chat else None
        if msg is not None:
            msg.callback_answers.append({**answer, "user_id": callback["user_id"], "data": callback["data"]})
        self._notify(
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

    # ---------------------------------------------------------------------- Bot API: commands

    def _commands_key(self, params: Params) -> tuple[str, str]:
        scope = params.json("scope") or {"type": "default"}
        if not isinstance(scope, dict) or "type" not in scope:
            raise bad("can't parse BotCommandScope")
        if scope["type"] not in (
            "default",
            "all_private_chats",
            "all_group_chats",
            "all_chat_administrators",
            "chat",
            "chat_administrators",
            "chat_member",
        ):
            raise bad("wrong BotCommandScope type specified")
        if scope["type"] in ("chat", "chat_administrators", "chat_member"):
            chat = self._find_chat(scope.get("chat_id"))
            if chat is None:
                raise bad("chat not found")
            scope = {**scope, "chat_id": chat.id}
        language = params.string("language_code") or ""
        if language and not LANGUAGE_RE.fullmatch(language):
            # Telegram wants a two-letter ISO 639-1 code here ("zh", not "zh-hans").
            raise bad("invalid language code specified")
        return json.dumps(scope, sort_keys=True), language

    async def _m_setMyCommands(self, bot: BotRec, params: Params) -> Any:
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
        key = self._commands_key(params)
        if cleaned:
            bot.commands[key] = cleaned
        else:
            bot.commands.pop(key, None)
        return True

    async def _m_getMyCommands(self, bot: BotRec, params: Params) -> Any:
        return copy.deepcopy(bot.commands.get(self._commands_key(params), []))

    async def _m_deleteMyCommands(self, bot: BotRec, params: Params) -> Any:
        bot.commands.pop(self._commands_key(params), None)
        return True

    # ------------------------------------------------------------------------ Bot API: chats

    async def _m_sendChatAction(self, bot: BotRec, params: Params) -> Any:
        chat = self._send_target(params)
        action = params.string("action") or ""
        if action not in CHAT_ACTIONS:
            raise bad("wrong parameter action in request")
        thread_id = params.integer("message_thread_id")
        if chat.is_forum and thread_id is not None:
            topic = chat.topics.get(thread_id)
            if topic is None or topic.deleted:
                raise bad("message thread not found")
        self._notify({"type": "chat_action", "chat_id": chat.id, "thread_id": thread_id, "action": action})
        return True

    async def _m_getChat(self, bot: BotRec, params: Params) -> Any:
        return self.world.chat_full_api(self._chat_param(params))

    def _member(self, bot: BotRec, chat: ChatRec, user_id: int) -> dict[str, Any]:
        if user_id == bot.id:
            rights = {
                key: True
                for key in (
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
            }
            if chat.type == "private":
                return {"status": "member", "user": bot.api()}
            return {
                "status": "administrator",
                "user": bot.api(),
                "can_be_edited": False,
                "is_anonymous": False,
                **rights,
            }
        user = self.world.users.get(user_id)
        if user is None:
            raise bad("PARTICIPANT_ID_INVALID")
        if chat.type == "private":
            status = "member" if user_id == chat.id else "left"
            return {"status": status, "user": user.api()}
        if user_id in chat.admins:
            if chat.admins and chat.admins[0] == user_id:
                return {"status": "creator", "user": user.api(), "is_anonymous": False}
            return {
                "status": "administrator",
                "user": user.api(),
                "can_be_edited": False,
                "is_anonymous": False,
                "can_manage_chat": True,
                "can_delete_messages": True,
                "can_manage_video_chats": True,
                "can_restrict_members": True,
                "can_promote_members": False,
                "can_change_info": True,
                "can_invite_users": True,
                "can_post_stories": False,
                "can_edit_stories": False,
                "can_delete_stories": False,
                "can_pin_messages": True,
                "can_manage_topics": True,
            }
        if user_id in chat.members:
            return {"status": "member", "user": user.api()}
        return {"status": "left", "user": user.api()}

    async def _m_getChatMember(self, bot: BotRec, params: Params) -> Any:
        chat = self._chat_param(params)
        user_id = params.integer("user_id")
        if user_id is None:
            raise bad("user_id is empty")
        return self._member(bot, chat, user_id)

    async def _m_getChatAdministrators(self, bot: BotRec, params: Params) -> Any:
        chat = self._chat_param(params)
        if chat.type == "private":
            raise bad("there are no administrators in the private chat")
        return [self._member(bot, chat, uid) for uid in chat.admins] + [self._member(bot, chat, bot.id)]

    async def _m_getChatMemberCount(self, bot: BotRec, params: Params) -> Any:
        chat = self._chat_param(params)
        return 2 if chat.type == "private" else len(set(chat.members) | set(chat.admins)) + 1

    async def _m_getFile(self, bot: BotRec, params: Params) -> Any:
        record = self.world.files.get(params.string("file_id") or "")
        if record is None:
            raise bad("invalid file_id")
        return record.api_file()

    # ------------------------------------------------------------------------ Bot API: topics

    async def _m_createForumTopic(self, bot: BotRec, params: Params) -> Any:
        chat = self._chat_param(params)
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
        topic = self._create_topic(
            chat, name, color, params.string("icon_custom_emoji_id"), from_id=bot.id, from_bot=True
        )
        return topic.api()

    def _create_topic(
        self, chat: ChatRec, name: str, color: int | None, emoji: str | None, *, from_id: int, from_bot: bool
    ) -> TopicRec:
        thread_id = chat.take_message_id()
        topic = TopicRec(
            thread_id=thread_id,
            name=name,
            icon_color=color or TOPIC_COLORS[0],
            icon_custom_emoji_id=emoji or None,
            created_by=from_id,
        )
        chat.topics[thread_id] = topic
        created: dict[str, Any] = {"name": name, "icon_color": topic.icon_color}
        if topic.icon_custom_emoji_id:
            created["icon_custom_emoji_id"] = topic.icon_custom_emoji_id
        msg = self.world.add_message(
            chat,
            from_id=from_id,
            from_bot=from_bot,
            content={"forum_topic_created": created},
            thread_id=thread_id,
            message_id=thread_id,
            method="createForumTopic" if from_bot else None,
        )
        self._notify({"type": "topic", "chat_id": chat.id, "thread_id": thread_id, "action": "created"})
        self._notify(
            {
                "type": "message",
                "chat_id": chat.id,
                "thread_id": thread_id,
                "message_id": msg.message_id,
                "direction": "bot" if from_bot else "user",
            }
        )
        if not from_bot:
            self._push_to_bots({"message": self.world.message_api(msg)})
        return topic

    async def _m_editForumTopic(self, bot: BotRec, params: Params) -> Any:
        chat = self._chat_param(params)
        topic = self._topic_param(chat, params)
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
        self._service_message(chat, bot, topic, {"forum_topic_edited": edited}, "editForumTopic")
        self._notify({"type": "topic", "chat_id": chat.id, "thread_id": topic.thread_id, "action": "edited"})
        return True

    async def _m_closeForumTopic(self, bot: BotRec, params: Params) -> Any:
        chat = self._chat_param(params)
        topic = self._topic_param(chat, params)
        if topic.closed:
            raise bad("TOPIC_NOT_MODIFIED")
        topic.closed = True
        self._service_message(chat, bot, topic, {"forum_topic_closed": {}}, "closeForumTopic")
        self._notify({"type": "topic", "chat_id": chat.id, "thread_id": topic.thread_id, "action": "closed"})
        return True

    async def _m_reopenForumTopic(self, bot: BotRec, params: Params) -> Any:
        chat = self._chat_param(params)
        topic = self._topic_param(chat, params)
        if not topic.closed:
            raise bad("TOPIC_NOT_MODIFIED")
        topic.closed = False
        self._service_message(chat, bot, topic, {"forum_topic_reopened": {}}, "reopenForumTopic")
        self._notify(
            {"type": "topic", "chat_id": chat.id, "thread_id": topic.thread_id, "action": "reopened"}
        )
        return True

    async def _m_deleteForumTopic(self, bot: BotRec, params: Params) -> Any:
        chat = self._chat_param(params)
        topic = self._topic_param(chat, params)
        self._remove_topic(chat, topic)
        return True

    def _remove_topic(self, chat: ChatRec, topic: TopicRec) -> None:
        topic.deleted = True
        for msg in chat.messages.values():
            if msg.thread_id == topic.thread_id:
                msg.deleted = True
        self._notify({"type": "topic", "chat_id": chat.id, "thread_id": topic.thread_id, "action": "deleted"})

    # ------------------------------------------------------------------------------- files

    async def _file_endpoint(self, request: web.Request) -> web.StreamResponse:
        token = request.match_info["token"]
        if not TOKEN_RE.fullmatch(token) or self.world.bot_for_token(token).invalid:
            return _api_response(401, {"ok": False, "error_code": 401, "description": "Unauthorized"})
        record = self.world.files_by_path.get(request.match_info["path"])
        if record is None:
            return _api_response(404, {"ok": False, "error_code": 404, "description": "Not Found"})
        return web.Response(body=record.data, content_type=record.mime_type or "application/octet-stream")

    # ------------------------------------------------------------------------ user actions

    def _push_to_bots(self, payload: dict[str, Any]) -> list[int]:
        """Queue an update for every connected bot (or keep it for the first bot to connect)."""
        bots = self.world.live_bots()
        if not bots:
            self.world.orphan_updates.append(payload)
            self._wake()
            return []
        ids = [self.world.push_update(bot, copy.deepcopy(payload))["update_id"] for bot in bots]
        self._wake()
        return ids

    def _user_chat(self, body: dict[str, Any]) -> tuple[UserRec, ChatRec]:
        user_id = _int_field(body, "user_id", required=True)
        assert user_id is not None
        user = self.world.user(user_id)
        chat_id = _int_field(body, "chat_id")
        if chat_id is None or chat_id == user_id:
            chat = self.world.private_chat(user_id)
            # Writing to the bot means the user has started it and (again) allows its messages.
            user.started = True
            user.blocked = False
        else:
            found = self.world.chats.get(chat_id)
            if found is None or found.type == "private":
                raise ControlError(404, f"chat {chat_id} not found (create groups with POST /control/groups)")
            chat = found
            if user_id not in chat.members:
                chat.members.append(user_id)
        return user, chat

    def _user_thread(self, chat: ChatRec, body: dict[str, Any], reply_to: int | None) -> int | None:
        thread_id = _int_field(body, "thread_id")
        if thread_id is None:
            thread_id = _int_field(body, "message_thread_id")
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

    def _user_content(self, user: UserRec, body: dict[str, Any]) -> dict[str, Any]:
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
                record = self.world.files.get(str(spec["file_id"]))
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
                record = self.world.add_file(data, kind, file_name=file_name, mime_type=mime)
            content: dict[str, Any] = {kind: record.media()}
            caption = body.get("caption")
            if caption:
                content["caption"] = str(caption)
                entities = _user_entities(str(caption))
                if entities:
                    content["caption_entities"] = entities
            return content
        text = body.get("text")
        if text is None or str(text) == "":
            raise ControlError(400, "nothing to send: give text, contact, photo or document")
        content = {"text": str(text)}
        entities = _user_entities(str(text))
        if entities:
            content["entities"] = entities
        return content

    def inject_message(self, body: dict[str, Any]) -> dict[str, Any]:
        """Store a user's message and queue it as an update; returns the transcript entry."""
        user, chat = self._user_chat(body)
        content = self._user_content(user, body)
        reply_to = _int_field(body, "reply_to_message_id")
        if reply_to is None:
            reply_to = _int_field(body, "reply_to")
        if reply_to is not None:
            target = chat.messages.get(reply_to)
            if target is None or target.deleted:
                raise ControlError(400, f"message {reply_to} to reply to not found")
        thread_id = self._user_thread(chat, body, reply_to)
        msg = self.world.add_message(
            chat, from_id=user.id, from_bot=False, content=content, thread_id=thread_id, reply_to=reply_to
        )
        update_ids = self._push_to_bots({"message": self.world.message_api(msg)})
        self._notify(
            {
                "type": "message",
                "chat_id": chat.id,
                "thread_id": thread_id,
                "message_id": msg.message_id,
                "direction": "user",
            }
        )
        return {**self.world.message_control(msg), "update_ids": update_ids}

    def press(self, body: dict[str, Any]) -> dict[str, Any]:
        """A user presses an inline button: queue a ``callback_query`` carrying ``data``."""
        user, chat = self._user_chat({**body, "chat_id": body.get("chat_id") or body.get("user_id")})
        message_id = _int_field(body, "message_id", required=True)
        assert message_id is not None
        msg = chat.messages.get(message_id)
        if msg is None or msg.deleted:
            raise ControlError(404, f"message {message_id} not found in chat {chat.id}")
        if not msg.from_bot:
            raise ControlError(400, "only bot messages carry inline keyboards")
        data = body.get("data")
        query_id = self.world.new_callback_id()
        query: dict[str, Any] = {
            "id": query_id,
            "from": user.api(),
            "message": self.world.message_api(msg),
            "chat_instance": chat.chat_instance,
        }
        if data is not None:
            query["data"] = str(data)
        bot = self.world.bot_by_id(msg.from_id)
        self.world.callbacks[query_id] = {
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
            update_ids = [self.world.push_update(bot, payload)["update_id"]]
            self._wake()
        else:
            update_ids = self._push_to_bots(payload)
        self._notify(
            {"type": "press", "chat_id": chat.id, "message_id": message_id, "callback_query_id": query_id}
        )
        return {"callback_query_id": query_id, "update_ids": update_ids}

    def edit_user_message(self, body: dict[str, Any]) -> dict[str, Any]:
        """A user edits their text message: queue an ``edited_message`` update."""
        user, chat = self._user_chat(body)
        message_id = _int_field(body, "message_id", required=True)
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
        self._record_edit(msg)
        msg.content[key] = text
        entities = _user_entities(text)
        msg.content.pop("entities" if key == "text" else "caption_entities", None)
        if entities:
            msg.content["entities" if key == "text" else "caption_entities"] = entities
        update_ids = self._push_to_bots({"edited_message": self.world.message_api(msg)})
        return {**self.world.message_control(msg), "update_ids": update_ids}

    def reply_press(self, body: dict[str, Any]) -> dict[str, Any]:
        """A user presses a reply-keyboard button: sends its text, or the user's contact."""
        user, chat = self._user_chat(body)
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
        return self.inject_message(message)

    def set_demo_config(self, body: dict[str, Any]) -> dict[str, Any]:
        """Replace the demo page's identities and staff group, creating users and the group."""
        identities = body.get("identities")
        if identities is None:
            identities = self._demo_config["identities"]
        if not isinstance(identities, list):
            raise ControlError(400, "identities must be a list")
        cleaned = [self._ensure_identity(item) for item in identities]
        staff_group = body.get("staff_group", self._demo_config.get("staff_group"))
        if staff_group:
            if not isinstance(staff_group, dict):
                raise ControlError(400, "staff_group must be an object")
            staff_ids = [i["id"] for i in cleaned if i.get("role") == "staff"]
            chat_id = _int_field(staff_group, "id")
            if chat_id is None:
                chat_id = _int_field(staff_group, "chat_id")
            chat = self.world.chats.get(chat_id) if chat_id is not None else None
            if chat is None:
                chat = self.create_group(
                    {
                        "id": chat_id,
                        "title": staff_group.get("title") or "Staff",
                        "is_forum": staff_group.get("is_forum", True),
                        "members": staff_ids,
                        "admins": staff_ids,
                    }
                )
            else:
                for uid in staff_ids:
                    if uid not in chat.members:
                        chat.members.append(uid)
            staff_group = {**staff_group, "id": chat.id, "title": chat.title, "is_forum": chat.is_forum}
        self._demo_config = {"identities": cleaned, "staff_group": staff_group or None,
                             "info": self._demo_config.get("info") or {}}
        self._notify({"type": "demo_config"})
        return self._demo_config

    def _ensure_identity(self, item: Any) -> dict[str, Any]:
        if not isinstance(item, dict) or not item.get("first_name"):
            raise ControlError(400, "each identity needs at least first_name")
        ident = dict(item)
        if ident.get("id") is None:
            ident["id"] = self.world.new_user_id()
        ident["id"] = int(ident["id"])
        ident.setdefault("role", "member")
        ident.setdefault("language_code", "en")
        ident.setdefault("label", f"{ident['first_name']} ({ident['language_code']})")
        self.upsert_user({k: v for k, v in ident.items() if k not in ("label", "role")})
        return ident

    def upsert_user(self, body: dict[str, Any]) -> UserRec:
        """Create a user or update the fields given."""
        user_id = _int_field(body, "id")
        if user_id is None:
            user_id = _int_field(body, "user_id")
        if user_id is None:
            user_id = self.world.new_user_id()
        if user_id <= 0:
            raise ControlError(400, "user ids are positive")
        user = self.world.users.get(user_id)
        if user is None:
            user = UserRec(id=user_id, first_name=str(body.get("first_name") or f"User {user_id}"))
            self.world.users[user_id] = user
        for key in ("first_name", "last_name", "username", "language_code", "phone_number"):
            if key in body and body[key] is not None:
                value = str(body[key])
                if key == "first_name" and not value:
                    continue
                setattr(user, key, value or None)
        for key in ("is_premium", "started", "blocked", "deactivated"):
            if key in body and body[key] is not None:
                setattr(user, key, bool(body[key]))
        self._notify({"type": "user", "user_id": user_id})
        return user

    def create_group(self, body: dict[str, Any]) -> ChatRec:
        """Create a group or supergroup (negative id) with the given members."""
        chat_id = _int_field(body, "id")
        if chat_id is None:
            chat_id = _int_field(body, "chat_id")
        if chat_id is None:
            chat_id = self.world.new_group_id()
        if chat_id >= 0:
            raise ControlError(400, "group ids are negative")
        chat_type = str(body.get("type") or "supergroup")
        if chat_type not in ("group", "supergroup"):
            raise ControlError(400, "type must be group or supergroup")
        is_forum = bool(body.get("is_forum", True)) and chat_type == "supergroup"
        members = [int(m) for m in body.get("members") or []]
        admins = [int(m) for m in body.get("admins") or []]
        for uid in members + admins:
            self.world.user(uid)
        chat = ChatRec(
            id=chat_id,
            type=chat_type,
            title=str(body.get("title") or "Group"),
            username=body.get("username") or None,
            is_forum=is_forum,
            members=list(dict.fromkeys(members + admins)),
            admins=admins,
        )
        self.world.chats[chat_id] = chat
        self._notify({"type": "chat", "chat_id": chat_id})
        return chat

    def _chat_control(self, chat: ChatRec) -> dict[str, Any]:
        return {
            **self.world.chat_api(chat),
            "members": chat.members,
            "admins": chat.admins,
            "topics": [t.control() for t in chat.topics.values()],
            "reply_keyboard": chat.reply_keyboard,
            "reply_keyboard_hidden": chat.reply_keyboard_hidden,
            "message_count": len(chat.messages),
        }

    def transcript(
        self, chat_id: int, thread_id: int | None = None, include_deleted: bool = True, after_id: int = 0
    ) -> dict[str, Any]:
        """All messages of a chat (optionally one thread), both directions."""
        chat = self.world.chats.get(chat_id)
        if chat is None:
            if chat_id in self.world.users:
                chat = self.world.private_chat(chat_id)
            else:
                raise ControlError(404, f"chat {chat_id} not found")
        messages = [
            self.world.message_control(m)
            for m in sorted(chat.messages.values(), key=lambda m: m.message_id)
            if (include_deleted or not m.deleted)
            and (thread_id is None or m.thread_id == thread_id or (thread_id == 0 and m.thread_id is None))
            and m.message_id > after_id
        ]
        return {
            "chat": self._chat_control(chat),
            "messages": messages,
            "reply_keyboard": None if chat.reply_keyboard_hidden else chat.reply_keyboard,
            "reply_keyboard_hidden": chat.reply_keyboard_hidden,
            "topics": [t.control() for t in chat.topics.values()],
        }

    # ---------------------------------------------------------------------------- control HTTP

    def _control_wrapper(
        self, handler: ControlHandler
    ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def wrapped(request: web.Request) -> web.StreamResponse:
            try:
                result = await handler(request)
            except ControlError as exc:
                return web.json_response({"error": exc.message}, status=exc.status)
            except (ValueError, TypeError, KeyError) as exc:
                return web.json_response({"error": f"{type(exc).__name__}: {exc}"}, status=400)
            if isinstance(result, web.StreamResponse):
                return result
            return web.json_response(result, dumps=_dumps)

        return wrapped

    @staticmethod
    async def _body(request: web.Request) -> dict[str, Any]:
        if not request.can_read_body:
            return {}
        try:
            data = await request.json()
        except ValueError as exc:
            raise ControlError(400, "body must be JSON") from exc
        if not isinstance(data, dict):
            raise ControlError(400, "body must be a JSON object")
        return data

    async def _c_health(self, request: web.Request) -> Any:
        return {"ok": True}

    async def _c_reset(self, request: web.Request) -> Any:
        self.reset()
        return {"ok": True}

    async def _c_bots(self, request: web.Request) -> Any:
        return [
            {
                **b.me(),
                "token": b.token,
                "invalid": b.invalid,
                "pending_updates": len(b.updates),
                "webhook_url": b.webhook.url if b.webhook else None,
            }
            for b in self.world.bots.values()
        ]

    async def _c_create_bot(self, request: web.Request) -> Any:
        body = await self._body(request)
        token = str(body.get("token") or "")
        if not TOKEN_RE.fullmatch(token):
            raise ControlError(400, "token must look like <digits>:<letters>")
        bot = self.world.bot_for_token(token)
        if body.get("first_name"):
            bot.first_name = str(body["first_name"])
        if body.get("username"):
            bot.username = str(body["username"])
        if "invalid" in body:
            bot.invalid = bool(body["invalid"])
        return {**bot.me(), "token": bot.token, "invalid": bot.invalid}

    async def _c_users(self, request: web.Request) -> Any:
        return [u.control() for u in self.world.users.values()]

    async def _c_upsert_user(self, request: web.Request) -> Any:
        return self.upsert_user(await self._body(request)).control()

    async def _c_create_group(self, request: web.Request) -> Any:
        return self._chat_control(self.create_group(await self._body(request)))

    async def _c_chats(self, request: web.Request) -> Any:
        return [self._chat_control(c) for c in self.world.chats.values()]

    async def _c_chat(self, request: web.Request) -> Any:
        chat_id = _query_int(request, "chat_id", required=True)
        chat = self._find_chat(chat_id)
        if chat is None:
            raise ControlError(404, f"chat {chat_id} not found")
        return self._chat_control(chat)

    async def _c_topics(self, request: web.Request) -> Any:
        chat = self.world.chats.get(_query_int(request, "chat_id", required=True) or 0)
        if chat is None:
            raise ControlError(404, "chat not found")
        return [t.control() for t in chat.topics.values()]

    async def _c_create_topic(self, request: web.Request) -> Any:
        body = await self._body(request)
        chat = self.world.chats.get(_int_field(body, "chat_id", required=True) or 0)
        if chat is None or not chat.is_forum:
            raise ControlError(404, "forum chat not found")
        user_id = _int_field(body, "user_id")
        if user_id is None:
            user_id = chat.admins[0] if chat.admins else (chat.members[0] if chat.members else None)
        if user_id is None:
            raise ControlError(400, "user_id is required (the group has no members)")
        self.world.user(user_id)
        topic = self._create_topic(
            chat,
            str(body.get("name") or "Topic"),
            _int_field(body, "icon_color"),
            None,
            from_id=user_id,
            from_bot=False,
        )
        return topic.control()

    async def _c_delete_topic(self, request: web.Request) -> Any:
        body = await self._body(request)
        chat = self.world.chats.get(_int_field(body, "chat_id", required=True) or 0)
        thread_id = _int_field(body, "thread_id", required=True)
        if thread_id is None:
            thread_id = _int_field(body, "message_thread_id")
        topic = chat.topics.get(thread_id or 0) if chat else None
        if chat is None or topic is None:
            raise ControlError(404, "topic not found")
        self._remove_topic(chat, topic)
        return {"ok": True}

    async def _c_inject_message(self, request: web.Request) -> Any:
        return self.inject_message(await self._body(request))

    async def _c_edit(self, request: web.Request) -> Any:
        return self.edit_user_message(await self._body(request))

    async def _c_press(self, request: web.Request) -> Any:
        return self.press(await self._body(request))

    async def _c_reply_press(self, request: web.Request) -> Any:
        return self.reply_press(await self._body(request))

    async def _c_transcript(self, request: web.Request) -> Any:
        chat_id = _query_int(request, "chat_id", required=True)
        assert chat_id is not None
        include_deleted = request.query.get("include_deleted", "1").lower() not in ("0", "false", "no")
        return self.transcript(
            chat_id, _query_int(request, "thread_id"), include_deleted, _query_int(request, "after_id") or 0
        )

    async def _c_wait(self, request: web.Request) -> Any:
        chat_id = _query_int(request, "chat_id", required=True)
        after_id = _query_int(request, "after_id") or 0
        thread_id = _query_int(request, "thread_id")
        contains = request.query.get("contains") or None
        timeout = min(float(request.query.get("timeout", "10")), 300.0)

        def found() -> MsgRec | None:
            chat = self.world.chats.get(chat_id or 0)
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

        msg = await self._wait_until(found, timeout)
        if msg is None:
            return {"message": None, "timed_out": True}
        return {"message": self.world.message_control(msg), "timed_out": False}

    async def _c_events(self, request: web.Request) -> Any:
        since = _query_int(request, "since") or 0
        if since < 0:
            # A client that is just starting only wants to know where the feed is.
            return {"seq": self._event_seq, "events": [], "gap": False, "instance": self.instance}
        if since > self._event_seq:
            # The client followed an earlier run of this server: it must reload, not wait for seq to catch up.
            return {"seq": self._event_seq, "events": [], "gap": True, "instance": self.instance}
        timeout = min(float(request.query.get("timeout", "0")), 60.0)

        def newer() -> list[dict[str, Any]]:
            return [e for e in self._events if e["seq"] > since]

        events = await self._wait_until(newer, timeout)
        oldest = self._events[0]["seq"] if self._events else self._event_seq + 1
        return {"seq": self._event_seq, "events": events or [], "gap": since + 1 < oldest and since > 0,
                "instance": self.instance}

    async def _c_calls(self, request: web.Request) -> Any:
        method = request.query.get("method")
        chat_id = _query_int(request, "chat_id")
        since = _query_int(request, "since") or 0
        return [
            c
            for c in self._calls
            if c["seq"] > since
            and (method is None or c["method"].lower() == method.lower())
            and (chat_id is None or c["chat_id"] == chat_id)
        ]

    def stats(self) -> dict[str, Any]:
        """Counters: calls, delivered messages, 429 answers and errors, per method."""
        return {
            "calls": dict(self._stats["calls"]),
            "delivered": dict(self._stats["delivered"]),
            "rate_limited": dict(self._stats["rate_limited"]),
            "errors": dict(self._stats["errors"]),
            "total_calls": sum(self._stats["calls"].values()),
            "total_delivered": sum(v for k, v in self._stats["delivered"].items() if k != "webhook"),
            "total_rate_limited": sum(self._stats["rate_limited"].values()),
        }

    async def _c_stats(self, request: web.Request) -> Any:
        return self.stats()

    async def _c_faults(self, request: web.Request) -> Any:
        return [asdict(f) for f in self._faults]

    def add_fault(self, body: dict[str, Any]) -> Fault:
        """Queue a fault (see the module docstring for the fields)."""
        kind = str(body.get("kind") or "")
        if kind not in ("429", "500", "502", "403", "delay", "error"):
            raise ControlError(400, "kind must be one of 429, 500, 502, 403, delay, error")
        fault = Fault(
            id=next(self._fault_ids),
            kind=kind,
            method=str(body.get("method") or "*"),
            chat_id=_int_field(body, "chat_id"),
            remaining=max(1, _int_field(body, "count") or 1),
            retry_after=max(1, _int_field(body, "retry_after") or 1),
            delay=float(body.get("delay") or 0.0),
            error_code=_int_field(body, "error_code"),
            description=body.get("description"),
        )
        self._faults.append(fault)
        return fault

    async def _c_add_fault(self, request: web.Request) -> Any:
        return asdict(self.add_fault(await self._body(request)))

    async def _c_clear_faults(self, request: web.Request) -> Any:
        self._faults.clear()
        return {"ok": True}

    async def _c_limits(self, request: web.Request) -> Any:
        return asdict(self.limits)

    async def _c_set_limits(self, request: web.Request) -> Any:
        body = await self._body(request)
        current = asdict(self.limits)
        for key, value in body.items():
            if key not in current:
                raise ControlError(400, f"unknown limit {key!r}")
            if value is not None:
                current[key] = bool(value) if key == "enabled" else type(current[key])(value)
        self.limits = Limits(**current)
        self._buckets.clear()
        return asdict(self.limits)

    async def _c_file(self, request: web.Request) -> web.StreamResponse:
        record = self.world.files.get(request.match_info["file_id"])
        if record is None:
            return web.json_response({"error": "file not found"}, status=404)
        headers = {"Cache-Control": "max-age=3600"}
        if request.query.get("download"):
            name = record.file_name or record.file_path.rsplit("/", 1)[-1]
            headers["Content-Disposition"] = f'attachment; filename="{name}"'
        return web.Response(
            body=record.data, content_type=record.mime_type or "application/octet-stream", headers=headers
        )

    async def _c_callback_answers(self, request: web.Request) -> Any:
        query_id = request.query.get("callback_query_id")
        chat_id = _query_int(request, "chat_id")
        message_id = _query_int(request, "message_id")
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
                for c in self.world.callbacks.values()
                if c["answered"]
                and (query_id is None or c["id"] == query_id)
                and (chat_id is None or c["chat_id"] == chat_id)
                and (message_id is None or c["message_id"] == message_id)
            ]

        # With a timeout this long-polls until at least one matching answer exists.
        return await self._wait_until(answers, timeout)

    async def _c_commands(self, request: web.Request) -> Any:
        bot_id = _query_int(request, "bot_id")
        return [
            {"bot_id": bot.id, "scope": json.loads(scope), "language_code": language, "commands": commands}
            for bot in self.world.bots.values()
            if bot_id is None or bot.id == bot_id
            for (scope, language), commands in bot.commands.items()
        ]

    async def _c_updates(self, request: web.Request) -> Any:
        bot_id = _query_int(request, "bot_id")
        return {
            "bots": {
                str(b.id): b.updates for b in self.world.bots.values() if bot_id is None or b.id == bot_id
            },
            "orphans": self.world.orphan_updates,
        }

    async def _c_demo_config(self, request: web.Request) -> Any:
        bot = next(iter(self.world.live_bots()), None)
        return {**self._demo_config, "bot": bot.me() if bot else None}

    async def _c_set_demo_config(self, request: web.Request) -> Any:
        return self.set_demo_config(await self._body(request))

    async def _c_set_demo_info(self, request: web.Request) -> Any:
        body = await self._body(request)
        self._demo_config["info"] = {**(self._demo_config.get("info") or {}), **body}
        self._notify({"type": "demo_config"})
        return self._demo_config["info"]

    async def _c_add_identity(self, request: web.Request) -> Any:
        ident = self._ensure_identity(await self._body(request))
        self._demo_config["identities"] = [
            i for i in self._demo_config["identities"] if i["id"] != ident["id"]
        ]
        self._demo_config["identities"].append(ident)
        self._notify({"type": "demo_config"})
        return ident

    # -------------------------------------------------------------------------------- page

    async def _page_index(self, request: web.Request) -> web.StreamResponse:
        return web.FileResponse(PAGE_DIR / "index.html", headers={"Cache-Control": "no-store"})

    async def _page_static(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        if name not in ("app.js", "i18n.js", "style.css"):
            raise web.HTTPNotFound()
        return web.FileResponse(PAGE_DIR / name, headers={"Cache-Control": "no-store"})


# ------------------------------------------------------------------------------------ helpers


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


def _same_markup(new: dict[str, Any] | None, old: dict[str, Any] | None) -> bool:
    def norm(markup: dict[str, Any] | None) -> Any:
        if not markup or not markup.get("inline_keyboard"):
            return None
        return json.dumps(markup.get("inline_keyboard"), sort_keys=True)

    return bool(norm(new) == norm(old))


def _update_type(update: dict[str, Any]) -> str:
    for key in update:
        if key != "update_id":
            return key
    return ""


def _user_entities(text: str) -> list[dict[str, Any]]:
    """Entities Telegram clients attach to what a user types (bot commands, links, mentions)."""
    _plain, entities = parse_text(text, None)
    if is_bot_command_start(text):
        # A leading command is always an entity, even when glued to other text.
        if not any(e["type"] == "bot_command" and e["offset"] == 0 for e in entities):
            length = len(text.split()[0]) if text.split() else len(text)
            entities.insert(0, {"type": "bot_command", "offset": 0, "length": utf16_len(text[:length])})
    return entities


def _loggable_chat_id(raw: Any) -> Any:
    if raw is None or raw == "":
        return None
    try:
        return int(raw)
    except (TypeError, ValueError):
        return raw


def _int_field(body: dict[str, Any], name: str, *, required: bool = False) -> int | None:
    value = body.get(name)
    if value is None or value == "":
        if required:
            raise ControlError(400, f"{name} is required")
        return None
    try:
        return int(value)
    except (TypeError, ValueError) as exc:
        raise ControlError(400, f"{name} must be an integer") from exc


def _query_int(request: web.Request, name: str, *, required: bool = False) -> int | None:
    return _int_field(dict(request.query), name, required=required)


def _dumps(data: Any) -> str:
    return json.dumps(data, ensure_ascii=False)


def _api_response(status: int, body: dict[str, Any]) -> web.Response:
    return web.Response(status=status, text=_dumps(body), content_type="application/json")
