"""`loyalbot run` and `loyalbot demo`: plain functions the CLI (bot/cli.py) registers as commands.

`demo` needs nothing installed or configured: a SQLite file in the current directory, the local
Bot API server with its chat page on 127.0.0.1:<port>, demo members and staff, a staff forum group,
and the bot (aiogram or python-telegram-bot, as chosen) polling that server, all in one process.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import socket
import sys
from pathlib import Path
from typing import Any

from rich.console import Console

from loyalbot.bot.app import App, connection_from
from loyalbot.bot.logs import configure_logging
from loyalbot.bot.runtime import PollingConflict, quiet_http_loggers
from loyalbot.bot.settings import Settings, SettingsError, load_settings
from loyalbot.bot.webhook import WebhookConfigError

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
DEMO_RETURN_WINDOW_DAYS = 14
DEMO_STAFF_ROLES = {2001: ("agent", "Sam"), 2002: ("operator", "Olivia")}
DEMO_OPERATOR = "operator"  # the demo's console admin; its password is kept beside the demo database


def _logging(settings: Settings) -> None:
    configure_logging(settings)
    quiet_http_loggers()  # from the first request on: Bot API URLs carry the token


def _settings(**overrides: Any) -> Settings:
    try:
        return load_settings(**{key: value for key, value in overrides.items() if value is not None})
    except SettingsError as exc:
        err.print(f"[red]Cannot start:[/red] {exc}")
        raise SystemExit(2) from None


def run(framework: str | None = None, *, delete_webhook: bool = False) -> None:
    """Run the bot against Telegram (LOYALBOT_BOT_TOKEN): polling, or a webhook when LOYALBOT_WEBHOOK_URL is set.

    SIGTERM drains: no more updates are taken, those in hand are finished, the rest is given back to the
    inbox for another replica, and the process exits 0. A second polling consumer (409 Conflict) exits 1.
    """
    settings = _settings(framework=framework)
    _logging(settings)
    try:
        connection = connection_from(settings, delete_webhook=delete_webhook)
        app = App(settings, framework=framework, connection=connection)
    except (SettingsError, WebhookConfigError) as exc:
        err.print(f"[red]Cannot start:[/red] {exc}")
        raise SystemExit(2) from None
    app.attach_rooms()
    try:
        asyncio.run(app.run())
    except KeyboardInterrupt:
        pass
    except PollingConflict as exc:
        err.print(f"[red]loyalbot stopped:[/red] {exc}", soft_wrap=True)
        raise SystemExit(1) from None
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


def demo_operator_service(password: str) -> Any:
    """A start-up step that makes (or keeps) the demo's console admin, so the printed password signs in."""

    async def seed_demo_operator(app: App) -> None:
        from loyalbot.console.accounts import ensure_admin

        assert app.db is not None
        if await ensure_admin(app.db, DEMO_OPERATOR, password, actor="demo"):
            log.info("demo: the console admin %r now has the demo's password", DEMO_OPERATOR)

    return seed_demo_operator


async def seed_demo_surveys(app: App) -> None:
    """In the demo, satisfaction questions come at once (a shop would wait ~30 minutes), so people see them."""
    import sqlalchemy as sa

    from loyalbot.scheduler.service import DEFAULT_CSAT_SCHEDULES
    from loyalbot.scheduler.templates import default_templates
    from loyalbot.storage.models import Schedule

    assert app.db is not None
    async with app.db.transaction() as tx:
        for trigger, name in DEFAULT_CSAT_SCHEDULES.items():
            if (await tx.execute(sa.select(Schedule.id).where(Schedule.name == name))).first() is None:
                kind = "csat_support" if trigger == "support" else "csat"
                tx.add(Schedule(name=name, kind="csat", templates=default_templates(kind),
                                params={"trigger": trigger, "delay_minutes": 0}))


async def _no_stop() -> None:
    return None


def demo_info_path(database: str | Path) -> Path:
    """The file beside the demo's database that keeps its console password and last addresses."""
    path = Path(database)
    return path.with_name(path.stem + ".console.json")


def _demo_password(database: str | Path, settings: Settings) -> str:
    """LOYALBOT_CONSOLE_PASSWORD if set, else the one kept beside the demo database (made on first use)."""
    if settings.console_password is not None:
        return settings.console_password.get_secret_value()
    try:
        saved = json.loads(demo_info_path(database).read_text(encoding="utf-8"))
        if isinstance(saved, dict) and isinstance(saved.get("password"), str) and saved["password"]:
            return saved["password"]
    except (OSError, ValueError):
        pass
    password = secrets.token_urlsafe(9)
    _save_demo_info(database, {"password": password})
    return password


