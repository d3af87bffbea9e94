"""The python-telegram-bot 22 runtime: PTB's Application receives updates, the shared pipeline handles them.

The same conversations as on aiogram: a Message or CallbackQuery becomes an `Incoming`, is queued
behind the same member's earlier updates, and the router's replies go out through `PtbSender`.
"""

from __future__ import annotations

import logging
from typing import Any

from telegram import Update
from telegram.ext import Application, ApplicationBuilder, ContextTypes, TypeHandler

from bot.runtime import (
    ALLOWED_UPDATES,
    Connection,
    Pipeline,
    RouterLike,
    incoming_from_callback,
    incoming_from_message,
    quiet_http_loggers,
)
from bot.senders import PtbSender
from bot.webhook import WebhookServer, check_webhook_settings

log = logging.getLogger("loyalbot.ptb")


class PtbRuntime:
    """loyalbot on python-telegram-bot 22: long polling by default, a webhook when `webhook_url` is set."""

    name = "ptb"

    def __init__(self, connection: Connection, router: RouterLike | None = None, *, concurrency: int = 64) -> None:
        quiet_http_loggers()
        self.connection = connection
        self.webhook_path = (check_webhook_settings(connection.webhook_url, connection.webhook_secret)
                             if connection.webhook_url else None)
        root = connection.api_url.rstrip("/")
        builder = (
            ApplicationBuilder()
            .token(connection.token)
            .base_url(root + "/bot")
            .base_file_url(root + "/file/bot")
            # PTB hands updates over one by one, in order; the pipeline's per-member lanes give the
            # concurrency, so one member's updates never overtake each other.
            .concurrent_updates(False)
            .job_queue(None)  # scheduling is the scheduler room's, not PTB's
        )
        if self.webhook_path is not None:
            builder = builder.updater(None)  # our own webhook endpoint puts updates on the queue
        self.application: Application[Any, Any, Any, Any, Any, Any] = builder.build()
        self.application.add_handler(TypeHandler(Update, self._on_update))
        self.application.add_error_handler(self._on_error)
        self.bot = self.application.bot
        self.sender = PtbSender(self.bot)
        self.pipeline = Pipeline(self.sender, router, concurrency=concurrency)
        self._webhook: WebhookServer | None = None
        self._started = False

    # --- updates -> pipeline ---------------------------------------------------------------------------

    async def _on_update(self, update: Update, _context: ContextTypes.DEFAULT_TYPE) -> None:
        incoming = None
        if update.message is not None:
            incoming = incoming_from_message(update.message)
        elif update.edited_message is not None:
            incoming = incoming_from_message(update.edited_message, edited=True)
        elif update.callback_query is not None:
            incoming = incoming_from_callback(update.callback_query)
        if incoming is not None:
            self.pipeline.submit(incoming)

    async def _on_error(self, _update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
        # PTB's own failures (polling, network): the type is enough, the message may quote a member.
        log.error("python-telegram-bot error: %s", type(context.error).__name__)

    async def feed(self, update: dict[str, Any]) -> None:
        """Hand one raw update (a webhook body) to the application's queue."""
        await self.application.update_queue.put(Update.de_json(update, self.bot))

    # --- lifecycle -----------------------------------------------------------------------------------

    async def open(self) -> None:
        await self.application.initialize()
        log.info("python-telegram-bot runtime connected as @%s", self.bot.username)

    async def start(self) -> None:
        conn = self.connection
        await self.application.start()
        self._started = True
        if conn.webhook_url and self.webhook_path:
            assert conn.webhook_secret is not None
            self._webhook = WebhookServer(self.webhook_path, conn.webhook_secret, self.feed, conn.webhook_listen)
            await self._webhook.start()
            await self.bot.set_webhook(conn.webhook_url, secret_token=conn.webhook_secret,
                                       allowed_updates=ALLOWED_UPDATES)
            log.info("receiving updates by webhook")
            return
        assert self.application.updater is not None
        await self.application.updater.start_polling(timeout=conn.polling_timeout, allowed_updates=ALLOWED_UPDATES,
                                                     error_callback=self._polling_error)
        log.info("receiving updates by long polling")

    def _polling_error(self, exc: Exception) -> None:
        log.warning("polling failed (%s); retrying", type(exc).__name__)

    async def stop(self) -> None:
        if self._webhook is not None:
            await self._webhook.stop()
            self._webhook = None
        updater = self.application.updater
        if updater is not None and updater.running:
            await updater.stop()  # also confirms the updates received, so no other process gets them again
        if self._started:
            await self.application.stop()  # hands over what is still queued
            self._started = False
        await self.pipeline.drain()
        await self.application.shutdown()


__all__ = ["PtbRuntime"]
