"""/healthz (the process is alive and serves) and /readyz (it can do its work: its dependencies answer).

A load balancer or an orchestrator restarts what /healthz calls dead, and sends traffic only where
/readyz says ready. So /healthz checks nothing beyond this process answering (a database outage must
not get every replica restarted), while /readyz runs named checks (the database, Redis when
configured, the Bot API's getMe) and answers 503 naming what failed. Its result is kept for a few
seconds, so frequent probes from several balancers cost one round of checks; while the process
drains after SIGTERM it answers 503 at once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel

log = logging.getLogger(__name__)

Check = Callable[[], Awaitable[object]]
PHASES = {"starting": "the process is starting: it does not receive updates yet",
          "draining": "the process is shutting down (SIGTERM): it takes no more updates"}


class Health(BaseModel):
    status: str


class Ready(BaseModel):
    status: str
    checks: dict[str, str]


class NotReady(BaseModel):
    error: str
    detail: str
    checks: dict[str, str]


class Readiness:
    """Named checks of what this process depends on, run together, the outcome kept `cache_seconds`."""

    def __init__(self, checks: dict[str, Check] | None = None, *, cache_seconds: float = 3.0, timeout: float = 3.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.checks: dict[str, Check] = dict(checks or {})
        self.cache_seconds = cache_seconds
        self.timeout = timeout
        self.clock = clock
        self.phase = "serving"  # "starting" (not receiving yet), "serving", "draining" (after SIGTERM)
        self._last: tuple[float, dict[str, str]] | None = None
        self._lock = asyncio.Lock()

    def add(self, name: str, check: Check) -> None:
        self.checks[name] = check
        self._last = None

    async def _one(self, check: Check) -> str:
        try:
            await asyncio.wait_for(check(), timeout=self.timeout)
        except TimeoutError:
            return "timeout"
        except Exception as exc:  # the class only: messages may hold addresses or credentials
            return type(exc).__name__
        return "ok"

    async def report(self) -> dict[str, str]:
        """Each check's outcome: "ok", or what went wrong (an exception's class name, or "timeout")."""
        async with self._lock:  # probes arriving together share one round
            if self._last is not None and self.clock() - self._last[0] < self.cache_seconds:
                return self._last[1]
            names = list(self.checks)
            outcomes = await asyncio.gather(*(self._one(self.checks[name]) for name in names))
            results = dict(zip(names, outcomes, strict=True))
            failed = [f"{name}: {outcome}" for name, outcome in results.items() if outcome != "ok"]
            if failed:
                log.warning("not ready: %s", "; ".join(failed))
            self._last = (self.clock(), results)
            return results


def health_routes(readiness: Readiness) -> APIRouter:
    """The two probes, for the console app (see the module's docstring)."""
    router = APIRouter()

    @router.get("/healthz", response_model=Health)
    async def healthz() -> dict[str, Any]:
        """Alive: the process serves requests (nothing else is checked)."""
        return {"status": "ok"}

    @router.get("/readyz", response_model=Ready,
                responses={503: {"model": NotReady, "description": "Draining, or a dependency does not answer."}})
    async def readyz() -> Any:
        """Ready: the database (and Redis, and the Bot API, where this process uses them) answer."""
        if readiness.phase != "serving":
            detail = PHASES.get(readiness.phase, readiness.phase)
            return JSONResponse({"error": readiness.phase, "detail": detail, "checks": {}}, status_code=503)
        checks = await readiness.report()
        failed = {name: outcome for name, outcome in checks.items() if outcome != "ok"}
        if failed:
            detail = "; ".join(f"{name} unreachable ({outcome})" for name, outcome in failed.items())
            return JSONResponse({"error": "not_ready", "detail": detail, "checks": checks}, status_code=503)
        return {"status": "ready", "checks": checks}

    return router


async def ping_redis(client: Any) -> None:
    """A Redis client's PING (redis.asyncio), as a readiness check."""
    await client.ping()


__all__ = ["Check", "Health", "Readiness", "health_routes", "ping_redis"]
