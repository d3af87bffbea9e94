"""The programme in the console: tiers, earning and expiry, the reward catalogue, versions and their history.

Every form carries the version it was opened on (`based_on`); a save makes the next version, with its author
and what changed, audited, and is refused over a newer one (no lost update). Running bots take it within
seconds (loyalty/versions.py). Validation errors re-render the form, 422, each message beside its field.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse, RedirectResponse, Response
from sqlmodel import select
from starlette.datastructures import UploadFile

from loyalbot.chat.languages import LANGUAGES
from loyalbot.console.pages.web import ConsoleRefusal, Csrf, Deps, Operator, gettext, render
from loyalbot.console.programme_forms import (
    MESSAGES,
    Problems,
    milestones_text,
    with_points_rules,
    with_reward,
    with_rules,
    with_tier,
)
from loyalbot.console.rule_forms import with_bonus, with_stamp_card
from loyalbot.loyalty.programme import Programme, ProgrammeError, programme_toml
from loyalbot.loyalty.versions import (
    IMAGE_BYTES,
    ImageRefused,
    NothingChanged,
    ProgrammeConflict,
    check_image,
)
from loyalbot.storage.models import Reward

log = logging.getLogger(__name__)
router = APIRouter()
IMAGE_NAME = re.compile(r"^[0-9a-f]{64}$")


def _author(who: Any) -> str:
    return f"console:{who.name}"[:64]


async def _stock_left(console: Any) -> dict[str, int | None]:
    async with console.db.read() as s:
        return {code: stock for code, stock in (await s.execute(select(Reward.code, Reward.stock))).all()}


def _based_on(form: Any) -> int | None:
    value = form.get("based_on")
    return int(value) if isinstance(value, str) and value.isdigit() and len(value) < 10 else None


def _base(request: Request, console: Any, **values: Any) -> dict[str, Any]:
    return {"programme": console.loyalty.programme, "version": console.loyalty.in_force.version,
            "languages_order": LANGUAGES, **values}


async def _save(request: Request, console: Any, who: Any, programme: Programme, form: Any, *, template: str,
                back: str, what: str, **values: Any) -> Response:
    """Store the edited programme as a new version and go back (303), or say why not (409, 422)."""
    lang = who.language
    based_on = _based_on(form)
    try:
        row = await console.loyalty.save_programme(programme, author=_author(who), based_on=based_on)
    except ProgrammeConflict:
        log.info("console: operator %s's %s edit refused: version %s is no longer the newest", who.operator_id,
                 what, based_on)
        problems = Problems(lang, general=[gettext(
            lang, "Someone saved the programme after you opened this form (it was version %(based)s, it is now "
                  "version %(now)s). Nothing was saved: open the form again to see their change.",
            based=based_on if based_on is not None else "–", now=console.loyalty.in_force.version or "–")])
        return render(request, template, status=409, problems=problems, form=form,
                      **_base(request, console, based_on=based_on, **values))
    except NothingChanged:
        return RedirectResponse(f"{back}?saved=same", status_code=303)
    except ImageRefused as exc:
        problems = Problems(lang, fields={"image": gettext(lang, MESSAGES["image"])})
        log.info("console: operator %s's picture refused: %s", who.operator_id, exc.params.get("reason"))
        return render(request, template, status=422, problems=problems, form=form,
                      **_base(request, console, based_on=based_on, **values))
    log.info("console: operator %s saved programme version %s (%s)", who.operator_id, row.version, what)
    return RedirectResponse(f"{back}?saved={row.version}", status_code=303)


def _flash(request: Request, lang: str) -> str | None:
    saved = request.query_params.get("saved")
    if saved == "same":
        return gettext(lang, "Nothing changed, so no new version was made.")
    if saved and saved.isdigit():
        return gettext(lang, "Saved as version %(version)s. Running bots use it within seconds.", version=saved)
    return None


# --- the overview ----------------------------------------------------------------------------------------


@router.get("/console/programme", include_in_schema=False)
async def overview(request: Request, console: Deps, who: Operator) -> Response:
    version = console.loyalty.in_force.version
    row = await console.loyalty.programmes.get(version) if version else None
    return render(request, "programme/index.html", flash=_flash(request, who.language), latest=row,
                  stock_left=await _stock_left(console), **_base(request, console))


# --- tiers ---------------------------------------------------------------------------------------------


def _tier_or_404(programme: Programme, code: str) -> None:
    if not any(level.code == code for level in programme.tiers.levels):
        raise ConsoleRefusal(404, "There is no such tier.")


@router.get("/console/programme/tiers/{code}", include_in_schema=False)
async def tier_form(request: Request, console: Deps, _who: Operator, code: str) -> Response:
    programme = console.loyalty.programme
    _tier_or_404(programme, code)
    return render(request, "programme/tier.html", problems=None, form=None, tier=programme.tier(code),
                  **_base(request, console, based_on=console.loyalty.in_force.version))


@router.post("/console/programme/tiers/{code}", include_in_schema=False)
async def tier_save(request: Request, console: Deps, who: Csrf, code: str) -> Response:
    form = await request.form()
    programme = console.loyalty.programme
    _tier_or_404(programme, code)
    changed, problems = with_tier(programme, code, form, who.language)
    if changed is None:
        log.info("console: operator %s's tier edit refused (%s)", who.operator_id, ", ".join(problems.fields))
        return render(request, "programme/tier.html", status=422, problems=problems, form=form,
                      tier=programme.tier(code), **_base(request, console, based_on=_based_on(form)))
    return await _save(request, console, who, changed, form, template="programme/tier.html",
                       back="/console/programme", what="tier", tier=programme.tier(code))


# --- earning, expiry, the tier window -----------------------------------------------------------------


@router.get("/console/programme/rules", include_in_schema=False)
async def rules_form(request: Request, console: Deps, _who: Operator) -> Response:
    return render(request, "programme/rules.html", problems=None, form=None,
                  **_base(request, console, based_on=console.loyalty.in_force.version))


@router.post("/console/programme/rules", include_in_schema=False)
async def rules_save(request: Request, console: Deps, who: Csrf) -> Response:
    form = await request.form()
    changed, problems = with_rules(console.loyalty.programme, form, who.language)
    if changed is None:
        log.info("console: operator %s's rules edit refused (%s)", who.operator_id, ", ".join(problems.fields))
        return render(request, "programme/rules.html", status=422, problems=problems, form=form,
                      **_base(request, console, based_on=_based_on(form)))
    return await _save(request, console, who, changed, form, template="programme/rules.html",
                       back="/console/programme", what="rules")


# --- pending points, referrals, the expiry mode ---------------------------------------------------------


@router.get("/console/programme/points", include_in_schema=False)
async def points_form(request: Request, console: Deps, _who: Operator) -> Response:
    return render(request, "programme/points.html", problems=None, form=None,
                  milestones=milestones_text(console.loyalty.programme),
                  **_base(request, console, based_on=console.loyalty.in_force.version))


@router.post("/console/programme/points", include_in_schema=False)
async def points_save(request: Request, console: Deps, who: Csrf) -> Response:
    form = await request.form()
    changed, problems = with_points_rules(console.loyalty.programme, form, who.language)
    milestones = milestones_text(console.loyalty.programme)
    if changed is None:
        log.info("console: operator %s's points edit refused (%s)", who.operator_id,
                 ", ".join(problems.fields) or "general")
        return render(request, "programme/points.html", status=422, problems=problems, form=form,
                      milestones=milestones, **_base(request, console, based_on=_based_on(form)))
    return await _save(request, console, who, changed, form, template="programme/points.html",
                       back="/console/programme", what="points", milestones=milestones)


# --- rewards -------------------------------------------------------------------------------------------


def _reward_or_404(programme: Programme, code: str) -> Any:
    for reward in programme.rewards:
        if reward.code == code:
            return reward
    raise ConsoleRefusal(404, "There is no such reward.")


async def _picture(form: Any, lang: str) -> tuple[bytes | None, str | None]:
    """The uploaded picture's bytes (None: none chosen), or a message when it is not one we take."""
    upload = form.get("image")
    if not isinstance(upload, UploadFile) or not upload.filename:
        return None, None
    data = await upload.read(IMAGE_BYTES + 1)
    try:
        check_image(data)
    except ImageRefused:
        return None, gettext(lang, MESSAGES["image"])
    return data, None


