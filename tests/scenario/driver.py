"""A driver that reads like what people do in the chat: members and staff send, press, share.

Each action injects one update into the local Bot API server and returns when the bot's runtime
has finished handling it (so every reply is on the server), then `replies`, `last_text` and
`last_toast` show what the person saw.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from loyalbot.bot.app import App
from loyalbot.bot.local_api import SELF, LocalApiControl
from loyalbot.chat.i18n import Translator, pick_language
from loyalbot.storage.clock import utcnow

# How long an action may take before the scenario calls the bot stuck. Only a ceiling: an action returns as soon
# as its update is handled. Replies into one chat go a second apart (Telegram's per-chat limit), a support
# exchange is several of them, and on a loaded CI machine (2 cores, the whole suite) a store that is briefly
# locked backs the poller off for seconds; 15 s was once not enough there for a relayed staff reply.
WAIT_SECONDS = 45.0


class TestClock:
    """The app's clock: real time plus however far a scenario has moved it on."""

    __test__ = False  # not a test class, whatever its name

    def __init__(self) -> None:
        self.offset = timedelta()

    def __call__(self) -> datetime:
        return utcnow() + self.offset

    def advance(self, **delta: float) -> None:
        self.offset += timedelta(**delta)


class Chat:
    """The world of one scenario: the local server, the running app, and the people in it."""

    def __init__(self, tg: LocalApiControl, app: App, staff_group: int, clock: TestClock | None = None) -> None:
        self.tg = tg
        self.clock = clock or TestClock()
        self.app = app
        self.staff_group = staff_group
        self._next_id = 5000

    @property
    def loyalty(self) -> Any:
        assert self.app.loyalty is not None
        return self.app.loyalty

    async def member(self, name: str = "Ann", *, language_code: str | None = "en", user_id: int | None = None
                     ) -> Person:
        """Someone who has opened the chat with the bot (not joined yet)."""
        self._next_id += 1
        uid = user_id or self._next_id
        await self.tg.create_user(uid, name, language_code=language_code)
        return Person(self, uid, name, language_code)

    async def registered_member(self, name: str = "Ann", *, language_code: str | None = "en", points: int = 0
                                ) -> Person:
        """A member who joined through the chat (and was given `points` as a bonus)."""
        person = await self.member(name, language_code=language_code)
        await person.join()
        if points:
            member = await person.record()
            # Set-up, not an event under test: the member is not sent a points message for it.
            await self.loyalty.grant_bonus(member.id, points, reference=f"test-{person.id}", note="test", tell=False)
        return person

    async def staff(self, name: str = "Sam", *, role: str = "agent", language_code: str = "en") -> Person:
        """A colleague in the staff table (and in the staff group)."""
        person = await self.member(name, language_code=language_code)
        await self.loyalty.add_staff(person.id, role, name=name, actor="test")
        return person

    async def coupons_of(self, person: Person, status: str = "active") -> int:
        """How many coupons the person holds: usable now ("active"), or with a stored status ("used")."""
        member = await person.record()
        if status == "active":
            return len(await self.loyalty.coupons_of(member.id, status="active", now=self.clock()))
        rows = await self.loyalty.coupons_of(member.id, status=None, now=self.clock())
        return sum(1 for coupon, _ in rows if coupon.status == status)

    def handled(self) -> int:
        runtime = self.app.runtime
        assert runtime is not None
        return runtime.pipeline.handled + runtime.pipeline.failed

    async def settle(self, before: int) -> None:
        """Wait until the runtime has handled one more update than `before` and nothing is queued."""
        runtime = self.app.runtime
        assert runtime is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + WAIT_SECONDS
        while self.handled() <= before or runtime.pipeline.lanes.pending:
            if loop.time() > deadline:
                raise TimeoutError(f"the bot handled no update within {WAIT_SECONDS}s")
            await asyncio.sleep(0.005)


