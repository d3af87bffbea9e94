"""The HTTP side: the shop systems' API (purchases, refunds, member look-up), the operator's dashboard
(/console, HTTP Basic with LOYALBOT_CONSOLE_PASSWORD), /healthz and /metrics.

Shop systems authenticate with an API key (`Authorization: Bearer lb_...` or `X-Api-Key`); only a
SHA-256 hash of each key is stored. Purchases and refunds are idempotent on their external ids: a
retry returns the first result with `"repeated": true`. A refusal is a 4xx with a JSON body
`{"error": code, "detail": text}`; nothing is changed by a refused call.
"""


import hashlib
import logging
import secrets
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any

import jinja2
from fastapi import Depends, FastAPI, Header, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse
from fastapi.security import HTTPBasic, HTTPBasicCredentials
from pydantic import BaseModel, Field
from sqlmodel import select

from console.dashboard import build_dashboard, prometheus_text
from loyalty import Loyalty
from loyalty.errors import Refusal
from storage import Db, utcnow
from storage.models import ApiKey

log = logging.getLogger(__name__)
KEY_PREFIX = "lb_"


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


async def create_api_key(db: Db, name: str) -> str:
    """Make a new key for a shop system; the key itself is shown once and never stored."""
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    async with db.transaction() as s:
        s.add(ApiKey(name=name[:100], prefix=key[:10], key_hash=hash_key(key)))
    return key


async def revoke_api_key(db: Db, prefix: str) -> int:
    async with db.transaction() as s:
        keys = (await s.execute(select(ApiKey).where(ApiKey.prefix == prefix, ApiKey.revoked_at.is_(None)))).scalars()
        count = 0
        for key in keys:
            key.revoked_at = utcnow()
            s.add(key)
            count += 1
        return count


class PurchaseIn(BaseModel):
    member_no: str = Field(min_length=1, max_length=20)
    external_id: str = Field(min_length=1, max_length=128)
    amount: Decimal
    currency: str | None = Field(default=None, min_length=3, max_length=3)
    occurred_at: datetime | None = None


class RefundIn(BaseModel):
    purchase_external_id: str = Field(min_length=1, max_length=128)
    refund_id: str = Field(min_length=1, max_length=128)
    amount: Decimal


def create_app(db: Db, loyalty: Loyalty, *, console_password: str | None = None) -> FastAPI:
    """The FastAPI application: the shop systems' API, the operator's dashboard, /healthz and /metrics."""
    app = FastAPI(title="loyalbot API", version="1", docs_url="/api/docs", openapi_url="/api/openapi.json")
    pages = jinja2.Environment(loader=jinja2.FileSystemLoader(Path(__file__).with_name("templates")),
                               autoescape=True)
    basic = HTTPBasic(auto_error=False)

    async def operator(credentials: Annotated[HTTPBasicCredentials | None, Depends(basic)]) -> None:
        if not console_password:
            raise HTTPException(503, detail="the console is off: set LOYALBOT_CONSOLE_PASSWORD to turn it on")
        given = credentials.password.encode() if credentials else b""
        if credentials is None or not secrets.compare_digest(given, console_password.encode()):
            log.warning("console: refused a sign-in")
            raise HTTPException(401, detail="sign in as operator", headers={"WWW-Authenticate": "Basic"})

    @app.get("/console", response_class=HTMLResponse, dependencies=[Depends(operator)])
    async def dashboard(days: int = 30) -> HTMLResponse:
        board = await build_dashboard(loyalty, period_days=max(1, min(days, 3650)))
        html = pages.get_template("dashboard.html").render(board=board, programme=loyalty.programme.programme.name)
        return HTMLResponse(html)

    @app.get("/metrics", response_class=PlainTextResponse)
    async def metrics() -> PlainTextResponse:
        return PlainTextResponse(prometheus_text(await build_dashboard(loyalty)),
                                 media_type="text/plain; version=0.0.4")

    @app.exception_handler(Refusal)
    async def refused(_request: Request, exc: Refusal) -> JSONResponse:
        log.info("API refused: %s", exc.code)
        return JSONResponse({"error": exc.code, "detail": exc.detail}, status_code=exc.http_status)

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'][1:])}: {e['msg']}" for e in exc.errors())
        log.info("API request rejected: %s", problems[:200])
        return JSONResponse({"error": "invalid_request", "detail": problems}, status_code=422)

    async def shop(authorization: Annotated[str | None, Header()] = None,
                   x_api_key: Annotated[str | None, Header()] = None) -> str:
        key = x_api_key or (authorization or "").removeprefix("Bearer ").strip()
        if not key:
            raise HTTPException(401, detail="an API key is required (Authorization: Bearer ...)")
        async with db.read() as s:
            found = (await s.execute(select(ApiKey).where(ApiKey.key_hash == hash_key(key)))).scalar_one_or_none()
        if found is None or found.revoked_at is not None:
            log.warning("API call with an unknown or revoked key")
            raise HTTPException(401, detail="unknown or revoked API key")
        return found.name

    Shop = Annotated[str, Depends(shop)]

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        try:
            await db.ping()
        except Exception as exc:  # report, don't crash: a probe wants a status code
            raise HTTPException(503, detail=f"database unreachable: {type(exc).__name__}") from None
        return {"status": "ok"}

    @app.post("/api/v1/purchases")
    async def post_purchase(body: PurchaseIn, shop_name: Shop) -> JSONResponse:
        member = await loyalty.member_by_number(body.member_no)
        result = await loyalty.award_purchase(member.id, external_id=body.external_id, amount=body.amount,
                                              currency=body.currency, occurred_at=body.occurred_at,
                                              source=f"api:{shop_name}"[:32])
        return JSONResponse(status_code=200 if result.repeated else 201, content={
            "purchase_id": result.purchase.external_id,
            "points": result.points,
            "repeated": result.repeated,
            "tier": result.tier_change.to_tier if result.tier_change else None,
        })

    @app.post("/api/v1/refunds")
    async def post_refund(body: RefundIn, shop_name: Shop) -> JSONResponse:
        result = await loyalty.refund_purchase(body.purchase_external_id, refund_id=body.refund_id,
                                               amount=body.amount)
        return JSONResponse(status_code=200 if result.repeated else 201, content={
            "refund_id": result.refund.external_id, "points_taken": result.points_taken,
            "shortfall": result.shortfall, "repeated": result.repeated,
        })

    @app.get("/api/v1/members/{member_no}")
    async def get_member(member_no: str, shop_name: Shop) -> dict[str, Any]:
        member = await loyalty.member_by_number(member_no)
        return {"member_no": member.member_no, "first_name": member.first_name, "tier": member.tier,
                "points": member.balance, "language": member.language}

    return app
