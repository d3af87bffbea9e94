"""Phone numbers typed at the counter or shared from Telegram, reduced to one comparable form (E.164).

Telegram shares a contact's number in full international form, usually without the "+"; staff type
what the member tells them: "06 1234 5678", "+31 6 12345678", "0031612345678". `phonenumbers` (the
port of Google's libphonenumber) reads all of these, with the shop's country as the default region.
"""

from __future__ import annotations

import re

import phonenumbers

# What a typed phone number may contain: digits and the usual punctuation, at least 6 digits.
_PHONE_LIKE = re.compile(r"^\+?[0-9 ().\-/]{6,40}$", re.ASCII)


def looks_like_phone(text: str) -> bool:
    """Whether `text` is meant as a phone number (and not a name or a member number)."""
    return bool(_PHONE_LIKE.fullmatch(text.strip())) and sum(ch.isdigit() for ch in text) >= 6


def normalise_phone(text: str | None, region: str | None) -> str | None:
    """`text` as E.164 ("+31612345678"), or None when it is not a possible phone number.

    `region` (ISO 3166, e.g. "NL") is where a number without a country code is read as dialled.
    A stored Telegram number without "+" is read as international first (that is how Telegram sends it).
    """
    if not text:
        return None
    text = text.strip()[:40]
    if not looks_like_phone(text):
        return None
    attempts: list[tuple[str, str | None]] = [(text, region)]
    if not text.startswith("+"):
        attempts.append(("+" + text, None))  # no local reading: perhaps international without the "+"
    for candidate, default in attempts:
        try:
            number = phonenumbers.parse(candidate, default)
        except phonenumbers.NumberParseException:
            continue
        if phonenumbers.is_possible_number(number):
            return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    return None


def stored_forms(e164: str) -> list[str]:
    """The ways a member's phone may have been stored for this number: with and without "+"."""
    return [e164, e164.removeprefix("+")]


__all__ = ["looks_like_phone", "normalise_phone", "stored_forms"]
