"""`loyalbot run` and `loyalbot demo`: plain functions the CLI (bot/cli.py) registers as commands.

`demo` needs nothing installed or configured: a SQLite file in the current directory, the local
Bot API server with its chat page on 127.0.0.1:<port>, demo members and staff, a staff forum group,
and the bot (aiogram or python-telegram-bot, as chosen) polling that server, all in one process.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import sys
from pathlib import Path
from typing import Any

from rich.console import Console

from bot.app import App, connection_from
from bot.runtime import quiet_http_loggers
from bot.settings import Settings, SettingsError, load_settings
from bot.webhook import WebhookConfigError

log = logging.getLogger("loyalbot.commands")
console = Console()
err = Console(stderr=True)

DEMO_DB = Path("loyalbot-demo.db")
DEMO_TOKEN = "7000000001:loyalbot-demo-token"
DEMO_STAFF_GROUP = {"title": "Lumen Café · staff", "is_forum": True}
# Who can be picked on the demo page: three members (one per language) and two staff.
DEMO_IDENTITIES: list[dict[str, Any]] = [
    {"id": 1001, "first_name": "Ann", "last_name": "Lee", "username": "ann_lee", "language_code": "en",
     "label": "Ann (member, English)", "role": "member"},
    {"id": 1002, "first_name": "小明", "language_code": "zh-hans", "label": "小明 (会员, 简体中文)", "role": "member"},
    {"id": 1003, "first_name": "阿美", "language_code": "zh-hant", "label": "阿美 (會員, 繁體中文)", "role": "member"},
    {"id": 2001, "first_name": "Sam", "last_name": "Staff", "username": "sam_staff", "language_code": "en",
     "label": "Sam (staff, counter and support)", "role": "staff"},
    {"id": 2002, "first_name": "Olivia", "username": "olivia_ops", "language_code": "en",
     "label": "Olivia (staff, operator)", "role": "staff"},
]
DEMO_WELCOME_BONUS = 200
DEMO_STAFF_ROLES = {2001: ("agent", "Sam"), 2002: ("operator", "Olivia")}


def _logging(settings: Settings) -> None:
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    quiet_http_loggers()  # from the first request on: Bot API URLs carry the token


def _settings(**overrides: Any) -> Settings:
    try:
        return load_settings(**{key: value for key, value in overrides.items() if value is not None})
    except SettingsError as exc:
        err.print(f"[red]Cannot start:[/red] {exc}")
        raise SystemExit(2) from None


def run(framework: str | None = None) -> None:
    """Run the bot against Telegram (LOYALBOT_BOT_TOKEN): polling, or a webhook when LOYALBOT_WEBHOOK_URL is set."""
    settings = _settings(framework=framework)
    _logging(settings)
    try:
        app = App(settings, framework=framework)
    except (SettingsError, WebhookConfigError) as exc:
        err.print(f"[red]Cannot start:[/red] {exc}")
        raise SystemExit(2) from None
    app.attach_optional_rooms()
    try:
        asyncio.run(app.run())
    except KeyboardInterrupt:
        pass
    except Exception as exc:  # start-up failures (server unreachable, token refused): one clear line
        token = settings.bot_token.get_secret_value() if settings.bot_token else None
        reason = f"{type(exc).__name__}: {exc}"
        if token:
            reason = reason.replace(token, "<token>")
        err.print(f"[red]loyalbot stopped:[/red] {reason[:500]} (Bot API server: {settings.telegram_api_url})")
        raise SystemExit(1) from None


async def seed_demo_staff(app: App) -> None:
    """Put the demo's staff identities in the staff table (idempotent)."""
    assert app.loyalty is not None
    for telegram_id, (role, name) in DEMO_STAFF_ROLES.items():
        await app.loyalty.add_staff(telegram_id, role, name=name, actor="demo")


