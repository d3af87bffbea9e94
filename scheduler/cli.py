"""`loyalbot schedule ...` and `loyalbot outbox ...`: operators' commands for care messages and reminders.

Each command opens the store at --database-url with the programme at --programme; without them, the
one `Settings` of every entry point (LOYALBOT_DATABASE_URL, LOYALBOT_PROGRAMME, LOYALBOT_TIMEZONE, read
by bot/settings.py and handed down by the root command) says where. Changes are written to the schedules table with a fresh
`updated_at`; a running bot notices within seconds and rebuilds its jobs. A bad cron expression,
an unknown template variable, a template that does not render or a segment that matches nobody
is refused with exit code 2 before anything is saved.
"""

from __future__ import annotations

import asyncio
import html.parser
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Protocol, TypeVar

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from loyalbot.chat.languages import LANGUAGES
from loyalbot.loyalty.programme import Programme, ProgrammeError, load_programme
from loyalbot.loyalty.service import Loyalty
from loyalbot.scheduler import editing
from loyalbot.scheduler.dispatcher import outbox_counts
from loyalbot.scheduler.editing import ScheduleProblem
from loyalbot.scheduler.kinds import DEFAULT_PARAMS, KINDS, RULES, template_kind
from loyalbot.scheduler.planner import PlanStats
from loyalbot.scheduler.segments import SegmentProblem, check_segment
from loyalbot.scheduler.templates import TemplateProblem, default_templates
from loyalbot.scheduler.triggers import TriggerProblem
from loyalbot.storage import Db, as_utc, utcnow
from loyalbot.storage.db import DEFAULT_URL, DbUrlError
from loyalbot.storage.migrate import upgrade_async
from loyalbot.storage.models import Schedule
from loyalbot.storage.rows import stored_id

console = Console()
err = Console(stderr=True)
T = TypeVar("T")

schedule_app = typer.Typer(help="Care messages and reminders: list, add, edit, pause, preview, run now.",
                           no_args_is_help=True)
outbox_app = typer.Typer(help="Messages planned and sent.", no_args_is_help=True)

DbUrl = Annotated[str | None, typer.Option("--database-url", help="The store (default: LOYALBOT_DATABASE_URL).")]
ProgrammePath = Annotated[str | None, typer.Option("--programme",
                                                   help="The programme file (default: LOYALBOT_PROGRAMME).")]


class ShopSettings(Protocol):
    """What these commands need of the one `Settings` (bot/settings.py), which the root command hands down."""

    @property
    def database_url(self) -> str: ...

    def load_programme(self) -> Programme: ...

    def shop_timezone(self, programme: Programme) -> str: ...


@dataclass(frozen=True)
class GivenSettings:
    """Only what was given on the command line: for these commands run without the root command (tests)."""

    database_url: str
    programme: str | None = None

    def load_programme(self) -> Programme:
        try:
            return load_programme(self.programme)
        except ProgrammeError as exc:
            raise Refused(str(exc)) from None

    def shop_timezone(self, programme: Programme) -> str:
        return programme.programme.timezone


def shop_settings(ctx: typer.Context, database_url: str | None, programme: str | None) -> ShopSettings:
    """The settings for this command: the root command's loader (`ctx.obj`) with the options given, or those alone."""
    loader = ctx.find_root().obj
    if not callable(loader):
        return GivenSettings(database_url or DEFAULT_URL, programme)
    overrides = {key: value for key, value in (("database_url", database_url), ("programme", programme))
                 if value is not None}
    settings: ShopSettings = loader(**overrides)
    return settings


CLI_ACTOR = "cli"  # who the audit log says made a change from the command line


class Refused(Exception):
    """The operator's input cannot be used; printed, exit code 2, nothing saved."""


def _run(ctx: typer.Context, database_url: str | None, programme: str | None,
         work: Callable[[Loyalty], Awaitable[T]]) -> T:
    settings = shop_settings(ctx, database_url, programme)

    async def go() -> T:
        try:
            prog = settings.load_programme()
            await upgrade_async(settings.database_url)
            db = Db(settings.database_url)
        except (ProgrammeError, DbUrlError) as exc:
            raise Refused(str(exc)) from None
        try:
            loyalty = Loyalty(db, prog)
            await loyalty.sync_programme()  # the store's newest programme version, as the bot runs on
            return await work(loyalty)
        finally:
            await db.dispose()

    try:
        return asyncio.run(go())
    except (Refused, ScheduleProblem, TemplateProblem, TriggerProblem, SegmentProblem) as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None


