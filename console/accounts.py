"""Operator accounts and console sessions: argon2 password hashes, lockout after wrong passwords, revocable
sessions behind signed cookies.

* `add_operator` makes an account (or sets a new password); only an argon2id hash is kept.
* `sign_in` checks a name and password: an unknown name costs the same hash check as a known one, a
  locked account is refused until `locked_until` even with the right password, and `LOCK_AFTER` wrong
  passwords in a row lock it for `LOCK_FOR`.
* `open_session` makes a session row (its id and CSRF token are random) and `session_cookie` signs the id
  with the store's key (itsdangerous), so a cookie cannot be forged or altered; `find_session` checks the
  signature, the expiry and revocation in one place.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from datetime import timedelta

import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from itsdangerous import BadSignature, URLSafeTimedSerializer
from sqlmodel import select

from loyalbot.chat.languages import LANGUAGES
from loyalbot.storage import Db, as_utc, utcnow
from loyalbot.storage.models import ConsoleKey, ConsoleSession, Operator
from loyalbot.storage.rows import stored_id

log = logging.getLogger(__name__)

ROLES = ("operator", "admin")
LOCK_AFTER = 5                      # wrong passwords in a row ...
LOCK_FOR = timedelta(minutes=15)    # ... lock the account this long
SESSION_FOR = timedelta(hours=12)   # a session lasts a working day
MIN_PASSWORD = 10
COOKIE = "loyalbot_console"

_hasher = PasswordHasher()
_DUMMY_HASH = _hasher.hash("not a password of anyone's")


class AccountError(ValueError):
    """A refused account change, with a reason for the operator (CLI or console)."""


@dataclass(frozen=True)
class SignedIn:
    """Who holds a valid session: what every console page needs to know about its visitor."""

    session_id: str
    operator_id: int
    name: str
    role: str
    language: str
    csrf: str

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


def check_name(name: str) -> str:
    name = name.strip()
    if not (1 <= len(name) <= 64) or not all(c.isalnum() or c in "._-@" for c in name):
        raise AccountError("an operator name is 1-64 letters, digits and . _ - @")
    return name


def check_password(password: str) -> str:
    if len(password) < MIN_PASSWORD:
        raise AccountError(f"a password needs at least {MIN_PASSWORD} characters")
    if len(password) > 1024:
        raise AccountError("a password may have at most 1024 characters")
    return password


def new_password() -> str:
    """A password to print once: 16 random URL-safe characters."""
    return secrets.token_urlsafe(12)


async def add_operator(db: Db, name: str, password: str, *, role: str = "operator",
                       language: str = "en") -> Operator:
    """Make an account, or give an existing one this password and role (and unlock it)."""
    name, password = check_name(name), check_password(password)
    if role not in ROLES:
        raise AccountError(f"the role is one of {', '.join(ROLES)}")
    if language not in LANGUAGES:
        raise AccountError(f"the language is one of {', '.join(LANGUAGES)}")
    hashed = _hasher.hash(password)
    async with db.transaction() as s:
        found = (await s.execute(select(Operator).where(Operator.name == name))).scalar_one_or_none()
        if found is None:
            found = Operator(name=name, role=role, password_hash=hashed, language=language)
        else:
            found.password_hash, found.role = hashed, role
            found.failed_signins, found.locked_until, found.disabled_at = 0, None, None
        s.add(found)
        await s.flush()
        s.expunge(found)
        return found


async def list_operators(db: Db) -> list[Operator]:
    async with db.read() as s:
        return list((await s.execute(select(Operator).order_by(Operator.name))).scalars())


async def has_operators(db: Db) -> bool:
    async with db.read() as s:
        return (await s.execute(sa.select(sa.func.count()).select_from(Operator))).scalar_one() > 0


async def sign_in(db: Db, name: str, password: str) -> Operator | None:
    """The operator whose name and password these are; None for a wrong name, a wrong password, a locked or a
    disabled account (the caller says only "wrong name or password" or "locked", never which name exists)."""
    now = utcnow()
    async with db.transaction() as s:
        found = (await s.execute(select(Operator).where(Operator.name == name.strip()[:64])
                                 .with_for_update())).scalar_one_or_none()
        if found is None or found.disabled_at is not None:
            _verify(_DUMMY_HASH, password)  # the same time as a real check: names cannot be probed by timing
            return None
        if found.locked_until is not None and as_utc(found.locked_until) > now:
            return None
        if not _verify(found.password_hash, password):
            found.failed_signins += 1
            if found.failed_signins >= LOCK_AFTER:
                found.locked_until, found.failed_signins = now + LOCK_FOR, 0
                log.warning("console: operator %s locked for %s after %s wrong passwords", found.id, LOCK_FOR,
                            LOCK_AFTER)
            s.add(found)
            return None
        found.failed_signins, found.locked_until, found.last_signin_at = 0, None, now
        if _hasher.check_needs_rehash(found.password_hash):
            found.password_hash = _hasher.hash(password)
        s.add(found)
        await s.flush()
        s.expunge(found)
        return found


async def is_locked(db: Db, name: str) -> bool:
    async with db.read() as s:
        until = (await s.execute(sa.select(Operator.locked_until).where(Operator.name == name.strip()[:64]))
                 ).scalar_one_or_none()
    return until is not None and as_utc(until) > utcnow()


def _verify(hashed: str, password: str) -> bool:
    try:
        return _hasher.verify(hashed, password)
    except (VerificationError, InvalidHashError):
        return False


async def cookie_key(db: Db, configured: str | None) -> str:
    """LOYALBOT_CONSOLE_SECRET when set; otherwise the store's key, made on first use (shared by replicas)."""
    if configured:
        return configured
    async with db.read() as s:
        found = (await s.execute(select(ConsoleKey.secret).where(ConsoleKey.id == 1))).scalar_one_or_none()
    if found is not None:
        return found
    try:
        async with db.transaction() as s:
            s.add(ConsoleKey(id=1, secret=secrets.token_urlsafe(48)))
    except sa.exc.IntegrityError:  # another replica made it first: use theirs
        pass
    async with db.read() as s:
        return (await s.execute(select(ConsoleKey.secret).where(ConsoleKey.id == 1))).scalar_one()


