"""The aiogram 3 runtime: aiogram's Dispatcher receives updates, the shared pipeline handles them.

Nothing conversational happens here: a Message or CallbackQuery becomes an `Incoming`, is queued
behind the same member's earlier updates, and the router's replies go out through `AiogramSender`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiogram import Dispatcher
from aiogram.exceptions import TelegramAPIError
from aiogram.types import CallbackQuery, Message, Update

from bot.runtime import (
    ALLOWED_UPDATES,
    Connection,
    Pipeline,
    RouterLike,
    incoming_from_callback,
    incoming_from_message,
)
from bot.senders import AiogramSender, make_aiogram_bot
from bot.webhook import WebhookServer, check_webhook_settings

log = logging.getLogger("loyalbot.aiogram")


class AiogramRuntime:
    """loyalbot on aiogram 3: long polling by default, a webhook when `connection.webhook_url` is set."""

    name = "aiogram"

    def __init__(self, connection: Connection, router: RouterLike | None = None, *, concurrency: int = 64) -> None:
        self.connection = connection
        self.webhook_path = (check_webhook_settings(connection.webhook_url, connection.webhook_secret)
                             if connection.webhook_url else None)
        self.bot = make_aiogram_bot(connection.token, connection.api_url)
        self.sender = AiogramSender(self.bot)
        self.pipeline = Pipeline(self.sender, router, concurrency=concurrency)
        self.dispatcher = Dispatcher()
        self.dispatcher.update.outer_middleware(self._remember_update)
        self.dispatcher.message.register(self._on_message)
        self.dispatcher.edited_message.register(self._on_edited_message)
        self.dispatcher.callback_query.register(self._on_callback)
        self._polling: Any = None
        self._webhook: WebhookServer | None = None
        self._last_update_id: int | None = None

    # --- updates -> pipeline ---------------------------------------------------------------------------

    async def _remember_update(self, handler: Callable[[Update, dict[str, Any]], Awaitable[Any]], update: Update,
                               data: dict[str, Any]) -> Any:
        self._last_update_id = max(self._last_update_id or 0, update.update_id)
        return await handler(update, data)

    async def _on_message(self, message: Message) -> None:
        incoming = incoming_from_message(message)
        if incoming is not None:
            self.pipeline.submit(incoming)

    async def _on_edited_message(self, edited_message: Message) -> None:
        incoming = incoming_from_message(edited_message, edited=True)
        if incoming is not None:
            self.pipeline.submit(incoming)

    async def _on_callback(self, callback_query: CallbackQuery) -> None:
        incoming = incoming_from_callback(callback_query)
        if incoming is not None:
            self.pipeline.submit(incoming)

    async def feed(self, update: dict[str, Any]) -> None:
        """Hand one raw update (a webhook body) to the dispatcher."""
        await self.dispatcher.feed_raw_update(self.bot, update)

    # --- lifecycle -----------------------------------------------------------------------------------

    async def open(self) -> None:
        me = await self.bot.get_me()
        log.info("aiogram runtime connected as @%s", me.username)

    async def start(self) -> None:
        conn = self.connection
        if conn.webhook_url and self.webhook_path:
            assert conn.webhook_secret is not None
            self._webhook = WebhookServer(self.webhook_path, conn.webhook_secret, self.feed, conn.webhook_listen)
            await self._webhook.start()
            await self.bot.set_webhook(url=conn.webhook_url, secret_token=conn.webhook_secret,
                                       allowed_updates=ALLOWED_UPDATES)
            log.info("receiving updates by webhook")
            return
        # getUpdates is refused while a webhook is set (e.g. left by an earlier webhook deployment).
        await self.bot.delete_webhook(drop_pending_updates=False)
        # handle_as_tasks=False: aiogram hands updates over one by one in order, and the pipeline's
        # per-member lanes give the concurrency, so one member's updates never overtake each other.
        self._polling = asyncio.get_running_loop().create_task(self.dispatcher.start_polling(
            self.bot, polling_timeout=conn.polling_timeout, handle_as_tasks=False, handle_signals=False,
            close_bot_session=False, allowed_updates=ALLOWED_UPDATES))
        log.info("receiving updates by long polling")

    async def stop(self) -> None:
        if self._webhook is not None:
            await self._webhook.stop()
            self._webhook = None
        if self._polling is not None:
            if not self._polling.done():
                try:
                    await self.dispatcher.stop_polling()
                except RuntimeError:  # stopped before polling got going
                    self._polling.cancel()
            try:
                await self._polling
            except BaseException as exc:  # noqa: BLE001 - a crashed poller must not stop the shutdown
                log.warning("polling ended with %s", type(exc).__name__)
            self._polling = None
        await self.pipeline.drain()
        await self._confirm_offset()
        await self.bot.session.close()

    async def _confirm_offset(self) -> None:
        # aiogram confirms a batch only with its next getUpdates; tell the server what was handled so
        # the next process (on either runtime) does not receive it again.
        if self._last_update_id is None or self.connection.webhook_url:
            return
        try:
            await self.bot.get_updates(offset=self._last_update_id + 1, timeout=0, limit=1)
        except TelegramAPIError as exc:
            log.warning("could not confirm handled updates: %s", type(exc).__name__)


__all__ = ["AiogramRuntime"]
