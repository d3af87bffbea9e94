"""Telegram's limits on what a bot sends and receives, in one place (https://core.telegram.org/bots/api)."""

from __future__ import annotations

TEXT_LIMIT = 4096  # characters of one text message
CAPTION_LIMIT = 1024  # characters of a caption a bot sends
INCOMING_CAPTION_LIMIT = 4096  # a caption a member sends: Telegram Premium members may caption up to 4096
TOAST_LIMIT = 200  # characters of the notice answering a pressed button (answerCallbackQuery)
CALLBACK_DATA_BYTES = 64  # bytes of a button's callback_data
COMMAND_DESCRIPTION_LIMIT = 256  # characters of a command's description in setMyCommands
GROUP_MESSAGES_PER_MINUTE = 20.0  # what a bot may post into one group
GROUP_BURST = 5  # of those, how many may go at once after a quiet spell
CHAT_SPACING = 1.0  # seconds between two messages into one chat, from the answer to the first
MESSAGES_PER_SECOND = 30.0  # what a bot may send overall without paid broadcasts
PAID_MESSAGES_PER_SECOND = 1000.0  # with paid broadcasts



def group_pace(per_minute: float = GROUP_MESSAGES_PER_MINUTE, burst: int = GROUP_BURST) -> tuple[float, float]:
    """A group's budget as a GCRA rate: (seconds between posts, seconds of burst tolerance).

    A bucket that refills at per_minute/60 and also lets `burst` go at once passes burst + per_minute posts
    in some minute (25 of Telegram's 20); so the burst is taken out of the minute: posts are spaced
    60 / (per_minute - burst) apart, and any 60 seconds hold at most `per_minute` (5 at once, then one every
    4 s: 5 + 15 = 20). A budget too small for its burst goes without one."""
    if per_minute <= 0 or burst < 1:
        raise ValueError("a group's budget needs a rate > 0 and a burst >= 1")
    if per_minute - burst < 1:
        return 60.0 / per_minute, 0.0
    interval = 60.0 / (per_minute - burst)
    return interval, (burst - 1) * interval


__all__ = ["CALLBACK_DATA_BYTES", "CAPTION_LIMIT", "CHAT_SPACING", "COMMAND_DESCRIPTION_LIMIT", "GROUP_BURST",
           "GROUP_MESSAGES_PER_MINUTE", "group_pace",
           "INCOMING_CAPTION_LIMIT", "MESSAGES_PER_SECOND", "PAID_MESSAGES_PER_SECOND", "TEXT_LIMIT", "TOAST_LIMIT"]
