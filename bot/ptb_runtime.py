"""The python-telegram-bot 22 runtime: PTB's Bot receives and parses updates, the shared pipeline handles them.

The same conversations as on aiogram. Updates arrive by long polling (`Poller` over getUpdates) or by
the webhook, are recorded in the inbox before Telegram is told they arrived, and are read back as
PTB `Update`s, turned into an `Incoming`, and answered through `PtbSender`. PTB's Application only
builds and initialises the bot (its request pools); its updater and update queue are not used, as
they confirm updates to Telegram before they are handled.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from telegram.error import Conflict
from telegram.ext import Application, ApplicationBuilder

from loyalbot.bot.incoming import incoming_from_json
from loyalbot.bot.runtime import (
    ALLOWED_UPDATES,
    Connection,
    Pipeline,
    Poller,
    PollingConflict,
    RouterLike,
    quiet_http_loggers,
)
from loyalbot.bot.senders import PtbSender
from loyalbot.bot.webhook import WebhookServer, check_webhook_settings, trusted_networks
from loyalbot.chat.port import Incoming
from loyalbot.storage.inbox import Inbox
from loyalbot.storage.throttle import FailureLimit

log = logging.getLogger("loyalbot.ptb")


class PtbRuntime:
    """loyalbot on python-telegram-bot 22: long polling by default, a webhook when `webhook_url` is set."""

    name = "ptb"

    def __init__(self, connection: Connection, router: RouterLike | None = None, *, concurrency: int = 64,
                 inbox: Inbox | None = None) -> None:
        quiet_http_loggers()
        self.connection = connection
        self.username: str | None = None
        self.webhook_path = (check_webhook_settings(connection.webhook_url, connection.webhook_secret)
                             if connection.webhook_url else None)
        root = connection.api_url.rstrip("/")
        builder = (
            ApplicationBuilder()
            .token(connection.token)
            .base_url(root + "/bot")
            .base_file_url(root + "/file/bot")
            .job_queue(None)  # scheduling is the scheduler room's, not PTB's
            .updater(None)  # updates come through the inbox (see the module's docstring)
            # getUpdates waits up to the polling timeout; give the read that long and then some.
            .get_updates_read_timeout(connection.polling_timeout + 10)
        )
        self.application: Application[Any, Any, Any, Any, Any, Any] = builder.build()
        self.bot = self.application.bot
        self.sender = PtbSender(self.bot)
        self.pipeline = Pipeline(self.sender, router, concurrency=concurrency, inbox=inbox)
        self.pipeline.parse = self.parse
        self._poller: Poller | None = None
        self._webhook: WebhookServer | None = None
        self.webhook_guard: FailureLimit | None = None  # shared limit of wrong secrets (set by the App)
        self.on_fatal: Callable[[BaseException], None] | None = None  # polling cannot go on (set by the App)
        self.proxies = trusted_networks(connection.trusted_proxies)
        self._opened = False

    # --- updates -------------------------------------------------------------------------------------

    def parse(self, raw: dict[str, Any]) -> Incoming | None:
        """A recorded update (Bot API JSON) as an `Incoming`: read as PTB would (see `incoming_from_json`)."""
        return incoming_from_json(raw)

    async def fetch(self, offset: int | None, wait: int) -> list[dict[str, Any]]:
        """One getUpdates: confirms every update below `offset`, returns the next ones as Bot API JSON.

        Through PTB's own request path (its polling connection, timeouts and error mapping), but without
        `Bot.get_updates`' parse into `Update` objects, which the inbox would only turn back into JSON."""
        data = {"offset": offset, "timeout": wait, "allowed_updates": ALLOWED_UPDATES}
        try:
            updates = await self.bot._post(  # noqa: SLF001 - get_updates minus Update.de_list
                "getUpdates", {k: v for k, v in data.items() if v is not None},
                read_timeout=self.connection.polling_timeout + 10 + wait)
        except Conflict as exc:
            raise PollingConflict(exc.message) from None
        return [u for u in updates if isinstance(u, dict)] if isinstance(updates, list) else []

    async def feed(self, update: dict[str, Any]) -> None:
        """Record one raw update (a webhook body); returns once it is stored."""
        await self.pipeline.receive([update])

    # --- lifecycle -----------------------------------------------------------------------------------

    async def open(self) -> None:
        await self.application.initialize()
        self._opened = True
        self.username = self.bot.username
        log.info("python-telegram-bot runtime connected as @%s", self.bot.username)

    async def start(self) -> None:
        conn = self.connection
        await self.pipeline.start()
        if conn.webhook_url and self.webhook_path:
            assert conn.webhook_secret is not None
            self._webhook = WebhookServer(self.webhook_path, conn.webhook_secret, self.feed, conn.webhook_listen,
                                          guard=self.webhook_guard, refused=self.pipeline.metrics.updates.labels(
                                              outcome="refused").inc,
                                          trusted_proxies=self.proxies)
            await self._webhook.start()
            await self.bot.set_webhook(conn.webhook_url, secret_token=conn.webhook_secret,
                                       allowed_updates=ALLOWED_UPDATES)
            log.info("receiving updates by webhook")
            return
        if conn.delete_webhook:  # else a webhook that is set makes getUpdates answer 409 (see PollingConflict)
            await self.bot.delete_webhook(drop_pending_updates=False)
        self._poller = Poller(self.fetch, self.pipeline, timeout=conn.polling_timeout, on_fatal=self._fatal)
        self._poller.start()
        log.info("receiving updates by long polling")

    async def reachable(self) -> None:
        """getMe, for /readyz: raises when the Bot API server does not answer or refuses the token."""
        await self.bot.get_me()

    def _fatal(self, exc: BaseException) -> None:
        if self.on_fatal is not None:
            self.on_fatal(exc)

    async def pause(self) -> None:
        if self._webhook is not None:
            self._webhook.close_gate()
        if self._poller is not None:
            await self._poller.stop()
            self._poller = None

    async def stop(self) -> None:
        await self.pause()
        await self.pipeline.close(self.pipeline.drain_within)
        if self._webhook is not None:
            await self._webhook.stop()
            self._webhook = None
        if self._opened:
            await self.application.shutdown()
            self._opened = False


__all__ = ["PtbRuntime"]
