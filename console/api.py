"""The HTTP side: the shop systems' API (purchases, refunds, member look-up), the operator console
(/console, console/pages: operators sign in with a name and password), /healthz, /readyz and /metrics.

Shop systems authenticate with an API key (`Authorization: Bearer lb_...` or `X-Api-Key`); only a
SHA-256 hash of each key is stored. Purchases and refunds are idempotent on their external ids: a
retry returns the first result with `"repeated": true`. A refusal is a 4xx with a JSON body
`{"error": code, "detail": text}`; nothing is changed by a refused call.

Limits come before parsing: `HttpGuard` (an ASGI middleware) refuses a body over the size limit with
413 (counting bytes as they arrive, so chunked bodies without Content-Length are held to it too) and
checks the API key before the body is read. Wrong passwords and keys, and member look-ups, are
throttled per client address (and look-ups per key) with 429 and Retry-After.
"""

import logging
import re
import secrets
import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import Depends, FastAPI, Request, Security
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse
from fastapi.security import APIKeyHeader, HTTPBearer
from fastapi.staticfiles import StaticFiles
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    WithJsonSchema,
    model_validator,
)
from sqlmodel import select
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from loyalbot.chat import logids
from loyalbot.chat.metrics import Metrics
from loyalbot.console.accounts import Sessions
from loyalbot.console.apikeys import KEY_PREFIX, create_api_key, hash_key, list_api_keys, revoke_api_key  # noqa: F401 (kept importable here)
from loyalbot.console.health import Readiness, health_routes
from loyalbot.console.metrics import CONTENT_TYPE, MetricsPage
from loyalbot.console.pages import mount_console
from loyalbot.loyalty import Loyalty
from loyalbot.loyalty.amounts import MAX_AMOUNT
from loyalbot.loyalty.errors import Refusal
from loyalbot.storage import Db, as_utc, utcnow
from loyalbot.storage.models import ApiKey
from loyalbot.storage.rows import stored_id, table_of
from loyalbot.storage.throttle import FailureLimit, MemoryThrottle, Throttle

log = logging.getLogger(__name__)
STATIC = Path(str(resources.files("loyalbot.console"))) / "static"  # package data
LAST_USED_EVERY = timedelta(minutes=1)  # how stale `last_used_at` may get: one write a minute per key at most

ERROR_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
               405: "method_not_allowed", 406: "not_acceptable", 413: "too_large", 415: "unsupported_media_type",
               422: "invalid_request", 429: "too_many_requests", 500: "server_error", 503: "unavailable"}

SECURITY_HEADERS = [
    (b"content-security-policy", b"default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
                                 b"img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'self'; "
                                 b"frame-ancestors 'none'"),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
]
NO_STORE = (b"cache-control", b"no-store")
REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")


@dataclass(frozen=True)
class HttpLimits:
    """How much the HTTP side accepts before it refuses (settings LOYALBOT_API_MAX_BODY_BYTES etc.)."""

    api_max_body: int = 16 * 1024        # /api/v1/*: a purchase or refund is a few hundred bytes
    http_max_body: int = 1024 * 1024     # everything else (the console has no uploads)
    auth_failures: int = 10              # wrong passwords / keys per client address ...
    auth_window: float = 300.0           # ... in this many seconds, then 429 until the window ends
    lookups: int = 60                    # member look-ups per API key and per client address ...
    lookup_window: float = 60.0          # ... in this many seconds

    @classmethod
    def from_settings(cls, settings: Any) -> "HttpLimits":
        return cls(api_max_body=settings.api_max_body_bytes, http_max_body=settings.http_max_body_bytes,
                   auth_failures=settings.auth_failure_limit, auth_window=settings.auth_failure_window,
                   lookups=settings.lookup_limit, lookup_window=settings.lookup_window)


