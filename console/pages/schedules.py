"""Schedules and their templates: list, create, edit, pause, resume, delete, run now; the audience count, a
preview as a chosen member in each language, a test send to a staff member's chat, each schedule's outbox,
and a template editor whose preview (and the sandbox's complaints) follow the typing.

Everything goes through scheduler/editing.py, as the CLI does: the same checks, the same audit rows.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime
from typing import Any

import nh3
import sqlalchemy as sa
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from markupsafe import Markup

from loyalbot.chat.languages import LANGUAGES
from loyalbot.console.pages.web import N_, Csrf, Deps, Operator, gettext, render
from loyalbot.scheduler import editing
from loyalbot.scheduler.caps import MARKETING_KINDS, WHEN_CAPPED, when_capped
from loyalbot.scheduler.editing import ScheduleProblem
from loyalbot.scheduler.kinds import (
    DEFAULT_CAP_DAYS,
    DEFAULT_OFFSET_DAYS,
    DEFAULT_PARAMS,
    KINDS,
    RULES,
    template_kind,
)
from loyalbot.scheduler.templates import VARIABLES, default_templates, variables_for
from loyalbot.storage import as_utc, utcnow
from loyalbot.storage.models import Schedule, Staff
from loyalbot.storage.rows import stored_id

log = logging.getLogger(__name__)
router = APIRouter()

# The segment keys the form has fields for; the others (RFM, lifecycle, windows, saved segments...) are edited as
# JSON in "More conditions", so that saving the form never drops them.
FORM_SEGMENT_KEYS = ("tiers", "languages", "min_balance", "max_balance", "joined_before_days")
# Telegram's HTML tags: a preview shows these as markup and everything else as text.
TELEGRAM_TAGS = {"b", "strong", "i", "em", "u", "ins", "s", "strike", "del", "code", "pre", "a", "blockquote",
                 "tg-spoiler", "span"}
KIND_LABELS = {"birthday": N_("Birthday"), "anniversary": N_("Membership anniversary"),
               "winback": N_("Win-back"), "tier_change": N_("Tier change"),
               "points_expiry": N_("Points about to expire"), "coupon_expiry": N_("Coupon about to expire"),
               "nps": N_("NPS survey"), "csat": N_("CSAT survey"), "broadcast": N_("Broadcast"),
               "lifecycle_change": N_("Lifecycle change")}
STATUSES = ("pending", "sending", "sent", "failed", "skipped")
DONE = {"saved": N_("Saved."), "added": N_("Schedule added. A running bot picks it up within seconds."),
        "paused": N_("Paused: nothing new is planned; messages already planned still go out."),
        "resumed": N_("Resumed."), "deleted": N_("Deleted."),
        "archived": N_("Deleted. It had planned messages, so they are kept as its history; unsent ones are skipped."),
        "tested": N_("Test message queued for the staff member's chat."), "ran": N_("Run planned.")}
# The skip reasons the planner and dispatcher record, in words.
SKIP_REASONS = (N_("no_consent"), N_("unreachable"), N_("erased"), N_("opted_out"), N_("no_chat"),
                N_("schedule_deleted"), N_("survey_open"), N_("render_failed"), N_("stop_loss"))


def clean_preview(text: str) -> Markup:
    """A rendered message as the chat shows it: Telegram's tags kept, anything else as text, links inert."""
    return Markup(nh3.clean(text.replace("\n", "<br>"), tags=TELEGRAM_TAGS | {"br"},
                            attributes={"a": {"href"}}, url_schemes={"https", "http", "tg"}))


def actor(who: Any) -> str:
    return f"console:{who.name}"


def _lang(request: Request) -> str:
    who = getattr(request.state, "operator", None)
    return who.language if who else "en"


