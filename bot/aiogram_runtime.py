"""The aiogram 3 runtime: aiogram's Bot receives and parses updates, the shared pipeline handles them.

Nothing conversational happens here. Updates arrive by long polling (`Poller` over getUpdates) or by
the webhook, are recorded in the inbox before Telegram is told they arrived, and are read back as
aiogram `Update`s, turned into an `Incoming`, and answered through `AiogramSender`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from aiogram.exceptions import TelegramConflictError
from aiogram.methods import GetUpdates

from loyalbot.bot.incoming import incoming_from_json
from loyalbot.bot.runtime import (
    ALLOWED_UPDATES,
    Connection,
    Pipeline,
    Poller,
    PollingConflict,
    RouterLike,
)
from loyalbot.bot.senders import AiogramSender, make_aiogram_bot
from loyalbot.bot.webhook import WebhookServer, check_webhook_settings, trusted_networks
from loyalbot.chat.port import Incoming
from loyalbot.storage.inbox import Inbox
from loyalbot.storage.throttle import FailureLimit

log = logging.getLogger("loyalbot.aiogram")


class AiogramRuntime:
    """loyalbot on aiogram 3: long polling by default, a webhook when `connection.webhook_url` is set."""

    name = "aiogram"

    def __init__(self, connection: Connection, router: RouterLike | None = None, *, concurrency: int = 64,
                 inbox: Inbox | None = None) -> None:
        self.connection = connection
        self.username: str | None = None
        self.webhook_path = (check_webhook_settings(connection.webhook_url, connection.webhook_secret)
                             if connection.webhook_url else None)
        self.bot = make_aiogram_bot(connection.token, connection.api_url)
        self.sender = AiogramSender(self.bot)
        self.pipeline = Pipeline(self.sender, router, concurrency=concurrency, inbox=inbox)
        self.pipeline.parse = self.parse
        self._poller: Poller | None = None
        self._webhook: WebhookServer | None = None
        self.webhook_guard: FailureLimit | None = None  # shared limit of wrong secrets (set by the App)
        self.on_fatal: Callable[[BaseException], None] | None = None  # polling cannot go on (set by the App)
        self.proxies = trusted_networks(connection.trusted_proxies)

    # --- updates -------------------------------------------------------------------------------------

    def parse(self, raw: dict[str, Any]) -> Incoming | None:
        """A recorded update (Bot API JSON) as an `Incoming`: read as aiogram would (see `incoming_from_json`)."""
        return incoming_from_json(raw)

    async def fetch(self, offset: int | None, wait: int) -> list[dict[str, Any]]:
        """One getUpdates: confirms every update below `offset`, returns the next ones as Bot API JSON."""
        try:
            updates = await self.bot(GetUpdates(offset=offset, timeout=wait, allowed_updates=ALLOWED_UPDATES),
                                     request_timeout=wait + 10)
        except TelegramConflictError as exc:
            raise PollingConflict(exc.message) from None
        return [u.model_dump(mode="json", by_alias=True, exclude_none=True) for u in updates]

    async def feed(self, update: dict[str, Any]) -> None:
        """Record one raw update (a webhook body); returns once it is stored."""
        await self.pipeline.receive([update])

    # --- lifecycle -----------------------------------------------------------------------------------

    async def open(self) -> None:
        me = await self.bot.get_me()
        self.username = me.username
        log.info("aiogram runtime connected as @%s", me.username)

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
            await self.bot.set_webhook(url=conn.webhook_url, secret_token=conn.webhook_secret,
                                       allowed_updates=ALLOWED_UPDATES)
            log.info("receiving updates by webhook")
            return
        # getUpdates is refused while a webhook is set: that is another deployment's (or an earlier one's),
        # so polling stops with 409 and says so, unless asked to take the bot over (--delete-webhook).
        if conn.delete_webhook:
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
        await self.bot.session.close()


__all__ = ["AiogramRuntime"]