class ApiError(HTTPException):
    """A refusal at the edge, answered `{"error": code, "detail": text}` with `status`."""

    def __init__(self, status: int, code: str, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(status, detail=detail, headers=headers)
        self.code = code


class BodyTooLarge(ApiError):
    def __init__(self, limit: int) -> None:
        super().__init__(413, "too_large", f"the request body is larger than the limit of {limit} bytes")


def too_many(wait: float, what: str) -> ApiError:
    seconds = max(1, int(wait + 0.999))
    return ApiError(429, "too_many_requests", f"too many {what}: try again in {seconds} s",
                    headers={"Retry-After": str(seconds)})


def client_address(scope: Scope) -> str:
    client = scope.get("client")
    return client[0] if client else "unknown"


# --- what the API accepts: checked at the edge, before any service runs ----------------------------

# ASCII digits, at most one ".", at most two decimals, above zero: "12.50", "7", "0.05".
AMOUNT_PATTERN = r"^(?:[0-9]*[1-9][0-9]*(?:\.[0-9]{1,2})?|[0-9]+\.(?:[1-9][0-9]?|0[1-9]))$"
_AMOUNT = re.compile(AMOUNT_PATTERN)
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
MEMBER_NO_PATTERN = r"^(?:[Ll][Bb][Mm]:)?[0-9]{9}$"


def _amount(value: Any) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ValueError('must be a string of digits such as "12.50" (or a whole number)')
    text = str(value)
    if len(text) > 13 or not _AMOUNT.fullmatch(text):
        raise ValueError('must be above zero, written with ASCII digits and at most one "." and two decimals, '
                         'e.g. "12.50" (no exponent, "_", sign or other digits)')
    amount = Decimal(text)
    if amount > MAX_AMOUNT:
        raise ValueError(f"must not be above {MAX_AMOUNT}")
    return amount


Amount = Annotated[Decimal, PlainValidator(_amount), WithJsonSchema({
    "anyOf": [
        {"type": "string", "pattern": AMOUNT_PATTERN, "maxLength": 13, "examples": ["12.50"]},
        {"type": "integer", "exclusiveMinimum": 0, "maximum": int(MAX_AMOUNT)},
    ],
    "description": f'Above zero and at most {MAX_AMOUNT}, at most two decimals: "12.50".',
})]


def _printable(value: str) -> str:
    bad = next((c for c in value if unicodedata.category(c) in ("Cc", "Cs")), None)
    if bad is not None:
        raise ValueError(f"must not contain control characters (found U+{ord(bad):04X})")
    return value


def _sane_time(value: datetime) -> datetime:
    # Check the year first: converting year 1 or 9999 to UTC can overflow.
    if not 2000 <= value.year <= 2100 or as_utc(value) < EARLIEST:
        raise ValueError("must be after 2000-01-01 and not in the future")
    if as_utc(value) > utcnow() + timedelta(days=1):
        raise ValueError("must not be in the future")
    return as_utc(value)


Text = Annotated[str, AfterValidator(_printable)]
Moment = Annotated[AwareDatetime, AfterValidator(_sane_time)]


Code = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:/-]{0,63}$")]  # loyalty/basket.py reads the same


class ItemIn(BaseModel):
    """One line of the purchase: bonuses per category and stamp cards (by SKU or category) read them."""

    model_config = ConfigDict(extra="forbid")

    sku: Annotated[Code | None, Field(description="The product's code, e.g. latte-m.")] = None
    category: Annotated[Code | None, Field(description="The product's category, e.g. coffee.")] = None
    quantity: Annotated[int, Field(ge=1, le=1000)] = 1
    amount: Annotated[Amount | None, Field(description="What the line cost (within the purchase's amount).")] = None

    @model_validator(mode="after")
    def _named(self) -> "ItemIn":
        if self.sku is None and self.category is None:
            raise ValueError("an item needs a sku or a category")
        return self