async def seed_demo_surveys(app: App) -> None:
    """In the demo, satisfaction questions come at once (a shop would wait ~30 minutes), so people see them."""
    import sqlalchemy as sa

    from scheduler.service import DEFAULT_CSAT_SCHEDULES
    from scheduler.templates import default_templates
    from storage.models import Schedule

    assert app.db is not None
    async with app.db.transaction() as tx:
        for trigger, name in DEFAULT_CSAT_SCHEDULES.items():
            if (await tx.execute(sa.select(Schedule.id).where(Schedule.name == name))).first() is None:
                kind = "csat_support" if trigger == "support" else "csat"
                tx.add(Schedule(name=name, kind="csat", templates=default_templates(kind),
                                params={"trigger": trigger, "delay_minutes": 0}))


async def _no_stop() -> None:
    return None


async def run_demo(database: str, framework: str | None = None, port: int = 8080, *, host: str = "127.0.0.1",
                   ready: Any = None) -> None:
    """The demo, as a coroutine, on the SQLite file at the absolute path `database`.

    Tests run it with port=0 and a `ready(app, url)` callback.
    """
    from bot.local_api import LocalApiControl, LocalBotApi

    where = database
    server = LocalBotApi(serve_page=True)
    await server.start(host=host, port=port)
    try:
        async with LocalApiControl(server.url) as control:
            await control.create_bot(DEMO_TOKEN, first_name="Lumen Café Rewards", username="lumen_rewards_bot")
            config = await control.set_demo_config(DEMO_IDENTITIES, staff_group=dict(DEMO_STAFF_GROUP))
        staff_group = config["staff_group"]["id"]
        settings = _settings(
            framework=framework, database_url=f"sqlite+aiosqlite:///{where}",
            bot_token=DEMO_TOKEN, telegram_api_url=server.url, staff_group_id=staff_group,
        )
        settings.webhook_url = None  # the demo always polls its own server
        # Demo members start with a welcome bonus, so a newcomer can redeem a coffee straight away.
        programme = settings.load_programme()
        programme = programme.model_copy(update={"earning": programme.earning.model_copy(
            update={"welcome_bonus": DEMO_WELCOME_BONUS})})
        # The operator console runs beside the chat page; its password is made fresh for each demo run.
        console_password = secrets.token_urlsafe(9)
        app = App(settings, framework=framework, connection=connection_from(settings, polling_timeout=10),
                  programme=programme, services={"console_password": console_password,
                                                 "console_port": port + 1 if port else 0})
        app.add_service(seed_demo_staff, _no_stop, name="demo staff")
        app.add_service(seed_demo_surveys, _no_stop, name="demo surveys")
        from bot.seed import seed_demo_history

        app.add_service(seed_demo_history, _no_stop, name="demo history")  # for the README's operator walk
        app.attach_optional_rooms()

        async def announce(running: App) -> None:
            console.print(f"[bold green]loyalbot demo[/bold green] ({running.framework}) is running: "
                          f"open [link]{server.url}[/link] in your browser. Press Ctrl-C to stop.")
            web = running.context.services.get("console") if running.context else None
            if web is not None:
                console.print(f"Operator console: [link]{web.url}/console[/link] (user operator, password "
                              f"{console_password}); shop API docs at {web.url}/api/docs")
            console.print(f"Data is kept in {where}")
            if ready is not None:
                await ready(running, server.url)

        await app.run(ready=announce)
    finally:
        await server.stop()


def demo(framework: str | None = None, port: int = 8080) -> None:
    """Everything in one process on SQLite: a local Bot API server, the bot, and a chat page at http://127.0.0.1:8080."""
    settings = _settings(framework=framework)
    _logging(settings)
    try:
        asyncio.run(run_demo(str(DEMO_DB.resolve()), framework, port))
    except OSError as exc:  # most often: the port is taken
        err.print(f"[red]Cannot start the demo on port {port}:[/red] {exc.strerror or exc}. "
                  "Try another one with --port.")
        raise SystemExit(1) from None
    except KeyboardInterrupt:  # a second Ctrl-C during shutdown
        sys.exit(130)


__all__ = ["DEMO_IDENTITIES", "DEMO_TOKEN", "demo", "run", "run_demo", "seed_demo_staff"]
