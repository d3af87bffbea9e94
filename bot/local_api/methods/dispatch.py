"""Running one Bot API call: look the method up in the table, apply faults and flood limits, log it."""

from __future__ import annotations

import time
from typing import Any

from ..errors import ApiError
from ..hub import Hub
from ..params import Params, loggable_chat_id
from ..records import BotRec
from .table import find

__all__ = ["execute"]


async def execute(hub: Hub, bot: BotRec, method: str, params: Params) -> tuple[int, dict[str, Any]]:
    """Run one Bot API call for ``bot``; returns ``(http_status, json_body)``."""
    started = time.time()
    entry = find(method)
    canonical = entry.name if entry else method
    chat_id = loggable_chat_id(params.raw.get("chat_id"))
    outcome = "ok"
    try:
        if bot.invalid:
            raise ApiError(401, "Unauthorized")
        if entry is None:
            raise ApiError(404, "Not Found: method not found")
        fault = hub.faults.take(canonical, chat_id)
        if fault is not None:
            outcome = "fault"
            await fault.apply()
            outcome = "delayed"
        if entry.limited and hub.limits.enabled:
            hub.limiter.check(bot.id, hub.find_chat(params.raw.get("chat_id")))
        result = await entry.handler(hub, bot, params)
        status, body = 200, {"ok": True, "result": result}
    except ApiError as exc:
        status, body = exc.code, exc.body()
        if exc.code == 429:
            hub.counters["rate_limited"][canonical] += 1
            outcome = "fault" if outcome == "fault" else "rate_limited"
        elif outcome != "fault":
            outcome = "error"
        hub.counters["errors"][f"{canonical} {exc.code}"] += 1
    hub.counters["calls"][canonical] += 1
    record: dict[str, Any] = {
        "seq": next(hub.call_seq),
        "time": started,
        "duration": round(time.time() - started, 4),
        "bot_id": bot.id,
        "method": canonical,
        "chat_id": chat_id,
        "thread_id": loggable_chat_id(params.raw.get("message_thread_id")),
        "outcome": outcome,
        "ok": body.get("ok", False),
        "error_code": body.get("error_code"),
        "description": body.get("description"),
        "params": params.summary(),
    }
    result = body.get("result")
    if isinstance(result, dict) and "message_id" in result:
        record["message_id"] = result["message_id"]
    hub.calls.append(record)
    if canonical != "getUpdates":
        hub.notify({"type": "call", "method": canonical, "chat_id": chat_id, "outcome": outcome})
    return status, body
