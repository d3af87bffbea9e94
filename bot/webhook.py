"""The webhook endpoint both runtimes use: checks Telegram's secret header, records the update, answers 200.

Telegram sends each update as a JSON POST carrying `X-Telegram-Bot-Api-Secret-Token` with the secret
given to setWebhook. A request without it is answered 401, with a wrong one 403, and logged (with
the peer address, never the body); too many wrong secrets from one address are answered 429. A body
over the limit is answered 413 before it is parsed; anything that is not an update is answered 400.
The runtime's `feed` records the update in the inbox before Telegram gets its 200; an update that
cannot be recorded is answered 503, so Telegram sends it again.
"""

from __future__ import annotations

import hmac
import json
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from loyalbot.storage.throttle import FailureLimit, MemoryThrottle

log = logging.getLogger("loyalbot.webhook")

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
# What setWebhook accepts as secret_token.
SECRET_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,256}$")

Feed = Callable[[dict[str, Any]], Awaitable[None]]
# The shared limit of wrong secrets: app[WEBHOOK_GUARD] = FailureLimit(make_throttle(db, redis_url), "webhook_secret")
WEBHOOK_GUARD = web.AppKey("webhook_guard", FailureLimit)

# The largest update body accepted. A Telegram update is one message (text up to 4096 characters,
# caption 1024, their entities, an inline keyboard, the message it replies to) serialised as JSON:
# tens of kilobytes at most. 1 MiB leaves ample room and keeps a flood of large bodies cheap to refuse.
MAX_UPDATE_BYTES = 1024 * 1024


class WebhookConfigError(ValueError):
    """The webhook settings cannot work; the message names the setting."""


def check_webhook_settings(url: str, secret: str | None) -> str:
    """The path to serve for `url`; raises WebhookConfigError when the URL or the secret is unusable."""
    parts = urlsplit(url)
    if parts.scheme != "https" and parts.hostname not in ("127.0.0.1", "localhost"):
        raise WebhookConfigError("LOYALBOT_WEBHOOK_URL: Telegram only calls https:// webhook URLs")
    if not secret:
        raise WebhookConfigError("LOYALBOT_WEBHOOK_SECRET: must be set when LOYALBOT_WEBHOOK_URL is, so that "
                                 "only Telegram can post updates")
    if not SECRET_PATTERN.match(secret):
        raise WebhookConfigError("LOYALBOT_WEBHOOK_SECRET: 1-256 characters of A-Z, a-z, 0-9, _ and -")
    return parts.path or "/"


def parse_listen(listen: str) -> tuple[str, int]:
    """'host:port' -> (host, port)."""
    host, _, port = listen.rpartition(":")
    if not host or not port.isdigit():
        raise WebhookConfigError(f"LOYALBOT_WEBHOOK_LISTEN: expected host:port, got {listen!r}")
    return host.strip("[]"), int(port)


def webhook_app(path: str, secret: str, feed: Feed, *, max_bytes: int = MAX_UPDATE_BYTES) -> web.Application:
    """An aiohttp application answering Telegram's POSTs at `path`."""
    expected = secret.encode()

    own_guard = FailureLimit(MemoryThrottle(), "webhook_secret")

    async def receive(request: web.Request) -> web.Response:
        given = request.headers.get(SECRET_HEADER)
        # Wrong secrets are limited per address; set app[WEBHOOK_GUARD] to share the limit across replicas.
        guard = request.app.get(WEBHOOK_GUARD) or own_guard
        if wait := await guard.locked(request.remote or "unknown"):
            log.warning("webhook call from %s: refused, too many wrong secrets", request.remote)
            return web.Response(status=429, text="too many wrong secrets", headers={"Retry-After": str(int(wait) + 1)})
        if given is None or not hmac.compare_digest(given.encode(), expected):
            wait = await guard.failed(request.remote or "unknown")
            log.warning("webhook call %s from %s: refused", "without the secret header" if given is None
                        else "with a wrong secret", request.remote)
            if wait:
                return web.Response(status=429, text="too many wrong secrets",
                                    headers={"Retry-After": str(int(wait) + 1)})
            return web.Response(status=401, text="missing secret token") if given is None else web.Response(
                status=403, text="wrong secret token")
        if request.content_length is not None and request.content_length > max_bytes:
            log.warning("webhook body of %d bytes refused (limit %d)", request.content_length, max_bytes)
            return web.Response(status=413, text=f"body larger than {max_bytes} bytes")
        body = bytearray()  # a chunked body has no length to check first: read no more than the limit + 1
        try:
            while len(body) <= max_bytes and (chunk := await request.content.read(max_bytes + 1 - len(body))):
                body += chunk
        except (OSError, ValueError) as exc:
            log.warning("webhook body unreadable: %s", type(exc).__name__)
            return web.Response(status=400, text="body could not be read")
        if len(body) > max_bytes:
            log.warning("webhook body over %d bytes refused", max_bytes)
            return web.Response(status=413, text=f"body larger than {max_bytes} bytes")
        try:
            update = json.loads(bytes(body))
        except (UnicodeDecodeError, json.JSONDecodeError):
            log.warning("webhook body is not JSON: refused")
            return web.Response(status=400, text="body must be a JSON update")
        if not isinstance(update, dict) or not isinstance(update.get("update_id"), int):
            log.warning("webhook body is not an update: refused")
            return web.Response(status=400, text="body must be an update with an update_id")
        try:
            await feed(update)
        except Exception as exc:  # not recorded: Telegram must send it again, so no 200
            log.error("webhook update %s could not be recorded: %s", update["update_id"], type(exc).__name__)
            return web.Response(status=503, text="update not recorded; send it again later")
        return web.Response(text="ok")

    app = web.Application(client_max_size=max_bytes)
    app.router.add_post(path, receive)
    return app


class WebhookServer:
    """Serves `webhook_app` on host:port until stopped."""

    def __init__(self, path: str, secret: str, feed: Feed, listen: str, *, guard: FailureLimit | None = None,
                 refused: Callable[[], None] | None = None) -> None:
        self.app = webhook_app(path, secret, feed)
        if guard is not None:  # wrong secrets counted where every replica sees them
            self.app[WEBHOOK_GUARD] = guard
        if refused is not None:  # counted as updates refused (metrics): a 4xx answer to a call
            @web.middleware
            async def count_refusals(request: web.Request, handler: Any) -> web.StreamResponse:
                response: web.StreamResponse = await handler(request)
                if 400 <= response.status < 500:
                    refused()
                return response

            self.app.middlewares.append(count_refusals)
        self.host, self.port = parse_listen(listen)
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        runner = web.AppRunner(self.app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, self.host, self.port).start()
        self._runner = runner
        log.info("webhook listening on %s:%s", self.host, self.port)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


__all__ = ["MAX_UPDATE_BYTES", "SECRET_HEADER", "WEBHOOK_GUARD", "WebhookConfigError", "WebhookServer", "check_webhook_settings", "parse_listen",
           "webhook_app"]