def timing_text(request: Request, row: Schedule) -> str:
    lang = _lang(request)
    if row.one_off_at:
        return gettext(lang, "once, at %(when)s", when=as_utc(row.one_off_at).strftime("%Y-%m-%d %H:%M UTC"))
    if RULES[row.kind].event_driven:
        return gettext(lang, "when it happens")
    if row.member_local_time:
        return gettext(lang, "%(time)s in each member's time zone", time=row.daily_time or "09:00")
    if row.cron:
        return gettext(lang, "cron %(cron)s (%(zone)s)", cron=row.cron, zone=row.timezone)
    return gettext(lang, "every day at %(time)s (%(zone)s)", time=row.daily_time or "", zone=row.timezone)


async def _staff(console: Any) -> list[Staff]:
    async with console.db.read() as s:
        return list((await s.execute(sa.select(Staff).order_by(Staff.role, Staff.telegram_id))).scalars())


def _form_values(row: Schedule) -> dict[str, Any]:
    segment = row.segment or {}
    return {
        "name": row.name, "kind": row.kind,
        "timing": "one_off" if row.one_off_at else "cron" if row.cron else "daily",
        "daily_time": row.daily_time or "", "cron": row.cron or "", "timezone": row.timezone,
        "member_local_time": row.member_local_time,
        "one_off_at": as_utc(row.one_off_at).strftime("%Y-%m-%dT%H:%M") if row.one_off_at else "",
        "offset_days": str(row.offset_days), "frequency_cap_days": "" if row.frequency_cap_days is None
        else str(row.frequency_cap_days),
        "tiers": list(segment.get("tiers", [])), "languages": list(segment.get("languages", [])),
        "min_balance": str(segment.get("min_balance", "")), "max_balance": str(segment.get("max_balance", "")),
        "joined_before_days": str(segment.get("joined_before_days", "")),
        "segment_more": json.dumps({k: v for k, v in segment.items() if k not in FORM_SEGMENT_KEYS},
                                   ensure_ascii=False) if set(segment) - set(FORM_SEGMENT_KEYS) else "",
        "params": {k: str(v).lower() if isinstance(v, bool) else "" if v is None else str(v)
                   for k, v in (row.params or {}).items()},
        "templates": dict(row.templates or {}),
        **_campaign_values(row.params or {}),
        "updated_at": as_utc(row.updated_at).isoformat() if row.updated_at else "",
    }


def _campaign_values(params: dict[str, Any]) -> dict[str, str]:
    """The offer and when-capped fields of the form, from a schedule's params."""
    given = params.get("offer")
    offer: dict[str, Any] = given if isinstance(given, dict) else {}
    return {"offer_reward": str(offer.get("reward") or ""), "offer_valid_days": str(offer.get("valid_days") or 7),
            "offer_remind_days": str(offer.get("remind_days_before") or 0),
            "when_capped": when_capped(params)}


CAMPAIGN_FORM_PARAMS = ("offer", "when_capped")  # the params the form's offer section shows (and may clear)


def _read_campaign(form: Any, kind: str, params: dict[str, Any], problems: dict[str, str], lang: str
                   ) -> dict[str, Any]:
    """`params` with the form's offer and when-capped choice, for the kinds whose form shows them (checked
    with the rest when saved)."""
    if RULES[kind].survey is not None:
        return params
    reward = str(form.get("offer_reward") or "").strip()[:64]
    choice = str(form.get("when_capped") or "skip") if kind in MARKETING_KINDS else None
    if choice is not None and choice not in WHEN_CAPPED:
        problems["when_capped"] = gettext(lang, "choose one of the options")
        return params
    days = _whole(form, "offer_valid_days", problems, lang, low=1, high=365) if reward else None
    remind = _whole(form, "offer_remind_days", problems, lang, low=0, high=364) if reward else None
    return editing.with_campaign(params, reward=reward, valid_days=days, remind_days=remind, when_capped=choice)


