"""`loyalbot campaign ...`: score members, try and save segments, install the built-in plays, and a campaign's
results (per variant and the control group).

Same store and programme options as `loyalbot schedule` (scheduler/cli.py); a segment that cannot be used is
refused with exit code 2 and the reason, before anything is saved. `results NAME` prints one row per variant,
all messages together and the control group: sent (or held out), converted, conversion with its 95% Wilson
interval, revenue, points, coupon redemption (when offers link coupons to the messages) and the lift against
the control group with its 95% interval (scheduler/attribution.py). `--json` prints the same as one JSON object.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Annotated, Any

import sqlalchemy as sa
import typer
from rich.table import Table

from loyalbot.loyalty.service import Loyalty
from loyalbot.scheduler.attribution import Arm, CampaignResults, Rate, campaign_results
from loyalbot.scheduler.cli import CLI_ACTOR, DbUrl, ProgrammePath, Refused, _get, _run, console
from loyalbot.scheduler.kinds import LIFECYCLE_STAGES
from loyalbot.scheduler.planner import Planner, PlanStats
from loyalbot.scheduler.plays import PLAYS, Installed, install_plays
from loyalbot.scheduler.rfm import ScoreRun, score_and_plan
from loyalbot.scheduler.saved_segments import delete_segment, list_segments, save_segment
from loyalbot.scheduler.segments import segment_size
from loyalbot.storage import utcnow
from loyalbot.storage.models import MemberScore, Schedule

campaign_app = typer.Typer(help="Campaigns: score members (RFM, lifecycle), segments, built-in plays, results.",
                           no_args_is_help=True)
plays_app = typer.Typer(help="Built-in plays: ready schedules, installed disabled.", no_args_is_help=True)
segment_app = typer.Typer(help="Saved segments: list, count, save, delete.", no_args_is_help=True)
campaign_app.add_typer(plays_app, name="plays")
campaign_app.add_typer(segment_app, name="segment")


def _json_segment(text: str) -> dict[str, Any]:
    """A segment given as JSON, or as the name of a saved segment."""
    if not text.lstrip().startswith("{"):
        return {"segment": text.strip()}
    try:
        segment = json.loads(text)
    except json.JSONDecodeError as exc:
        raise Refused(f"the segment is not JSON: {exc.msg} at character {exc.pos}") from None
    if not isinstance(segment, dict):
        raise Refused("a segment is a JSON object, e.g. {\"lifecycle\": [\"dormant\"]}")
    return segment


@campaign_app.command("score")
def campaign_score(ctx: typer.Context, database_url: DbUrl = None, programme: ProgrammePath = None) -> None:
    """Score every member now (RFM quintiles, lifecycle stage) and plan lifecycle_change messages for those who
    moved; the bot does this nightly at the programme's [lifecycle] score_at."""

    async def work(loyalty: Loyalty) -> tuple[ScoreRun, list[PlanStats], Counter[str]]:
        run, planned = await score_and_plan(Planner(loyalty), utcnow(), actor=CLI_ACTOR)
        async with loyalty.db.read() as s:
            stages = Counter({stage: int(n) for stage, n in (await s.execute(
                sa.select(MemberScore.lifecycle, sa.func.count()).group_by(MemberScore.lifecycle))).all()})
        return run, planned, stages

    run, planned, stages = _run(ctx, database_url, programme, work)
    table = Table("stage", "members", "moved here now")
    for stage in LIFECYCLE_STAGES:
        table.add_row(stage, str(stages.get(stage, 0)), str(run.moved_to.get(stage, 0)))
    console.print(table)
    console.print(f"scored {run.scored} members; {run.changes} changed stage")
    for stats in planned:
        console.print(f"{stats.schedule}: planned {stats.planned}, skipped {dict(stats.skipped)}")


@plays_app.command("list")
def plays_list(ctx: typer.Context, database_url: DbUrl = None, programme: ProgrammePath = None) -> None:
    """The built-in plays, and whether each is installed and enabled."""

    async def work(loyalty: Loyalty) -> dict[str, bool]:
        async with loyalty.db.read() as s:
            return {name: enabled for name, enabled in (await s.execute(sa.select(Schedule.name, Schedule.enabled)
                    .where(Schedule.name.in_([p.name for p in PLAYS])))).all()}

    installed = _run(ctx, database_url, programme, work)
    table = Table("play", "kind", "what it does", "offer", "state")
    for play in PLAYS:
        state = "not installed" if play.name not in installed else "enabled" if installed[play.name] else "disabled"
        table.add_row(play.name, play.kind, play.about, play.offer() or "", state)
    console.print(table)


