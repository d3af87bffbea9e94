"""The shop systems' HTTP API: purchases and refunds are idempotent, bad payloads get a 4xx with a reason."""

from __future__ import annotations

import httpx
import pytest

from loyalbot.console.api import create_api_key, create_app, revoke_api_key
from tests.console.helpers import business_snapshot as snapshot


@pytest.fixture
async def shop(db, loyalty):
    key = await create_api_key(db, "till")
    app = create_app(db, loyalty)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://shop",
                                 headers={"Authorization": f"Bearer {key}"}) as client:
        client.key = key  # type: ignore[attr-defined]
        yield client


async def test_a_purchase_posted_twice_awards_once(shop, loyalty):
    ann = await loyalty.register_member(telegram_id=1, terms_accepted=True)
    body = {"member_no": ann.member_no, "external_id": "till-9-0001", "amount": "40.00"}
    first = await shop.post("/api/v1/purchases", json=body)
    again = await shop.post("/api/v1/purchases", json=body)
    assert (first.status_code, first.json()["points"], first.json()["repeated"]) == (201, 40, False)
    assert (again.status_code, again.json()["repeated"]) == (200, True)
    assert (await loyalty.member(ann.id)).balance == 40
    refund = {"purchase_external_id": "till-9-0001", "refund_id": "rf-1", "amount": "10"}
    assert (await shop.post("/api/v1/refunds", json=refund)).json()["points_taken"] == 10
    assert (await shop.post("/api/v1/refunds", json=refund)).json()["repeated"] is True
    looked_up = (await shop.get(f"/api/v1/members/{ann.member_no}")).json()
    assert looked_up["points"] == 30


@pytest.mark.parametrize(
    ("body", "status", "error"),
    [
        ({"member_no": "123456789", "external_id": "x", "amount": "5"}, 404, "unknown_member"),
        ({"member_no": "MEMBER", "external_id": "x", "amount": "-5"}, 422, None),
        ({"external_id": "x", "amount": "5"}, 422, "invalid_request"),
        ({"member_no": "M", "external_id": "x", "amount": "lots"}, 422, "invalid_request"),
        ({"member_no": "M", "external_id": "", "amount": "5"}, 422, "invalid_request"),
        ({"member_no": "M", "external_id": "x", "amount": "5", "currency": "USD"}, 422, "invalid_amount"),
        ({"member_no": "M", "external_id": "dup", "amount": "6"}, 409, "purchase_conflict"),
    ],
)
async def test_bad_payloads_get_a_reason_and_change_nothing(shop, loyalty, db, body, status, error):
    ann = await loyalty.register_member(telegram_id=1, terms_accepted=True)
    await loyalty.award_purchase(ann.id, external_id="dup", amount="5")
    if body.get("member_no") in ("M", "MEMBER"):
        body = {**body, "member_no": ann.member_no}
    before = await snapshot(db)
    response = await shop.post("/api/v1/purchases", json=body)
    assert response.status_code == status
    if error:
        assert response.json()["error"] == error
    assert response.json()["detail"]
    assert await snapshot(db) == before


async def test_keys_are_required_and_revocable(shop, db):
    assert (await shop.get("/healthz")).json() == {"status": "ok"}
    anonymous = await shop.get("/api/v1/members/123456782", headers={"Authorization": ""})
    assert anonymous.status_code == 401
    wrong = await shop.get("/api/v1/members/123456782", headers={"Authorization": "Bearer lb_nope"})
    assert wrong.status_code == 401
    assert await revoke_api_key(db, shop.key[:10]) == 1
    assert (await shop.get("/api/v1/members/123456782")).status_code == 401


async def test_a_purchase_with_coffee_items_stamps_the_card_and_says_so(shop, loyalty):
    ann = await loyalty.register_member(telegram_id=1, terms_accepted=True)
    body = {"member_no": ann.member_no, "external_id": "till-1", "amount": "12.00", "store": "centraal",
            "items": [{"sku": "latte", "category": "coffee", "quantity": 3, "amount": "9.00"},
                      {"sku": "croissant", "category": "pastry", "amount": "3"}]}
    first = await shop.post("/api/v1/purchases", json=body)
    assert first.status_code == 201
    assert first.json()["stamps"] == [{"card": "coffee", "stamps": 3, "needed": 10, "coupons": []}]
    again = await shop.post("/api/v1/purchases", json=body)
    assert again.json()["repeated"] is True
    [progress] = await loyalty.stamp_cards_of(ann.id)
    assert progress.stamps == 3


@pytest.mark.parametrize(("items", "store", "named"), [
    ([{"sku": "latte", "quantity": 0}], None, "items.0.quantity"),
    ([{"quantity": 2}], None, "needs a sku or a category"),
    ([{"sku": "latte", "amount": "-1"}], None, "items.0.amount"),
    ([{"sku": "latte", "colour": "red"}], None, "items.0.colour"),
    ([{"sku": "latte", "amount": "50"}], None, "add up to more"),
    ([{"sku": "latte"}], "the big one", "store"),
    ({"sku": "latte"}, None, "items"),
])
async def test_items_or_a_store_that_cannot_be_read_get_a_reason_and_change_nothing(shop, loyalty, db, items,
                                                                                      store, named):
    ann = await loyalty.register_member(telegram_id=1, terms_accepted=True)
    before = await snapshot(db)
    body = {"member_no": ann.member_no, "external_id": "till-1", "amount": "12", "items": items, "store": store}
    response = await shop.post("/api/v1/purchases", json=body)
    assert response.status_code == 422
    assert named in response.json()["detail"]
    assert await snapshot(db) == before