def _save_demo_info(database: str | Path, info: dict[str, Any]) -> None:
    """Write the demo's info file, readable by its owner only: it holds the console password."""
    path = demo_info_path(database)
    try:
        current = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        current = {}
    data = {**(current if isinstance(current, dict) else {}), **info}
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=2)
    os.replace(tmp, path)


def _demo_identities(saved: dict[str, Any]) -> list[dict[str, Any]]:
    """The shipped identities (the lapsed regulars of the win-back walkthrough among them) plus those people
    created on the page in earlier runs."""
    from loyalbot.bot.seed import DEMO_LAPSED

    lapsed = [{k: v for k, v in person.items() if k != "days_away"} for person in DEMO_LAPSED]
    shipped = {identity["id"] for identity in [*DEMO_IDENTITIES, *lapsed]}
    created = [i for i in saved.get("identities") or [] if i.get("id") not in shipped]
    return [dict(identity) for identity in DEMO_IDENTITIES] + lapsed + created


async def run_demo(database: str, framework: str | None = None, port: int = 8080, *, host: str = "127.0.0.1",
                   ready: Any = None, console_port: int | None = None) -> None:
    """The demo, as a coroutine, on the SQLite file at the absolute path `database`.

    The chat page's world (identities, chats, staff topics, ids) is kept in the same file, so a
    restart carries on where the last run stopped. `console_port`: None means `port + 1` (any free
    port when `port` is 0), -1 turns the operator console off. Tests run it with port=0 and a
    `ready(app, url)` callback.
    """
    from loyalbot.bot.local_api import LocalApiControl, LocalBotApi

    where = database
    if console_port is None:
        console_port = port + 1 if port else 0
    server = LocalBotApi(serve_page=True, state_path=where)
    await server.start(host=host, port=port)
    try:
        async with LocalApiControl(server.url) as control:
            await control.create_bot(DEMO_TOKEN, first_name="Lumen Café Rewards", username="lumen_rewards_bot")
            saved = await control.demo_config()
            group = dict(DEMO_STAFF_GROUP)
            if saved.get("staff_group") and saved["staff_group"].get("id") is not None:
                group["id"] = saved["staff_group"]["id"]  # the same group, so its topics stay the members'
            config = await control.set_demo_config(_demo_identities(saved), staff_group=group)
        staff_group = config["staff_group"]["id"]
        settings = _settings(
            framework=framework, database_url=f"sqlite+aiosqlite:///{where}",
            bot_token=DEMO_TOKEN, telegram_api_url=server.url, staff_group_id=staff_group,
        )
        settings.webhook_url = None  # the demo always polls its own server
        # Demo members start with a welcome bonus, so a newcomer can redeem a coffee straight away; a member
        # day shows a bonus campaign, and a return window the pending points with the day they become spendable.
        from loyalbot.bot.seed import demo_programme

        programme = demo_programme(settings.load_programme(), DEMO_WELCOME_BONUS)
        programme = programme.model_copy(update={
            "pending": programme.pending.model_copy(update={"return_window_days": DEMO_RETURN_WINDOW_DAYS})})
        # The operator console runs beside the chat page; its password stays the same for this demo database.
        console_password = _demo_password(where, settings)
        from loyalbot.console.accounts import AccountError, check_password

        try:
            check_password(console_password)
        except AccountError as exc:
            err.print(f"[red]Cannot start the demo:[/red] LOYALBOT_CONSOLE_PASSWORD: {exc}.", soft_wrap=True)
            raise SystemExit(2) from None
        # The demo's own server: a webhook left there (by an experiment) is taken over, not refused.
        app = App(settings, framework=framework,
                  connection=connection_from(settings, polling_timeout=10, delete_webhook=True),
                  programme=programme, console_password=console_password, console_port=console_port)
        app.add_service(seed_demo_staff, _no_stop, name="demo staff")
        if console_port >= 0:
            app.add_service(demo_operator_service(console_password), _no_stop, name="demo console admin")
        app.add_service(seed_demo_surveys, _no_stop, name="demo surveys")
        from loyalbot.bot.seed import seed_demo_history

        app.add_service(seed_demo_history, _no_stop, name="demo history")  # for the README's operator walk
        app.attach_rooms()

        async def announce(running: App) -> None:
            web = running.context.services.console if running.context else None
            info: dict[str, Any] = {"page": server.url, "console": f"{web.url}/console" if web else None,
                                    "api_docs": f"{web.url}/api/docs" if web else None, "user": DEMO_OPERATOR,
                                    "password": console_password, "pid": os.getpid(),
                                    "framework": running.framework}
            _save_demo_info(where, info)
            async with LocalApiControl(server.url) as control:
                await control.set_demo_info({"timezone": settings.timezone, "console": info["console"],
                                             "user": DEMO_OPERATOR, "role": "admin",
                                             "password": console_password})
            console.print(f"[bold green]loyalbot demo[/bold green] ({running.framework}) is running: "
                          f"open [link]{server.url}[/link] in your browser. Press Ctrl-C to stop.", soft_wrap=True)
            print_demo_info(info, where)
            if ready is not None:
                await ready(running, server.url)

        await app.run(ready=announce)
    finally:
        await server.stop()


