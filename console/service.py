"""Serve the console app (shop API, operator dashboard, /healthz, /readyz, /metrics): inside the bot's process
(`loyalbot run`, `loyalbot demo`) or on its own (`loyalbot api`), from one factory, `http_app`.

The store's pool is always made in the event loop that serves requests: `serve_api` opens the Db and
runs uvicorn's Server inside one asyncio.run, and the embedded service uses the bot's own Db.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import uvicorn
from fastapi import FastAPI

from loyalbot.console.api import HttpLimits, create_app
from loyalbot.console.health import Readiness, ping_redis
from loyalbot.loyalty import Loyalty
from loyalbot.storage import Db
from loyalbot.storage.db import redact_url
from loyalbot.storage.throttle import Throttle, make_throttle

if TYPE_CHECKING:
    from loyalbot.bot.app import App

log = logging.getLogger(__name__)


def http_app(settings: Any, db: Db, loyalty: Loyalty, *, throttle: Throttle,
             console_password: str | None = None, readiness: Readiness | None = None) -> FastAPI:
    """The one HTTP application, configured from the settings (password, limits)."""
    password = console_password or (
        settings.console_password.get_secret_value() if settings.console_password else None)
    secret = settings.console_secret.get_secret_value() if getattr(settings, "console_secret", None) else None
    return create_app(db, loyalty, console_password=password or None, throttle=throttle,
                      limits=HttpLimits.from_settings(settings), readiness=readiness, console_secret=secret,
                      secure_cookies=bool(getattr(settings, "console_secure_cookies", False)))


def _config(web: FastAPI, host: str, port: int, settings: Any = None) -> uvicorn.Config:
    # No access log: its lines would carry member numbers (in look-up paths); refusals log themselves.
    # Behind nginx the client's address comes from X-Forwarded-For, believed only from trusted proxies.
    proxies = getattr(settings, "trusted_proxies", None) or "127.0.0.1"
    return uvicorn.Config(web, host=host, port=port, log_level="warning", access_log=False, lifespan="off",
                          server_header=False, proxy_headers=True, forwarded_allow_ips=proxies)


async def close_throttle(throttle: Throttle) -> None:
    close = getattr(throttle, "close", None)
    if close is not None:
        with contextlib.suppress(Exception):
            await close()


async def serve_api(settings: Any, host: str, port: int) -> None:
    """`loyalbot api`: migrate, open the store and serve until SIGINT/SIGTERM, all in this event loop."""
    from loyalbot.storage.migrate import upgrade_async

    await upgrade_async(settings.database_url)
    db = Db(settings.database_url)
    throttle = make_throttle(db, settings.redis_url)
    try:
        loyalty = Loyalty(db, settings.load_programme())
        await loyalty.sync_programme()
        readiness = Readiness({"database": db.ping})
        redis = getattr(throttle, "redis", None)
        if redis is not None:
            readiness.add("redis", lambda: ping_redis(redis))
        web = http_app(settings, db, loyalty, throttle=throttle, readiness=readiness)
        server = uvicorn.Server(_config(web, host, port, settings))
        log.info("HTTP API on http://%s:%s (store %s, throttle %s)%s", host, port, redact_url(settings.database_url),
                 type(throttle).__name__, "" if settings.console_password else "; console off: no password")
        await server.serve()
    finally:
        await close_throttle(throttle)
        await db.dispose()


class _EmbeddedServer(uvicorn.Server):
    """uvicorn without its own signal handling: the bot's App owns SIGINT/SIGTERM and stops us in order."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class ConsoleService:
    """The HTTP side of loyalbot, started and stopped with the bot."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.server: _EmbeddedServer | None = None
        self.task: asyncio.Task[None] | None = None
        self._own_throttle: Throttle | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def start(self, app: App) -> None:
        assert app.db is not None and app.loyalty is not None and app.context is not None, "App.start() first"
        services = app.context.services
        throttle = services.throttle
        if throttle is None:  # share ours with the handlers (counter look-ups) through the context
            throttle = self._own_throttle = services.throttle = make_throttle(app.db, app.settings.redis_url)
        password = app.console_password
        web = http_app(app.settings, app.db, app.loyalty, throttle=throttle, console_password=password,
                       readiness=getattr(app, "readiness", None))
        self.server = _EmbeddedServer(_config(web, self.host, self.port, app.settings))
        self.task = asyncio.create_task(self.server.serve(), name="console")
        while not self.server.started:
            if self.task.done():  # e.g. the port is taken: say so instead of hanging
                self.task.result()
                raise RuntimeError(f"the console could not listen on {self.host}:{self.port}")
            await asyncio.sleep(0.02)
        self.port = self.server.servers[0].sockets[0].getsockname()[1]
        services.console = self
        log.info("console and HTTP API on %s%s", self.url,
                 "" if (password or app.settings.console_password) else " (dashboard off: no password)")

    async def stop(self) -> None:
        if self.server is not None and self.task is not None:
            self.server.should_exit = True
            await self.task
        self.server = self.task = None
        if self._own_throttle is not None:
            await close_throttle(self._own_throttle)
            self._own_throttle = None


def attach(app: App) -> None:
    """Add the console to the bot's assembly when a port is configured (LOYALBOT_CONSOLE_PORT, 0 = off)."""
    port = app.console_port
    if port is None or port < 0:
        return
    service = ConsoleService(app.settings.console_host, port)
    app.add_service(service.start, service.stop, name="console")