@dataclass
class Person:
    """One Telegram user in the scenario, in their private chat with the bot (or the staff group)."""

    chat: Chat
    id: int
    name: str
    language_code: str | None
    replies: list[dict[str, Any]] = field(default_factory=list)
    last_toast: str | None = None
    _last: dict[str, Any] | None = None

    @property
    def tr(self) -> Translator:
        return Translator(pick_language(self.language_code))

    def t(self, key: str, **params: Any) -> str:
        """A UI text in this person's Telegram language (for finding buttons by their label)."""
        return self.tr.t(key, **params)

    async def record(self) -> Any:
        member = await self.chat.loyalty.member_by_telegram(self.id)
        assert member is not None, f"{self.name} is not a member"
        return member

    async def transcript(self, chat_id: int | None = None) -> list[dict[str, Any]]:
        return await self.chat.tg.transcript(chat_id or self.id)

    async def _act(self, action: Any, chat_id: int | None = None) -> Any:
        chat_id = chat_id or self.id
        before = {m["message_id"]: len(m["edits"]) for m in await self.transcript(chat_id)
                  if m["direction"] == "bot"}
        handled = self.chat.handled()
        result = await action()
        await self.chat.settle(handled)
        after = [m for m in await self.transcript(chat_id) if m["direction"] == "bot" and not m["deleted"]]
        fresh = [m for m in after if m["message_id"] not in before]
        edited = [m for m in after if m["message_id"] in before and len(m["edits"]) != before[m["message_id"]]]
        self.replies = fresh
        if fresh or edited:
            self._last = (fresh or edited)[-1]
        return result

    # --- what a person does -------------------------------------------------------------------------

    async def send(self, text: str, *, chat_id: int | None = None, thread_id: int | None = None) -> None:
        await self._act(lambda: self.chat.tg.send_text(self.id, text, chat_id=chat_id, thread_id=thread_id),
                        chat_id)

    async def share_contact(self, *, of: int | None = None, phone: str | None = None) -> None:
        """Share a contact: one's own by default, or someone else's (`of` their user id)."""
        await self._act(lambda: self.chat.tg.send_contact(
            self.id, contact_user_id=SELF if of is None else of, phone_number=phone))

    async def send_photo(self) -> None:
        await self._act(lambda: self.chat.tg.send_photo(self.id))

    async def press_reply(self, label: str) -> None:
        """Press a button of the reply keyboard (the menu, 'Share my phone number', 'Skip')."""
        state = await self.chat.tg.chat_state(self.id)
        keyboard = (state.get("reply_keyboard") or {}).get("keyboard") or []
        texts = [button["text"] for row in keyboard for button in row]
        match = next((text for text in texts if label.casefold() in text.casefold()), None)
        assert match is not None, f"no reply button like {label!r} in {texts}"
        await self._act(lambda: self.chat.tg.press_reply_button(self.id, match))

    async def buttons(self, chat_id: int | None = None) -> list[tuple[int, str, str]]:
        """(message id, label, callback data) of the inline buttons in the chat, newest message first."""
        found = []
        for message in reversed(await self.transcript(chat_id)):
            if message["direction"] != "bot" or message["deleted"]:
                continue
            for row in (message.get("reply_markup") or {}).get("inline_keyboard") or []:
                for button in row:
                    if "callback_data" in button:
                        found.append((message["message_id"], button["text"], button["callback_data"]))
        return found

    async def find_button(self, label: str, chat_id: int | None = None) -> tuple[int, str]:
        buttons = await self.buttons(chat_id)
        for message_id, text, data in buttons:
            if label.casefold() in text.casefold():
                return message_id, data
        raise AssertionError(f"no button like {label!r}; buttons: {[text for _, text, _ in buttons]}")

    async def press(self, label: str, *, chat_id: int | None = None) -> None:
        """Press the newest inline button whose label contains `label`."""
        message_id, data = await self.find_button(label, chat_id)
        await self.press_data(message_id, data, chat_id=chat_id)

    async def press_data(self, message_id: int, data: str, *, chat_id: int | None = None) -> None:
        """Press a button of message `message_id` with whatever callback data (even forged)."""
        chat_id = chat_id or self.id
        query_id = await self._act(lambda: self.chat.tg.press(self.id, chat_id, message_id, data), chat_id)
        answers = await self.chat.tg.callback_answers(query_id)
        self.last_toast = answers[-1]["text"] if answers else None

    # --- what a person sees --------------------------------------------------------------------------

    @property
    def last_text(self) -> str:
        """The text (or caption) of the newest or just-edited bot message."""
        assert self._last is not None, "the bot has said nothing yet"
        return str(self._last.get("text") or self._last.get("caption") or "")

    @property
    def last_message(self) -> dict[str, Any]:
        assert self._last is not None, "the bot has said nothing yet"
        return self._last

    def last_text_contains(self, fragment: str) -> bool:
        return fragment.casefold() in self.last_text.casefold()

    def saw(self, fragment: str) -> bool:
        """Whether any reply to the last action (or the toast) contains `fragment`."""
        texts = [str(m.get("text") or m.get("caption") or "") for m in self.replies]
        if self._last is not None:
            texts.append(self.last_text)
        if self.last_toast:
            texts.append(self.last_toast)
        return any(fragment.casefold() in text.casefold() for text in texts)

    # --- whole conversations ---------------------------------------------------------------------------

    async def join(self, *, marketing: bool = False, birthday: str | None = None, share_phone: bool = True,
                   start: str = "/start") -> None:
        """Join the programme through /start (or `start`, e.g. with a referral code), in the language Telegram
        reports for this person."""
        lang = pick_language(self.language_code)
        await self.send(start)
        names = {"en": "English", "zh_Hans": "简体中文", "zh_Hant": "繁體中文"}
        await self.press(names[lang])
        await self.press(self.t("button.accept"))
        await self.press(self.t("button.yes_please") if marketing else self.t("button.no_thanks"))
        if birthday:
            await self.send(birthday)
        else:
            await self.press(self.t("button.skip"))
        if share_phone:
            await self.press_reply(self.t("button.share_phone"))
        else:
            await self.press_reply(self.t("button.skip"))


async def eventually(check: Callable[[], Awaitable[Any]], within: float = 20.0) -> Any:
    """Poll `check` until it returns something true (delivery over HTTP by another task)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        value = await check()
        if value:
            return value
        if loop.time() > deadline:
            raise TimeoutError(f"not true within {within}s")
        await asyncio.sleep(0.05)
