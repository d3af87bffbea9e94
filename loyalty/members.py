"""Members: joining, finding a member (by id, Telegram user, member number, phone or name), their own settings."""

from __future__ import annotations

import sys
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from loyalbot.chat.languages import LANGUAGES
from loyalbot.loyalty import errors
from loyalbot.loyalty.codes import new_member_no, valid_member_no
from loyalbot.loyalty.events import Events, MemberJoined, record_notice
from loyalbot.loyalty.ledger import add_lot
from loyalbot.loyalty.phones import looks_like_phone, normalise_phone, stored_forms
from loyalbot.loyalty.programme import FollowsProgramme, ProgrammeInForce
from loyalbot.storage import Db, as_utc, utcnow
from loyalbot.storage.clock import find_zone, zone_or_utc
from loyalbot.storage.models import MEMBER_NAME_TEXT, AuditLog, Member

NOTIFY_KINDS = ("care", "reminders", "surveys", "offers", "activity")
SETTINGS = frozenset({"language", "timezone", "birthday", "phone", "notify", "quiet_start", "quiet_end",
                      "marketing_consent", "first_name", "last_name"})


def check_birthday(value: date, today: date) -> date:
    """A birthday a person can have: not in the future, not before 1900, not younger than 5."""
    if value > today:
        raise errors.InvalidBirthday("the birthday is in the future")
    if value.year < 1900:
        raise errors.InvalidBirthday("the birthday is before 1900")
    if (today - value).days < 5 * 365:
        raise errors.InvalidBirthday("members must be at least five years old")
    return value


def check_timezone(value: str) -> str:
    if find_zone(value) is None:
        raise errors.InvalidSetting(f"unknown time zone {value[:64]!r}", setting="timezone")
    return value


def member_zone(name: str | None) -> ZoneInfo:
    """The member's time zone; UTC when it is unknown or unset."""
    return zone_or_utc(name)


def local_today(member: Member, now: datetime) -> date:
    return as_utc(now).astimezone(member_zone(member.timezone)).date()


async def lock_member(tx: AsyncSession, member_id: int) -> Member:
    """The member's row, locked for this transaction (PostgreSQL); unknown and erased members are refused."""
    result = await tx.execute(
        select(Member).where(Member.id == member_id).with_for_update().execution_options(populate_existing=True)
    )
    member = result.scalar_one_or_none()
    if member is None:
        raise errors.UnknownMember()
    if member.status == "erased":
        raise errors.MemberErased()
    return member


