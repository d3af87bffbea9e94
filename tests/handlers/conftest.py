"""A chat driver for the handler tests: people who send messages and press buttons, against a real store.

``ann = chat.person(1, lang="zh-hans")``, ``await ann.send("/start")``, ``await ann.press("Confirm")``:
each call builds the `Incoming` a runtime would, runs it through `build_router(ctx).handle`, and keeps
the replies, so a test reads like what the member does and checks what they would see.
"""

from __future__ import annotations

import itertools
import shutil
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlmodel import SQLModel

import loyalbot.storage.models  # noqa: F401  (all tables on the metadata)
from loyalbot.chat.port import Contact, Incoming, IncomingMedia, Reply, parse_command
from loyalbot.handlers.config import ChatConfig
from loyalbot.handlers.context import Context
from loyalbot.handlers.router import Router, build_router
from loyalbot.handlers.state import SqlStateStore
from loyalbot.loyalty.programme import load_programme
from loyalbot.loyalty.service import Loyalty
from loyalbot.storage import Db
from loyalbot.storage.migrate import upgrade
from loyalbot.storage.models import Member, Reward

START = datetime(2026, 3, 10, 11, 0, tzinfo=UTC)
LANGUAGE_CODES = {"en": "en", "zh_Hans": "zh-hans", "zh_Hant": "zh-hant"}


class Clock:
    """The time the router sees; tests move it instead of sleeping."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@dataclass
class Person:
    """Someone in a private chat with the bot."""

    chat: Chat
    user_id: int
    language_code: str | None = "en"
    first_name: str = "Ann"
    replies: list[Reply] = field(default_factory=list)  # the answer to the last update
    history: list[list[Reply]] = field(default_factory=list)

    async def deliver(self, **payload: Any) -> list[Reply]:
        incoming = Incoming(user_id=self.user_id, chat_id=self.user_id, language_code=self.language_code,
                            first_name=self.first_name, message_id=next(self.chat.ids), **payload)
        self.replies = await self.chat.router.handle(incoming)
        self.history.append(self.replies)
        return self.replies

    async def send(self, text: str) -> list[Reply]:
        command, args = parse_command(text)
        if command is not None:
            return await self.deliver(command=command, args=args)
        return await self.deliver(text=text)

    async def press_data(self, data: str) -> list[Reply]:
        return await self.deliver(callback_data=data, callback_id=f"cb{next(self.chat.ids)}")

    async def press(self, label: str) -> list[Reply]:
        """Press the button labelled `label` (exactly, or else containing it) in the latest message that has it."""
        for replies in reversed(self.history):
            buttons = [b for r in replies for row in (r.buttons or []) for b in row]
            exact = [b for b in buttons if b.text == label]
            found = exact or [b for b in buttons if label in b.text]
            if found:
                assert found[0].data is not None
                return await self.press_data(found[0].data)
        raise AssertionError(f"no button {label!r} in any message; last replies: {self.texts()}")

    async def share_contact(self, *, own: bool = True, phone: str = "+31612345678") -> list[Reply]:
        return await self.deliver(contact=Contact(phone=phone, user_id=self.user_id if own else self.user_id + 999))

    async def send_photo(self) -> list[Reply]:
        return await self.deliver(media=IncomingMedia(kind="photo", file_id="AgAD-photo"))

    # --- what the person sees -----------------------------------------------------------------------

    def texts(self) -> str:
        """All text (and captions and toasts) of the last answer, joined."""
        return "\n".join(t for r in self.replies for t in (r.text, r.toast) if t)

    def sees(self, fragment: str) -> bool:
        return fragment in self.texts()

    def buttons(self) -> list[str]:
        return [b.text for r in self.replies for row in (r.buttons or []) for b in row]

    def keyboard(self) -> list[str]:
        return [k.text for r in self.replies for row in (r.keyboard or []) for k in row]

    def photos(self) -> list[Reply]:
        return [r for r in self.replies if r.media is not None and r.media.kind == "photo"]

    async def member(self) -> Member | None:
        return await self.chat.loyalty.member_by_telegram(self.user_id)


@dataclass
class Chat:
    """The bot under test with its store, clock and router."""

    db: Db
    loyalty: Loyalty
    clock: Clock
    ctx: Context
    router: Router
    ids: Any = field(default_factory=lambda: itertools.count(1000))

    def person(self, user_id: int, *, lang: str = "en", first_name: str = "Ann") -> Person:
        return Person(self, user_id, language_code=LANGUAGE_CODES.get(lang, lang), first_name=first_name)

    async def registered(self, user_id: int, *, lang: str = "en", points: int = 0, first_name: str = "Ann",
                         birthday: date | None = None) -> Person:
        """A member who joined earlier (through the service, to keep tests short) with `points` to spend."""
        await self.loyalty.register_member(telegram_id=user_id, chat_id=user_id, first_name=first_name,
                                           language=lang, terms_accepted=True, birthday=birthday,
                                           now=self.clock())
        if points:
            member = await self.loyalty.member_by_telegram(user_id)
            assert member is not None
            await self.loyalty.adjust_points(member.id, points, reason="test", actor="test", now=self.clock())
        return self.person(user_id, lang=lang, first_name=first_name)

    async def staff(self, user_id: int, *, lang: str = "en") -> Person:
        await self.loyalty.add_staff(user_id, "agent", name="Sam")
        return self.person(user_id, lang=lang, first_name="Sam")

    async def reward(self, code: str) -> Reward:
        async with self.db.read() as s:
            return (await s.execute(sa.select(Reward).where(Reward.code == code))).scalar_one()

    async def coupons(self, person: Person, status: str | None = "active") -> list:
        member = await person.member()
        assert member is not None
        return [c for c, _ in await self.loyalty.coupons_of(member.id, status=status, now=self.clock())]

    async def count(self, table: str) -> int:
        async with self.db.read() as s:
            return int((await s.execute(sa.text(f"SELECT count(*) FROM {table}"))).scalar_one())

    async def snapshot(self) -> dict[str, list[tuple]]:
        """Every row of every table, except the moment of last activity (touched by any message)."""
        result: dict[str, list[tuple]] = {}
        async with self.db.read() as s:
            for table in SQLModel.metadata.sorted_tables:
                columns = [c for c in table.columns if c.name != "last_activity_at"]
                rows = (await s.execute(sa.select(*columns).order_by(*table.primary_key.columns))).all()
                result[table.name] = [tuple(r) for r in rows]
        return result


@pytest.fixture(scope="session")
def migrated_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One database migrated by Alembic; each test gets a copy of it (migrating is the slow part)."""
    path = tmp_path_factory.mktemp("template") / "loyalbot.db"
    upgrade(f"sqlite:///{path}")
    return path


@pytest.fixture
async def chat(tmp_path: Path, migrated_template: Path) -> Any:
    path = tmp_path / "loyalbot.db"
    shutil.copy(migrated_template, path)
    db = Db(f"sqlite:///{path}")
    loyalty = Loyalty(db, load_programme())
    await loyalty.sync_programme()
    clock = Clock(START)
    ctx = Context(loyalty=loyalty, states=SqlStateStore(db), config=ChatConfig(), clock=clock)
    yield Chat(db=db, loyalty=loyalty, clock=clock, ctx=ctx, router=build_router(ctx))
    await db.dispose()