class PurchaseIn(BaseModel):
    member_no: Annotated[str, Field(pattern=MEMBER_NO_PATTERN, description="The member's 9-digit number.")]
    external_id: Annotated[Text, Field(min_length=1, max_length=128,
                                       description="The shop's id of the purchase: repeating it awards nothing.")]
    amount: Amount
    currency: Annotated[str | None, Field(pattern=r"^[A-Za-z]{3}$")] = None
    occurred_at: Annotated[Moment | None, Field(description="When it was bought, with a UTC offset.")] = None
    store: Annotated[Code | None, Field(description="The store it was bought in (bonuses per store).")] = None
    items: Annotated[list[ItemIn] | None, Field(max_length=200, description="What was bought.")] = None


class RefundIn(BaseModel):
    purchase_external_id: Annotated[Text, Field(min_length=1, max_length=128)]
    refund_id: Annotated[Text, Field(min_length=1, max_length=128,
                                     description="The shop's id of the refund: repeating it takes nothing.")]
    amount: Amount


class PurchaseOut(BaseModel):
    purchase_id: str
    points: int
    repeated: bool
    tier: str | None = Field(description="The member's new tier when this purchase changed it.")
    bonuses: list[dict[str, Any]] = Field(default=[], description="Bonus campaigns' points: code, points.")
    stamps: list[dict[str, Any]] = Field(default=[], description="Stamp cards stamped: card, stamps, needed, "
                                                                 "coupons (codes the last stamp issued).")


class RefundOut(BaseModel):
    refund_id: str
    points_taken: int
    shortfall: int = Field(description="Points that could not be taken back because the balance was too low.")
    pending_cancelled: int = Field(default=0, description="Points of the purchase still inside the return window "
                                                          "that the refund cancelled (before taking any spendable).")
    stamps_taken: dict[str, int] = Field(default_factory=dict, description="Stamps taken back, per stamp card "
                                         "(none on a repeat).")
    bonuses_lost: list[str] = Field(default_factory=list, description="Spend-threshold bonuses taken back because "
                                    "their period's spend fell below the threshold (their points are in the totals).")
    repeated: bool


class MemberOut(BaseModel):
    member_no: str
    first_name: str | None
    tier: str
    points: int
    language: str
    pending_points: int = Field(description="Points still inside the return window, not spendable yet.")
    pending_next_at: datetime | None = Field(description="When the next pending points become spendable (UTC).")


class ErrorBody(BaseModel):
    """Every refusal's body."""

    error: str = Field(description="A stable code, e.g. unknown_member, invalid_request, too_many_requests.")
    detail: str = Field(description="What is wrong, for a person.")


def _errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    what = {400: "The body is not JSON.", 401: "No API key, or an unknown or revoked one.",
            404: "No such member or purchase.", 409: "The id was already used for something different.",
            410: "The member's data was erased.", 413: "The body is larger than the limit.",
            422: "A field is missing or invalid; `detail` names it.",
            429: "Too many attempts: see Retry-After.", 503: "The database cannot be reached."}
    return {s: {"model": ErrorBody, "description": what[s]} for s in statuses}


# --- the middleware that comes before parsing -------------------------------------------------------


# The console's reward form carries a picture of up to 1 MB besides its fields (loyalty/versions.py).
UPLOAD_PATHS = ("/console/programme/rewards",)
UPLOAD_BODY = 1024 * 1024 + 64 * 1024


