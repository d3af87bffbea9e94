"""The webhook endpoint both runtimes use: checks Telegram's secret header, records the update, answers 200.

Telegram sends each update as a JSON POST carrying `X-Telegram-Bot-Api-Secret-Token` with the secret
given to setWebhook. A request without it is answered 401, with a wrong one 403, and logged (with
the peer address, never the body); too many wrong secrets from one address are answered 429. A body
over the limit is answered 413 before it is parsed; anything that is not an update is answered 400.
The runtime's `feed` records the update in the inbox before Telegram gets its 200; an update that
cannot be recorded is answered 503, so Telegram sends it again. While the process drains after
SIGTERM every update is answered 503 too: nginx passes it to another replica, Telegram retries it.

Behind nginx the peer is the proxy: the client's address is taken from X-Forwarded-For only when
the peer is one of the trusted proxies (LOYALBOT_TRUSTED_PROXIES), the nearest untrusted hop.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
import re
from collections.abc import Awaitable, Callable, Sequence
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


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def trusted_networks(spec: str | Sequence[str]) -> list[Network]:
    """'127.0.0.1, 10.0.0.0/8' (or a list) -> networks; raises WebhookConfigError naming the bad entry."""
    items = [part.strip() for part in (spec.split(",") if isinstance(spec, str) else spec) if part.strip()]
    networks = []
    for item in items:
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise WebhookConfigError(f"LOYALBOT_TRUSTED_PROXIES: {item!r} is not an address or network") from None
    return networks


def _trusted(address: str, networks: Sequence[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in networks)


def client_of(peer: str | None, forwarded_for: str | None, networks: Sequence[Network]) -> str:
    """The address to count wrong secrets against: the peer, or, when the peer is a trusted proxy, the
    nearest hop in X-Forwarded-For that is not one (a client cannot forge the hops nginx appends)."""
    if not peer:
        return "unknown"
    if not forwarded_for or not _trusted(peer, networks):
        return peer
    for hop in reversed([h.strip() for h in forwarded_for.split(",") if h.strip()]):
        if not _trusted(hop, networks):
            return hop[:64]
    return peer


class Gate:
    """Whether the endpoint takes updates: closed while the process drains (SIGTERM)."""

    def __init__(self) -> None:
        self.open = True


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


def webhook_app(path: str, secret: str, feed: Feed, *, max_bytes: int = MAX_UPDATE_BYTES,
                gate: Gate | None = None, trusted_proxies: Sequence[Network] = ()) -> web.Application:
    """An aiohttp application answering Telegram's POSTs at `path` (503 while `gate` is closed)."""
    expected = secret.encode()
    gate = gate or Gate()
    proxies = list(trusted_proxies)

    own_guard = FailureLimit(MemoryThrottle(), "webhook_secret")

    async def receive(request: web.Request) -> web.Response:
        if not gate.open:  # draining: another replica (through nginx) or Telegram's retry takes it
            return web.Response(status=503, text="shutting down; send it again", headers={"Retry-After": "1"})
        given = request.headers.get(SECRET_HEADER)
        client = client_of(request.remote, request.headers.get("X-Forwarded-For"), proxies)
        # Wrong secrets are limited per address; set app[WEBHOOK_GUARD] to share the limit across replicas.
        guard = request.app.get(WEBHOOK_GUARD) or own_guard
        if wait := await guard.locked(client):
            log.warning("webhook call from %s: refused, too many wrong secrets", client)
            return web.Response(status=429, text="too many wrong secrets", headers={"Retry-After": str(int(wait) + 1)})
        if given is None or not hmac.compare_digest(given.encode(), expected):
            wait = await guard.failed(client)
            log.warning("webhook call %s from %s: refused", "without the secret header" if given is None
                        else "with a wrong secret", client)
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
                 refused: Callable[[], None] | None = None, trusted_proxies: Sequence[Network] = ()) -> None:
        self.gate = Gate()
        self.app = webhook_app(path, secret, feed, gate=self.gate, trusted_proxies=trusted_proxies)
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

    def close_gate(self) -> None:
        """Answer 503 from now on (a drain); the port stays open until `stop`."""
        self.gate.open = False

    async def stop(self) -> None:
        self.gate.open = False
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


__all__ = ["MAX_UPDATE_BYTES", "SECRET_HEADER", "WEBHOOK_GUARD", "Gate", "WebhookConfigError", "WebhookServer",
           "check_webhook_settings", "client_of", "parse_listen", "trusted_networks", "webhook_app"]