def shop_timezone(ctx: typer.Context, database_url: str | None, programme: str | None) -> str:
    """The shop's time zone, as the bot has it: LOYALBOT_TIMEZONE, else the programme's."""
    settings = shop_settings(ctx, database_url, programme)
    try:
        return settings.shop_timezone(settings.load_programme())
    except ProgrammeError as exc:
        raise Refused(str(exc)) from None


async def _get(loyalty: Loyalty, name: str) -> Schedule:
    try:
        return await editing.get(loyalty, name)
    except ScheduleProblem:
        raise Refused(f"no schedule called {name!r} (see `loyalbot schedule list`)") from None


def _parse_templates(items: list[str] | None) -> dict[str, str]:
    """LANG=FILE or LANG=text pairs."""
    templates: dict[str, str] = {}
    for item in items or []:
        lang, sep, value = item.partition("=")
        if not sep or lang not in LANGUAGES:
            raise Refused(f"--template wants LANG=FILE or LANG=TEXT with LANG one of {', '.join(LANGUAGES)}")
        path = Path(value)
        templates[lang] = path.read_text(encoding="utf-8") if value and path.is_file() else value
    return templates


def _parse_params(items: list[str] | None, kind: str) -> dict[str, Any]:
    pairs: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise Refused(f"--param wants KEY=VALUE, not {item!r}")
        pairs[key] = value
    try:
        return editing.parse_params(kind, pairs)
    except ScheduleProblem as exc:
        raise Refused(f"--param: {exc}") from None


def _parse_segment(text: str | None) -> dict[str, Any] | None:
    if text is None:
        return None
    try:
        segment = json.loads(text)
    except json.JSONDecodeError as exc:
        raise Refused(f"--segment is not JSON: {exc}") from None
    check_segment(segment)
    return segment


# Telegram's HTML tags as terminal styles (bold through rich), so previews read like the chat, not like markup.
_TAG_STYLES = {"b": "bold", "strong": "bold", "i": "italic", "em": "italic", "u": "underline", "ins": "underline",
               "s": "strike", "strike": "strike", "del": "strike", "code": "bold cyan", "pre": "cyan",
               "tg-spoiler": "reverse", "blockquote": "italic"}


