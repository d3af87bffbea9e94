"""An async client for the local Bot API server's control API, for tests and the demo.

Tests use it to act as Telegram users (write, press buttons, share contacts, send photos) and to
check what the bot did (transcripts, call log, counters), and to inject faults and rate limits::

    async with LocalApiControl(server.url) as tg:
        await tg.create_user(1001, "Ann", language_code="en")
        sent = await tg.send_text(1001, "/start")
        reply = await tg.wait_for_bot_message(1001, after_id=sent["message_id"])
"""

from __future__ import annotations

import base64
from collections.abc import Iterable
from typing import Any, Final

import httpx

__all__ = ["SELF", "LocalApiControl", "LocalApiControlError"]


class _Self:
    """Marker meaning "the sender's own user id" for :meth:`LocalApiControl.send_contact`."""

    def __repr__(self) -> str:
        return "SELF"


SELF: Final = _Self()


class LocalApiControlError(RuntimeError):
    """The control API refused a request (bad input, unknown chat, ...)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message


def _clean(data: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in data.items() if value is not None}


class LocalApiControl:
    """Async wrapper over ``/control/*`` of a :class:`~bot.local_api.server.LocalBotApi`."""

    def __init__(self, url: str, *, timeout: float = 30.0) -> None:
        self.url = url.rstrip("/")
        self._client = httpx.AsyncClient(base_url=self.url, timeout=timeout)

    async def __aenter__(self) -> LocalApiControl:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the HTTP client."""
        await self._client.aclose()

    async def _request(
        self,
        verb: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - an HTTP timeout passed to httpx
    ) -> Any:
        kwargs: dict[str, Any] = {}
        if timeout is not None:
            kwargs["timeout"] = timeout
        response = await self._client.request(
            verb, f"/control/{path}", json=json, params=_clean(params or {}), **kwargs
        )
        if response.status_code >= 400:
            try:
                message = response.json().get("error", response.text)
            except ValueError:
                message = response.text
            raise LocalApiControlError(response.status_code, str(message))
        return response.json()

    # ------------------------------------------------------------------------------- world

    async def health(self) -> bool:
        """True when the server answers."""
        return bool((await self._request("GET", "health")).get("ok"))

    async def reset(self) -> None:
        """Forget everything: bots, users, chats, files, faults, limits, logs, demo config."""
        await self._request("POST", "reset")

    async def create_bot(
        self, token: str, *, first_name: str | None = None, username: str | None = None, invalid: bool = False
    ) -> dict[str, Any]:
        """Pre-create a bot; ``invalid=True`` makes its token answer 401 Unauthorized."""
        return await self._request(
            "POST",
            "bots",
            json=_clean({"token": token, "first_name": first_name, "username": username, "invalid": invalid}),
        )

    async def bots(self) -> list[dict[str, Any]]:
        """Bots seen so far (getMe fields plus token, pending update count, webhook url)."""
        return await self._request("GET", "bots")

    async def create_user(
        self,
        user_id: int | None = None,
        first_name: str = "Test",
        *,
        last_name: str | None = None,
        username: str | None = None,
        language_code: str | None = "en",
        phone_number: str | None = None,
        is_premium: bool | None = None,
        started: bool = True,
        blocked: bool = False,
        deactivated: bool = False,
    ) -> dict[str, Any]:
        """Create (or reset the fields of) a user; returns the user with ``id``."""
        return await self._request(
            "POST",
            "users",
            json=_clean(
                {
                    "id": user_id,
                    "first_name": first_name,
                    "last_name": last_name,
                    "username": username,
                    "language_code": language_code,
                    "phone_number": phone_number,
                    "is_premium": is_premium,
                    "started": started,
                    "blocked": blocked,
                    "deactivated": deactivated,
                }
            ),
        )

    async def set_user_state(
        self,
        user_id: int,
        *,
        blocked: bool | None = None,
        started: bool | None = None,
        deactivated: bool | None = None,
    ) -> dict[str, Any]:
        """Change whether a user blocked the bot, has started it, or is deactivated."""
        return await self._request(
            "POST",
            "users",
            json=_clean({"id": user_id, "blocked": blocked, "started": started, "deactivated": deactivated}),
        )

    async def users(self) -> list[dict[str, Any]]:
        """All users."""
        return await self._request("GET", "users")

    async def create_group(
        self,
        title: str,
        *,
        chat_id: int | None = None,
        members: Iterable[int] = (),
        admins: Iterable[int] = (),
        is_forum: bool = True,
        chat_type: str = "supergroup",
        username: str | None = None,
    ) -> dict[str, Any]:
        """Create a (forum) supergroup or group; returns the chat with its negative ``id``."""
        return await self._request(
            "POST",
            "groups",
            json=_clean(
                {
                    "id": chat_id,
                    "title": title,
                    "members": list(members),
                    "admins": list(admins),
                    "is_forum": is_forum,
                    "type": chat_type,
                    "username": username,
                }
            ),
        )

    async def chats(self) -> list[dict[str, Any]]:
        """All chats with members, topics and the current reply keyboard."""
        return await self._request("GET", "chats")

    async def chat(self, chat_id: int) -> dict[str, Any]:
        """One chat with members, topics and the current reply keyboard."""
        return await self._request("GET", "chat", params={"chat_id": chat_id})

    async def topics(self, chat_id: int) -> list[dict[str, Any]]:
        """A forum's topics (``message_thread_id``, ``name``, ``icon_color``, ``closed``, ``deleted``)."""
        return await self._request("GET", "topics", params={"chat_id": chat_id})

    async def create_topic(
        self, chat_id: int, name: str, *, user_id: int | None = None, icon_color: int | None = None
    ) -> dict[str, Any]:
        """A member creates a forum topic; the bot receives the service message."""
        return await self._request(
            "POST",
            "topics",
            json=_clean({"chat_id": chat_id, "name": name, "user_id": user_id, "icon_color": icon_color}),
        )

    async def delete_topic(self, chat_id: int, thread_id: int) -> None:
        """Staff deletes a forum topic; later sends into it get "message thread not found"."""
        await self._request("POST", "topics/delete", json={"chat_id": chat_id, "thread_id": thread_id})

    # --------------------------------------------------------------------------- user acts

    async def send_text(
        self,
        user_id: int,
        text: str,
        chat_id: int | None = None,
        thread_id: int | None = None,
        *,
        reply_to: int | None = None,
    ) -> dict[str, Any]:
        """The user writes ``text`` (a command if it starts with "/"); returns the transcript entry."""
        return await self._request(
            "POST",
            "messages",
            json=_clean(
                {
                    "user_id": user_id,
                    "chat_id": chat_id,
                    "thread_id": thread_id,
                    "text": text,
                    "reply_to_message_id": reply_to,
                }
            ),
        )

    async def send_contact(
        self,
        user_id: int,
        *,
        phone_number: str | None = None,
        first_name: str | None = None,
        last_name: str | None = None,
        contact_user_id: int | None | _Self = SELF,
        chat_id: int | None = None,
        thread_id: int | None = None,
    ) -> dict[str, Any]:
        """The user shares a contact: by default their own (``contact_user_id=SELF``).

        Pass another id to share someone else's contact, or ``None`` for a phone-book contact
        without a Telegram account.  Phone and names default to the sender's.
        """
        contact = _clean({"phone_number": phone_number, "first_name": first_name, "last_name": last_name})
        if contact_user_id is not SELF:
            contact["user_id"] = contact_user_id
        return await self._request(
            "POST",
            "messages",
            json=_clean(
                {
                    "user_id": user_id,
                    "chat_id": chat_id,
                    "thread_id": thread_id,
                    "contact": contact,
                }
            ),
        )

    async def send_photo(
        self,
        user_id: int,
        data: bytes | None = None,
        *,
        caption: str | None = None,
        chat_id: int | None = None,
        thread_id: int | None = None,
        file_id: str | None = None,
    ) -> dict[str, Any]:
        """The user sends a photo (``data`` bytes, an existing ``file_id``, or a generated PNG)."""
        photo = _clean({"data_b64": base64.b64encode(data).decode() if data else None, "file_id": file_id})
        return await self._request(
            "POST",
            "messages",
            json=_clean(
                {
                    "user_id": user_id,
                    "chat_id": chat_id,
                    "thread_id": thread_id,
                    "photo": photo,
                    "caption": caption,
                }
            ),
        )

    async def send_document(
        self,
        user_id: int,
        data: bytes | None = None,
        *,
        file_name: str = "file.txt",
        mime_type: str | None = None,
        caption: str | None = None,
        chat_id: int | None = None,
        thread_id: int | None = None,
    ) -> dict[str, Any]:
        """The user sends a document (``data`` bytes or a small generated text file)."""
        document = _clean(
            {
                "data_b64": base64.b64encode(data).decode() if data else None,
                "file_name": file_name,
                "mime_type": mime_type,
            }
        )
        return await self._request(
            "POST",
            "messages",
            json=_clean(
                {
                    "user_id": user_id,
                    "chat_id": chat_id,
                    "thread_id": thread_id,
                    "document": document,
                    "caption": caption,
                }
            ),
        )

    async def edit_text(
        self, user_id: int, message_id: int, text: str, chat_id: int | None = None
    ) -> dict[str, Any]:
        """The user edits one of their messages; the bot gets an ``edited_message`` update."""
        return await self._request(
            "POST",
            "edit",
            json=_clean({"user_id": user_id, "chat_id": chat_id, "message_id": message_id, "text": text}),
        )

    async def press(self, user_id: int, chat_id: int, message_id: int, data: str) -> str:
        """The user presses an inline button of a bot message; ``data`` may be anything (even forged).

        Returns the callback query id, to look up the bot's answer with :meth:`callback_answers`.
        """
        result = await self._request(
            "POST",
            "press",
            json={"user_id": user_id, "chat_id": chat_id, "message_id": message_id, "data": data},
        )
        return str(result["callback_query_id"])

    async def press_reply_button(
        self, user_id: int, text: str, chat_id: int | None = None, *, strict: bool = True
    ) -> dict[str, Any]:
        """The user presses a reply-keyboard button; a ``request_contact`` button shares their contact.

        With ``strict`` the button must exist on the chat's current keyboard.
        """
        return await self._request(
            "POST",
            "reply-press",
            json=_clean({"user_id": user_id, "chat_id": chat_id, "text": text, "strict": strict}),
        )

    # ------------------------------------------------------------------------------ reading

    async def transcript(
        self, chat_id: int, thread_id: int | None = None, *, include_deleted: bool = True
    ) -> list[dict[str, Any]]:
        """All messages of a chat (or of one forum thread; ``0`` is the General topic), oldest first."""
        data = await self._request(
            "GET",
            "transcript",
            params={"chat_id": chat_id, "thread_id": thread_id, "include_deleted": int(include_deleted)},
        )
        return list(data["messages"])

    async def chat_state(self, chat_id: int, thread_id: int | None = None) -> dict[str, Any]:
        """The full transcript answer: ``{chat, messages, reply_keyboard, reply_keyboard_hidden, topics}``."""
        return await self._request("GET", "transcript", params={"chat_id": chat_id, "thread_id": thread_id})

    async def bot_messages(self, chat_id: int, thread_id: int | None = None) -> list[dict[str, Any]]:
        """Only the bot's messages that are not deleted."""
        return [
            m
            for m in await self.transcript(chat_id, thread_id)
            if m["direction"] == "bot" and not m["deleted"]
        ]

    async def wait_for_bot_message(
        self,
        chat_id: int,
        after_id: int = 0,
        contains: str | None = None,
        timeout: float = 10,  # noqa: ASYNC109 - the server does the waiting; this bounds it
        *,
        thread_id: int | None = None,
    ) -> dict[str, Any]:
        """Wait for the first bot message after ``after_id`` (optionally containing ``contains``).

        Raises :class:`TimeoutError` (listing the chat's last messages) when none comes in time.
        """
        data = await self._request(
            "GET",
            "wait",
            params={
                "chat_id": chat_id,
                "after_id": after_id,
                "contains": contains,
                "thread_id": thread_id,
                "timeout": timeout,
            },
            timeout=timeout + 10,
        )
        if data.get("message") is None:
            try:
                recent = (await self.transcript(chat_id))[-5:]
            except LocalApiControlError:
                recent = []
            shown = [
                (m["message_id"], m["direction"], m.get("text") or m.get("caption") or m["kind"])
                for m in recent
            ]
            raise TimeoutError(
                f"no bot message in chat {chat_id} after #{after_id}"
                f"{f' containing {contains!r}' if contains else ''} within {timeout}s; last messages: {shown}"
            )
        return dict(data["message"])

    async def events(self, since: int = 0, timeout: float = 0) -> dict[str, Any]:  # noqa: ASYNC109
        """The change feed: ``{"seq": latest, "events": [...]}`` after ``since`` (long-polls ``timeout``)."""
        return await self._request(
            "GET", "events", params={"since": since, "timeout": timeout}, timeout=timeout + 10
        )

    async def calls(self, method: str | None = None, chat_id: int | None = None, *, since: int | None = None
                    ) -> list[dict[str, Any]]:
        """The bot's method calls (method, chat_id, time, outcome, error_code, description, params); with
        `since`, only those after that `seq`."""
        return await self._request("GET", "calls", params={"method": method, "chat_id": chat_id, "since": since})

    async def stats(self) -> dict[str, Any]:
        """Counters: ``calls``, ``delivered``, ``rate_limited``, ``errors`` per method, plus totals."""
        return await self._request("GET", "stats")

    async def callback_answers(
        self,
        callback_query_id: str | None = None,
        *,
        chat_id: int | None = None,
        message_id: int | None = None,
    ) -> list[dict[str, Any]]:
        """The bot's answerCallbackQuery calls (text, show_alert, url, cache_time, data, user)."""
        return await self._request(
            "GET",
            "callback-answers",
            params={"callback_query_id": callback_query_id, "chat_id": chat_id, "message_id": message_id},
        )

    async def wait_for_callback_answer(self, callback_query_id: str, timeout: float = 10) -> dict[str, Any]:  # noqa: ASYNC109
        """Wait until the bot answers the callback query; raises :class:`TimeoutError` otherwise."""
        answers = await self._request(
            "GET",
            "callback-answers",
            params={"callback_query_id": callback_query_id, "timeout": timeout},
            timeout=timeout + 10,
        )
        if not answers:
            raise TimeoutError(f"callback query {callback_query_id} was not answered within {timeout}s")
        return dict(answers[0])

    async def commands(self, bot_id: int | None = None) -> list[dict[str, Any]]:
        """Command lists stored by setMyCommands: ``{bot_id, scope, language_code, commands}``."""
        return await self._request("GET", "commands", params={"bot_id": bot_id})

    async def pending_updates(self, bot_id: int | None = None) -> dict[str, Any]:
        """Updates the bot has not confirmed yet: ``{"bots": {id: [...]}, "orphans": [...]}``."""
        return await self._request("GET", "updates", params={"bot_id": bot_id})

    async def file_bytes(self, file_id: str) -> bytes:
        """The bytes of any file the bot or a user sent."""
        response = await self._client.get(f"/control/files/{file_id}")
        if response.status_code >= 400:
            raise LocalApiControlError(response.status_code, response.text)
        return response.content

    # --------------------------------------------------------------------- faults & limits

    async def inject_fault(
        self,
        kind: str,
        *,
        method: str = "*",
        chat_id: int | None = None,
        count: int = 1,
        retry_after: int = 1,
        delay: float = 0.0,
        error_code: int | None = None,
        description: str | None = None,
    ) -> dict[str, Any]:
        """Make the next ``count`` matching calls fail.

        ``kind``: ``"429"`` (with ``retry_after``), ``"500"``, ``"502"``, ``"403"`` (blocked by the
        user), ``"delay"`` (answer normally after ``delay`` seconds) or ``"error"`` (``error_code`` +
        ``description``).  ``method="*"`` matches all but getUpdates/getMe/webhook methods.
        """
        return await self._request(
            "POST",
            "faults",
            json=_clean(
                {
                    "kind": str(kind),
                    "method": method,
                    "chat_id": chat_id,
                    "count": count,
                    "retry_after": retry_after,
                    "delay": delay,
                    "error_code": error_code,
                    "description": description,
                }
            ),
        )

    async def faults(self) -> list[dict[str, Any]]:
        """Faults still queued."""
        return await self._request("GET", "faults")

    async def clear_faults(self) -> None:
        """Drop all queued faults."""
        await self._request("POST", "faults/clear")

    async def set_limits(
        self,
        *,
        enabled: bool | None = None,
        global_per_second: float | None = None,
        private_per_second: float | None = None,
        private_burst: int | None = None,
        group_per_minute: float | None = None,
        group_burst: int | None = None,
    ) -> dict[str, Any]:
        """Switch flood limits on/off and tune them; unspecified values stay as they are."""
        return await self._request(
            "POST",
            "limits",
            json=_clean(
                {
                    "enabled": enabled,
                    "global_per_second": global_per_second,
                    "private_per_second": private_per_second,
                    "private_burst": private_burst,
                    "group_per_minute": group_per_minute,
                    "group_burst": group_burst,
                }
            ),
        )

    async def limits(self) -> dict[str, Any]:
        """Current flood limits."""
        return await self._request("GET", "limits")

    # ------------------------------------------------------------------------------- demo

    async def demo_config(self) -> dict[str, Any]:
        """The demo page's ``{"identities": [...], "staff_group": {...} | None, "bot": {...} | None}``."""
        return await self._request("GET", "demo-config")

    async def set_demo_config(
        self, identities: list[dict[str, Any]], staff_group: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Set the demo page's identities (users are created) and staff group (created if missing)."""
        return await self._request(
            "POST", "demo-config", json={"identities": identities, "staff_group": staff_group}
        )

    async def add_identity(self, identity: dict[str, Any]) -> dict[str, Any]:
        """Append one identity to the demo page's picker."""
        return await self._request("POST", "demo-config/identities", json=identity)

    async def set_demo_info(self, info: dict[str, Any]) -> dict[str, Any]:
        """Merge ``info`` (timezone, console address, user, password) into what the demo page shows."""
        return await self._request("POST", "demo-config/info", json=info)