@router.get("/console/programme/rewards/new", include_in_schema=False)
async def reward_new(request: Request, console: Deps, _who: Operator) -> Response:
    return render(request, "programme/reward.html", problems=None, form=None, reward=None, stock=None,
                  **_base(request, console, based_on=console.loyalty.in_force.version))


@router.get("/console/programme/rewards/{code}", include_in_schema=False)
async def reward_form(request: Request, console: Deps, _who: Operator, code: str) -> Response:
    reward = _reward_or_404(console.loyalty.programme, code)
    left = (await _stock_left(console)).get(code)
    return render(request, "programme/reward.html", problems=None, form=None, reward=reward, stock=left,
                  **_base(request, console, based_on=console.loyalty.in_force.version))


async def _reward_save(request: Request, console: Any, who: Any, code: str | None) -> Response:
    form = await request.form()
    lang = who.language
    programme = console.loyalty.programme
    reward = _reward_or_404(programme, code) if code else None
    left = (await _stock_left(console)).get(code) if code else None
    picture, picture_problem = await _picture(form, lang)
    keep = reward.image if reward is not None and form.get("remove_image") != "on" else None
    changed, problems = with_reward(programme, code, form, lang, stock_left=left, image=keep)
    if picture_problem:
        problems.add("image", picture_problem)
        changed = None
    values = {"reward": reward, "stock": left}
    if changed is None:
        log.info("console: operator %s's reward edit refused (%s)", who.operator_id,
                 ", ".join(list(problems.fields) + (["general"] if problems.general else [])))
        return render(request, "programme/reward.html", status=422, problems=problems, form=form,
                      **_base(request, console, based_on=_based_on(form), **values))
    if picture is not None:
        name = await console.loyalty.programmes.store_image(picture, author=_author(who))
        typed = form.get("code")
        target = code or (typed.strip() if isinstance(typed, str) else "")
        changed = changed.model_copy(update={"rewards": tuple(
            r.model_copy(update={"image": name}) if r.code == target else r for r in changed.rewards)})
    return await _save(request, console, who, changed, form, template="programme/reward.html",
                       back="/console/programme", what="reward", **values)