def print_demo_info(info: dict[str, Any], database: str | Path) -> None:
    """The addresses and the console password, as `loyalbot demo` and `loyalbot demo --show` print them."""
    if info.get("console"):
        console.print(f"Operator console: [link]{info['console']}[/link] (shop API docs at {info.get('api_docs')})",
                      soft_wrap=True)
        console.print(f"  sign in as: {info.get('user') or DEMO_OPERATOR} (admin)  password: {info.get('password')}",
                      soft_wrap=True, highlight=False)
    console.print(f"Data is kept in {database}. To see this again: loyalbot demo --show", soft_wrap=True)


def show_demo(database: Path) -> None:
    """Print where the demo in this folder runs (or last ran) and its console password."""
    import httpx

    try:
        info = json.loads(demo_info_path(database).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        err.print(f"No demo has run in this folder yet ({demo_info_path(database).name} not found). "
                  "Start one with: loyalbot demo", soft_wrap=True)
        raise SystemExit(1) from None
    running = False
    if info.get("page"):
        try:
            running = httpx.get(f"{info['page']}/control/health", timeout=2).status_code == 200
        except httpx.HTTPError:
            running = False
    state = "is running" if running else "is not running (these are the addresses of its last run)"
    console.print(f"The demo in this folder {state}: chat page [link]{info.get('page')}[/link]", soft_wrap=True)
    print_demo_info(info, database)


def _port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        # As aiohttp and uvicorn bind: SO_REUSEADDR, so only a listening socket counts as taken.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return True
    return False


def _check_ports(host: str, port: int, console_port: int) -> str | None:
    """Why the demo cannot listen where it was asked to, in one line, or None."""
    if port and _port_in_use(host, port):
        return (f"port {port} (the chat page, --port) is already in use on {host}. "
                f"Choose a free one, e.g. loyalbot demo --port {port + 2}")
    if console_port == port and port:
        return f"--console-port {console_port} is the same as --port. Choose another one"
    if console_port > 0 and _port_in_use(host, console_port):
        return (f"port {console_port} (the operator console, --console-port or LOYALBOT_CONSOLE_PORT; "
                f"--port + 1 unless set) is already in use on {host}. Choose a free one with --console-port, "
                "or --console-port -1 to run without the console")
    return None


def _demo_logging(settings: Settings, verbose: bool) -> None:
    # Quiet unless asked: an INFO line per update would push the addresses and password off the screen.
    level = settings.log_level.upper() if verbose else "WARNING"
    configure_logging(settings, level=level)
    quiet_http_loggers()


def demo(framework: str | None = None, port: int = 8080, console_port: int | None = None, *,
         verbose: bool = False, show: bool = False) -> None:
    """Everything in one process on SQLite: a local Bot API server, the bot, and a chat page at http://127.0.0.1:8080."""
    database = DEMO_DB.resolve()
    if show:
        show_demo(database)
        return
    settings = _settings(framework=framework)
    _demo_logging(settings, verbose)
    host = "127.0.0.1"
    if console_port is None:
        console_port = port + 1
    problem = _check_ports(host, port, console_port)
    if problem:
        err.print(f"[red]Cannot start the demo:[/red] {problem}.", soft_wrap=True)
        raise SystemExit(2)
    try:
        asyncio.run(run_demo(str(database), framework, port, host=host, console_port=console_port))
    except OSError as exc:  # taken between the check and the start
        err.print(f"[red]Cannot start the demo on port {port} or {console_port}:[/red] {exc.strerror or exc}. "
                  "Try others with --port and --console-port.", soft_wrap=True)
        raise SystemExit(2) from None
    except RuntimeError as exc:  # the console could not listen
        err.print(f"[red]Cannot start the demo:[/red] {exc}. Try another --console-port.", soft_wrap=True)
        raise SystemExit(2) from None
    except KeyboardInterrupt:  # a second Ctrl-C during shutdown
        sys.exit(130)


__all__ = ["DEMO_IDENTITIES", "DEMO_TOKEN", "demo", "run", "run_demo", "seed_demo_staff"]
