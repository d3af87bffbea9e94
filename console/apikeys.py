"""Keys for shop systems: made (the key shown once, only its SHA-256 hash kept), listed and revoked.

The CLI (`loyalbot apikey`) and the admin page (/console/apikeys) both come here; every change writes an
audit row naming who made it (the key itself never: only its name and its first characters, the prefix).
"""

from __future__ import annotations

import hashlib
import secrets

import sqlalchemy as sa
from sqlmodel import select

from loyalbot.storage import Db, utcnow
from loyalbot.storage.models import ApiKey, AuditLog

KEY_PREFIX = "lb_"
PREFIX_LENGTH = 10  # what `apikey revoke` takes and the console shows: "lb_" and 7 more characters
NAME_LIMIT = 100


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


async def create_api_key(db: Db, name: str, *, actor: str = "cli") -> str:
    """Make a new key for a shop system; the key itself is shown once and never stored."""
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    async with db.transaction() as s:
        s.add(ApiKey(name=name[:NAME_LIMIT], prefix=key[:PREFIX_LENGTH], key_hash=hash_key(key)))
        s.add(AuditLog(actor=actor[:64], action="apikey_create",
                       details={"name": name[:NAME_LIMIT], "prefix": key[:PREFIX_LENGTH]}))
    return key


async def revoke_api_key(db: Db, prefix: str, *, actor: str = "cli") -> int:
    """Revoke the active keys that start with `prefix`: calls made with them are refused from now on."""
    async with db.transaction() as s:
        keys = list((await s.execute(select(ApiKey).where(ApiKey.prefix == prefix[:PREFIX_LENGTH],
                                                          ApiKey.revoked_at.is_(None)))).scalars())
        for key in keys:
            key.revoked_at = utcnow()
            s.add(key)
            s.add(AuditLog(actor=actor[:64], action="apikey_revoke", details={"name": key.name, "prefix": key.prefix}))
        return len(keys)


async def revoke_api_key_by_id(db: Db, key_id: int, *, actor: str = "cli") -> ApiKey | None:
    """Revoke one key (the console's button); None when there is no such key. Revoking twice changes nothing."""
    async with db.transaction() as s:
        key = (await s.execute(select(ApiKey).where(ApiKey.id == key_id).with_for_update())).scalar_one_or_none()
        if key is None:
            return None
        if key.revoked_at is None:
            key.revoked_at = utcnow()
            s.add(key)
            s.add(AuditLog(actor=actor[:64], action="apikey_revoke", details={"name": key.name, "prefix": key.prefix}))
        await s.flush()
        s.expunge(key)
        return key


async def list_api_keys(db: Db) -> list[ApiKey]:
    """Every key, oldest first: name, prefix (what `apikey revoke` takes), created, last used, revoked."""
    async with db.read() as s:
        return list((await s.execute(select(ApiKey).order_by(sa.asc(ApiKey.id)))).scalars())


__all__ = ["KEY_PREFIX", "create_api_key", "hash_key", "list_api_keys", "revoke_api_key", "revoke_api_key_by_id"]