@router.post("/console/programme/rewards/new", include_in_schema=False)
async def reward_add(request: Request, console: Deps, who: Csrf) -> Response:
    return await _reward_save(request, console, who, None)


@router.post("/console/programme/rewards/{code}", include_in_schema=False)
async def reward_save(request: Request, console: Deps, who: Csrf, code: str) -> Response:
    return await _reward_save(request, console, who, code)


@router.get("/console/programme/images/{name}", include_in_schema=False)
async def image(console: Deps, _who: Operator, name: str) -> Response:
    found = await console.loyalty.programmes.image(name) if IMAGE_NAME.match(name) else None
    if found is None:
        raise ConsoleRefusal(404, "There is no such picture.")
    return Response(found.data, media_type=found.content_type,
                    headers={"Cache-Control": "private, max-age=31536000, immutable",
                             "Content-Disposition": "inline"})


# --- versions ------------------------------------------------------------------------------------------


@router.get("/console/programme/history", include_in_schema=False)
async def history(request: Request, console: Deps, _who: Operator) -> Response:
    rows = await console.loyalty.programmes.history()
    return render(request, "programme/history.html", rows=rows, **_base(request, console))


@router.get("/console/programme/versions/{version}", include_in_schema=False)
async def version_page(request: Request, console: Deps, _who: Operator, version: int) -> Response:
    row = await console.loyalty.programmes.get(version) if 0 < version < 2**31 else None
    if row is None:
        raise ConsoleRefusal(404, "There is no such version.")
    try:
        text = programme_toml(console.loyalty.programmes.programme_of(row),
                              header=f"loyalbot programme, version {row.version}")
    except ProgrammeError as exc:  # written by a newer loyalbot
        log.warning("console: programme version %s cannot be shown: %s", row.version, exc)
        raise ConsoleRefusal(404, "There is no such version.") from None
    if request.query_params.get("download"):
        return PlainTextResponse(text, media_type="application/toml", headers={
            "Content-Disposition": f'attachment; filename="programme-v{row.version}.toml"'})
    return render(request, "programme/version.html", row=row, toml=text, **_base(request, console))


__all__ = ["router"]


# --- bonus campaigns and stamp cards (loyalty/bonuses.py, loyalty/stamps.py) ----------------------------

RULE_PAGES = {"bonuses": ("programme/bonus.html", with_bonus, "bonus"),
              "stamp-cards": ("programme/stamp_card.html", with_stamp_card, "stamp card")}


def _rule_or_404(programme: Programme, kind: str, code: str | None) -> Any:
    if kind not in RULE_PAGES:
        raise ConsoleRefusal(404, "There is no such page.")
    if code is None:
        return None
    rules = programme.bonuses if kind == "bonuses" else programme.stamp_cards
    found = next((rule for rule in rules if rule.code == code), None)
    if found is None:
        raise ConsoleRefusal(404, "There is no such bonus or stamp card.")
    return found


async def _rule_form(request: Request, console: Any, kind: str, code: str | None) -> Response:
    rule = _rule_or_404(console.loyalty.programme, kind, code)
    return render(request, RULE_PAGES[kind][0], problems=None, form=None, rule=rule,
                  **_base(request, console, based_on=console.loyalty.in_force.version))


async def _rule_save(request: Request, console: Any, who: Any, kind: str, code: str | None) -> Response:
    form = await request.form()
    programme = console.loyalty.programme
    rule = _rule_or_404(programme, kind, code)
    template, edit, what = RULE_PAGES[kind]
    changed, problems = edit(programme, code, form, who.language)
    if changed is None:
        log.info("console: operator %s's %s edit refused (%s)", who.operator_id, what,
                 ", ".join(list(problems.fields) + (["general"] if problems.general else [])))
        return render(request, template, status=422, problems=problems, form=form, rule=rule,
                      **_base(request, console, based_on=_based_on(form)))
    return await _save(request, console, who, changed, form, template=template, back="/console/programme",
                       what=what, rule=rule)


@router.get("/console/programme/{kind}/new", include_in_schema=False)
async def rule_new(request: Request, console: Deps, _who: Operator, kind: str) -> Response:
    return await _rule_form(request, console, kind, None)


@router.post("/console/programme/{kind}/new", include_in_schema=False)
async def rule_add(request: Request, console: Deps, who: Csrf, kind: str) -> Response:
    return await _rule_save(request, console, who, kind, None)


@router.get("/console/programme/{kind}/{code}", include_in_schema=False)
async def rule_form(request: Request, console: Deps, _who: Operator, kind: str, code: str) -> Response:
    return await _rule_form(request, console, kind, code)


@router.post("/console/programme/{kind}/{code}", include_in_schema=False)
async def rule_save(request: Request, console: Deps, who: Csrf, kind: str, code: str) -> Response:
    return await _rule_save(request, console, who, kind, code)
