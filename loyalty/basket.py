"""What a purchase carried besides its amount: the store it was made in and its items (SKU, category,
quantity, amount), as the shop's API sends them. Bonuses per store or category and stamp cards read them."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from loyalbot.loyalty import errors
from loyalbot.loyalty.amounts import parse_amount

CODE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:/-]{0,63}$")  # a store, SKU or category code
MAX_ITEMS = 200
MAX_QUANTITY = 1000


@dataclass(frozen=True)
class Item:
    sku: str | None
    category: str | None
    quantity: int
    amount: Decimal | None


@dataclass(frozen=True)
class Basket:
    store: str | None = None
    items: tuple[Item, ...] = ()


def _code(value: Any, field: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not CODE.match(value):
        raise errors.InvalidItems(f"{field} must be a code of letters, digits and _.:/- (at most 64)", field=field)
    return value


def read_basket(store: Any, items: Sequence[Mapping[str, Any]] | None, amount: Decimal) -> Basket:
    """The store and items checked: codes that are codes, whole positive quantities, item amounts that
    do not add up to more than the purchase. An InvalidItems refusal names the first field that is wrong."""
    checked = []
    if items is not None and not isinstance(items, list | tuple):
        raise errors.InvalidItems("items must be a list", field="items")
    if len(items or ()) > MAX_ITEMS:
        raise errors.InvalidItems(f"at most {MAX_ITEMS} items", field="items")
    for n, item in enumerate(items or ()):
        where = f"items[{n}]"
        if not isinstance(item, Mapping):
            raise errors.InvalidItems(f"{where} must be an object", field=where)
        if unknown := set(item) - {"sku", "category", "quantity", "amount"}:
            raise errors.InvalidItems(f"{where}.{sorted(unknown)[0][:32]} is not a field of an item", field=where)
        sku, category = _code(item.get("sku"), f"{where}.sku"), _code(item.get("category"), f"{where}.category")
        if sku is None and category is None:
            raise errors.InvalidItems(f"{where} needs a sku or a category", field=where)
        quantity = item.get("quantity", 1)
        if isinstance(quantity, bool) or not isinstance(quantity, int) or not 1 <= quantity <= MAX_QUANTITY:
            raise errors.InvalidItems(f"{where}.quantity must be a whole number from 1 to {MAX_QUANTITY}",
                                      field=f"{where}.quantity")
        try:
            line = None if item.get("amount") is None else parse_amount(item["amount"])
        except errors.InvalidAmount:
            raise errors.InvalidItems(f"{where}.amount must be an amount above zero with at most two decimals",
                                      field=f"{where}.amount") from None
        checked.append(Item(sku, category, quantity, line))
    if sum(i.amount or 0 for i in checked) > amount:
        raise errors.InvalidItems("the items' amounts add up to more than the purchase's amount", field="items")
    return Basket(store=_code(store, "store"), items=tuple(checked))


__all__ = ["Basket", "Item", "read_basket"]