class HttpGuard:
    """Security headers on every answer; size limits and the API key checked before the body is read."""

    def __init__(self, app: ASGIApp, *, limits: HttpLimits, authenticate: Any) -> None:
        self.app, self.limits, self.authenticate = app, limits, authenticate

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # The request's id on every log line made while answering it (JSON logs), and in the answer: the
        # caller's X-Request-ID when it is a plain token (a load balancer's), else one of ours.
        given = Headers(scope=scope).get("x-request-id", "")
        rid = given if REQUEST_ID.fullmatch(given) else secrets.token_hex(8)
        token = logids.request_id.set(rid)

        async def tagged_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), (b"x-request-id", rid.encode())]}
            await send(message)

        try:
            await self._guard(scope, receive, tagged_send)
        finally:
            logids.request_id.reset(token)

    async def _guard(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        is_api = path.startswith("/api/v1/")
        private = is_api or path.startswith("/console")
        limit = self.limits.api_max_body if is_api else self.limits.http_max_body
        if path.startswith(UPLOAD_PATHS):
            limit = max(limit, UPLOAD_BODY)
        started = False

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = [h for h in message.get("headers", []) if h[0].lower() not in dict(SECURITY_HEADERS)]
                headers += SECURITY_HEADERS + ([NO_STORE] if private else [])
                message = {**message, "headers": headers}
            await send(message)

        try:
            declared = Headers(scope=scope).get("content-length")
            if declared is not None and declared.isdigit() and int(declared) > limit:
                log.info("HTTP %s from %s: refused a %s-byte body (limit %s)", path[:40], client_address(scope),
                         declared, limit)
                raise BodyTooLarge(limit)
            if is_api:
                scope.setdefault("state", {})["shop"] = await self.authenticate(scope)
        except ApiError as exc:
            await error_response(exc)(scope, receive, guarded_send)
            return

        received = 0

        async def counted_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    log.info("HTTP %s from %s: refused a body over %s bytes", path[:40], client_address(scope), limit)
                    raise BodyTooLarge(limit)
            return message

        try:
            await self.app(scope, counted_receive, guarded_send)
        except BodyTooLarge as exc:
            if started:
                raise
            await error_response(exc)(scope, receive, guarded_send)


def error_response(exc: HTTPException) -> JSONResponse:
    code = getattr(exc, "code", None) or ERROR_CODES.get(exc.status_code, "refused")
    return JSONResponse({"error": code, "detail": str(exc.detail)}, status_code=exc.status_code,
                        headers=exc.headers)


def _docs_page(title: str) -> str:
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<link rel="icon" href="/api/static/swagger-ui/favicon-32x32.png">
<link rel="stylesheet" href="/api/static/swagger-ui/swagger-ui.css"></head>
<body><div id="swagger-ui"></div>
<script src="/api/static/swagger-ui/swagger-ui-bundle.js"></script>
<script src="/api/static/docs.js"></script></body></html>"""


class KeepProgrammeCurrent:
    """Before a request, take a newer stored programme version if there is one (a look at most every few
    seconds): purchases over the API earn, and console pages show, the programme in force."""

    def __init__(self, app: ASGIApp, loyalty: Loyalty) -> None:
        self.app, self.loyalty = app, loyalty

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self.loyalty.keep_current()
        await self.app(scope, receive, send)


def create_app(db: Db, loyalty: Loyalty, *, console_password: str | None = None, throttle: Throttle | None = None,
               limits: HttpLimits | None = None, console_secret: str | None = None,
               secure_cookies: bool = False, metrics: Metrics | None = None,
               readiness: Readiness | None = None) -> FastAPI:
    """The FastAPI application: the shop systems' API, the operator console, /healthz, /readyz, /metrics.

    `throttle` should be the one the replicas share (storage.throttle.make_throttle); by default a
    MemoryThrottle of this app's own. `console_password` makes the first admin, `operator`, when the
    store has no operator account yet; `console_secret` signs the console's cookies (else a key kept
    in the store). `metrics` is the process's registry (the bot's, when the console runs inside it);
    by default one of this app's own. `readiness` holds what /readyz checks (by default the database).
    """
    limits = limits or HttpLimits()
    throttle = throttle or MemoryThrottle()
    metrics_page = MetricsPage(loyalty, metrics or Metrics())
    # No trailing-slash redirects: `/api/v1/members/0/` answers a JSON 404 like any unknown path, not an
    # empty 307 a shop system would follow or choke on.
    app = FastAPI(title="loyalbot API", version="1", docs_url=None, redoc_url=None, redirect_slashes=False,
                  openapi_url="/api/openapi.json",
                  description="Shop systems post purchases and refunds and look members up. Every refusal "
                              'answers `{"error": code, "detail": text}`.')
    signins = FailureLimit(throttle, "console_signin", limits.auth_failures, limits.auth_window)
    key_failures = FailureLimit(throttle, "api_key", limits.auth_failures, limits.auth_window)

    async def authenticate(scope: Scope) -> str:
        """The name of the shop whose key the request carries; ApiError 401/429 otherwise."""
        client = client_address(scope)
        if wait := await key_failures.locked(client):
            log.warning("API: refused a call from %s: too many wrong keys", client)
            raise too_many(wait, "wrong API keys")
        headers = Headers(scope=scope)
        key = headers.get("x-api-key") or headers.get("authorization", "").removeprefix("Bearer ").strip()
        found = None
        if key:
            async with db.read() as s:
                found = (await s.execute(select(ApiKey).where(ApiKey.key_hash == hash_key(key)))).scalar_one_or_none()
        if found is None or found.revoked_at is not None:
            wait = await key_failures.failed(client)
            log.warning("API: refused a call from %s: %s", client,
                        "no API key" if not key else "unknown or revoked API key")
            if wait:
                raise too_many(wait, "wrong API keys")
            raise ApiError(401, "unauthorized", "an API key is required (Authorization: Bearer ...)" if not key
                           else "unknown or revoked API key", headers={"WWW-Authenticate": "Bearer"})
        now = utcnow()
        if found.last_used_at is None or now - as_utc(found.last_used_at) > LAST_USED_EVERY:
            async with db.connection() as conn:
                keys = table_of(ApiKey)
                await conn.execute(sa.update(keys).where(keys.c.id == found.id).values(last_used_at=now))
        return f"{found.id}:{found.name}"

    app.add_middleware(KeepProgrammeCurrent, loyalty=loyalty)
    app.add_middleware(HttpGuard, limits=limits, authenticate=authenticate)
    app.mount("/api/static", StaticFiles(directory=STATIC), name="static")

    sessions = Sessions(db, console_secret)
    console = mount_console(app, db, loyalty, sessions=sessions, signin_limit=signins,
                            secure_cookies=secure_cookies)
    console.bootstrap_password = console_password

    @app.get("/api/docs", response_class=HTMLResponse, include_in_schema=False)
    async def docs() -> HTMLResponse:
        return HTMLResponse(_docs_page(app.title))

    @app.get("/metrics", response_class=PlainTextResponse,
             responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}},
                              "description": "Prometheus text format."}})
    async def metrics_text() -> PlainTextResponse:
        return PlainTextResponse(await metrics_page.render(), media_type=CONTENT_TYPE)

    @app.exception_handler(Refusal)
    async def refused(_request: Request, exc: Refusal) -> JSONResponse:
        log.info("API refused: %s", exc.code)
        return JSONResponse({"error": exc.code, "detail": exc.detail}, status_code=exc.http_status)

    @app.exception_handler(HTTPException)
    async def http_error(_request: Request, exc: HTTPException) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'][1:]) or e['loc'][0]}: {str(e['msg']).removeprefix('Value error, ')}"
            for e in exc.errors())
        log.info("API request rejected: %s", problems[:200].encode("ascii", "backslashreplace").decode())
        return JSONResponse({"error": "invalid_request", "detail": problems}, status_code=422)

    bearer = HTTPBearer(auto_error=False, scheme_name="bearer", description="Authorization: Bearer lb_...")
    api_key = APIKeyHeader(name="X-Api-Key", auto_error=False, scheme_name="apiKey",
                           description="The same key, in X-Api-Key.")

    async def shop(request: Request, _bearer: Any = Security(bearer), _key: Any = Security(api_key)) -> str:
        """The shop whose key HttpGuard accepted (the security dependencies only document the schemes)."""
        name = request.scope.get("state", {}).get("shop")
        if name is None:  # HttpGuard not in front (cannot happen in create_app's app): refuse, never guess
            raise ApiError(401, "unauthorized", "an API key is required (Authorization: Bearer ...)")
        return str(name)

    Shop = Annotated[str, Depends(shop)]

    if readiness is None:
        readiness = Readiness({"database": db.ping})
    app.include_router(health_routes(readiness))

    @app.post("/api/v1/purchases", status_code=201, response_model=PurchaseOut,
              responses={200: {"model": PurchaseOut, "description": "A repeat: the first result, nothing awarded."},
                         **_errors(400, 401, 404, 409, 410, 413, 422, 429)})
    async def post_purchase(body: PurchaseIn, shop_name: Shop) -> JSONResponse:
        """Award points for a purchase; repeating `external_id` returns the first result."""
        member = await loyalty.member_by_number(body.member_no)
        result = await loyalty.award_purchase(stored_id(member.id), external_id=body.external_id, amount=body.amount,
                                              currency=body.currency, occurred_at=body.occurred_at,
                                              source=f"api:{shop_name.partition(':')[2]}"[:32], store=body.store,
                                              items=[item.model_dump() for item in body.items or ()] or None)
        return JSONResponse(status_code=200 if result.repeated else 201, content={
            "purchase_id": result.purchase.external_id,
            "points": result.points,
            "repeated": result.repeated,
            "tier": result.tier_change.to_tier if result.tier_change else None,
            "bonuses": [{"code": b.code, "points": b.points} for b in result.bonuses],
            "stamps": [{"card": st.card, "stamps": st.stamps, "needed": st.needed, "coupons": list(st.coupons)}
                       for st in result.stamps],
        })

    @app.post("/api/v1/refunds", status_code=201, response_model=RefundOut,
              responses={200: {"model": RefundOut, "description": "A repeat: the first result, nothing taken."},
                         **_errors(400, 401, 404, 409, 410, 413, 422, 429)})
    async def post_refund(body: RefundIn, shop_name: Shop) -> JSONResponse:
        """Take back the points of a refunded part of a purchase; repeating `refund_id` takes nothing."""
        result = await loyalty.refund_purchase(body.purchase_external_id, refund_id=body.refund_id,
                                               amount=body.amount)
        return JSONResponse(status_code=200 if result.repeated else 201, content={
            "refund_id": result.refund.external_id, "points_taken": result.points_taken,
            "shortfall": result.shortfall, "pending_cancelled": result.pending_cancelled,
            "stamps_taken": {s.card: s.stamps for s in result.stamps}, "bonuses_lost": [b.code for b in result.bonuses],
            "repeated": result.repeated,
        })

    @app.get("/api/v1/members/{member_no}", response_model=MemberOut, responses=_errors(401, 404, 422, 429))
    async def get_member(request: Request, shop_name: Shop,
                         member_no: Annotated[str, PathParam(pattern=MEMBER_NO_PATTERN)]) -> dict[str, Any]:
        """A member's tier and points (spendable, and pending with the next date they become spendable), by member
        number (throttled per key and per client address)."""
        client = client_address(request.scope)
        for scope_name, who in (("lookup_key", shop_name.partition(":")[0]), ("lookup_addr", client)):
            if wait := await throttle.hit(scope_name, who, limit=limits.lookups, per=limits.lookup_window):
                log.warning("API: member look-ups over the limit for key %s from %s", shop_name.partition(":")[0],
                            client)
                raise too_many(wait, "member look-ups")
        member = await loyalty.member_by_number(member_no)
        pending = await loyalty.pending_points(stored_id(member.id))
        return {"member_no": member.member_no, "first_name": member.first_name, "tier": member.tier,
                "points": member.balance, "language": member.language,
                "pending_points": sum(p.points for p in pending),
                "pending_next_at": min((p.available_at for p in pending), default=None)}

    return app
