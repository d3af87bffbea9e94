"""The SQL store: SQLModel tables, the async engine and sessions, Alembic migrations."""

from loyalbot.storage.clock import as_utc, utcnow
from loyalbot.storage.db import Db, DbUrlError, normalise_url

__all__ = ["Db", "DbUrlError", "as_utc", "normalise_url", "utcnow"]
