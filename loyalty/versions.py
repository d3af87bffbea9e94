"""The programme's versions in the store: the newest is in force in every process, within seconds of a save.

Start-up (`adopt`): a store without a version takes the programme file as version 1; otherwise the newest
stored version is used and the file is not read again (`loyalbot programme import` stores a file as a new
version). `save` adds a version in one transaction with the mirror of its tiers and rewards into their
tables and an AuditLog row; it is refused when the version it was based on is no longer the newest, so two
operators editing at once cannot overwrite each other. Every process checks the newest version number at
most every few seconds (`keep_current`, called per chat turn, per console request and by a watcher task)
and swaps its programme whole (`ProgrammeInForce`).
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import logging
import time
from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from loyalbot.loyalty import errors
from loyalbot.loyalty.programme import Programme, ProgrammeError, ProgrammeInForce, programme_from_data
from loyalbot.loyalty.rewards import mirror_rewards
from loyalbot.loyalty.tiers import mirror_tiers
from loyalbot.storage import Db, utcnow
from loyalbot.storage.models import AuditLog, ProgrammeVersion, RewardImage

log = logging.getLogger(__name__)

CHECK_EVERY = 5.0  # seconds between two looks at the newest version number, per process
IMAGE_BYTES = 1024 * 1024
IMAGE_SIDE = 4096
IMAGE_TYPES = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp"}
SUMMARY_LINES = 60
VALUE_CHARS = 80


class ProgrammeConflict(errors.Refusal):
    """Someone saved the programme after this form was opened."""

    code = "programme_conflict"
    http_status = 409


class NothingChanged(errors.Refusal):
    """The programme is the same as the newest version."""

    code = "programme_unchanged"
    http_status = 422


class ImageRefused(errors.Refusal):
    """The picture is not a PNG, JPEG or WebP of at most 1 MB."""

    code = "image_refused"
    http_status = 422


def programme_data(programme: Programme) -> dict[str, Any]:
    """The programme as JSON-able data (Decimals as strings), as a version stores it."""
    return programme.model_dump(mode="json")


def _flat(data: Any, prefix: str = "") -> dict[str, Any]:
    """Dotted paths to values; tiers and rewards by their codes, so a change names the thing changed."""
    out: dict[str, Any] = {}
    if isinstance(data, dict):
        for key, value in data.items():
            out.update(_flat(value, f"{prefix}{key}."))
    elif isinstance(data, list | tuple) and data and all(isinstance(v, dict) and "code" in v for v in data):
        for value in data:
            out[f"{prefix}{value['code']}"] = "present"
            out.update(_flat(value, f"{prefix}{value['code']}."))
    else:
        out[prefix.rstrip(".")] = data
    return out


def _shown(value: Any) -> str:
    text = "–" if value is None else ", ".join(map(str, value)) if isinstance(value, tuple | list) else str(value)
    return text if len(text) <= VALUE_CHARS else text[: VALUE_CHARS - 1] + "…"


def changes(old: Programme | None, new: Programme) -> list[str]:
    """What changed from `old` to `new`, one line per field ('rewards.coffee.cost: 150 → 160')."""
    if old is None:
        return ["first version"]
    # Python values, so that 1.0 and 1 (Decimals) are the same and a date compares as a date
    before, after = _flat(old.model_dump(mode="python")), _flat(new.model_dump(mode="python"))
    lines = []
    for key in sorted(set(before) | set(after), key=lambda k: (k.split(".")[0], k)):
        if before.get(key) == after.get(key):
            continue
        if after.get(key) == "present" and key not in before:
            lines.append(f"{key}: added")
        elif before.get(key) == "present" and key not in after:
            lines.append(f"{key}: removed")
        elif before.get(key) != "present" and after.get(key) != "present" and not (
                _parent_changed(key, before, after)):
            lines.append(f"{key}: {_shown(before.get(key))} → {_shown(after.get(key))}")
    if len(lines) > SUMMARY_LINES:
        lines = lines[:SUMMARY_LINES] + [f"… and {len(lines) - SUMMARY_LINES} more"]
    return lines


def _parent_changed(key: str, before: dict[str, Any], after: dict[str, Any]) -> bool:
    """A field of a tier or reward that was added or removed as a whole is not listed on its own."""
    parts = key.split(".")
    for cut in range(1, len(parts)):
        parent = ".".join(parts[:cut])
        if (before.get(parent) == "present") != (after.get(parent) == "present"):
            return True
    return False


def check_image(data: bytes) -> tuple[str, int, int]:
    """(content type, width, height) of a real PNG, JPEG or WebP of at most 1 MB, or ImageRefused."""
    from PIL import Image, UnidentifiedImageError

    if not data or len(data) > IMAGE_BYTES:
        raise ImageRefused("the picture must be at most 1 MB", reason="size")
    try:
        with Image.open(io.BytesIO(data)) as img:
            kind = img.format or ""
            width, height = img.size
            if kind not in IMAGE_TYPES:
                raise ImageRefused("only PNG, JPEG and WebP pictures", reason="type")
            if width > IMAGE_SIDE or height > IMAGE_SIDE:
                raise ImageRefused("the picture is larger than 4096 × 4096", reason="dimensions")
            img.verify()
    except ImageRefused:
        raise
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        raise ImageRefused("this is not a PNG, JPEG or WebP picture", reason="type") from None
    return IMAGE_TYPES[kind], width, height


class ProgrammeVersions:
    """The stored versions of the programme, and this process's copy of the newest."""

    def __init__(self, db: Db, in_force: ProgrammeInForce, *, check_every: float = CHECK_EVERY) -> None:
        self.db = db
        self.in_force = in_force
        self.check_every = check_every
        self._checked_at = -float("inf")
        self._checking = False

    # --- reading ------------------------------------------------------------------------------------

    async def newest_number(self) -> int | None:
        """The newest version's number: one indexed look-up, cheap enough to ask every few seconds."""
        async with self.db.read() as s:
            found = (await s.execute(select(sa.func.max(ProgrammeVersion.version)))).scalar_one_or_none()
        return int(found) if found is not None else None

    async def get(self, version: int) -> ProgrammeVersion | None:
        async with self.db.read() as s:
            return (await s.execute(select(ProgrammeVersion).where(ProgrammeVersion.version == version))
                    ).scalar_one_or_none()

    async def history(self, *, limit: int = 200) -> list[ProgrammeVersion]:
        """The versions, newest first."""
        async with self.db.read() as s:
            return list((await s.execute(select(ProgrammeVersion).order_by(col(ProgrammeVersion.version).desc())
                                         .limit(limit))).scalars())

    @staticmethod
    def programme_of(row: ProgrammeVersion) -> Programme:
        return programme_from_data(row.programme, f"programme version {row.version}")

    async def image(self, sha256: str) -> RewardImage | None:
        async with self.db.read() as s:
            return await s.get(RewardImage, sha256)

    # --- start-up and staying current ---------------------------------------------------------------

    async def adopt(self) -> None:
        """At start-up: the newest stored version, or (in a store without one) this programme as version 1."""
        programme = self.in_force.programme
        row = await self._newest_row()
        if row is None:
            try:
                async with self.db.transaction() as tx:
                    await self._insert(tx, programme, None, version=1, author="file",
                                       summary=["first version, from the programme file"], now=utcnow())
                self.in_force.swap(programme, 1)
                log.info("programme: the store had no version; the programme file is version 1")
                return
            except IntegrityError:  # another process stored version 1 first: take theirs
                row = await self._newest_row()
                assert row is not None
        stored = self.programme_of(row)
        self.in_force.swap(stored, row.version)
        note = "" if programme_data(stored) == programme_data(programme) else (
            "; it differs from the programme file, which is not read once the store has a version "
            "(use `loyalbot programme import FILE` to store the file as a new version)")
        log.info("programme: version %s from the store (saved by %s)%s", row.version, row.author, note)

    async def refresh(self) -> bool:
        """Take the newest stored version if it is not the one in force; True when the programme changed."""
        newest = await self.newest_number()
        if newest is None or newest == self.in_force.version:
            return False
        row = await self.get(newest)
        if row is None:
            return False
        try:
            programme = self.programme_of(row)
        except ProgrammeError as exc:  # written by a newer loyalbot? keep running on the one we have
            log.error("programme: version %s cannot be used here: %s", row.version, exc)
            return False
        old = self.in_force.version
        self.in_force.swap(programme, row.version)
        log.info("programme: now version %s (was %s), saved by %s", row.version, old, row.author)
        return True

    async def keep_current(self, *, now: float | None = None) -> None:
        """`refresh` at most once per `check_every` seconds; cheap to call on every turn and request."""
        moment = time.monotonic() if now is None else now
        if self._checking or moment - self._checked_at < self.check_every:
            return
        self._checking, self._checked_at = True, moment
        try:
            await self.refresh()
        except Exception as exc:  # a store hiccup must not fail the turn that asked
            log.warning("programme: could not check for a new version: %s", type(exc).__name__)
        finally:
            self._checking = False

    async def watch(self) -> None:
        """Check for a new version every `check_every` seconds until cancelled (a process's background task)."""
        while True:
            await asyncio.sleep(self.check_every)
            await self.keep_current()

    # --- changing -----------------------------------------------------------------------------------

    async def save(self, programme: Programme, *, author: str, based_on: int | None,
                   action: str = "programme_edit") -> ProgrammeVersion:
        """Store `programme` as the next version, based on version `based_on`; refused when that is no longer
        the newest (ProgrammeConflict) or nothing changed (NothingChanged). Its tiers and rewards are mirrored
        and the change audited in the same transaction; this process then runs on it at once."""
        await self._check_images(reward.image for reward in programme.rewards)
        now = utcnow()
        try:
            async with self.db.transaction() as tx:
                newest = await self._newest_row(tx, lock=True)
                if (newest.version if newest else None) != based_on:
                    raise ProgrammeConflict(newest=newest.version if newest else None, based_on=based_on)
                previous = self.programme_of(newest) if newest else None
                summary = changes(previous, programme)
                if previous is not None and not summary:
                    raise NothingChanged()
                row = await self._insert(tx, programme, previous, version=(based_on or 0) + 1,
                                         author=author, summary=summary, now=now, action=action)
        except IntegrityError:  # a save of the same version committed between our read and our insert
            raise ProgrammeConflict(newest=None, based_on=based_on) from None
        if (self.in_force.version or 0) < row.version:
            self.in_force.swap(programme, row.version)
        log.info("programme: version %s saved by %s (%s changes)", row.version, author.split(":")[0],
                 len(summary))
        return row

    async def store_image(self, data: bytes, *, author: str) -> str:
        """Keep a checked picture in the store; returns its name (SHA-256). The same bytes twice are one row."""
        content_type, width, height = check_image(data)
        digest = hashlib.sha256(data).hexdigest()
        if await self.image(digest) is None:
            try:
                async with self.db.transaction() as tx:
                    tx.add(RewardImage(sha256=digest, content_type=content_type, data=data, width=width,
                                       height=height))
                    tx.add(AuditLog(actor=author[:64], action="reward_image",
                                    details={"image": digest, "bytes": len(data), "type": content_type}))
            except IntegrityError:
                pass  # stored by another request at the same moment: the same bytes
        return digest

    # --- inside ---------------------------------------------------------------------------------------

    async def _newest_row(self, tx: AsyncSession | None = None, *, lock: bool = False) -> ProgrammeVersion | None:
        query = select(ProgrammeVersion).order_by(col(ProgrammeVersion.version).desc()).limit(1)
        if lock:
            query = query.with_for_update()
        if tx is not None:
            return (await tx.execute(query)).scalar_one_or_none()
        async with self.db.read() as s:
            return (await s.execute(query)).scalar_one_or_none()

    async def _insert(self, tx: AsyncSession, programme: Programme, previous: Programme | None, *, version: int,
                      author: str, summary: list[str], now: Any, action: str = "programme_edit") -> ProgrammeVersion:
        row = ProgrammeVersion(version=version, programme=programme_data(programme), author=author[:64],
                               summary=summary, created_at=now)
        tx.add(row)
        await tx.flush()  # the unique version number is claimed here, before the mirror
        await mirror_tiers(tx, programme)
        await mirror_rewards(tx, programme, previous)
        tx.add(AuditLog(actor=author[:64], action=action if previous is not None or version > 1 else "programme_first",
                        details={"version": version, "changes": summary}, created_at=now))
        return row

    async def _check_images(self, names: Iterable[str | None]) -> None:
        wanted = {n for n in names if n}
        if not wanted:
            return
        async with self.db.read() as s:
            found = set((await s.execute(select(RewardImage.sha256).where(col(RewardImage.sha256).in_(wanted))
                                         )).scalars())
        if missing := wanted - found:
            raise ImageRefused(f"no picture {sorted(missing)[0][:12]}… in the store", reason="missing")


__all__ = ["CHECK_EVERY", "ImageRefused", "NothingChanged", "ProgrammeConflict", "ProgrammeVersions", "changes",
           "check_image", "programme_data"]
