"""Codes people read aloud or type (coupon codes, member numbers), and the idempotency keys callers send."""

from __future__ import annotations

import secrets
from typing import Any

from loyalbot.loyalty.errors import InvalidSetting

# Crockford's base32: no I, L, O or U, so nothing is mistaken for 1, 0 or V when read aloud.
ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_READ_AS = {"O": "0", "I": "1", "L": "1"}
COUPON_CHARS = 16  # 16 x 5 bits = 80 bits of randomness


def new_coupon_code() -> str:
    """A fresh coupon code: 80 random bits, shown in groups of four (e.g. 7KQ2-M9XD-4H0P-RT3C)."""
    raw = "".join(secrets.choice(ALPHABET) for _ in range(COUPON_CHARS))
    return "-".join(raw[i : i + 4] for i in range(0, COUPON_CHARS, 4))


def normalise_coupon_code(text: str) -> str | None:
    """The canonical form of a typed or scanned coupon code, or None if it cannot be one."""
    cleaned = "".join(ch for ch in text.upper() if ch not in " -_")
    if cleaned.startswith("LBC:"):
        cleaned = cleaned[4:]
    cleaned = "".join(_READ_AS.get(ch, ch) for ch in cleaned)
    if len(cleaned) != COUPON_CHARS or any(ch not in ALPHABET for ch in cleaned):
        return None
    return "-".join(cleaned[i : i + 4] for i in range(0, COUPON_CHARS, 4))


def luhn_digit(digits: str) -> str:
    """The Luhn check digit for a string of digits (catches one mistyped digit and most swaps)."""
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char)
        if index % 2 == 0:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return str((10 - total % 10) % 10)


def member_no_from(number: int) -> str:
    """A member number: eight digits and a check digit."""
    body = f"{number:08d}"
    return body + luhn_digit(body)


def new_member_no() -> str:
    """A random member number for a new member (numbers from 90000000 up are kept for seeded demo data)."""
    return member_no_from(secrets.randbelow(80_000_000) + 10_000_000)


SEEDED_MEMBER_BASE = 90_000_000


def valid_member_no(text: str) -> bool:
    text = text.strip()
    return len(text) == 9 and text.isdigit() and luhn_digit(text[:8]) == text[8]


def member_qr_payload(member_no: str) -> str:
    """What the member card's QR code holds; staff scan it at the counter."""
    return f"LBM:{member_no}"


def coupon_qr_payload(code: str) -> str:
    return f"LBC:{code}"


def check_key(key: Any, what: str) -> str:
    """An idempotency key as sent (a purchase's external id, a refund id, a request id): 1-128 characters."""
    if not isinstance(key, str) or not key.strip() or len(key) > 128:
        raise InvalidSetting(f"{what} must be 1-128 characters", setting=what)
    return key.strip()
