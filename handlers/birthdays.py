"""Reading a birthday as members type it, in the forms usual in each of our languages.

Accepted (after Unicode NFKC, so full-width digits and slashes count too):

- year first: 1995-06-15, 1995/06/15, 1995.6.15, 1995 6 15
- Chinese: 1995年6月15日 (号/號 too, or nothing after the day), 民國84年6月15日 (Taiwan's calendar),
  一九九五年六月十五日 (Chinese numerals)
- month names (English): 15 June 1995, 15 Jun 1995, June 15, 1995, 15th June 1995
- year last: 15/06/1995, 15-6-1995, and 15.06.1995 (dots are always day first). When both numbers
  could be the month (03/04/1995), the member's format locale decides (en_GB: day first, en_US:
  month first); a locale that writes the year first (zh) has no such habit, so the member is asked
  to write it unambiguously.
- without the year (6月15日, 15 June, June 15, 15/06), when the programme allows it.

Babel's own `parse_date` only reads digits in the locale's pattern order, so it misses month names,
the Chinese forms in other locales, and cannot tell an ambiguous date from a clear one; the month
names here still come from Babel's locale data.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from dataclasses import dataclass
from datetime import date

from babel import Locale
from babel.dates import format_skeleton, get_date_format

ROC_OFFSET = 1911  # year 1 of the Republic of China calendar (民國) is 1912
LEAP_YEAR = 2000  # a year in which every month-day exists, to check one given without a year


@dataclass(frozen=True)
class Birthday:
    """A typed birthday: always a month and day, and the year when it was given."""

    month: int
    day: int
    year: int | None = None

    def as_date(self, year_unknown: int) -> date:
        """The date to store; `year_unknown` stands in for a missing year."""
        return date(self.year if self.year is not None else year_unknown, self.month, self.day)


@dataclass(frozen=True)
class Unreadable:
    """Why a text is not a birthday: "format" (not a date at all), "no_such_day" (31 June),
    "ambiguous" (03/04/1995 where the locale has no habit), "year_needed" (no year, the programme wants one)."""

    reason: str


_CN_DIGITS = {"〇": 0, "零": 0, "○": 0, "一": 1, "二": 2, "两": 2, "兩": 2, "三": 3, "四": 4, "五": 5, "六": 6,
              "七": 7, "八": 8, "九": 9}
_CN_NUMBER = "[〇零○一二两兩三四五六七八九十]+"
_NUM = rf"(\d{{1,4}}|{_CN_NUMBER})"
_CHINESE = re.compile(rf"^(?:(民國|民国)?\s*{_NUM}\s*年)?\s*{_NUM}\s*月\s*{_NUM}\s*[日号號]?$")
_YEAR_FIRST = re.compile(r"^(\d{4})\s*([-/.\s])\s*(\d{1,2})\s*\2\s*(\d{1,2})$")
_YEAR_LAST = re.compile(r"^(\d{1,2})\s*([-/.\s])\s*(\d{1,2})\s*\2\s*(\d{4})$")
_NO_YEAR = re.compile(r"^(\d{1,2})\s*([-/.])\s*(\d{1,2})$")
_ORDINAL = r"(\d{1,2})(?:st|nd|rd|th)?"
_DAY_MONTH = re.compile(rf"^{_ORDINAL}\s*(?:of\s+)?([a-z]+)\.?(?:,?\s*(\d{{4}}))?$")
_MONTH_DAY = re.compile(rf"^([a-z]+)\.?\s*{_ORDINAL},?(?:\s*(\d{{4}}))?$")


def _chinese_number(text: str) -> int | None:
    """Digits, or a number in Chinese numerals: 一九九五 (digit by digit), 十五, 二十, 三十一."""
    if text.isdigit():
        return int(text)
    if "十" not in text:
        digits = [_CN_DIGITS.get(ch) for ch in text]
        if None in digits:
            return None
        return int("".join(str(d) for d in digits))
    tens, _, ones = text.partition("十")
    if len(tens) > 1 or len(ones) > 1 or (tens and tens not in _CN_DIGITS) or (ones and ones not in _CN_DIGITS):
        return None
    return (_CN_DIGITS[tens] if tens else 1) * 10 + (_CN_DIGITS[ones] if ones else 0)


@functools.lru_cache(maxsize=1)
def _month_numbers() -> dict[str, int]:
    """English month names and abbreviations (Babel's data, both contexts), lower-case, plus 'sept'."""
    english = Locale.parse("en")
    names: dict[str, int] = {"sept": 9}
    for context in ("format", "stand-alone"):
        for width in ("wide", "abbreviated"):
            for number, name in english.months[context][width].items():
                names[name.casefold().rstrip(".")] = number
    return names


@functools.lru_cache(maxsize=16)
def day_first(locale: str) -> bool | None:
    """Whether the locale writes a numeric date day before month (True), month before day (False),
    or starts with the year (None: no habit for a date that ends with it)."""
    pattern = get_date_format("short", locale=locale).pattern
    positions = {field: pattern.find(field) for field in ("d", "M", "y")}
    if positions["y"] < min(positions["d"], positions["M"]):
        return None
    return positions["d"] < positions["M"]


def _order(first: int, second: int, locale: str, separator: str) -> tuple[int, int] | Unreadable:
    """(month, day) from two numbers of a year-last (or yearless) numeric date."""
    if separator == ".":
        return second, first  # 15.06.1995: dotted dates are day first everywhere they are written
    if first > 12 >= second:
        return second, first
    if second > 12 >= first:
        return first, second
    if first == second:
        return first, second
    habit = day_first(locale)
    if habit is None:
        return Unreadable("ambiguous")
    return (second, first) if habit else (first, second)


def _read(text: str, locale: str) -> Birthday | Unreadable:
    if match := _CHINESE.match(text):
        era, year_text, month_text, day_text = match.groups()
        numbers = [_chinese_number(part) if part else None for part in (year_text, month_text, day_text)]
        year, month, day = numbers
        if month is None or day is None or (year_text and year is None):
            return Unreadable("format")
        if era and year is not None:
            year += ROC_OFFSET
        return Birthday(month, day, year)
    if match := _YEAR_FIRST.match(text):
        year_text, _, month_text, day_text = match.groups()
        return Birthday(int(month_text), int(day_text), int(year_text))
    if match := _YEAR_LAST.match(text):
        first, separator, second, year_text = match.groups()
        ordered = _order(int(first), int(second), locale, separator.strip() or " ")
        return ordered if isinstance(ordered, Unreadable) else Birthday(*ordered, int(year_text))
    if match := _NO_YEAR.match(text):
        first, separator, second = match.groups()
        ordered = _order(int(first), int(second), locale, separator)
        return ordered if isinstance(ordered, Unreadable) else Birthday(*ordered)
    for pattern, day_group, month_group in ((_DAY_MONTH, 1, 2), (_MONTH_DAY, 2, 1)):
        if match := pattern.match(text):
            month = _month_numbers().get(match.group(month_group))
            if month is None:
                return Unreadable("format")
            year_text = match.group(3)
            return Birthday(month, int(match.group(day_group)), int(year_text) if year_text else None)
    return Unreadable("format")


def read_birthday(text: str, locale: str, *, year_required: bool = True) -> Birthday | Unreadable:
    """The birthday in `text` as typed by a member whose dates are formatted in Babel `locale`."""
    text = unicodedata.normalize("NFKC", text).strip().casefold()
    text = re.sub(r"\s+", " ", text).rstrip(".。")
    if not text or len(text) > 40:
        return Unreadable("format")
    found = _read(text, locale)
    if isinstance(found, Unreadable):
        return found
    try:
        date(found.year if found.year is not None else LEAP_YEAR, found.month, found.day)
    except ValueError:
        return Unreadable("no_such_day")
    if found.year is None and year_required:
        return Unreadable("year_needed")
    return found


def format_birthday(value: date, locale: str, *, year_known: bool = True) -> str:
    """A birthday as the member reads it: '15 Jun 1995', '1995年6月15日'; without the year '15 June', '6月15日'."""
    from babel.dates import format_date

    if year_known:
        return format_date(value, "medium", locale=locale)
    return format_skeleton("MMMMd", value, locale=locale)


__all__ = ["Birthday", "Unreadable", "day_first", "format_birthday", "read_birthday"]