def _whole(form: Any, name: str, problems: dict[str, str], lang: str, *, low: int, high: int) -> int | None:
    text = str(form.get(name) or "").strip()
    if not text:
        return None
    if not text.lstrip("-").isdigit() or len(text) > 9 or not low <= int(text) <= high:
        problems[name] = gettext(lang, "a whole number from %(low)s to %(high)s", low=low, high=high)
        return None
    return int(text)


def _read_form(form: Any, kind: str, lang: str, programme_tiers: list[str]) -> tuple[dict[str, Any], dict[str, str]]:
    """The schedule's fields from the form, and the problems found per field (in the operator's language)."""
    problems: dict[str, str] = {}
    text = {key: str(form.get(key) or "").strip() for key in ("name", "timing", "daily_time", "cron", "timezone",
                                                               "one_off_at")}
    values: dict[str, Any] = {"name": text["name"][:200]}
    timing = text["timing"] or "daily"
    values["member_local_time"] = form.get("member_local_time") == "on"
    values["timezone"] = text["timezone"][:64] or "UTC"
    values["cron"] = text["cron"][:100] if timing == "cron" else None
    values["daily_time"] = text["daily_time"][:5] if timing == "daily" else None
    values["one_off_at"] = None
    if timing == "one_off":
        try:
            values["one_off_at"] = as_utc(datetime.fromisoformat(text["one_off_at"]))
        except ValueError:
            problems["one_off_at"] = gettext(lang, "a date and time, e.g. 2027-01-31 10:00")
    if RULES[kind].event_driven:
        values.update(cron=None, daily_time=None, one_off_at=None, member_local_time=False)
    values["offset_days"] = _whole(form, "offset_days", problems, lang, low=0, high=366) or 0
    values["frequency_cap_days"] = _whole(form, "frequency_cap_days", problems, lang, low=1, high=3660)
    segment: dict[str, Any] = {}
    tiers = [t for t in form.getlist("tiers") if isinstance(t, str)]
    if any(t not in programme_tiers for t in tiers):
        problems["tiers"] = gettext(lang, "unknown tier")
    elif tiers:
        segment["tiers"] = tiers
    languages = [x for x in form.getlist("languages") if isinstance(x, str)]
    if any(x not in LANGUAGES for x in languages):
        problems["languages"] = gettext(lang, "unknown language")
    elif languages:
        segment["languages"] = languages
    for key in ("min_balance", "max_balance", "joined_before_days"):
        number = _whole(form, key, problems, lang, low=0, high=100_000_000)
        if number is not None:
            segment[key] = number
    more = str(form.get("segment_more") or "").strip()
    if more:
        try:
            segment = {**editing.parse_segment(more[:4000]), **segment}
        except ScheduleProblem as exc:
            problems["segment"] = str(exc)
    values["segment"] = segment
    params = {key: str(form.get(f"param_{key}") or "").strip()[:100] for key in DEFAULT_PARAMS.get(kind, {})}
    try:
        values["params"] = {**DEFAULT_PARAMS.get(kind, {}),
                            **editing.parse_params(kind, {k: v for k, v in params.items() if v})}
    except ScheduleProblem as exc:
        problems["params"] = str(exc)
    else:
        values["params"] = _read_campaign(form, kind, values["params"], problems, lang)
    values["templates"] = {language: str(form.get(f"template_{language}") or "").replace("\r\n", "\n")
                           for language in LANGUAGES if str(form.get(f"template_{language}") or "").strip()}
    for key, value in values.items():
        if isinstance(value, str) and any(ord(c) < 32 and c not in "\n\t" for c in value):
            problems[key] = gettext(lang, "control characters are not allowed")
    for language, source in values["templates"].items():
        if any(ord(c) < 32 and c not in "\n\t" for c in source):
            problems[f"template_{language}"] = gettext(lang, "control characters are not allowed")
    return values, problems


def _problem_field(exc: ScheduleProblem) -> str:
    return {"timing": "daily_time", "templates": "template_en"}.get(exc.field or "", exc.field or "name")


