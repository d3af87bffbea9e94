"""Segments and scoring: saved segments (list, create, edit, delete) with a live audience count as the definition
is typed, members by lifecycle stage from the last scoring run, a button to score now, and the built-in plays.

Everything goes through scheduler/saved_segments.py, scheduler/rfm.py and scheduler/plays.py, as the CLI does.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import sqlalchemy as sa
from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from loyalbot.console.pages.schedules import actor
from loyalbot.console.pages.web import N_, ConsoleRefusal, Csrf, Deps, Operator, form_text, gettext, render
from loyalbot.scheduler.kinds import LIFECYCLE_STAGES
from loyalbot.scheduler.planner import Planner
from loyalbot.scheduler.plays import PLAYS, install_plays
from loyalbot.scheduler.rfm import last_scored, score_and_plan
from loyalbot.scheduler.saved_segments import delete_segment, get_segment, list_segments, save_segment
from loyalbot.scheduler.segments import SegmentProblem, segment_size
from loyalbot.storage import utcnow
from loyalbot.storage.models import MemberScore, Schedule

log = logging.getLogger(__name__)
router = APIRouter()

STAGE_LABELS = {"new": N_("New"), "active": N_("Active"), "repeat": N_("Repeat"), "at_risk": N_("At risk"),
                "dormant": N_("Dormant"), "churned": N_("Churned")}
DONE = {"saved": N_("Segment saved."), "deleted": N_("Segment deleted."),
        "installed": N_("Plays installed, paused: open one on the Schedules page, check it and resume it.")}
DEFINITION_LIMIT = 4000


def _definition(text: str, lang: str) -> tuple[dict[str, Any] | None, str | None]:
    """A definition from its JSON text, or the problem with it."""
    if len(text) > DEFINITION_LIMIT:
        return None, gettext(lang, "a definition is at most %(num)s characters", num=DEFINITION_LIMIT)
    try:
        value = json.loads(text or "{}")
    except json.JSONDecodeError as exc:
        return None, gettext(lang, "not JSON: %(what)s at character %(pos)s", what=exc.msg, pos=exc.pos)
    if not isinstance(value, dict):
        return None, gettext(lang, "a segment is a JSON object")
    return value, None


async def _stages(console: Any) -> tuple[dict[str, int], Any]:
    async with console.db.read() as s:
        counts = {stage: int(n) for stage, n in (await s.execute(
            sa.select(MemberScore.lifecycle, sa.func.count()).group_by(MemberScore.lifecycle))).all()}
    return counts, await last_scored(console.db)


@router.get("/console/segments", include_in_schema=False)
async def segment_list(request: Request, console: Deps, who: Operator, done: str | None = None) -> Response:
    stages, scored_at = await _stages(console)
    async with console.db.read() as s:
        installed = {name: enabled for name, enabled in (await s.execute(
            sa.select(Schedule.name, Schedule.enabled).where(Schedule.name.in_([p.name for p in PLAYS])))).all()}
    return render(request, "segments/list.html", rows=await list_segments(console.db), stages=stages,
                  stage_order=LIFECYCLE_STAGES, stage_labels=STAGE_LABELS, scored_at=scored_at, plays=PLAYS,
                  installed=installed, flash=gettext(who.language, DONE[done]) if done in DONE else None)


@router.post("/console/segments/score", include_in_schema=False)
async def segment_score(request: Request, console: Deps, who: Csrf) -> Response:
    """Score every member now (the nightly run, on demand) and plan lifecycle messages for those who moved."""
    run, planned = await score_and_plan(Planner(console.loyalty), utcnow(), actor=actor(who))
    log.info("console: operator %s scored %d members, %d changed stage", who.operator_id, run.scored, run.changes)
    stages, scored_at = await _stages(console)
    flash = gettext(who.language, "Scored %(num)s members; %(changes)s changed stage; %(planned)s messages planned.",
                    num=run.scored, changes=run.changes, planned=sum(p.planned for p in planned))
    return render(request, "segments/list.html", rows=await list_segments(console.db), stages=stages,
                  stage_order=LIFECYCLE_STAGES, stage_labels=STAGE_LABELS, scored_at=scored_at, plays=PLAYS,
                  installed={}, flash=flash)


@router.post("/console/segments/plays", include_in_schema=False)
async def plays_install(request: Request, console: Deps, who: Csrf) -> Response:
    done = await install_plays(console.db, console.loyalty.programme, actor=actor(who), now=utcnow())
    log.info("console: operator %s installed %d plays", who.operator_id, len(done.added))
    return RedirectResponse("/console/segments?done=installed", status_code=303)


@router.get("/console/segments-count", include_in_schema=False)
async def segment_count(request: Request, console: Deps, who: Operator) -> Response:
    """The htmx count of members a definition (or a saved segment, ?name=) reaches, as it is typed; or what is
    wrong with it."""
    name = str(request.query_params.get("name") or "")
    definition, problem = ({"segment": name}, None) if name else _definition(
        str(request.query_params.get("definition") or ""), who.language)
    count = None
    if definition is not None:
        try:
            count = await segment_size(console.db, definition, utcnow(), zone=console.loyalty.programme.zone)
        except SegmentProblem as exc:
            problem = str(exc)
    return render(request, "segments/_count.html", count=count, problem=problem)


def _form(request: Request, *, name: str, definition: str, problem: str | None, editing: bool,
          status: int = 200) -> Response:
    return render(request, "segments/edit.html", name=name, definition=definition, problem=problem, editing=editing,
                  status=status)


@router.get("/console/segments/new", include_in_schema=False)
async def segment_new(request: Request, _who: Operator) -> Response:
    return _form(request, name="", definition='{\n  "lifecycle": ["dormant"],\n  "rfm": {"m": [4, 5]}\n}',
                 problem=None, editing=False)


@router.get("/console/segments/{name}", include_in_schema=False)
async def segment_show(request: Request, console: Deps, _who: Operator, name: str) -> Response:
    row = await get_segment(console.db, name)
    if row is None:
        raise ConsoleRefusal(404, "There is no such segment.")
    return _form(request, name=row.name, definition=json.dumps(row.definition, indent=2, ensure_ascii=False),
                 problem=None, editing=True)


@router.post("/console/segments/save", include_in_schema=False)
async def segment_save(request: Request, console: Deps, who: Csrf) -> Response:
    form = await request.form()
    name, text = form_text(form, "name", limit=64), form_text(form, "definition", limit=DEFINITION_LIMIT + 1)
    editing = form.get("editing") == "1"
    definition, problem = _definition(text, who.language)
    if definition is not None:
        try:
            await save_segment(console.db, name, definition, actor=actor(who), now=utcnow())
        except SegmentProblem as exc:
            problem = str(exc)
        else:
            log.info("console: operator %s saved segment %s", who.operator_id, name)
            return RedirectResponse("/console/segments?done=saved", status_code=303)
    log.info("console: refused a segment from operator %s", who.operator_id)
    return _form(request, name=name, definition=text, problem=problem, editing=editing, status=422)


@router.post("/console/segments/{name}/delete", include_in_schema=False)
async def segment_delete(request: Request, console: Deps, who: Csrf, name: str) -> Response:
    try:
        await delete_segment(console.db, name, actor=actor(who))
    except SegmentProblem as exc:
        row = await get_segment(console.db, name)
        definition = json.dumps(row.definition, indent=2, ensure_ascii=False) if row else ""
        return _form(request, name=name, definition=definition, problem=str(exc), editing=row is not None, status=409)
    log.info("console: operator %s deleted segment %s", who.operator_id, name)
    return RedirectResponse("/console/segments?done=deleted", status_code=303)
