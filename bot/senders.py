"""The one place loyalbot sends through a Telegram framework: `ChatSender` for aiogram and for PTB.

Handlers, the scheduler's dispatcher and the support relay speak only `chat.outbound.ChatSender`;
these two classes turn its calls into framework calls and turn each framework's exceptions into the
named errors of `chat.outbound` (RetryAfter, Blocked, ThreadNotFound, BadRequest, Transient), so
whoever sends decides once what to do about a failure. Rate limiting lives with the callers (the
outbox dispatcher and the relay), not here: a sender makes exactly the call it is asked to make.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Awaitable, Callable, Iterator
from datetime import timedelta
from typing import Any, Required, TypedDict, TypeVar

import aiogram
import telegram
from aiogram import exceptions as ag_errors
from aiogram import types as ag
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from telegram import error as ptb_errors

from loyalbot.chat.outbound import (
    BadRequest,
    Blocked,
    Keyboard,
    KeyButton,
    Media,
    Outgoing,
    RetryAfter,
    SendError,
    Sent,
    ThreadNotFound,
    Transient,
)

T = TypeVar("T")
AgMarkup = ag.InlineKeyboardMarkup | ag.ReplyKeyboardMarkup | ag.ReplyKeyboardRemove | None
PtbMarkup = telegram.InlineKeyboardMarkup | telegram.ReplyKeyboardMarkup | telegram.ReplyKeyboardRemove | None

MEDIA_KINDS = ("photo", "document", "voice", "sticker", "video", "audio")
# Telegram's descriptions for a message_thread_id that names no (longer existing) topic.
THREAD_GONE = ("message thread not found", "topic_deleted", "topic_id_invalid", "thread not found")


def _bad_request(description: str) -> SendError:
    """A 400: a missing topic is its own error (the relay reopens a conversation), the rest are final."""
    lowered = description.lower()
    if any(marker in lowered for marker in THREAD_GONE):
        return ThreadNotFound(description)
    return BadRequest(description)


class _Flags(TypedDict, total=False):
    """Send options a caller may set in `Outgoing.extra`; left out (the framework's default) unless set."""

    disable_notification: bool
    protect_content: bool


class _Caption(TypedDict, total=False):
    """A media message's caption and how it is formatted; empty without a caption."""

    caption: str
    parse_mode: str | None


class _AgCommon(_Flags, total=False):
    """The keyword arguments every aiogram send_* call of `AiogramSender.send` takes."""

    chat_id: Required[int]
    message_thread_id: Required[int | None]
    reply_markup: Required[AgMarkup]


class _PtbCommon(_Flags, total=False):
    """The keyword arguments every PTB send_* call of `PtbSender.send` takes."""

    chat_id: Required[int]
    message_thread_id: Required[int | None]
    reply_markup: Required[PtbMarkup]


def _flags(extra: dict[str, Any]) -> _Flags:
    flags: _Flags = {}
    if "disable_notification" in extra:
        flags["disable_notification"] = extra["disable_notification"]
    if "protect_content" in extra:
        flags["protect_content"] = extra["protect_content"]
    return flags


def _caption(message: Outgoing, parse_mode: str | None) -> _Caption:
    # With media, the text is its caption (that is how a Reply carries both).
    caption: str | None = message.text if message.text is not None else message.extra.get("caption")
    return {"caption": caption, "parse_mode": parse_mode} if caption else {}


def _text(message: Outgoing) -> str:
    """The text of a message without media (`_check` made sure it has one)."""
    assert message.text is not None
    return message.text


def _check(message: Outgoing) -> None:
    if message.text is None and message.media is None:
        raise BadRequest("an outgoing message needs text or media")
    if message.media is not None:
        if message.media.kind not in MEDIA_KINDS:
            raise BadRequest(f"cannot send media of kind {message.media.kind!r}")
        if (message.media.data is None) == (message.media.file_id is None):
            raise BadRequest("media needs exactly one of data or file_id")


# --- aiogram -------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _aiogram_errors() -> Iterator[None]:
    """Re-raise aiogram's exceptions as chat.outbound's named errors."""
    try:
        yield
    except ag_errors.TelegramRetryAfter as exc:
        raise RetryAfter(exc.retry_after, exc.message) from exc
    except ag_errors.TelegramForbiddenError as exc:
        raise Blocked(exc.message) from exc
    except ag_errors.TelegramBadRequest as exc:
        raise _bad_request(exc.message) from exc
    except (ag_errors.TelegramServerError, ag_errors.TelegramNetworkError) as exc:  # incl. RestartingTelegram
        raise Transient(exc.message) from exc
    except ag_errors.TelegramAPIError as exc:  # 401/404/409/413, migrated chats: retrying will not help
        raise BadRequest(exc.message) from exc
    except (TimeoutError, OSError) as exc:
        raise Transient(f"{type(exc).__name__}: {exc}") from exc


def _ag_inline(buttons: Keyboard | None) -> ag.InlineKeyboardMarkup | None:
    if buttons is None:
        return None
    return ag.InlineKeyboardMarkup(inline_keyboard=[
        [ag.InlineKeyboardButton(text=b.text, url=b.url) if b.url else
         ag.InlineKeyboardButton(text=b.text, callback_data=b.data or "-") for b in row]
        for row in buttons
    ])


def _ag_markup(message: Outgoing) -> AgMarkup:
    if message.buttons is not None:
        return _ag_inline(message.buttons)
    if message.keyboard is not None:
        return ag.ReplyKeyboardMarkup(
            keyboard=[[ag.KeyboardButton(text=k.text, request_contact=k.request_contact or None) for k in row]
                      for row in message.keyboard],
            resize_keyboard=True,
            one_time_keyboard=_one_time(message.keyboard, message.extra),
        )
    if message.remove_keyboard:
        return ag.ReplyKeyboardRemove()
    return None


def _one_time(keyboard: list[list[KeyButton]], extra: dict[str, Any]) -> bool:
    # A keyboard asking for the phone number is answered once; other keyboards stay unless told.
    default = any(k.request_contact for row in keyboard for k in row)
    return bool(extra.get("one_time_keyboard", default))


def make_aiogram_bot(token: str, api_url: str) -> aiogram.Bot:
    """An aiogram Bot talking to the Bot API server at `api_url` (its root, e.g. https://api.telegram.org)."""
    session = AiohttpSession(api=TelegramAPIServer.from_base(api_url))
    return aiogram.Bot(token, session=session)


class AiogramSender:
    """`ChatSender` over an aiogram 3 `Bot`."""

    def __init__(self, bot: aiogram.Bot) -> None:
        self.bot = bot

    async def _call(self, make: Callable[[], Awaitable[T]]) -> T:
        with _aiogram_errors():
            return await make()

    async def send(self, message: Outgoing) -> Sent:
        _check(message)
        bot = self.bot
        common: _AgCommon = {"chat_id": message.chat_id, "message_thread_id": message.thread_id,
                             "reply_markup": _ag_markup(message), **_flags(message.extra)}
        parse_mode = "HTML" if message.html else None
        if message.media is None:
            text = _text(message)
            sent = await self._call(lambda: bot.send_message(text=text, parse_mode=parse_mode, **common))
            return Sent(sent.message_id, sent.message_thread_id)
        media = message.media
        file: str | ag.InputFile = media.file_id or ag.BufferedInputFile(media.data or b"", filename=media.filename)
        captioned = _caption(message, parse_mode)
        senders: dict[str, Callable[[], Awaitable[ag.Message]]] = {
            "photo": lambda: bot.send_photo(photo=file, **captioned, **common),
            "document": lambda: bot.send_document(document=file, **captioned, **common),
            "voice": lambda: bot.send_voice(voice=file, **captioned, **common),
            "video": lambda: bot.send_video(video=file, **captioned, **common),
            "audio": lambda: bot.send_audio(audio=file, **captioned, **common),
            "sticker": lambda: bot.send_sticker(sticker=file, **common),
        }
        sent = await self._call(senders[media.kind])
        return Sent(sent.message_id, sent.message_thread_id)

    async def edit_text(self, chat_id: int, message_id: int, text: str, buttons: Keyboard | None = None,
                        html: bool = True) -> None:
        await self._call(lambda: self.bot.edit_message_text(
            text=text, chat_id=chat_id, message_id=message_id, parse_mode="HTML" if html else None,
            reply_markup=_ag_inline(buttons)))

    async def edit_buttons(self, chat_id: int, message_id: int, buttons: Keyboard | None) -> None:
        await self._call(lambda: self.bot.edit_message_reply_markup(
            chat_id=chat_id, message_id=message_id, reply_markup=_ag_inline(buttons)))

    async def answer_callback(self, callback_id: str, text: str | None = None, alert: bool = False) -> None:
        await self._call(lambda: self.bot.answer_callback_query(
            callback_query_id=callback_id, text=text, show_alert=alert))

    async def copy_message(self, chat_id: int, from_chat_id: int, message_id: int, *,
                           thread_id: int | None = None, caption: str | None = None) -> Sent:
        copied = await self._call(lambda: self.bot.copy_message(
            chat_id=chat_id, from_chat_id=from_chat_id, message_id=message_id, message_thread_id=thread_id,
            caption=caption, parse_mode="HTML" if caption else None))
        return Sent(copied.message_id, thread_id)

    async def create_topic(self, chat_id: int, name: str) -> int:
        topic = await self._call(lambda: self.bot.create_forum_topic(chat_id=chat_id, name=name[:128]))
        return topic.message_thread_id

    async def edit_topic(self, chat_id: int, thread_id: int, name: str) -> None:
        await self._call(lambda: self.bot.edit_forum_topic(
            chat_id=chat_id, message_thread_id=thread_id, name=name[:128]))

    async def close_topic(self, chat_id: int, thread_id: int) -> None:
        await self._call(lambda: self.bot.close_forum_topic(chat_id=chat_id, message_thread_id=thread_id))

    async def reopen_topic(self, chat_id: int, thread_id: int) -> None:
        await self._call(lambda: self.bot.reopen_forum_topic(chat_id=chat_id, message_thread_id=thread_id))

    async def delete_topic(self, chat_id: int, thread_id: int) -> None:
        await self._call(lambda: self.bot.delete_forum_topic(chat_id=chat_id, message_thread_id=thread_id))

    async def delete_message(self, chat_id: int, message_id: int) -> None:
        await self._call(lambda: self.bot.delete_message(chat_id=chat_id, message_id=message_id))

    async def set_commands(self, commands: list[tuple[str, str]], language: str | None = None) -> None:
        await self._call(lambda: self.bot.set_my_commands(
            commands=[ag.BotCommand(command=name, description=text) for name, text in commands],
            language_code=language))


# --- python-telegram-bot -------------------------------------------------------------------------------


def _ptb_retry_seconds(exc: ptb_errors.RetryAfter) -> float:
    # PTB 22 warns when retry_after is read as an int (it becomes a timedelta in v23); accept both.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        value = exc.retry_after
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


@contextlib.contextmanager
def _ptb_errors() -> Iterator[None]:
    """Re-raise python-telegram-bot's exceptions as chat.outbound's named errors."""
    try:
        yield
    except ptb_errors.RetryAfter as exc:
        raise RetryAfter(_ptb_retry_seconds(exc), exc.message) from exc
    except ptb_errors.Forbidden as exc:
        raise Blocked(exc.message) from exc
    except ptb_errors.BadRequest as exc:  # before NetworkError: PTB makes BadRequest a NetworkError
        raise _bad_request(exc.message) from exc
    except ptb_errors.NetworkError as exc:  # 5xx, TimedOut, connection failures
        raise Transient(exc.message) from exc
    except ptb_errors.TelegramError as exc:  # InvalidToken, Conflict, ChatMigrated, EndPointNotFound
        raise BadRequest(exc.message) from exc
    except (TimeoutError, OSError) as exc:
        raise Transient(f"{type(exc).__name__}: {exc}") from exc


def _ptb_inline(buttons: Keyboard | None) -> telegram.InlineKeyboardMarkup | None:
    if buttons is None:
        return None
    return telegram.InlineKeyboardMarkup([
        [telegram.InlineKeyboardButton(b.text, url=b.url) if b.url else
         telegram.InlineKeyboardButton(b.text, callback_data=b.data or "-") for b in row]
        for row in buttons
    ])


def _ptb_markup(message: Outgoing) -> PtbMarkup:
    if message.buttons is not None:
        return _ptb_inline(message.buttons)
    if message.keyboard is not None:
        return telegram.ReplyKeyboardMarkup(
            [[telegram.KeyboardButton(k.text, request_contact=k.request_contact or None) for k in row]
             for row in message.keyboard],
            resize_keyboard=True,
            one_time_keyboard=_one_time(message.keyboard, message.extra),
        )
    if message.remove_keyboard:
        return telegram.ReplyKeyboardRemove()
    return None


def _ptb_file(media: Media) -> str | telegram.InputFile:
    if media.file_id is not None:
        return media.file_id
    return telegram.InputFile(media.data or b"", filename=media.filename)


def make_ptb_bot(token: str, api_url: str) -> telegram.Bot:
    """A python-telegram-bot Bot for the server at `api_url`; `await bot.initialize()` before use."""
    root = api_url.rstrip("/")
    return telegram.Bot(token, base_url=root + "/bot", base_file_url=root + "/file/bot")


class PtbSender:
    """`ChatSender` over a python-telegram-bot 22 `Bot` (initialised: `await bot.initialize()`)."""

    def __init__(self, bot: telegram.Bot) -> None:
        self.bot = bot

    async def _call(self, make: Callable[[], Awaitable[T]]) -> T:
        with _ptb_errors():
            return await make()

    async def send(self, message: Outgoing) -> Sent:
        _check(message)
        bot = self.bot
        common: _PtbCommon = {"chat_id": message.chat_id, "message_thread_id": message.thread_id,
                              "reply_markup": _ptb_markup(message), **_flags(message.extra)}
        parse_mode = telegram.constants.ParseMode.HTML if message.html else None
        if message.media is None:
            text = _text(message)
            sent = await self._call(lambda: bot.send_message(text=text, parse_mode=parse_mode, **common))
            return Sent(sent.message_id, sent.message_thread_id)
        media = message.media
        file = _ptb_file(media)
        captioned = _caption(message, parse_mode)
        senders: dict[str, Callable[[], Awaitable[telegram.Message]]] = {
            "photo": lambda: bot.send_photo(photo=file, **captioned, **common),
            "document": lambda: bot.send_document(document=file, **captioned, **common),
            "voice": lambda: bot.send_voice(voice=file, **captioned, **common),
            "video": lambda: bot.send_video(video=file, **captioned, **common),
            "audio": lambda: bot.send_audio(audio=file, **captioned, **common),
            "sticker": lambda: bot.send_sticker(sticker=file, **common),
        }
        sent = await self._call(senders[media.kind])
        return Sent(sent.message_id, sent.message_thread_id)

    async def edit_text(self, chat_id: int, message_id: int, text: str, buttons: Keyboard | None = None,
                        html: bool = True) -> None:
        await self._call(lambda: self.bot.edit_message_text(
            text=text, chat_id=chat_id, message_id=message_id,
            parse_mode=telegram.constants.ParseMode.HTML if html else None, reply_markup=_ptb_inline(buttons)))

    async def edit_buttons(self, chat_id: int, message_id: int, buttons: Keyboard | None) -> None:
        await self._call(lambda: self.bot.edit_message_reply_markup(
            chat_id=chat_id, message_id=message_id, reply_markup=_ptb_inline(buttons)))

    async def answer_callback(self, callback_id: str, text: str | None = None, alert: bool = False) -> None:
        await self._call(lambda: self.bot.answer_callback_query(callback_id, text=text, show_alert=alert))

    async def copy_message(self, chat_id: int, from_chat_id: int, message_id: int, *,
                           thread_id: int | None = None, caption: str | None = None) -> Sent:
        copied = await self._call(lambda: self.bot.copy_message(
            chat_id=chat_id, from_chat_id=from_chat_id, message_id=message_id, message_thread_id=thread_id,
            caption=caption, parse_mode=telegram.constants.ParseMode.HTML if caption else None))
        return Sent(copied.message_id, thread_id)

    async def create_topic(self, chat_id: int, name: str) -> int:
        topic = await self._call(lambda: self.bot.create_forum_topic(chat_id=chat_id, name=name[:128]))
        return topic.message_thread_id

    async def edit_topic(self, chat_id: int, thread_id: int, name: str) -> None:
        await self._call(lambda: self.bot.edit_forum_topic(
            chat_id=chat_id, message_thread_id=thread_id, name=name[:128]))

    async def close_topic(self, chat_id: int, thread_id: int) -> None:
        await self._call(lambda: self.bot.close_forum_topic(chat_id=chat_id, message_thread_id=thread_id))

    async def reopen_topic(self, chat_id: int, thread_id: int) -> None:
        await self._call(lambda: self.bot.reopen_forum_topic(chat_id=chat_id, message_thread_id=thread_id))

    async def delete_topic(self, chat_id: int, thread_id: int) -> None:
        await self._call(lambda: self.bot.delete_forum_topic(chat_id=chat_id, message_thread_id=thread_id))

    async def delete_message(self, chat_id: int, message_id: int) -> None:
        await self._call(lambda: self.bot.delete_message(chat_id=chat_id, message_id=message_id))

    async def set_commands(self, commands: list[tuple[str, str]], language: str | None = None) -> None:
        await self._call(lambda: self.bot.set_my_commands(
            [telegram.BotCommand(name, text) for name, text in commands], language_code=language))


__all__ = ["AiogramSender", "PtbSender", "make_aiogram_bot", "make_ptb_bot"]
