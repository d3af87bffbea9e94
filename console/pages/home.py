"""The console's first page: the dashboard's figures for the period chosen."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from loyalbot.console.dashboard import build_dashboard
from loyalbot.console.pages.web import Deps, Operator, render

router = APIRouter()


@router.get("/console", include_in_schema=False)
async def home(request: Request, console: Deps, _who: Operator, days: int = 30) -> Response:
    board = await build_dashboard(console.loyalty, period_days=max(1, min(days, 3650)))
    return render(request, "home.html", board=board)