class Members(FollowsProgramme):
    """Joining the programme, looking members up, and the settings a member changes."""

    def __init__(self, db: Db, programme: ProgrammeInForce, events: Events) -> None:
        self.db = db
        self._in_force = programme
        self.events = events

    async def register_member(
        self,
        *,
        telegram_id: int,
        chat_id: int | None = None,
        first_name: str | None = None,
        last_name: str | None = None,
        language: str | None = None,
        terms_accepted: bool,
        marketing_consent: bool = False,
        birthday: date | None = None,
        phone: str | None = None,
        timezone: str | None = None,
        now: datetime | None = None,
    ) -> Member:
        """Join the programme. Terms consent is required; the same Telegram user twice is the same member."""
        now = as_utc(now or utcnow())
        if not terms_accepted:
            raise errors.TermsRequired()
        language = language if language in LANGUAGES else self.programme.programme.default_language
        if birthday is not None:
            check_birthday(birthday, now.date())
        tz = check_timezone(timezone) if timezone else self.programme.programme.timezone
        async with self.db.transaction() as tx:
            existing = (await tx.execute(select(Member).where(Member.telegram_id == telegram_id))).scalar_one_or_none()
            if existing is not None:
                return existing
            for _ in range(20):
                member_no = new_member_no()
                clash = await tx.execute(select(Member.id).where(Member.member_no == member_no))
                if clash.first() is None:
                    break
            member = Member(
                telegram_id=telegram_id,
                chat_id=chat_id if chat_id is not None else telegram_id,
                member_no=member_no,
                first_name=(first_name or "")[:128] or None,
                last_name=(last_name or "")[:128] or None,
                language=language,
                timezone=tz,
                birthday=birthday,
                phone=(phone or "")[:32] or None,
                terms_accepted_at=now,
                marketing_consent=marketing_consent,
                marketing_consent_at=now if marketing_consent else None,
                tier=self.programme.tiers.levels[0].code,
                tier_since=now,
                joined_at=now,
                last_activity_at=now,
            )
            tx.add(member)
            await tx.flush()
            if self.programme.earning.welcome_bonus:
                add_lot(tx, member, kind="bonus", points=self.programme.earning.welcome_bonus, now=now,
                        expires_at=self.programme.lot_expiry(now), reference="welcome", note="welcome bonus")
                tx.add(member)
                await record_notice(tx, member.id or 0, "welcome", f"welcome:{member.id}", now)
            tx.add(AuditLog(actor=f"member:{member.id}", action="register", member_id=member.id,
                            details={"marketing_consent": marketing_consent}, created_at=now))
        await self.events.emit(MemberJoined(member_id=member.id or 0))
        return member

    async def member_by_telegram(self, telegram_id: int) -> Member | None:
        async with self.db.read() as s:
            return (await s.execute(select(Member).where(Member.telegram_id == telegram_id))).scalar_one_or_none()

    async def member_by_number(self, member_no: str) -> Member:
        text = (member_no or "").strip().upper().removeprefix("LBM:")
        if not valid_member_no(text):
            raise errors.UnknownMember(f"{text[:20]!r} is not a member number")
        async with self.db.read() as s:
            member = (await s.execute(select(Member).where(Member.member_no == text))).scalar_one_or_none()
        if member is None or member.status == "erased":
            raise errors.UnknownMember()
        return member

    async def member(self, member_id: int) -> Member:
        async with self.db.read() as s:
            member = await s.get(Member, member_id)
        if member is None:
            raise errors.UnknownMember()
        if member.status == "erased":
            raise errors.MemberErased()
        return member

    async def update_member(self, member_id: int, *, now: datetime | None = None, **changes: Any) -> Member:
        """Change a member's own settings: language, timezone, birthday, phone, notify, quiet hours, consent."""
        now = as_utc(now or utcnow())
        unknown = set(changes) - SETTINGS
        if unknown:
            raise errors.InvalidSetting(f"unknown setting {sorted(unknown)[0]!r}", setting=sorted(unknown)[0])
        if "language" in changes and changes["language"] not in LANGUAGES:
            raise errors.InvalidSetting("unknown language", setting="language")
        if "timezone" in changes:
            check_timezone(changes["timezone"])
        if changes.get("birthday") is not None:
            check_birthday(changes["birthday"], now.date())
        for key in ("quiet_start", "quiet_end"):
            if key in changes and changes[key] is not None and not 0 <= int(changes[key]) < 24 * 60:
                raise errors.InvalidSetting("quiet hours must be times of day", setting=key)
        if "notify" in changes:
            notify = changes["notify"]
            if not isinstance(notify, dict) or set(notify) - set(NOTIFY_KINDS):
                raise errors.InvalidSetting("unknown message kind", setting="notify")
        async with self.db.transaction() as tx:
            member = await lock_member(tx, member_id)
            for key, value in changes.items():
                if key == "notify":
                    value = {**member.notify, **{k: bool(v) for k, v in value.items()}}
                if key == "marketing_consent":
                    member.marketing_consent_at = now if value else None
                setattr(member, key, value)
            tx.add(member)
            tx.add(AuditLog(actor=f"member:{member_id}", action="settings", member_id=member_id,
                            details={"changed": sorted(changes)}, created_at=now))
            return member

    async def touch(self, member_id: int, *, now: datetime | None = None) -> None:
        """The member wrote to the bot: note the activity; a member marked unreachable is reachable again."""
        now = as_utc(now or utcnow())
        async with self.db.transaction() as tx:
            await tx.execute(
                sa.update(Member)
                .where(col(Member.id) == member_id, col(Member.status) != "erased")
                .values(last_activity_at=now,
                        status=sa.case((col(Member.status) == "unreachable", "active"), else_=col(Member.status)))
            )

    # --- at the counter: finding a member by phone or name ------------------------------------------

    async def members_by_phone(self, phone: str, *, limit: int = 10) -> list[Member]:
        """Members whose phone is `phone` (as typed: national, with spaces, or international).

        A number without a country code is read in the programme's country. Telegram stores numbers in
        international form, with or without "+", which an index finds; numbers stored another way are
        found by their last digits and compared after normalising."""
        e164 = normalise_phone(phone, self.programme.country)
        if e164 is None:
            return []
        live = col(Member.status) != "erased"
        async with self.db.read() as s:
            found = list((await s.execute(
                select(Member).where(col(Member.phone).in_(stored_forms(e164)), live)
                .order_by(col(Member.id)).limit(limit))).scalars())
            if not found:
                tail = e164[-6:]
                candidates = (await s.execute(
                    select(Member).where(col(Member.phone).like(f"%{tail[:2]}%{tail[2:4]}%{tail[4:]}"), live)
                    .order_by(col(Member.id)).limit(500))).scalars()
                found = [m for m in candidates if normalise_phone(m.phone, self.programme.country) == e164][:limit]
        return found

    async def members_by_name(self, name: str, *, limit: int = 8) -> list[Member]:
        """Members whose first name, last name or full name starts with `name` (case-insensitive), by name.

        At most `limit` (ask for one more to learn whether the list was cut). Erased members are never found.
        (On SQLite, lower() folds ASCII letters only; PostgreSQL folds every script.)"""
        text = " ".join((name or "").split())[:64].lower()
        if len(text) < 2:
            return []
        pattern = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        first = sa.func.lower(sa.func.coalesce(Member.first_name, ""), type_=sa.String)
        last = sa.func.lower(sa.func.coalesce(Member.last_name, ""), type_=sa.String)
        full = sa.func.lower(sa.func.coalesce(Member.first_name, "") + " " + sa.func.coalesce(Member.last_name, ""),
                             type_=sa.String)
        async with self.db.read() as s:
            return list((await s.execute(
                select(Member).where(
                    col(Member.status) != "erased",
                    sa.or_(first.like(pattern, escape="\\"), last.like(pattern, escape="\\"),
                           full.like(pattern, escape="\\")))
                .order_by(first, last, col(Member.id)).limit(limit))).scalars())

    async def search_members(self, text: str, *, offset: int = 0, limit: int = 20) -> list[Member]:
        """The console's search: a member number (erased members too: their row stays for the books), a phone
        number (read in the programme's country) or a part of the name (case-insensitive, names that start
        with it first). At most `limit` from `offset` (ask for one more to learn whether there are more).

        On PostgreSQL the name test is the trigram-indexed expression `MEMBER_NAME_TEXT` (migration 0013),
        so a search never reads every member."""
        text = " ".join((text or "").split())[:64]
        number = text.upper().removeprefix("LBM:")
        if valid_member_no(number):
            async with self.db.read() as s:
                found = (await s.execute(select(Member).where(Member.member_no == number))).scalar_one_or_none()
            return [found] if found is not None and offset == 0 else []
        if looks_like_phone(text):
            return (await self.members_by_phone(text, limit=offset + limit))[offset:]
        needle = text.lower()
        if len(needle) < 2:
            return []
        return await self._members_named(needle, offset=max(0, offset), limit=max(1, limit))

    async def _members_named(self, needle: str, *, offset: int, limit: int) -> list[Member]:
        """Names that start with `needle` (in code-point order, from the index a page at a time), then, from
        three characters on, names that contain it elsewhere (the trigram index; a two-letter piece inside
        names would match nearly everyone)."""
        name = sa.literal_column(MEMBER_NAME_TEXT, type_=sa.String)
        ordered = name.collate("C") if self.db.is_postgres else name
        # The names starting with the needle are exactly those in [needle, needle with its last letter + 1).
        after = needle[:-1] + chr(min(ord(needle[-1]) + 1, sys.maxunicode))
        starts = (ordered >= needle, ordered < after)
        live = col(Member.status) != "erased"
        async with self.db.read() as s:
            found = list((await s.execute(select(Member).where(live, *starts).order_by(ordered, col(Member.id))
                                          .offset(offset).limit(limit))).scalars())
            if len(found) == limit or len(needle) < 3:
                return found
            skipped = 0  # how far into the names containing the needle this page starts
            if offset and not found:  # the page is past every name starting with it
                starting = (await s.execute(select(sa.func.count()).select_from(Member).where(live, *starts))).scalar_one()
                skipped = offset - int(starting)
            escaped = needle.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            inside = (await s.execute(select(Member).where(
                live, name.like(f"%{escaped}%", escape="\\"), sa.not_(sa.and_(*starts)))
                .order_by(ordered, col(Member.id)).offset(max(0, skipped)).limit(limit - len(found)))).scalars()
            return found + list(inside)


__all__ = [
    "NOTIFY_KINDS",
    "Members",
    "check_birthday",
    "check_timezone",
    "local_today",
    "lock_member",
    "member_zone",
]
