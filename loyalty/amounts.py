"""Money amounts: the services' check of any amount, and one strict parser for amounts typed at the counter.

`parse_amount` is what every service accepts (a positive amount of at most two decimals, up to MAX_AMOUNT,
from a number or a string). `parse_counter_amount` is what a chat command that takes an amount accepts.

What staff may type is deliberately narrow, because a lenient parser turns slips into real purchases:
``Decimal("1e5")`` is 100000, ``int("1_000")`` is 1000 and ``Decimal("١٢٣")`` is 123. Accepted are ASCII
digits with at most one decimal separator ("." or, as typed in much of Europe, ",") followed by one or
two digits; nothing else: no sign, exponent, underscore, grouping, space or digits of other scripts.
(The shop API validates its JSON amounts on its own side.)
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Any

from loyalbot.loyalty.errors import AmountFormat, AmountTooLarge, InvalidAmount

MAX_AMOUNT = Decimal("1000000")
DEFAULT_MAX = Decimal("10000")
# re.ASCII: \d would otherwise match Arabic-Indic, full-width and other digits; written out to be plain.
_AMOUNT = re.compile(r"(?P<units>[0-9]{1,9})(?:[.,](?P<cents>[0-9]{1,2}))?", re.ASCII)


def parse_amount(value: Any) -> Decimal:
    """A positive money amount with at most two decimals, or InvalidAmount."""
    if isinstance(value, bool) or value is None:
        raise InvalidAmount("the amount is missing")
    try:
        amount = Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        raise InvalidAmount(f"{str(value)[:20]!r} is not a number") from None
    if not amount.is_finite() or amount <= 0:
        raise InvalidAmount("the amount must be above zero")
    if amount > MAX_AMOUNT:
        raise InvalidAmount(f"the amount is above the limit of {MAX_AMOUNT}")
    if amount != amount.quantize(Decimal("0.01")):
        raise InvalidAmount("the amount has more than two decimals")
    return amount.quantize(Decimal("0.01"))


def parse_counter_amount(text: str, *, maximum: Decimal = DEFAULT_MAX) -> Decimal:
    """The amount in `text` (e.g. "12.50", "12,50", "7"), quantized to cents, or a refusal saying why not.

    Raises AmountFormat for anything but plain digits with an optional separator and one or two decimals,
    AmountTooLarge above `maximum`; zero is refused as a format error (an amount must be above zero).
    """
    match = _AMOUNT.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        raise AmountFormat("use digits with at most one decimal point or comma and two decimals",
                           max=maximum)
    amount = Decimal(f"{match['units']}.{match['cents'] or '0'}").quantize(Decimal("0.01"))
    if amount <= 0:
        raise AmountFormat("the amount must be above zero", max=maximum)
    if amount > maximum:
        raise AmountTooLarge(f"the amount is above the counter's limit of {maximum}", max=maximum)
    return amount


__all__ = ["DEFAULT_MAX", "MAX_AMOUNT", "parse_amount", "parse_counter_amount"]