class Sessions:
    """Open, find and close console sessions; the cookie is the session id signed with the key."""

    def __init__(self, db: Db, key: str | None = None) -> None:
        self.db, self._key = db, key
        self._signer: URLSafeTimedSerializer | None = None

    async def signer(self) -> URLSafeTimedSerializer:
        if self._signer is None:
            self._signer = URLSafeTimedSerializer(await cookie_key(self.db, self._key), salt="loyalbot-console-session")
        return self._signer

    async def open(self, operator: Operator) -> tuple[str, SignedIn]:
        """A new session for someone who just signed in: (the cookie's value, who they are)."""
        session_id, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        async with self.db.transaction() as s:
            s.add(ConsoleSession(id=session_id, operator_id=stored_id(operator.id), csrf=csrf,
                                 expires_at=utcnow() + SESSION_FOR))
        who = SignedIn(session_id, stored_id(operator.id), operator.name, operator.role, operator.language, csrf)
        return (await self.signer()).dumps(session_id), who

    async def find(self, cookie: str | None) -> SignedIn | None:
        if not cookie or len(cookie) > 512:
            return None
        try:
            session_id = (await self.signer()).loads(cookie, max_age=int(SESSION_FOR.total_seconds()))
        except BadSignature:
            log.info("console: a session cookie with a bad signature")
            return None
        async with self.db.read() as s:
            row = (await s.execute(
                sa.select(ConsoleSession.csrf, ConsoleSession.expires_at, ConsoleSession.revoked_at,
                          Operator.id, Operator.name, Operator.role, Operator.language, Operator.disabled_at)
                .join(Operator, Operator.id == ConsoleSession.operator_id)
                .where(ConsoleSession.id == str(session_id)))).one_or_none()
        if row is None or row.revoked_at is not None or row.disabled_at is not None:
            return None
        if as_utc(row.expires_at) <= utcnow():
            return None
        return SignedIn(str(session_id), row.id, row.name, row.role, row.language, row.csrf)

    async def close(self, session_id: str) -> None:
        async with self.db.connection() as conn:
            await conn.execute(sa.update(ConsoleSession).where(ConsoleSession.id == session_id)
                               .values(revoked_at=utcnow()))

    async def close_all(self, operator_id: int) -> None:
        """Sign an operator out everywhere (password changed, account removed)."""
        async with self.db.connection() as conn:
            await conn.execute(sa.update(ConsoleSession).where(ConsoleSession.operator_id == operator_id,
                                                              ConsoleSession.revoked_at.is_(None))
                               .values(revoked_at=utcnow()))

    async def set_language(self, operator_id: int, language: str) -> None:
        if language not in LANGUAGES:
            raise AccountError(f"the language is one of {', '.join(LANGUAGES)}")
        async with self.db.connection() as conn:
            await conn.execute(sa.update(Operator).where(Operator.id == operator_id).values(language=language))
