"""Getting updates: long polling with getUpdates, or a webhook this server POSTs each update to.

Only one getUpdates runs per bot (a newer one ends the older with 409, and so does a set webhook).
Webhook updates are POSTed as JSON with ``X-Telegram-Bot-Api-Secret-Token``; non-2xx answers are
retried with back-off, and a JSON or form reply carrying ``method`` is executed like Telegram does.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.parser
import email.policy
import json
import re
from typing import Any

import aiohttp

from ..errors import ApiError, bad
from ..hub import Hub
from ..params import Params, Upload
from ..records import BotRec, WebhookRec, now
from .dispatch import execute
from .table import method

__all__ = ["filter_updates", "start_webhook"]

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


@method("getUpdates")
async def get_updates(hub: Hub, bot: BotRec, params: Params) -> Any:
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
    hub.wake()

    def ready() -> list[dict[str, Any]] | None:
        if bot.poll_generation != generation:
            raise ApiError(
                409,
                "Conflict: terminated by other getUpdates request; "
                "make sure that only one bot instance is running",
            )
        filter_updates(bot, bot.allowed_updates)
        return bot.updates[:limit] or None

    result = await hub.wait_until(ready, timeout)
    return result or []


def filter_updates(bot: BotRec, allowed: list[str] | None) -> None:
    allowed_set = set(allowed) if allowed else DEFAULT_UPDATE_TYPES
    bot.updates = [u for u in bot.updates if update_type(u) in allowed_set]


@method("setWebhook")
async def set_webhook(hub: Hub, bot: BotRec, params: Params) -> Any:
    url = params.string("url") or ""
    if not url:
        return await delete_webhook(hub, bot, params)
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
    start_webhook(hub, bot)
    return True


@method("deleteWebhook")
async def delete_webhook(hub: Hub, bot: BotRec, params: Params) -> Any:
    bot.webhook = None
    task = hub.webhook_tasks.pop(bot.token, None)
    if task is not None:
        task.cancel()
    if params.flag("drop_pending_updates"):
        bot.updates.clear()
    hub.wake()
    return True


@method("getWebhookInfo")
async def get_webhook_info(hub: Hub, bot: BotRec, params: Params) -> Any:
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


def start_webhook(hub: Hub, bot: BotRec) -> None:
    old = hub.webhook_tasks.pop(bot.token, None)
    if old is not None:
        old.cancel()
    hub.webhook_tasks[bot.token] = asyncio.create_task(webhook_loop(hub, bot), name=f"webhook-{bot.id}")


async def webhook_loop(hub: Hub, bot: BotRec) -> None:
    """Deliver ``bot``'s updates one by one to its webhook, retrying failures with back-off."""
    failures = 0
    while not hub.stopping and bot.webhook is not None:
        hook = bot.webhook
        filter_updates(bot, hook.allowed_updates)
        if not bot.updates:

            def pending(current: WebhookRec = hook) -> bool:
                return bool(bot.updates) or bot.webhook is not current

            await hub.wait_until(pending, 30)
            continue
        update = bot.updates[0]
        headers = {"Content-Type": "application/json"}
        if hook.secret_token:
            headers["X-Telegram-Bot-Api-Secret-Token"] = hook.secret_token
        error: str | None = None
        reply: tuple[bytes, str] | None = None
        try:
            assert hub.client is not None
            async with hub.client.post(
                hook.url,
                data=json.dumps(update, ensure_ascii=False).encode(),
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=hub.webhook_timeout),
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
            hub.counters["errors"]["webhook"] += 1
            hub.notify({"type": "webhook_error", "bot_id": bot.id, "error": error})
            await asyncio.sleep(
                min(hub.webhook_retry_delay * (2 ** min(failures - 1, 8)), hub.webhook_retry_max)
            )
            continue
        failures = 0
        if bot.updates and bot.updates[0] is update:
            bot.updates.pop(0)
        hub.counters["delivered"]["webhook"] += 1
        hub.notify({"type": "webhook_delivered", "bot_id": bot.id, "update_id": update["update_id"]})
        if reply is not None:
            await webhook_reply(hub, bot, *reply)


async def webhook_reply(hub: Hub, bot: BotRec, body: bytes, content_type: str) -> None:
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
            decoded = part.get_payload(decode=True)
            payload = decoded if isinstance(decoded, bytes) and decoded else b""
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
    await execute(hub, bot, method, Params(data, files))


def update_type(update: dict[str, Any]) -> str:
    """What an update carries: ``message``, ``callback_query``, ..."""
    for key in update:
        if key != "update_id":
            return key
    return ""