async def _page(request: Request, console: Any, *, row: Schedule | None, kind: str, values: dict[str, Any],
                problems: dict[str, str], status: int = 200, flash: str | None = None) -> HTMLResponse:
    now = utcnow()
    try:
        audience: int | None = await editing.audience(console.loyalty, (row.segment or {}) if row else {}, now)
    except ScheduleProblem:
        audience = None
    outbox = await editing.outbox_of(console.loyalty, stored_id(row.id), limit=0) if row and row.id else None
    return render(request, "schedules/edit.html", status=status, row=row, kind=kind, values=values,
                  problems=problems, kinds=KINDS, kind_labels=KIND_LABELS, languages_list=LANGUAGES,
                  tiers=[t.code for t in console.loyalty.programme.tiers.levels],
                  params=DEFAULT_PARAMS.get(kind, {}), variables=[(v, VARIABLES[v]) for v in variables_for(kind)],
                  event_driven=RULES[kind].event_driven, audience=audience, outbox=outbox,
                  staff=await _staff(console), statuses=STATUSES, flash=flash,
                  offers=RULES[kind].survey is None, marketing=kind in MARKETING_KINDS,
                  rewards=[(r.code, r.titles.get(_lang(request)) or r.titles.get("en") or r.code)
                           for r in console.loyalty.programme.rewards if r.active],
                  timing=timing_text(request, row) if row else "")


@router.get("/console/schedules", include_in_schema=False)
async def schedule_list(request: Request, console: Deps, _who: Operator, done: str | None = None) -> Response:
    rows = await editing.list_schedules(console.loyalty)
    counts: dict[int, dict[str, int]] = {}
    for row in rows:
        counts[stored_id(row.id)] = (await editing.outbox_of(console.loyalty, stored_id(row.id), limit=0)).by_status
    return render(request, "schedules/list.html", rows=rows, counts=counts, kind_labels=KIND_LABELS, kinds=KINDS,
                  timing=lambda row: timing_text(request, row), statuses=STATUSES,
                  flash=gettext(_lang(request), DONE[done]) if done in DONE else None)


@router.get("/console/schedules/new", include_in_schema=False)
async def schedule_new(request: Request, console: Deps, _who: Operator, kind: str = "birthday") -> Response:
    if kind not in KINDS:
        kind = "birthday"
    zone = console.loyalty.programme.programme.timezone
    row = Schedule(name="", kind=kind, daily_time="10:00", timezone=zone, member_local_time=kind in (
        "birthday", "anniversary", "points_expiry", "coupon_expiry"), offset_days=DEFAULT_OFFSET_DAYS.get(kind, 0),
        frequency_cap_days=DEFAULT_CAP_DAYS.get(kind), params=dict(DEFAULT_PARAMS.get(kind, {})),
        templates=default_templates(template_kind(Schedule(name="", kind=kind))))
    values = _form_values(row)
    return await _page(request, console, row=None, kind=kind, values=values, problems={})


@router.post("/console/schedules/new", include_in_schema=False)
async def schedule_create(request: Request, console: Deps, who: Csrf) -> Response:
    form = await request.form()
    kind = str(form.get("kind") or "")
    if kind not in KINDS:
        return await _page(request, console, row=None, kind="birthday", values=_form_values(Schedule(
            name="", kind="birthday")), problems={"kind": gettext(who.language, "unknown kind")}, status=422)
    tiers = [t.code for t in console.loyalty.programme.tiers.levels]
    values, problems = _read_form(form, kind, who.language, tiers)
    shown = {**_form_values(Schedule(kind=kind, **{k: v for k, v in values.items()})), "timing": str(
        form.get("timing") or "daily"), "one_off_at": str(form.get("one_off_at") or "")}
    if not problems:
        row = Schedule(kind=kind, enabled=form.get("paused") != "on", **values)
        try:
            saved = await editing.add(console.loyalty, row, actor=actor(who))
        except ScheduleProblem as exc:
            problems[_problem_field(exc)] = str(exc)
        else:
            log.info("console: operator %s added schedule %s", who.operator_id, saved.id)
            return RedirectResponse(f"/console/schedules/{saved.id}?done=added", status_code=303)
    log.info("console: refused a new schedule: %s", ", ".join(sorted(problems)))
    return await _page(request, console, row=None, kind=kind, values=shown, problems=problems, status=422)


