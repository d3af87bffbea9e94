"""The languages loyalbot speaks, and the Babel locale each formats dates, numbers and money in."""

from __future__ import annotations

LANGUAGES = ("en", "zh_Hans", "zh_Hant")
# Babel locale for dates, numbers and money in each language, in chat and in scheduled messages alike.
FORMAT_LOCALES = {"en": "en_GB", "zh_Hans": "zh_Hans_CN", "zh_Hant": "zh_Hant_TW"}

__all__ = ["FORMAT_LOCALES", "LANGUAGES"]
