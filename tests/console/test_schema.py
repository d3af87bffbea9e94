"""The OpenAPI document is one a client generator can use, and the API keeps to it.

schemathesis drives `loyalbot api` (a real process, on SQLite and PostgreSQL) from the document; a
hypothesis property feeds arbitrary JSON to every operation in-process: no answer >= 500, and no
refused call changes the store.
"""

from __future__ import annotations

import asyncio
import json
import re
from urllib.parse import quote

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from loyalbot.console.api import create_api_key
from loyalbot.loyalty import Loyalty, load_programme
from loyalbot.storage import Db
from tests.console.helpers import business_snapshot
from tests.console.test_process import start_api, stop_api

OPERATIONS = {("POST", "/api/v1/purchases"), ("POST", "/api/v1/refunds"), ("GET", "/api/v1/members/{member_no}"),
              ("GET", "/healthz"), ("GET", "/readyz"), ("GET", "/metrics")}


async def test_the_document_declares_security_statuses_and_one_error_body(web):
    doc = (await web.get("/api/openapi.json")).json()
    assert doc["components"]["securitySchemes"]["bearer"] == {
        "type": "http", "scheme": "bearer", "description": "Authorization: Bearer lb_..."}
    assert {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops} == OPERATIONS
    error = {"$ref": "#/components/schemas/ErrorBody"}
    expected = {"/api/v1/purchases": {"200", "201", "400", "401", "404", "409", "410", "413", "422", "429"},
                "/api/v1/refunds": {"200", "201", "400", "401", "404", "409", "410", "413", "422", "429"},
                "/api/v1/members/{member_no}": {"200", "401", "404", "422", "429"}}
    for path, statuses in expected.items():
        (operation,) = doc["paths"][path].values()
        assert {"bearer": []} in operation["security"]
        assert set(operation["responses"]) == statuses
        for status, response in operation["responses"].items():
            schema = response["content"]["application/json"]["schema"]
            assert schema == error if status >= "400" else schema["$ref"].endswith("Out")
    amount = doc["components"]["schemas"]["PurchaseIn"]["properties"]["amount"]["anyOf"]
    assert {"type": "integer", "exclusiveMinimum": 0, "maximum": 1000000} in [
        {k: (int(v) if isinstance(v, float) else v) for k, v in a.items()} for a in amount]
    pattern = re.compile(next(a["pattern"] for a in amount if a["type"] == "string"))
    assert [bool(pattern.match(t)) for t in ("12.50", "0.05", "0", "0.00", "1E+2", "1_000")] == [
        True, True, False, False, False, False]


async def test_the_docs_page_works_offline_from_shipped_files(web):
    page = await web.get("/api/docs")
    assert page.status_code == 200
    assets = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert assets and all(a.startswith("/api/static/") for a in assets)  # no CDN
    for asset in assets:
        served = await web.get(asset)
        assert served.status_code == 200 and len(served.content) > 100
    bundle = await web.get("/api/static/swagger-ui/swagger-ui-bundle.js")
    assert "SwaggerUIBundle" in bundle.text and "javascript" in bundle.headers["content-type"]


@pytest.fixture
def served(store_url, tmp_path):
    """`loyalbot api` on a store holding a member with a purchase; yields (base_url, key, member_no)."""

    async def prepare() -> tuple[str, str]:
        db = Db(store_url)
        try:
            loyalty = Loyalty(db, load_programme())
            await loyalty.sync_programme()
            ann = await loyalty.register_member(telegram_id=1, terms_accepted=True)
            await loyalty.award_purchase(ann.id, external_id="p1", amount="40")
            return await create_api_key(db, "till"), ann.member_no
        finally:
            await db.dispose()

    key, member_no = asyncio.run(prepare())
    base, process = start_api(store_url, tmp_path, lookup_limit="100000")
    try:
        yield base, key, member_no
    finally:
        stop_api(process)


def test_schemathesis_finds_no_server_error_and_no_schema_violation(served):
    base, key, member_no = served
    schema = schemathesis.openapi.from_url(f"{base}/api/openapi.json")
    checks = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance,
              response_headers_conformance]
    auth = {"Authorization": f"Bearer {key}", "X-Api-Key": key}  # both: schemathesis would fill one in at random
    # Random data rarely hits a real member or purchase: the successful paths get explicit cases too.
    known = {
        "/api/v1/members/{member_no}": [{"path_parameters": {"member_no": member_no}}],
        "/api/v1/purchases": [{"body": {"member_no": member_no, "external_id": "p2", "amount": "12.50"}}] * 2,
        "/api/v1/refunds": [{"body": {"purchase_external_id": "p1", "refund_id": "r1", "amount": "5"}}] * 2,
        "/healthz": [{}], "/readyz": [{}], "/metrics": [{}],
    }
    seen = set()
    for result in schema.get_all_operations():
        operation = result.ok()
        seen.add((operation.method.upper(), operation.path))
        for fields in known[operation.path]:
            response = operation.Case(media_type="application/json" if "body" in fields else None,
                                      **fields).call_and_validate(headers=auth,
                                                                  checks=checks)
            assert response.status_code in (200, 201), response.text

        @given(case=operation.as_strategy())
        @settings(max_examples=40, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        def run(case) -> None:
            case.call_and_validate(headers=auth, checks=checks)

        run()
    assert seen == OPERATIONS


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
                    max_leaves=8)
AMOUNTS = st.sampled_from(["12.50", "1", "0", "-1", "1E+2", "1_000", "５", "0.001", 5, 2.5]) | JSON
IDS = st.sampled_from(["p1", "p2", "", "a\x00b", " ", "x" * 129]) | JSON


def bodies(member_no: str) -> st.SearchStrategy:
    purchase = st.fixed_dictionaries(
        {}, optional={"member_no": st.sampled_from([member_no, "123456782", "LBM:" + member_no]) | JSON,
                      "external_id": IDS, "amount": AMOUNTS, "currency": st.sampled_from(["EUR", "USD", "eu"]) | JSON,
                      "occurred_at": st.sampled_from(["2026-01-01T10:00:00+01:00", "0001-01-01T00:00:00+01:00",
                                                      "2026-01-01T10:00:00"]) | JSON})
    refund = st.fixed_dictionaries(
        {}, optional={"purchase_external_id": IDS, "refund_id": IDS, "amount": AMOUNTS})
    return st.one_of(
        st.tuples(st.just("POST"), st.just("/api/v1/purchases"), purchase | JSON),
        st.tuples(st.just("POST"), st.just("/api/v1/refunds"), refund | JSON),
        st.tuples(st.just("GET"), (st.text(max_size=20) | st.just(member_no)).map(
            lambda t: "/api/v1/members/" + quote(t, safe="")), st.none()),
    )


@settings(max_examples=150, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
async def test_arbitrary_json_never_gets_a_server_error_nor_changes_anything_when_refused(web, db, ann, data):
    method, url, body = data.draw(bodies(ann.member_no))
    before = await business_snapshot(db)
    content = None if body is None else json.dumps(body).encode()
    try:
        response = await web.request(method, url, content=content, headers={"Content-Type": "application/json"})
    except httpx.InvalidURL:
        return  # a path httpx itself will not send
    assert response.status_code < 500, response.text
    assert set(response.json()) >= {"error", "detail"} if response.status_code >= 400 else response.json()
    if response.status_code >= 400:
        assert await business_snapshot(db) == before