async def _schedule(console: Any, schedule_id: int) -> Schedule:
    from loyalbot.console.pages.web import ConsoleRefusal

    try:
        return await editing.get(console.loyalty, schedule_id)
    except ScheduleProblem:
        raise ConsoleRefusal(404, "There is no such schedule.") from None


@router.get("/console/schedules/{schedule_id}", include_in_schema=False)
async def schedule_show(request: Request, console: Deps, _who: Operator, schedule_id: int,
                        done: str | None = None) -> Response:
    row = await _schedule(console, schedule_id)
    return await _page(request, console, row=row, kind=row.kind, values=_form_values(row), problems={},
                       flash=gettext(_lang(request), DONE[done]) if done in DONE else None)


@router.post("/console/schedules/{schedule_id}", include_in_schema=False)
async def schedule_save(request: Request, console: Deps, who: Csrf, schedule_id: int) -> Response:
    row = await _schedule(console, schedule_id)
    form = await request.form()
    tiers = [t.code for t in console.loyalty.programme.tiers.levels]
    values, problems = _read_form(form, row.kind, who.language, tiers)
    if "params" in values:  # the form shows the kind's own parameters and the offer; a campaign's others
        shown_params = {*DEFAULT_PARAMS.get(row.kind, {}), *CAMPAIGN_FORM_PARAMS}  # (variants, ...) are kept
        values["params"] = {**{k: v for k, v in (row.params or {}).items() if k not in shown_params},
                            **values["params"]}
    based_on = None
    try:
        based_on = datetime.fromisoformat(str(form.get("updated_at") or ""))
    except ValueError:
        problems["updated_at"] = gettext(who.language, "this form is not from this schedule's page")
    if not problems:
        try:
            await editing.edit(console.loyalty, schedule_id, values, actor=actor(who), based_on=based_on)
        except ScheduleProblem as exc:
            problems[_problem_field(exc)] = str(exc)
        else:
            return RedirectResponse(f"/console/schedules/{schedule_id}?done=saved", status_code=303)
    shown = {**_form_values(row), **{k: v for k, v in _form_values(Schedule(kind=row.kind, **values)).items()
                                     if k not in ("updated_at", "kind")}, "timing": str(form.get("timing") or "daily")}
    return await _page(request, console, row=row, kind=row.kind, values=shown, problems=problems, status=422)


@router.post("/console/schedules/{schedule_id}/{action}", include_in_schema=False)
async def schedule_action(request: Request, console: Deps, who: Csrf, schedule_id: int, action: str) -> Response:
    row = await _schedule(console, schedule_id)
    form = await request.form()
    try:
        if action in ("pause", "resume"):
            await editing.set_enabled(console.loyalty, schedule_id, action == "resume", actor=actor(who))
            return RedirectResponse(f"/console/schedules/{schedule_id}?done={action}d", status_code=303)
        if action == "delete":
            if str(form.get("confirm") or "").strip() != row.name:
                raise ScheduleProblem(gettext(who.language, "type the schedule's name to delete it"), "confirm")
            outcome = await editing.delete(console.loyalty, schedule_id, actor=actor(who))
            return RedirectResponse(f"/console/schedules?done={outcome}", status_code=303)
        if action == "run":
            await editing.run_now(console.loyalty, row, actor=actor(who))
            return RedirectResponse(f"/console/schedules/{schedule_id}?done=ran", status_code=303)
        if action == "test":
            staff_text = str(form.get("staff") or "").strip()
            if not staff_text.isdigit() or len(staff_text) > 19:
                raise ScheduleProblem(gettext(who.language, "choose a staff member"), "staff")
            await editing.test_send(console.loyalty, row, member_no=str(form.get("member_no") or "")[:32],
                                    staff_telegram_id=int(staff_text), actor=actor(who),
                                    language=str(form.get("language") or "") or None)
            return RedirectResponse(f"/console/schedules/{schedule_id}?done=tested", status_code=303)
    except ScheduleProblem as exc:
        log.info("console: refused %s on schedule %s: %s", action, schedule_id, exc.field)
        return await _page(request, console, row=row, kind=row.kind, values=_form_values(row),
                           problems={exc.field or action: str(exc)}, status=422)
    from loyalbot.console.pages.web import ConsoleRefusal

    raise ConsoleRefusal(404, "There is no such schedule.")


