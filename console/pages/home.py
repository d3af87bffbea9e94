"""The console's first page: the dashboard's charts over a range of the shop's local days, and each chart's CSV.

The range comes from `from`/`to` (local dates) or a preset `days`; a bad range re-renders the page with the
reason next to its field (400) and computes nothing. The figures come from console/dashboard_stats.py.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import time
from datetime import date, datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from loyalbot.console.dashboard_stats import (
    CHART_KEYS,
    PRESETS,
    Board,
    Chart,
    Period,
    PeriodError,
    build_board,
    parse_period,
)
from loyalbot.console.pages.web import N_, ConsoleDeps, Deps, Formats, Operator, gettext, render
from loyalbot.storage import utcnow

log = logging.getLogger(__name__)
router = APIRouter()

LONGEST_PARAM = 32  # a date or a preset is short; anything longer is refused before it is parsed

# Chart titles, column labels and summaries are English source strings translated when shown.
CHART_WORDS = (
    N_("Members over time"), N_("Joined"), N_("Active (points or purchases)"), N_("Members by tier now"),
    N_("Tier"), N_("Members"), N_("Tier changes over time (members moving into each tier)"),
    N_("Points issued, redeemed and expired"), N_("Issued"), N_("Redeemed"), N_("Expired"),
    N_("Outstanding at the end"), N_("Redemption rate and coupon use"), N_("Redemption rate (redeemed / issued)"),
    N_("Coupons issued"), N_("Coupons used"), N_("Repeat-purchase rate"), N_("Buying members"),
    N_("Members with 2 or more purchases"), N_("Purchases"), N_("Deliveries by status"),
    N_("Skipped deliveries by reason"), N_("Reason"), N_("Skipped"), N_("CSAT and NPS"), N_("CSAT (share of 4 and 5)"),
    N_("CSAT answers"), N_("NPS"), N_("NPS answers"), N_("Support response and resolution times"),
    N_("Median first response (minutes)"), N_("Median resolution (minutes)"), N_("Conversations closed"),
    N_("Day"), N_("Week from"), N_("Referrals"), N_("Friends who joined through a link"),
    N_("Converted (first purchase cleared, both rewarded)"),
    N_("%(referred)s friends joined through a referral link and %(converted)s referrals converted in this range."),
    N_("%(members)s members now; %(joined)s joined and %(active)s were active in this range."),
    N_("%(tier)s: %(n)s members."), N_("%(n)s tier changes in this range."),
    N_("%(issued)s points issued, %(redeemed)s redeemed and %(expired)s expired in this range; members hold "
       "%(outstanding)s now."),
    N_("Redemption rate %(rate)s; %(issued)s coupons issued and %(used)s used in this range."),
    N_("%(repeaters)s of %(purchasers)s buying members bought twice or more in this range (%(rate)s)."),
    N_("%(status)s: %(n)s."), N_("%(reason)s: %(n)s."), N_("No deliveries were skipped in this range."),
    N_("CSAT %(csat)s from %(csat_answers)s answers; NPS %(nps)s from %(nps_answers)s answers."),
    N_("%(closed)s conversations closed; median first response %(first)s min, median resolution %(resolution)s "
       "min."),
    N_("Give a date as YYYY-MM-DD."), N_("Choose a date from 2000 on."), N_("Choose a date up to today."),
    N_("The end comes before the start."), N_("Choose at most %(days)s days."), N_("Choose one of the ranges offered."),
)
PERCENT_PARAMS = {"rate", "csat"}


def _params(request: Request) -> tuple[str | None, str | None, str | None]:
    got = request.query_params
    values = (got.get("from"), got.get("to"), got.get("days"))
    for name, value in zip(("from", "to", "days"), values, strict=True):
        if value is not None and (len(value) > LONGEST_PARAM or any(ord(ch) < 32 for ch in value)):
            raise PeriodError(name, "Give a date as YYYY-MM-DD.")
    return values


def _tier_names(console: Any, lang: str) -> dict[str, str]:
    return {level.code: level.names.get(lang) or level.names.get("en") or level.code
            for level in console.loyalty.programme.tiers.levels}


def _cell(fmt: Formats, kind: str, value: Any, period_unit: str) -> str:
    if value is None:
        return "–"
    if kind == "date":
        return fmt.date(value)
    if kind == "percent":
        return fmt.percent(value / 100)
    if kind in ("minutes", "score"):
        return fmt.number(value, 1)
    if kind == "text":
        return str(value)
    return fmt.number(value)


def _summary(lang: str, fmt: Formats, text: str, params: dict[str, Any], names: dict[str, str]) -> str:
    shown: dict[str, str] = {}
    for key, value in params.items():
        if value is None:
            shown[key] = "–"
        elif key in PERCENT_PARAMS:
            shown[key] = fmt.percent(value / 100)
        elif key == "tier":
            shown[key] = names.get(value, value)
        elif key in ("status",):
            shown[key] = gettext(lang, value)
        elif isinstance(value, int | float):
            shown[key] = fmt.number(value, 1 if isinstance(value, float) else None)
        else:
            shown[key] = str(value)
    return gettext(lang, text, **shown)


def _view(chart: Chart, lang: str, fmt: Formats, names: dict[str, str], unit: str) -> dict[str, Any]:
    """What the template and dashboard.js need of one chart: labels in the operator's language, the data."""

    def label(column_label: str) -> str:
        return names.get(column_label) or gettext(lang, column_label)

    labels = [fmt.date(row[0]) if isinstance(row[0], date) else names.get(row[0], gettext(lang, str(row[0])))
              for row in chart.rows]
    data = {
        "key": chart.key,
        "type": chart.kind,
        "labels": labels,
        "datasets": [{"label": label(column.label), "kind": column.kind,
                      "data": [row[i + 1] for row in chart.rows]} for i, column in enumerate(chart.columns)],
    }
    table = [[labels[n], *(_cell(fmt, column.kind, row[i + 1], unit) for i, column in enumerate(chart.columns))]
             for n, row in enumerate(chart.rows)]
    return {
        "key": chart.key, "title": gettext(lang, chart.title), "index": gettext(lang, chart.index.label),
        "columns": [label(column.label) for column in chart.columns], "table": table,
        "summary": " ".join(_summary(lang, fmt, text, params, names) for text, params in chart.summary),
        "json": json.dumps(data, ensure_ascii=False).replace("</", "<\\/"),
    }


