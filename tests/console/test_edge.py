"""Every API input is checked at the edge: a clear 4xx naming the field, never a 500, and nothing changes."""

from __future__ import annotations

import json

import pytest

from tests.console.helpers import business_snapshot


async def post(client, url, body):
    """POST `body` as JSON with \\u escapes, as a shop might (a lone surrogate cannot be sent as UTF-8)."""
    return await client.post(url, content=json.dumps(body), headers={"Content-Type": "application/json"})


def purchase(ann, **fields):
    return {"member_no": ann.member_no, "external_id": "till-1", "amount": "12.50", **fields}


@pytest.mark.parametrize("when", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-14:00",
                                  "1999-12-31T23:59:59Z", "2150-01-01T00:00:00Z"])
async def test_purchase_dates_outside_a_sane_window_are_refused_naming_the_field(web, ann, db, when):
    before = await business_snapshot(db)
    response = await web.post("/api/v1/purchases", json=purchase(ann, occurred_at=when))
    assert response.status_code == 422
    assert response.json()["error"] == "invalid_request" and "occurred_at" in response.json()["detail"]
    assert await business_snapshot(db) == before


async def test_a_purchase_dated_today_with_an_offset_is_accepted(web, ann, loyalty):
    response = await web.post("/api/v1/purchases", json=purchase(ann, occurred_at="2026-01-05T10:00:00+08:00"))
    assert response.status_code == 201 and response.json()["points"] == 12
    assert (await loyalty.member(ann.id)).balance == 12


@pytest.mark.parametrize("field", ["external_id", "refund_id", "purchase_external_id"])
@pytest.mark.parametrize("bad", ["a\x00b", "line\nbreak", "bell\x07", "\ud800"])
async def test_control_characters_in_ids_are_refused_with_a_clear_message(web, ann, loyalty, db, field, bad):
    await loyalty.award_purchase(ann.id, external_id="p1", amount="40")
    before = await business_snapshot(db)
    if field == "external_id":
        response = await post(web, "/api/v1/purchases", purchase(ann, external_id=bad))
    else:
        body = {"purchase_external_id": "p1", "refund_id": "rf-1", "amount": "5", field: bad}
        response = await post(web, "/api/v1/refunds", body)
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert field in detail and "control characters" in detail
    assert await business_snapshot(db) == before


@pytest.mark.parametrize("amount", ["1_000", "١٢٣", "５", "1E+2", "1e2", "+5", "-5", "0", "0.00", "12.505",
                                    "12.", ".5", " 5", "5 ", "NaN", "Infinity", "0x10", "1,50", "1000000.01",
                                    12.5, True, None, [], {}])
async def test_amounts_accept_only_ascii_digits_with_two_decimals(web, ann, db, amount):
    before = await business_snapshot(db)
    response = await web.post("/api/v1/purchases", json=purchase(ann, amount=amount))
    assert response.status_code == 422, response.text
    assert response.json()["error"] == "invalid_request" and "amount" in response.json()["detail"]
    assert await business_snapshot(db) == before


@pytest.mark.parametrize(("amount", "points"), [("12.50", 12), ("7", 7), ("0.99", 0), ("100.5", 100), (30, 30)])
async def test_plain_amounts_are_accepted(web, ann, amount, points):
    response = await web.post("/api/v1/purchases", json=purchase(ann, amount=amount))
    assert response.status_code == 201 and response.json()["points"] == points


async def test_a_body_that_is_not_json_gets_the_one_error_shape(web, db):
    before = await business_snapshot(db)
    for content in (b"{not json", b"[1, 2]", b'"text"', b"\xff\xfe"):
        response = await web.post("/api/v1/purchases", content=content, headers={"Content-Type": "application/json"})
        assert 400 <= response.status_code < 500
        assert set(response.json()) == {"error", "detail"}
    assert await business_snapshot(db) == before


async def test_every_refusal_has_the_error_body(web, ann):
    cases = [
        (await web.get("/api/v1/members/123456789", headers={"Authorization": ""}), 401, "unauthorized"),
        (await web.get("/api/v1/members/123456782"), 404, "unknown_member"),
        (await web.get("/api/v1/members/abc"), 422, "invalid_request"),
        (await web.get("/nowhere"), 404, "not_found"),
        (await web.put("/api/v1/purchases", json={}), 405, "method_not_allowed"),
        (await web.post("/api/v1/purchases", content=b"x" * 5000), 413, "too_large"),
    ]
    for response, status, code in cases:
        assert (response.status_code, response.json()["error"]) == (status, code), response.text
        assert response.json()["detail"]