class _TelegramHtml(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.text = Text()
        self._styles: list[str | None] = []
        self._links: list[str | None] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._styles.append(_TAG_STYLES.get(tag))
        if tag == "a":
            self._links.append(dict(attrs).get("href"))

    def handle_endtag(self, tag: str) -> None:
        if self._styles:
            self._styles.pop()
        if tag == "a" and self._links and (href := self._links.pop()):
            self.text.append(f" ({href})")

    def handle_data(self, data: str) -> None:
        styles = " ".join(s for s in self._styles if s)
        self.text.append(data, style=styles or None)


def terminal_text(message: str) -> Text:
    """A message in Telegram's HTML as terminal text: tags become styles, entities characters."""
    parser = _TelegramHtml()
    parser.feed(message)
    parser.close()
    return parser.text


def _print_stats(stats: PlanStats, *, title: str) -> None:
    table = Table("language", "would get it" if stats.dry_run else "planned", "skipped", title=title)
    for lang in sorted(set(stats.languages) | set(stats.skipped_by_language)):
        table.add_row(lang, str(stats.languages[lang]), str(stats.skipped_by_language[lang]))
    table.add_row("all", str(stats.planned), str(sum(stats.skipped.values())))
    console.print(table)
    if stats.skipped:
        console.print("skipped: " + ", ".join(f"{reason} {n}" for reason, n in stats.skipped.most_common()))
    if stats.already_planned:
        console.print(f"already planned earlier (not planned again): {stats.already_planned}")
    if stats.delayed_for_quiet_hours:
        console.print(f"held until the end of quiet hours: {stats.delayed_for_quiet_hours}")
    if stats.held_out:
        console.print(f"held out as the campaign's control group (sent nothing): {stats.held_out}")
    for lang, text in stats.samples:
        console.rule(f"sample ({lang})")
        console.print(terminal_text(text), highlight=False)


@schedule_app.command("list")
def schedule_list(ctx: typer.Context, database_url: DbUrl = None, programme: ProgrammePath = None) -> None:
    """All schedules: kind, timing, on or paused, last run."""

    async def work(loyalty: Loyalty) -> list[Schedule]:
        return await editing.list_schedules(loyalty)

    rows = _run(ctx, database_url, programme, work)
    if not rows:
        console.print("No schedules yet: add one with `loyalbot schedule add NAME --kind birthday --daily-time 10:00 "
                      "--member-local-time`.")
        return
    table = Table("name", "kind", "when", "state", "last run")
    for row in rows:
        table.add_row(row.name, row.kind, _when(row), "on" if row.enabled else "paused",
                      f"{as_utc(row.last_run_at):%Y-%m-%d %H:%M} UTC" if row.last_run_at else "never")
    console.print(table)


def _when(row: Schedule) -> str:
    if row.one_off_at:
        return f"once at {as_utc(row.one_off_at):%Y-%m-%d %H:%M} UTC"
    if RULES[row.kind].event_driven:
        return "when it happens"
    if row.member_local_time:
        return f"{row.daily_time} member's local time"
    return f"cron {row.cron} ({row.timezone})" if row.cron else f"{row.daily_time} {row.timezone}"


@schedule_app.command("show")
def schedule_show(ctx: typer.Context, name: str, database_url: DbUrl = None, programme: ProgrammePath = None) -> None:
    """One schedule in full, with its templates."""
    row = _run(ctx, database_url, programme, lambda loyalty: _get(loyalty, name))
    console.print(f"[b]{row.name}[/b]  {row.kind}  {'on' if row.enabled else 'paused'}  {_when(row)}")
    console.print(f"offset days {row.offset_days}; frequency cap {row.frequency_cap_days or '-'} days; "
                  f"segment {json.dumps(row.segment)}; params {json.dumps(row.params)}")
    for lang, text in (row.templates or {}).items():
        console.rule(lang)
        console.print(text, markup=False, highlight=False)


TemplateOpt = Annotated[list[str] | None, typer.Option("--template", help="LANG=FILE or LANG=TEXT (repeat).")]
OfferRewardOpt = Annotated[str | None, typer.Option(
    "--offer-reward", help="Give each recipient a free coupon for this reward (a reward code); 'none' removes it.")]
OfferDaysOpt = Annotated[int | None, typer.Option("--offer-valid-days", help="Days the offer's coupon is valid (7).")]
OfferRemindOpt = Annotated[int | None, typer.Option(
    "--offer-remind-days", help="Remind of an unused offer coupon this many days before it lapses (0: never).")]
WhenCappedOpt = Annotated[str | None, typer.Option(
    "--when-capped", help="A message the programme's frequency caps hold back: skip (default) or delay it.")]
ParamOpt = Annotated[list[str] | None, typer.Option(
    "--param", help="KEY=VALUE: winback inactive_days; nps min_member_days; csat trigger (coupon|support), "
                    "delay_minutes; broadcast survey (csat: the message asks the 1-5 question); tier_change upgrades_only; lifecycle_change to (the stage members moved to: new, "
                    "active, repeat, at_risk, dormant, churned) and from. Campaigns (any kind but surveys): "
                    "holdout_pct (0-50), variants (JSON list of {name, weight, templates}), window_days, stop_loss "
                    "({after_sends, metric: conversion|redemption, below_pct}); see `loyalbot campaign`.")]


@schedule_app.command("add")
def schedule_add(ctx: typer.Context,
    name: str,
    kind: Annotated[str, typer.Option(help=f"One of: {', '.join(KINDS)}.")],
    cron: Annotated[str | None, typer.Option(help="Crontab line, e.g. '0 10 * * *'.")] = None,
    daily_time: Annotated[str | None, typer.Option(help="HH:MM every day.")] = None,
    timezone: Annotated[str | None, typer.Option(
        help="Time zone of --cron/--daily-time (default: the shop's, LOYALBOT_TIMEZONE).")] = None,
    member_local_time: Annotated[bool, typer.Option(help="Send at --daily-time in each member's own zone.")] = False,
    offset_days: Annotated[int, typer.Option(help="Days before the date (birthday, expiry reminders).")] = 0,
    segment: Annotated[str | None, typer.Option(help='JSON, e.g. {"tiers": ["gold"], "languages": ["en"]}.')] = None,
    template: TemplateOpt = None,
    frequency_cap_days: Annotated[int | None, typer.Option(help="At most once per this many days per member.")] = None,
    param: ParamOpt = None,
    at: Annotated[datetime | None, typer.Option(help="One-off broadcast moment (UTC unless it has an offset).")] = None,
    offer_reward: OfferRewardOpt = None,
    offer_valid_days: OfferDaysOpt = None,
    offer_remind_days: OfferRemindOpt = None,
    when_capped: WhenCappedOpt = None,
    paused: Annotated[bool, typer.Option(help="Save it paused.")] = False,
    database_url: DbUrl = None,
    programme: ProgrammePath = None,
) -> None:
    """Add a schedule. Templates default to the shipped ones for the kind.

    Template variables: name, member_no, points, tier, tier_name, birthday_multiplier, programme; plus
    expiring_points, expiry_date (points_expiry); coupon_title, coupon_code, coupon_expiry (coupon_expiry);
    years (anniversary); offer.title, offer.code, offer.expires (with --offer-reward). Filters: |number, |date,
    |money.
    """

    async def work(loyalty: Loyalty) -> None:
        now = utcnow()
        if kind not in KINDS:
            raise Refused(f"unknown kind {kind!r}; use {', '.join(KINDS)}")
        params = editing.with_campaign({**DEFAULT_PARAMS.get(kind, {}), **_parse_params(param, kind)},
                                       reward=offer_reward, valid_days=offer_valid_days,
                                       remind_days=offer_remind_days, when_capped=when_capped)
        zone = timezone or shop_timezone(ctx, database_url, programme)
        row = Schedule(name=name.strip()[:100], kind=kind, cron=cron, daily_time=daily_time, timezone=zone,
                       member_local_time=member_local_time, offset_days=offset_days,
                       segment=_parse_segment(segment) or {}, frequency_cap_days=frequency_cap_days,
                       params=params, one_off_at=as_utc(at) if at else None, enabled=not paused,
                       created_at=now, updated_at=now)
        given = _parse_templates(template)
        row.templates = {**default_templates(template_kind(row)), **given}
        try:
            await editing.add(loyalty, row, actor=CLI_ACTOR, now=now)
        except ScheduleProblem as exc:
            if exc.field == "name" and "exists" in str(exc):
                raise Refused(f"{exc}; change it with `schedule edit`") from None
            raise

    _run(ctx, database_url, programme, work)
    console.print(f"Added {name!r} ({kind}). A running bot picks it up within seconds.")


@schedule_app.command("edit")
def schedule_edit(ctx: typer.Context,
    name: str,
    cron: Annotated[str | None, typer.Option()] = None,
    daily_time: Annotated[str | None, typer.Option()] = None,
    timezone: Annotated[str | None, typer.Option()] = None,
    member_local_time: Annotated[bool | None, typer.Option()] = None,
    offset_days: Annotated[int | None, typer.Option()] = None,
    segment: Annotated[str | None, typer.Option(help="JSON; '{}' for everyone.")] = None,
    template: TemplateOpt = None,
    frequency_cap_days: Annotated[int | None, typer.Option()] = None,
    param: ParamOpt = None,
    at: Annotated[datetime | None, typer.Option()] = None,
    offer_reward: OfferRewardOpt = None,
    offer_valid_days: OfferDaysOpt = None,
    offer_remind_days: OfferRemindOpt = None,
    when_capped: WhenCappedOpt = None,
    database_url: DbUrl = None,
    programme: ProgrammePath = None,
) -> None:
    """Change a schedule; only the options given change. Checked before it is saved."""

    async def work(loyalty: Loyalty) -> None:
        now = utcnow()
        row = await _get(loyalty, name)
        changes: dict[str, Any] = {k: v for k, v in dict(
            cron=cron, daily_time=daily_time, timezone=timezone, member_local_time=member_local_time,
            offset_days=offset_days, frequency_cap_days=frequency_cap_days,
            one_off_at=as_utc(at) if at else None).items() if v is not None}
        if cron is not None and daily_time is None and not row.member_local_time:
            changes["daily_time"] = None
        if daily_time is not None and cron is None:
            changes["cron"] = None
        if (seg := _parse_segment(segment)) is not None:
            changes["segment"] = seg
        if template:
            changes["templates"] = {**row.templates, **_parse_templates(template)}
        if param:
            changes["params"] = {**row.params, **_parse_params(param, row.kind)}
        if any(v is not None for v in (offer_reward, offer_valid_days, offer_remind_days, when_capped)):
            changes["params"] = editing.with_campaign(
                changes.get("params", row.params), reward=offer_reward, valid_days=offer_valid_days,
                remind_days=offer_remind_days, when_capped=when_capped)
        await editing.edit(loyalty, stored_id(row.id), changes, actor=CLI_ACTOR, now=now)

    _run(ctx, database_url, programme, work)
    console.print(f"Changed {name!r}.")


def _set_enabled(ctx: typer.Context, name: str, enabled: bool, database_url: str | None, programme: str | None) -> None:
    async def work(loyalty: Loyalty) -> None:
        row = await _get(loyalty, name)
        await editing.set_enabled(loyalty, stored_id(row.id), enabled, actor=CLI_ACTOR)

    _run(ctx, database_url, programme, work)
    console.print(f"{name!r} is {'on' if enabled else 'paused'}.")


@schedule_app.command("pause")
def schedule_pause(ctx: typer.Context, name: str, database_url: DbUrl = None, programme: ProgrammePath = None) -> None:
    """Stop a schedule from running (messages already planned still go out)."""
    _set_enabled(ctx, name, False, database_url, programme)


@schedule_app.command("resume")
def schedule_resume(ctx: typer.Context, name: str, database_url: DbUrl = None, programme: ProgrammePath = None) -> None:
    """Let a paused schedule run again."""
    _set_enabled(ctx, name, True, database_url, programme)


@schedule_app.command("preview")
def schedule_preview(ctx: typer.Context, name: str, database_url: DbUrl = None, programme: ProgrammePath = None) -> None:
    """Dry run: per language how many would get it now, how many are skipped and why, three samples."""

    async def work(loyalty: Loyalty) -> PlanStats:
        return await editing.dry_run(loyalty, await _get(loyalty, name))

    _print_stats(_run(ctx, database_url, programme, work), title=f"preview of {name} (nothing is saved)")


@schedule_app.command("run-now")
def schedule_run_now(ctx: typer.Context, name: str, database_url: DbUrl = None, programme: ProgrammePath = None) -> None:
    """Plan a run now; the bot's dispatcher sends the messages (planning twice plans nothing new)."""

    async def work(loyalty: Loyalty) -> PlanStats:
        return await editing.run_now(loyalty, await _get(loyalty, name), actor=CLI_ACTOR)

    _print_stats(_run(ctx, database_url, programme, work), title=f"run of {name}")


@outbox_app.callback()
def outbox_group() -> None:
    """Messages planned and sent."""


@outbox_app.command("status")
def outbox_status(ctx: typer.Context, database_url: DbUrl = None, programme: ProgrammePath = None) -> None:
    """Messages by status, why some were skipped, why some failed, how many are due now."""
    counts = _run(ctx, database_url, programme, lambda loyalty: outbox_counts(loyalty.db))
    table = Table("status", "messages")
    for status in ("pending", "sending", "sent", "failed", "skipped"):
        table.add_row(status, str(counts["by_status"].get(status, 0)))
    console.print(table)
    console.print(f"due now: {counts['due_now']}")
    for title, key in (("skipped", "skipped"), ("failed", "failed")):
        if counts[key]:
            console.print(f"{title}: " + "; ".join(f"{k} {v}" for k, v in counts[key].items()))
