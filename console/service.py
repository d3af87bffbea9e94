"""Serve the console app (shop API, operator dashboard, /healthz, /metrics) inside the bot's process."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator
from typing import Any

import uvicorn

from console.api import create_app

log = logging.getLogger(__name__)


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

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def start(self, app: Any) -> None:
        password = app.seed_services.get("console_password") or (
            app.settings.console_password.get_secret_value() if app.settings.console_password else None)
        web = create_app(app.db, app.loyalty, console_password=password)
        config = uvicorn.Config(web, host=self.host, port=self.port, log_level="warning", lifespan="off")
        self.server = _EmbeddedServer(config)
        self.task = asyncio.create_task(self.server.serve(), name="console")
        while not self.server.started:
            if self.task.done():  # e.g. the port is taken: say so instead of hanging
                self.task.result()
                raise RuntimeError(f"the console could not listen on {self.host}:{self.port}")
            await asyncio.sleep(0.02)
        self.port = self.server.servers[0].sockets[0].getsockname()[1]
        app.context.services["console"] = self
        log.info("console and HTTP API on %s%s", self.url, "" if password else " (dashboard off: no password)")

    async def stop(self) -> None:
        if self.server is not None and self.task is not None:
            self.server.should_exit = True
            await self.task
        self.server = self.task = None


def attach(app: Any) -> None:
    """Add the console to the bot's assembly when a port is configured (LOYALBOT_CONSOLE_PORT, 0 = off)."""
    port = app.seed_services.get("console_port", app.settings.console_port)
    if port is None or port < 0:
        return
    service = ConsoleService(app.settings.console_host, port)
    app.add_service(service.start, service.stop, name="console")
