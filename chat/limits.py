"""Telegram's limits on what a bot sends and receives, in one place (https://core.telegram.org/bots/api)."""

from __future__ import annotations

TEXT_LIMIT = 4096  # characters of one text message
CAPTION_LIMIT = 1024  # characters of a caption a bot sends
INCOMING_CAPTION_LIMIT = 4096  # a caption a member sends: Telegram Premium members may caption up to 4096
TOAST_LIMIT = 200  # characters of the notice answering a pressed button (answerCallbackQuery)
CALLBACK_DATA_BYTES = 64  # bytes of a button's callback_data
COMMAND_DESCRIPTION_LIMIT = 256  # characters of a command's description in setMyCommands
GROUP_MESSAGES_PER_MINUTE = 20.0  # what a bot may post into one group
MESSAGES_PER_SECOND = 30.0  # what a bot may send overall without paid broadcasts
PAID_MESSAGES_PER_SECOND = 1000.0  # with paid broadcasts

__all__ = ["CALLBACK_DATA_BYTES", "CAPTION_LIMIT", "COMMAND_DESCRIPTION_LIMIT", "GROUP_MESSAGES_PER_MINUTE",
           "INCOMING_CAPTION_LIMIT", "MESSAGES_PER_SECOND", "PAID_MESSAGES_PER_SECOND", "TEXT_LIMIT", "TOAST_LIMIT"]
