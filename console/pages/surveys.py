"""Survey results: CSAT and NPS month by month with their answer counts, the distribution of scores in the
period chosen, and the comments members left, newest first, filtered by kind and score."""

from __future__ import annotations

from datetime import datetime, timedelta

from babel.dates import format_skeleton
from fastapi import APIRouter, Request
from fastapi.responses import Response

from loyalbot.chat.languages import FORMAT_LOCALES
from loyalbot.console.members_queries import page_number, survey_comments
from loyalbot.console.pages.web import Deps, Operator, render
from loyalbot.loyalty.surveys import SURVEY_SCALES
from loyalbot.storage import utcnow
from loyalbot.storage.clock import zone_or_utc

router = APIRouter()
PERIODS = (30, 90, 365)
MONTHS = 12


def _month_starts(now: datetime, zone_name: str, count: int) -> list[datetime]:
    """The starts of the last `count` calendar months in the shop's zone (oldest first), and the next month's."""
    zone = zone_or_utc(zone_name)
    local = now.astimezone(zone)
    year, month = local.year, local.month
    starts = []
    for _ in range(count + 1):
        starts.append(datetime(year, month, 1, tzinfo=zone))
        year, month = (year, month - 1) if month > 1 else (year - 1, 12)
    starts.reverse()
    # starts[-1] is this month; add the next month as the end of the last bucket
    y, m = (local.year, local.month + 1) if local.month < 12 else (local.year + 1, 1)
    return starts[1:] + [datetime(y, m, 1, tzinfo=zone)]


@router.get("/console/surveys", include_in_schema=False)
async def results(request: Request, console: Deps, who: Operator) -> Response:
    now = utcnow()
    days_text = request.query_params.get("days", "90")
    days = int(days_text) if days_text in {str(p) for p in PERIODS} else 90
    kind = request.query_params.get("kind", "")
    kind = kind if kind in SURVEY_SCALES else ""
    score_text = request.query_params.get("score", "")
    score = int(score_text) if score_text.isdigit() and len(score_text) <= 2 and int(score_text) <= 10 else None
    since = now - timedelta(days=days)
    totals = {k: await console.loyalty.scores(k, since=since, until=now) for k in SURVEY_SCALES}
    edges = _month_starts(now, console.loyalty.programme.programme.timezone, MONTHS)
    months = []
    for start, end in zip(edges, edges[1:], strict=False):
        label = format_skeleton("yMMM", start.date(), locale=FORMAT_LOCALES.get(who.language, "en"))
        months.append((label, {k: await console.loyalty.scores(k, since=start, until=end) for k in SURVEY_SCALES}))
    months.reverse()
    comments = await survey_comments(console.db, kind=kind or None, score=score, since=since,
                                     number=page_number(request.query_params.get("page", "1")))
    return render(request, "surveys/results.html", days=days, periods=PERIODS, kind=kind, score=score,
                  totals=totals, months=months, comments=comments, scales=SURVEY_SCALES)
