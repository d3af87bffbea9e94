"""What an operator may tune about the member conversations (bot/ fills it from settings)."""

from __future__ import annotations

from dataclasses import dataclass, field

from loyalbot.chat.languages import FORMAT_LOCALES


@dataclass(frozen=True)
class ChatConfig:
    """Settings of the chat layer: names, support hours, list sizes, the choices offered in /settings."""

    bot_name: str = "Lumen Café Rewards"
    bot_username: str | None = None  # @username without the @, from getMe: referral links are t.me/<it>?start=
    staff_group_id: int | None = None
    support_hours: str = "09:00-18:00"
    support_timezone: str = "Europe/Amsterdam"
    rewards_per_page: int = 4
    coupons_shown: int = 10
    ledger_entries_shown: int = 10
    # Quiet-hour presets offered in /settings: token -> (start, end) in minutes after local midnight.
    quiet_presets: dict[str, tuple[int, int]] = field(default_factory=lambda: {
        "2208": (22 * 60, 8 * 60),
        "2307": (23 * 60, 7 * 60),
        "2109": (21 * 60, 9 * 60),
    })
    # Time zones offered as buttons; any other IANA name can be typed.
    timezones: tuple[str, ...] = (
        "Europe/Amsterdam", "Europe/London", "Asia/Shanghai", "Asia/Hong_Kong", "Asia/Taipei",
        "Asia/Singapore", "America/New_York", "UTC",
    )
    # Babel locale used to format dates, numbers and money for each conversation language.
    format_locales: dict[str, str] = field(default_factory=lambda: dict(FORMAT_LOCALES))
