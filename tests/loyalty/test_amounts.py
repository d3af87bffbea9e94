"""The counter's amount parser: only plain ASCII amounts with up to two decimals become purchases."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from loyalbot.loyalty.amounts import parse_counter_amount
from loyalbot.loyalty.errors import AmountFormat, AmountTooLarge, InvalidAmount


@pytest.mark.parametrize(("typed", "amount"), [
    ("12.50", "12.50"), ("12,50", "12.50"), ("7", "7.00"), ("0.5", "0.50"), ("0,01", "0.01"),
    ("10000", "10000.00"), ("007.10", "7.10"),
])
def test_plain_amounts_are_read(typed, amount):
    assert parse_counter_amount(typed) == Decimal(amount)


@pytest.mark.parametrize("typed", [
    "1_000", "١٢٣", "５", "1E+2", "1e5", "1e2", "-3", "+3", "12.505", "1,000.50", "1.000,50", "1,000", "12.",
    ".5", "", " ", "12 50", " 12", "12 ", "1\u00a0000", "NaN", "Infinity", "0", "0.00", "12..5", "１２.５",
    "٣.٥", "12.5٠", "0x10", "1/2", "€12", "12€", "²",
])
def test_anything_else_is_refused(typed):
    with pytest.raises(AmountFormat) as refused:
        parse_counter_amount(typed)
    assert refused.value.code == "amount_format" and isinstance(refused.value, InvalidAmount)


def test_above_the_counter_limit_is_refused_with_the_limit():
    with pytest.raises(AmountTooLarge) as refused:
        parse_counter_amount("10000.01")
    assert refused.value.params["max"] == Decimal(10000)
    with pytest.raises(AmountTooLarge):
        parse_counter_amount("12.50", maximum=Decimal(10))


@given(st.decimals(min_value=Decimal("0.01"), max_value=Decimal("10000"), places=2))
def test_every_amount_in_range_written_either_way_reads_back(value):
    text = f"{value:.2f}"
    assert parse_counter_amount(text) == value
    assert parse_counter_amount(text.replace(".", ",")) == value


@given(st.text(max_size=12))
def test_whatever_is_typed_is_either_a_plain_amount_or_refused(text):
    try:
        amount = parse_counter_amount(text)
    except InvalidAmount:
        return
    # Accepted: exactly what an ASCII digit string with one optional separator means, and nothing else.
    assert set(text) <= set("0123456789.,") and text.count(".") + text.count(",") <= 1
    assert Decimal("0.01") <= amount <= Decimal("10000")
    assert amount == Decimal(text.replace(",", ".")).quantize(Decimal("0.01"))