BOARD_REUSE = 60.0  # seconds a page's figures serve the CSVs downloaded from it
BOARDS_KEPT = 16


async def _board(console: ConsoleDeps, period: Period, *, now: datetime, reuse: bool) -> Board:
    """The board of `period`: built afresh for a page, and kept a minute so that the CSVs an operator
    downloads from it (the same figures) do not each build the whole board again."""
    programme = console.loyalty.programme
    boards: dict[Any, tuple[float, Board]] = console.extra.setdefault("dashboard_boards", {})
    key = (period, console.loyalty.in_force.version, tuple(t.code for t in programme.tiers.levels))
    kept = boards.get(key)
    if reuse and kept is not None and time.monotonic() - kept[0] < BOARD_REUSE:
        return kept[1]
    board = await build_board(console.db, period, now=now, tier_order=list(key[2]))
    if len(boards) >= BOARDS_KEPT:
        boards.pop(min(boards, key=lambda k: boards[k][0]))
    boards[key] = (time.monotonic(), board)
    return board


@router.get("/console", include_in_schema=False)
async def home(request: Request, console: Deps, who: Operator) -> Response:
    programme = console.loyalty.programme
    zone = programme.programme.timezone
    now = utcnow()
    values: dict[str, Any] = {"from_value": (request.query_params.get("from") or "")[:LONGEST_PARAM],
              "to_value": (request.query_params.get("to") or "")[:LONGEST_PARAM], "presets": PRESETS}
    try:
        period = parse_period(*_params(request), zone=zone, now=now)
    except PeriodError as exc:
        log.info("console: refused a dashboard range (%s)", exc.field)
        fmt = Formats(who.language, zone)
        message = gettext(who.language, exc.text, **{k: fmt.number(v) for k, v in exc.params.items()})
        return render(request, "home.html", status=400, board=None, charts=[], errors={exc.field: message},
                      query="", **values)
    board = await _board(console, period, now=now, reuse=False)
    fmt = Formats(who.language, zone)
    names = _tier_names(console, who.language)
    charts = [_view(chart, who.language, fmt, names, period.unit) for chart in board.charts]
    query = f"from={period.first.isoformat()}&to={min(period.last, board.today).isoformat()}"
    if not values["from_value"]:
        values["from_value"], values["to_value"] = period.first.isoformat(), min(period.last, board.today).isoformat()
    return render(request, "home.html", board=board, charts=charts, errors={}, query=query, **values)


def _csv_safe(value: Any) -> Any:
    """A cell no spreadsheet runs as a formula: text starting with = + - @ (or a tab/CR) gets a leading '."""
    if value is None:
        return ""
    if isinstance(value, int | float):
        return value
    text = value.isoformat() if isinstance(value, date) else str(value)
    if text and text[0] in "=+-@\t\r":
        try:
            float(text)
        except ValueError:
            return "'" + text
    return text


def board_csv(board: Board, key: str) -> str:
    chart = board.chart(key)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow([chart.index.key, *(column.key for column in chart.columns)])
    for row in chart.rows:
        writer.writerow([_csv_safe(cell) for cell in row])
    return out.getvalue()


@router.get("/console/dashboard/{chart}.csv", include_in_schema=False)
async def chart_csv(request: Request, chart: str, console: Deps, _who: Operator) -> Response:
    if chart not in CHART_KEYS:
        log.info("console: refused a CSV of an unknown chart")
        return JSONResponse({"error": "unknown_chart", "detail": "No such chart; one of: " + ", ".join(CHART_KEYS)},
                            status_code=404)
    programme = console.loyalty.programme
    now = utcnow()
    try:
        period = parse_period(*_params(request), zone=programme.programme.timezone, now=now)
    except PeriodError as exc:
        log.info("console: refused a dashboard CSV range (%s)", exc.field)
        return JSONResponse({"error": "bad_range", "detail": f"{exc.field}: {exc}"}, status_code=400)
    board = await _board(console, period, now=now, reuse=True)
    name = f"loyalbot-{chart}-{period.first.isoformat()}-{min(period.last, board.today).isoformat()}.csv"
    return Response(board_csv(board, chart), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="{name}"',
                             "X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"})
