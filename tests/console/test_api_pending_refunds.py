"""The shop's refunds inside the return window: pending points go first, a repeat changes nothing, an unknown
purchase is a 404 that names it."""

from __future__ import annotations

import httpx
import pytest

from loyalbot.console.api import create_api_key, create_app
from loyalbot.loyalty import Loyalty
from loyalbot.loyalty.programme import Pending
from tests.console.helpers import business_snapshot as snapshot


@pytest.fixture
def programme(programme):
    return programme.model_copy(update={"pending": Pending(return_window_days=14)})


@pytest.fixture
async def shop(db, loyalty: Loyalty):
    key = await create_api_key(db, "till")
    app = create_app(db, loyalty)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://shop",
                                 headers={"Authorization": f"Bearer {key}"}) as client:
        yield client


async def test_a_refund_in_the_window_cancels_pending_points_and_a_repeat_changes_nothing(shop, loyalty, db):
    ann = await loyalty.register_member(telegram_id=1, terms_accepted=True)
    bought = await shop.post("/api/v1/purchases", json={"member_no": ann.member_no, "external_id": "t-1",
                                                        "amount": "40.00"})
    assert bought.status_code == 201 and bought.json()["points"] == 40
    assert (await shop.get(f"/api/v1/members/{ann.member_no}")).json()["points"] == 0  # pending, not spendable
    refund = {"purchase_external_id": "t-1", "refund_id": "rf-1", "amount": "15"}
    first = await shop.post("/api/v1/refunds", json=refund)
    assert first.status_code == 201
    assert {k: first.json()[k] for k in ("pending_cancelled", "points_taken", "shortfall", "repeated")} == {
        "pending_cancelled": 15, "points_taken": 0, "shortfall": 0, "repeated": False}
    before = await snapshot(db)
    again = await shop.post("/api/v1/refunds", json=refund)
    assert again.status_code == 200 and again.json()["repeated"] is True and again.json()["pending_cancelled"] == 15
    assert await snapshot(db) == before
    assert [p.points for p in await loyalty.pending_points(ann.id)] == [25]


async def test_a_refund_of_an_unknown_purchase_is_refused_and_changes_nothing(shop, loyalty, db):
    before = await snapshot(db)
    refused = await shop.post("/api/v1/refunds", json={"purchase_external_id": "nope", "refund_id": "rf-9",
                                                       "amount": "5"})
    assert refused.status_code == 404 and "purchase" in refused.text.lower()
    assert await snapshot(db) == before


async def test_the_member_look_up_shows_pending_points_and_when_the_next_become_spendable(shop, loyalty):
    from datetime import UTC, datetime, timedelta

    ann = await loyalty.register_member(telegram_id=1, terms_accepted=True)
    empty = (await shop.get(f"/api/v1/members/{ann.member_no}")).json()
    assert (empty["points"], empty["pending_points"], empty["pending_next_at"]) == (0, 0, None)
    first = datetime.now(UTC) - timedelta(days=3)
    for ref, amount, at in (("t-1", "40", first), ("t-2", "25", first + timedelta(days=1))):
        await shop.post("/api/v1/purchases", json={"member_no": ann.member_no, "external_id": ref, "amount": amount,
                                                   "occurred_at": at.isoformat()})
    looked_up = (await shop.get(f"/api/v1/members/{ann.member_no}")).json()
    assert (looked_up["points"], looked_up["pending_points"]) == (0, 65)
    assert datetime.fromisoformat(looked_up["pending_next_at"].replace("Z", "+00:00")) == first + timedelta(days=14)
    await shop.post("/api/v1/refunds", json={"purchase_external_id": "t-1", "refund_id": "rf-1", "amount": "40"})
    after = (await shop.get(f"/api/v1/members/{ann.member_no}")).json()
    assert after["pending_points"] == 25
    assert datetime.fromisoformat(after["pending_next_at"].replace("Z", "+00:00")) == first + timedelta(days=15)


async def test_a_refund_says_which_stamps_it_took_back(shop, loyalty):
    ann = await loyalty.register_member(telegram_id=1, terms_accepted=True)
    items = [{"sku": "latte", "category": "coffee", "quantity": 3, "amount": "9.00"}]
    await shop.post("/api/v1/purchases", json={"member_no": ann.member_no, "external_id": "t-1", "amount": "9.00",
                                               "items": items})
    refund = {"purchase_external_id": "t-1", "refund_id": "rf-1", "amount": "9.00"}
    first = (await shop.post("/api/v1/refunds", json=refund)).json()
    assert first["stamps_taken"] == {"coffee": 3} and first["bonuses_lost"] == []
    again = (await shop.post("/api/v1/refunds", json=refund)).json()
    assert again["repeated"] is True and again["stamps_taken"] == {}
    [card] = await loyalty.stamp_cards_of(ann.id)
    assert card.stamps == 0
