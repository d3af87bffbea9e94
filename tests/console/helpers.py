"""Helpers for the HTTP tests: a snapshot of the store's business data, to prove a refusal changed nothing.

Bookkeeping that a refused call is meant to write is left out: throttle counters (a wrong key counts)
and an API key's `last_used_at`.
"""

from __future__ import annotations

from typing import Any

from loyalbot.storage import Db
from tests.loyalty.helpers import snapshot

KEY_LAST_USED = 6  # position of api_keys.last_used_at in a snapshot row (columns in table order)


async def business_snapshot(db: Db) -> dict[str, Any]:
    state = await snapshot(db)
    state.pop("throttle_counters", None)
    state["api_keys"] = [row[:KEY_LAST_USED] + row[KEY_LAST_USED + 1:] for row in state.get("api_keys", [])]
    return state
