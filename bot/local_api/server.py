"""A local stand-in for the Telegram Bot API server, with a control API and a demo chat page.

``LocalBotApi`` is an aiohttp application that answers Bot API calls at
``<url>/bot<token>/<method>`` (GET or POST; JSON, url-encoded or multipart bodies, ``attach://``
files) the way api.telegram.org does, so aiogram 3 and python-telegram-bot 22 run against it
unmodified.  A bot is whatever token calls it: any ``<digits>:<chars>`` token is accepted and the
bot's id is the digits.  Files are downloaded at ``<url>/file/bot<token>/<file_path>``.

The methods it answers are the one table in :mod:`.methods` (:func:`supported_methods` lists them);
each is written in the module of its concept.  Text is parsed with ``parse_mode`` into plain text +
entities (UTF-16 offsets); bad markup answers ``400 Bad Request: can't parse entities: ...``.

The control API (:mod:`.control_routes`) plays users and shows what the bot did; faults
(:mod:`.faults`) and flood limits (:mod:`.limits`) are set through it.  The demo page
(:mod:`.page`) is served at ``/`` and talks only to the control API.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, Unpack

import aiohttp
from aiohttp import web

from . import methods, user_actions, users
from .control_routes import add_control_routes, transcript_of
from .errors import ApiError
from .faults import Fault
from .hub import Hub, HubOptions
from .methods.dispatch import execute
from .page_routes import add_page_routes
from .params import MAX_UPLOAD_BYTES, TOKEN_RE, Params, dumps
from .records import BotRec, ChatRec, UserRec

__all__ = ["LocalBotApi", "supported_methods"]


def supported_methods() -> list[str]:
    """Every Bot API method the server answers, by its canonical name."""
    return methods.supported()


class LocalBotApi(Hub):
    """The local Bot API server: ``await start()``, point a bot at :attr:`url`, ``await stop()``."""

    def __init__(self, *, serve_page: bool = True, **options: Unpack[HubOptions]) -> None:
        """``serve_page``: serve the demo page at ``/``; ``options``: see :class:`~.hub.Hub`."""
        super().__init__(**options)
        self.serve_page = serve_page
        self._runner: web.AppRunner | None = None
        self._url = ""

    # ------------------------------------------------------------------------------- lifecycle

    @property
    def url(self) -> str:
        """The server root, e.g. ``http://127.0.0.1:8080`` (empty before :meth:`start`)."""
        return self._url

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        """Start listening; returns once the socket accepts connections."""
        if self._runner is not None:
            raise RuntimeError("LocalBotApi is already running")
        self.stopping = False
        self.changed = asyncio.Event()
        if self.saved is not None:
            saved_config = self.saved.load(self.world)
            if saved_config:
                self.demo_config = saved_config
            self.saved.follow(lambda: (self.world, self.demo_config))
        # handler_cancellation: a client that gives up on a long poll must not leave a handler behind.
        runner = web.AppRunner(self._app(), handler_cancellation=True, shutdown_timeout=1.0, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            if self.saved is not None:
                await self.saved.close(self.world, self.demo_config)
            raise
        self._runner = runner
        addresses = runner.addresses
        bound_port = int(addresses[0][1]) if addresses else port
        shown_host = host if host not in ("0.0.0.0", "::", "") else "127.0.0.1"
        self._url = f"http://{shown_host}:{bound_port}"
        self.client = aiohttp.ClientSession()

    async def stop(self) -> None:
        """Stop listening, end long polls and webhook deliveries."""
        self.stopping = True
        self.wake()
        for task in list(self.webhook_tasks.values()):
            task.cancel()
        for task in list(self.webhook_tasks.values()):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self.webhook_tasks.clear()
        if self.client is not None:
            await self.client.close()
            self.client = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self.saved is not None:
            await self.saved.close(self.world, self.demo_config)

    async def __aenter__(self) -> LocalBotApi:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # --------------------------------------------------------------------------------- routes

    def _app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_UPLOAD_BYTES + 1024 * 1024)
        app.router.add_route("*", r"/bot{token}/{method}", self._bot_endpoint)
        app.router.add_get(r"/file/bot{token}/{path:.+}", self._file_endpoint)
        add_control_routes(app, self)
        if self.serve_page:
            add_page_routes(app)
        return app

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

    async def _file_endpoint(self, request: web.Request) -> web.StreamResponse:
        token = request.match_info["token"]
        if not TOKEN_RE.fullmatch(token) or self.world.bot_for_token(token).invalid:
            return _api_response(401, {"ok": False, "error_code": 401, "description": "Unauthorized"})
        record = self.world.files_by_path.get(request.match_info["path"])
        if record is None:
            return _api_response(404, {"ok": False, "error_code": 404, "description": "Not Found"})
        return web.Response(body=record.data, content_type=record.mime_type or "application/octet-stream")

    # ----------------------------------------------------------------- the same, from Python

    async def execute(self, bot: BotRec, method: str, params: Params) -> tuple[int, dict[str, Any]]:
        """Run one Bot API call for ``bot``; returns ``(http_status, json_body)``."""
        return await execute(self, bot, method, params)

    def inject_message(self, body: dict[str, Any]) -> dict[str, Any]:
        """``POST /control/messages``: a user's message, queued as an update."""
        return user_actions.inject_message(self, body)

    def press(self, body: dict[str, Any]) -> dict[str, Any]:
        """``POST /control/press``: a user presses an inline button."""
        return user_actions.press(self, body)

    def edit_user_message(self, body: dict[str, Any]) -> dict[str, Any]:
        """``POST /control/edit``: a user edits their message."""
        return user_actions.edit_user_message(self, body)

    def reply_press(self, body: dict[str, Any]) -> dict[str, Any]:
        """``POST /control/reply-press``: a user presses a reply-keyboard button."""
        return user_actions.reply_press(self, body)

    def upsert_user(self, body: dict[str, Any]) -> UserRec:
        """``POST /control/users``: create a user or update the fields given."""
        return users.upsert_user(self, body)

    def create_group(self, body: dict[str, Any]) -> ChatRec:
        """``POST /control/groups``: create a group or supergroup."""
        return users.create_group(self, body)

    def set_demo_config(self, body: dict[str, Any]) -> dict[str, Any]:
        """``POST /control/demo-config``: the demo page's identities and staff group."""
        return users.set_demo_config(self, body)

    def transcript(
        self, chat_id: int, thread_id: int | None = None, include_deleted: bool = True, after_id: int = 0
    ) -> dict[str, Any]:
        """``GET /control/transcript``: all messages of a chat (optionally one thread)."""
        return transcript_of(self, chat_id, thread_id, include_deleted, after_id)

    def add_fault(self, body: dict[str, Any]) -> Fault:
        """``POST /control/faults``: queue a fault (see :mod:`.faults`)."""
        return self.faults.add(body)


def _api_response(status: int, body: dict[str, Any]) -> web.Response:
    return web.Response(status=status, text=dumps(body), content_type="application/json")
