"""Limits before parsing: oversized bodies get 413 with a reason, and the key is checked before the body is read."""

from __future__ import annotations

import pytest

from tests.console.helpers import business_snapshot

MB = 1024 * 1024


class Body:
    """A request body streamed in 64 KiB chunks, counting how much of it the server pulled."""

    def __init__(self, size: int, chunk: bytes = b"{" + b" " * (64 * 1024 - 1)) -> None:
        self.size, self.chunk, self.pulled = size, chunk, 0

    async def __aiter__(self):
        while self.pulled < self.size:
            self.pulled += len(self.chunk)
            yield self.chunk


async def test_a_body_over_the_limit_is_refused_by_its_content_length(web, ann, db):
    before = await business_snapshot(db)
    response = await web.post("/api/v1/purchases", content=b"x" * 5000, headers={"Content-Type": "application/json"})
    assert response.status_code == 413
    assert response.json() == {"error": "too_large", "detail": "the request body is larger than the limit of 4096 bytes"}
    assert await business_snapshot(db) == before


async def test_a_chunked_body_without_content_length_is_counted_and_cut_off(web, ann, db):
    before = await business_snapshot(db)
    body = Body(100 * MB)
    response = await web.post("/api/v1/purchases", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 413 and response.json()["error"] == "too_large"
    assert body.pulled <= 2 * 64 * 1024  # it stopped reading just past the limit, not at 100 MB
    assert await business_snapshot(db) == before


@pytest.mark.parametrize("headers", [{"Authorization": ""}, {"Authorization": "Bearer lb_wrong"}])
async def test_the_key_is_checked_before_the_body_is_read(web, headers):
    body = Body(100 * MB)
    response = await web.post("/api/v1/purchases", content=body, headers={**headers, "Content-Type": "application/json"})
    assert response.status_code == 401 and response.json()["error"] == "unauthorized"
    assert body.pulled == 0


async def test_a_body_within_the_limit_goes_through(web, ann):
    padded = b'{"member_no": "%s", "external_id": "p-1", "amount": "9"%s}' % (ann.member_no.encode(), b" " * 3000)
    response = await web.post("/api/v1/purchases", content=padded, headers={"Content-Type": "application/json"})
    assert response.status_code == 201


async def test_console_and_api_answers_carry_security_headers(web, ann):
    await web.post("/console/signin", data={"name": "operator", "password": "s3cret-pass"})
    page = await web.get("/console")
    api = await web.get(f"/api/v1/members/{ann.member_no}")
    refused = await web.get("/api/v1/members/123456782", headers={"Authorization": ""})
    for response in (page, api, refused):
        csp = response.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in csp and "default-src 'none'" in csp
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["cache-control"] == "no-store"
    assert page.status_code == 200 and api.status_code == 200
    docs = await web.get("/api/docs")
    assert docs.headers["x-frame-options"] == "DENY" and "script-src 'self'" in docs.headers["content-security-policy"]


async def test_the_console_checks_the_user_name(web):
    for user in ("", "Operator"):  # the fixture allows 3 failures per address
        refused = await web.post("/console/signin", data={"name": user, "password": "s3cret-pass"})
        assert refused.status_code == 401 and "Wrong name or password." in refused.text
    signed = await web.post("/console/signin", data={"name": "operator", "password": "s3cret-pass"})
    assert signed.status_code == 303 and (await web.get("/console")).status_code == 200
