"""Campaigns in the console: a schedule's results (per variant and for the control group, with the
intervals) and its campaign settings (control group, variants, attribution window, stop-loss).

The figures come from scheduler/attribution.py, as `loyalbot campaign results` prints them; a schedule
without variants shows one row for all its messages. The settings are saved through `editing.edit`, as
the schedule's own form is: the same checks (scheduler/experiments.py), the same audit row.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from loyalbot.console.pages.schedules import _schedule, _whole, actor
from loyalbot.console.pages.web import Csrf, Deps, Operator, gettext, render
from loyalbot.scheduler import editing
from loyalbot.scheduler.attribution import SINGLE, campaign_results
from loyalbot.scheduler.editing import ScheduleProblem
from loyalbot.scheduler.experiments import (
    CONTROL,
    DEFAULT_WINDOW_DAYS,
    EXPERIMENT_PARAMS,
    MAX_HOLDOUT_PCT,
    MAX_WINDOW_DAYS,
    STOP_LOSS_METRICS,
)
from loyalbot.scheduler.kinds import survey_of
from loyalbot.storage.models import Schedule

log = logging.getLogger(__name__)

router = APIRouter()


@router.get("/console/schedules/{schedule_id}/results", include_in_schema=False)
async def schedule_results(request: Request, console: Deps, _who: Operator, schedule_id: int) -> Response:
    row = await _schedule(console, schedule_id)
    results = await campaign_results(console.loyalty.db, row)
    arms = [*results.variants, results.treated] if len(results.variants) > 1 else list(results.variants)
    return render(request, "schedules/results.html", row=row, results=results, arms=arms, single=SINGLE,
                  control_name=CONTROL, stop_loss=(row.params or {}).get("stop_loss"),
                  currency=console.loyalty.programme.programme.currency)


def _settings_values(row: Schedule) -> dict[str, str]:
    """The form's fields from the schedule's params (blank where unset)."""
    params = row.params or {}
    stop = params.get("stop_loss") or {}
    variants = params.get("variants")
    return {"holdout_pct": str(params.get("holdout_pct", "")), "window_days": str(params.get("window_days", "")),
            "variants": json.dumps(variants, ensure_ascii=False, indent=1) if variants else "",
            "after_sends": str(stop.get("after_sends", "")), "metric": str(stop.get("metric", "conversion")),
            "below_pct": str(stop.get("below_pct", "")), "updated_at": row.updated_at.isoformat()}


def _read_settings(form: Any, lang: str) -> tuple[dict[str, Any], dict[str, str]]:
    """The campaign's params from the form (only the keys given), and the problems found per field."""
    problems: dict[str, str] = {}
    params: dict[str, Any] = {}
    if (pct := _whole(form, "holdout_pct", problems, lang, low=0, high=MAX_HOLDOUT_PCT)) is not None and pct:
        params["holdout_pct"] = pct
    if (days := _whole(form, "window_days", problems, lang, low=1, high=MAX_WINDOW_DAYS)) is not None:
        params["window_days"] = days
    text = str(form.get("variants") or "").strip()
    if text:
        try:
            params["variants"] = json.loads(text)
        except json.JSONDecodeError:
            problems["variants"] = gettext(lang, "the variants are JSON: a list of name, weight and templates")
    sends = _whole(form, "after_sends", problems, lang, low=1, high=100_000_000)
    below = _whole(form, "below_pct", problems, lang, low=1, high=100)
    metric = str(form.get("metric") or "conversion")
    if metric not in STOP_LOSS_METRICS:
        problems["metric"] = gettext(lang, "unknown measure")
    elif sends is not None and below is not None:
        params["stop_loss"] = {"after_sends": sends, "metric": metric, "below_pct": below}
    elif (sends is None) != (below is None) and "after_sends" not in problems and "below_pct" not in problems:
        problems["below_pct" if below is None else "after_sends"] = gettext(
            lang, "a stop-loss needs both the number of messages and the threshold")
    return params, problems


async def _settings_page(request: Request, row: Schedule, values: dict[str, str], problems: dict[str, str], *,
                         status: int = 200) -> Response:
    return render(request, "schedules/campaign.html", status=status, row=row, values=values, problems=problems,
                  metrics=STOP_LOSS_METRICS, max_holdout=MAX_HOLDOUT_PCT, max_window=MAX_WINDOW_DAYS,
                  default_window=DEFAULT_WINDOW_DAYS, survey=survey_of(row) is not None)


@router.get("/console/campaigns/{schedule_id}", include_in_schema=False)
async def campaign_settings(request: Request, console: Deps, _who: Operator, schedule_id: int) -> Response:
    row = await _schedule(console, schedule_id)
    return await _settings_page(request, row, _settings_values(row), {})


@router.post("/console/campaigns/{schedule_id}", include_in_schema=False)
async def campaign_save(request: Request, console: Deps, who: Csrf, schedule_id: int) -> Response:
    row = await _schedule(console, schedule_id)
    form = await request.form()
    shown = {key: str(form.get(key) or "") for key in _settings_values(row)}
    campaign, problems = _read_settings(form, who.language)
    based_on = None
    try:
        based_on = datetime.fromisoformat(shown["updated_at"])
    except ValueError:
        problems["updated_at"] = gettext(who.language, "this form is not from this schedule's page")
    if not problems:
        params = {**{k: v for k, v in (row.params or {}).items() if k not in EXPERIMENT_PARAMS}, **campaign}
        try:
            await editing.edit(console.loyalty, schedule_id, {"params": params}, actor=actor(who), based_on=based_on)
        except ScheduleProblem as exc:
            problems[exc.field if exc.field in shown or exc.field == "stop_loss" else "variants"] = str(exc)
        else:
            return RedirectResponse(f"/console/schedules/{schedule_id}?done=saved", status_code=303)
    if "stop_loss" in problems:
        problems["after_sends"] = problems.pop("stop_loss")
    log.info("console: refused campaign settings: %s", ", ".join(sorted(problems)))
    return await _settings_page(request, row, shown, problems, status=422)