@router.get("/console/schedules/{schedule_id}/preview", include_in_schema=False)
async def schedule_preview(request: Request, console: Deps, _who: Operator, schedule_id: int,
                           member_no: str = "") -> Response:
    row = await _schedule(console, schedule_id)
    texts: dict[str, Markup] = {}
    problem = None
    if member_no.strip():
        try:
            texts = {k: clean_preview(v) for k, v in (await editing.preview_as(
                console.loyalty, row, member_no[:32])).items()}
        except ScheduleProblem as exc:
            problem = str(exc)
    stats = None
    if not RULES[row.kind].event_driven:
        stats = await editing.dry_run(console.loyalty, row)
    return render(request, "schedules/preview.html", row=row, member_no=member_no[:32], texts=texts,
                  problem=problem, stats=stats, samples=[(lang, clean_preview(text)) for lang, text in
                                                         (stats.samples if stats else [])],
                  kind_labels=KIND_LABELS)


@router.get("/console/schedules/{schedule_id}/outbox", include_in_schema=False)
async def schedule_outbox(request: Request, console: Deps, _who: Operator, schedule_id: int,
                          status: str = "", page: int = 1) -> Response:
    row = await _schedule(console, schedule_id)
    status = status if status in STATUSES else ""
    page = max(1, min(page, 100_000))
    view = await editing.outbox_of(console.loyalty, schedule_id, status=status or None, limit=50,
                                   offset=(page - 1) * 50)
    return render(request, "schedules/outbox.html", row=row, view=view, chosen=status, statuses=STATUSES,
                  page=page)


@router.post("/console/schedules-template-preview", include_in_schema=False)
async def template_preview(request: Request, console: Deps, who: Csrf) -> Response:
    """The htmx preview of one template as it is typed: the message, or the sandbox's complaint."""
    form = await request.form()
    kind, language = str(form.get("kind") or ""), str(form.get("language") or "")
    source = str(form.get(f"template_{language}") or "")
    try:
        text = editing.try_template(console.loyalty, kind, language, source)
    except ScheduleProblem as exc:
        return render(request, "schedules/_preview.html", problem=str(exc), text=None, language=language)
    return render(request, "schedules/_preview.html", problem=None, text=clean_preview(text), language=language)


@router.get("/console/schedules-audience", include_in_schema=False)
async def audience_count(request: Request, console: Deps, who: Operator) -> Response:
    """The htmx count of members a segment reaches, as the operator ticks tiers and languages."""
    tiers = [t.code for t in console.loyalty.programme.tiers.levels]
    values, problems = _read_form(request.query_params, "broadcast", who.language, tiers)
    count = None
    if not problems:
        try:
            count = await editing.audience(console.loyalty, values["segment"])
        except ScheduleProblem as exc:
            problems["segment"] = str(exc)
    return render(request, "schedules/_audience.html", count=count, problem=next(iter(problems.values()), None))