@plays_app.command("install")
def plays_install(ctx: typer.Context, database_url: DbUrl = None, programme: ProgrammePath = None) -> None:
    """Add the plays not installed yet, disabled (those already there are left as they are); resume one with
    `loyalbot schedule resume <play>`."""

    async def work(loyalty: Loyalty) -> Installed:
        return await install_plays(loyalty.db, loyalty.programme, actor=CLI_ACTOR, now=utcnow())

    done = _run(ctx, database_url, programme, work)
    console.print(f"installed {len(done.added)} plays, disabled: {', '.join(done.added) or 'none'}")
    if done.present:
        console.print(f"already installed, left alone: {', '.join(done.present)}")
    for name, reward in done.missing_rewards.items():
        console.print(f"[yellow]{name} offers reward {reward!r}, which the programme does not have: "
                      "edit its offer before enabling it[/yellow]")


@segment_app.command("list")
def segment_list(ctx: typer.Context, database_url: DbUrl = None, programme: ProgrammePath = None) -> None:
    """Saved segments, with how many members each reaches now."""

    async def work(loyalty: Loyalty) -> list[tuple[str, str, int]]:
        now = utcnow()
        return [(row.name, json.dumps(row.definition, ensure_ascii=False),
                 await segment_size(loyalty.db, {"segment": row.name}, now, zone=loyalty.programme.zone))
                for row in await list_segments(loyalty.db)]

    table = Table("segment", "definition", "members")
    for name, definition, size in _run(ctx, database_url, programme, work):
        table.add_row(name, definition, str(size))
    console.print(table)


@segment_app.command("count")
def segment_count(ctx: typer.Context, segment: str, database_url: DbUrl = None,
                  programme: ProgrammePath = None) -> None:
    """How many members a segment (JSON, or a saved segment's name) reaches now."""
    definition = _json_segment(segment)

    async def work(loyalty: Loyalty) -> int:
        return await segment_size(loyalty.db, definition, utcnow(), zone=loyalty.programme.zone)

    console.print(str(_run(ctx, database_url, programme, work)))


@segment_app.command("save")
def segment_save(ctx: typer.Context, name: str, segment: str, database_url: DbUrl = None,
                 programme: ProgrammePath = None) -> None:
    """Save (or replace) a segment by name, for schedules to use as {"segment": "NAME"}."""
    definition = _json_segment(segment)

    async def work(loyalty: Loyalty) -> int:
        now = utcnow()
        await save_segment(loyalty.db, name, definition, actor=CLI_ACTOR, now=now)
        return await segment_size(loyalty.db, {"segment": name}, now, zone=loyalty.programme.zone)

    console.print(f"saved {name}: {_run(ctx, database_url, programme, work)} members now")


@segment_app.command("delete")
def segment_delete(ctx: typer.Context, name: str, database_url: DbUrl = None, programme: ProgrammePath = None) -> None:
    """Delete a saved segment that no schedule or other segment uses."""

    async def work(loyalty: Loyalty) -> None:
        await delete_segment(loyalty.db, name, actor=CLI_ACTOR)

    _run(ctx, database_url, programme, work)
    console.print(f"deleted {name}")


@campaign_app.command("results")
def campaign_results_command(
    ctx: typer.Context, name: str,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object instead of a table.")] = False,
    database_url: DbUrl = None, programme: ProgrammePath = None,
) -> None:
    """Sent, converted, conversion, revenue, points, redemption and lift, per variant and for the control group."""

    async def work(loyalty: Loyalty) -> CampaignResults:
        return await campaign_results(loyalty.db, await _get(loyalty, name))

    results = _run(ctx, database_url, programme, work)
    if as_json:
        print(json.dumps(results.as_dict(), ensure_ascii=False))
        return
    table = Table("arm", "sent / held out", "converted", "conversion (95% CI)", "revenue", "points", "redeemed",
                  "lift (95% CI)", title=f"{results.schedule}: purchases within {results.window_days} days")
    arms = [*results.variants, results.treated] if len(results.variants) > 1 else list(results.variants)
    for arm in arms:
        table.add_row(*row(arm))
    if results.control is not None:
        table.add_row(*row(results.control))
    console.print(table)
    if not results.variants and results.control is None:
        console.print("Nothing sent yet.")


def percent(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f}%"


def rate_text(rate: Rate | None) -> str:
    if rate is None or rate.value is None:
        return "-"
    low, high = rate.interval or (0.0, 0.0)
    return f"{percent(rate.value)} ({percent(low)}–{percent(high)})"


def row(arm: Arm) -> list[str]:
    """One arm's cells; the control group's units are the members held out, not messages."""
    redemption = arm.redemption
    lift = "-"
    if arm.lift is not None:
        low, high = arm.lift.low, arm.lift.high
        spread = "too few to tell" if low is None or high is None else f"{low * 100:+.1f}–{high * 100:+.1f}"
        lift = f"{arm.lift.difference * 100:+.1f} pt ({spread})"
    return [arm.name, str(arm.units), str(arm.converted),
            rate_text(arm.conversion), f"{arm.revenue}", str(arm.points),
            "-" if redemption is None else f"{arm.redeemed}/{arm.with_coupon} {rate_text(redemption)}", lift]
