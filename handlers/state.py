"""Where each (chat, user) is in a multi-step conversation, kept outside the process.

SQL (the `conversation_states` table) by default; Redis when several replicas share the work. Both
survive a restart and a switch of runtime, because the state is only a step name and a small JSON dict.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any, Protocol

import redis.asyncio as aioredis

from loyalbot.storage import Db, utcnow
from loyalbot.storage.models import ConversationState

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class State:
    """A conversation step (e.g. 'reg.birthday') and what was gathered so far.

    `applied` is the update (its `Incoming.update_key`) that set this state and `before` the state it
    replaced, so an update handled again after a crash starts from the state it first saw instead of
    the one it already produced (step "" with `before`: the update cleared the state).
    """

    step: str
    data: dict[str, Any] = field(default_factory=dict)
    applied: str | None = None
    before: State | None = None


INBOX_KEY = "__inbox"  # where the SQL row's JSON keeps `applied` and `before`


def _pack(data: dict[str, Any] | None, update: str | None, before: State | None) -> dict[str, Any]:
    doc = dict(data or {})
    if update is not None:
        doc[INBOX_KEY] = {"u": update, "b": None if before is None else {"step": before.step,
                                                                        "data": dict(before.data)}}
    return doc


def _unpack(step: str, doc: dict[str, Any] | None) -> State:
    data = dict(doc or {})
    mark = data.pop(INBOX_KEY, None)
    if not isinstance(mark, dict):
        return State(step=step, data=data)
    prior = mark.get("b")
    before = State(step=str(prior.get("step", "")), data=dict(prior.get("data") or {})) \
        if isinstance(prior, dict) else None
    return State(step=step, data=data, applied=mark.get("u"), before=before)


class StateStore(Protocol):
    """Conversation state keyed by (chat id, user id)."""

    async def get(self, chat_id: int, user_id: int) -> State | None: ...

    async def set(self, chat_id: int, user_id: int, step: str, data: dict[str, Any] | None = None, *,
                  update: str | None = None, before: State | None = None) -> None: ...

    async def clear(self, chat_id: int, user_id: int, *, update: str | None = None,
                    before: State | None = None) -> None: ...


class SqlStateStore:
    """Conversation state in the SQL store (the default)."""

    def __init__(self, db: Db) -> None:
        self.db = db

    async def get(self, chat_id: int, user_id: int) -> State | None:
        async with self.db.read() as s:
            row = await s.get(ConversationState, (chat_id, user_id))
        return _unpack(row.step, row.data) if row is not None else None

    async def set(self, chat_id: int, user_id: int, step: str, data: dict[str, Any] | None = None, *,
                  update: str | None = None, before: State | None = None) -> None:
        async with self.db.transaction() as tx:
            row = await tx.get(ConversationState, (chat_id, user_id))
            if row is None:
                row = ConversationState(chat_id=chat_id, user_id=user_id, step=step)
            row.step, row.data, row.updated_at = step, _pack(data, update, before), utcnow()
            tx.add(row)

    async def clear(self, chat_id: int, user_id: int, *, update: str | None = None,
                    before: State | None = None) -> None:
        if update is not None:  # keep a mark of what the update cleared (step ""), for a replay
            await self.set(chat_id, user_id, "", None, update=update, before=before)
            return
        async with self.db.transaction() as tx:
            row = await tx.get(ConversationState, (chat_id, user_id))
            if row is not None:
                await tx.delete(row)


class RedisStateStore:
    """Conversation state in Redis, for several replicas; entries lapse after `ttl_seconds` unused."""

    def __init__(self, url: str, *, prefix: str = "loyalbot:state:", ttl_seconds: int = 7 * 24 * 3600) -> None:
        self.redis = aioredis.from_url(url, decode_responses=True)
        self.prefix = prefix
        self.ttl = ttl_seconds

    def _key(self, chat_id: int, user_id: int) -> str:
        return f"{self.prefix}{chat_id}:{user_id}"

    async def get(self, chat_id: int, user_id: int) -> State | None:
        raw = await self.redis.get(self._key(chat_id, user_id))
        if raw is None:
            return None
        try:
            doc = json.loads(raw)
            return _unpack(str(doc["step"]), dict(doc.get("data") or {}))
        except (ValueError, KeyError, TypeError, AttributeError):
            log.warning("unreadable conversation state dropped")
            return None

    async def set(self, chat_id: int, user_id: int, step: str, data: dict[str, Any] | None = None, *,
                  update: str | None = None, before: State | None = None) -> None:
        doc = json.dumps({"step": step, "data": _pack(data, update, before), "at": utcnow().isoformat()})
        await self.redis.set(self._key(chat_id, user_id), doc, ex=self.ttl)

    async def clear(self, chat_id: int, user_id: int, *, update: str | None = None,
                    before: State | None = None) -> None:
        if update is not None:
            await self.set(chat_id, user_id, "", None, update=update, before=before)
            return
        await self.redis.delete(self._key(chat_id, user_id))

    async def close(self) -> None:
        await self.redis.aclose()


__all__ = ["RedisStateStore", "SqlStateStore", "State", "StateStore"]
