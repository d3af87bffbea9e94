"""The `loyalbot` command line: run the bot, the demo, migrations, staff, console operators, API keys, schedules and
the outbox."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from loyalbot.bot.logs import configure_logging
from loyalbot.bot.programme_cli import programme_app
from loyalbot.bot.settings import Settings, SettingsError, load_settings
from loyalbot.scheduler.campaign_cli import campaign_app
from loyalbot.scheduler.cli import outbox_app, schedule_app

if TYPE_CHECKING:
    from loyalbot.loyalty import Loyalty

console = Console()
err = Console(stderr=True)

app = typer.Typer(
    name="loyalbot",
    help=(
        "loyalbot: a member-service bot for loyalty programmes.\n\n"
        "Members chat with it in Telegram; staff take conversations over; operators schedule care "
        "messages and reminders. Configure it with LOYALBOT_* environment variables (or a .env file): "
        "LOYALBOT_DATABASE_URL, LOYALBOT_BOT_TOKEN, LOYALBOT_FRAMEWORK, LOYALBOT_PROGRAMME, LOYALBOT_TIMEZONE."
    ),
    no_args_is_help=True,
    add_completion=False,
    # Click's plain help: at 80 columns rich's panels cut option names and label flags <bool>.
    rich_markup_mode=None,
    context_settings={"max_content_width": 100},
)
staff_app = typer.Typer(help="Who may act as staff: agents, operators, admins.", no_args_is_help=True)
app.add_typer(staff_app, name="staff")
apikey_app = typer.Typer(help="Keys for shop systems that post purchases over HTTP.", no_args_is_help=True)
app.add_typer(apikey_app, name="apikey")
operator_app = typer.Typer(help="Who may sign in to the web console: operators and admins.", no_args_is_help=True)
app.add_typer(operator_app, name="operator")


def settings_or_exit(**overrides: object) -> Settings:
    """Load the settings, or print what is wrong and stop with exit code 2."""
    try:
        return load_settings(**{k: v for k, v in overrides.items() if v is not None})
    except SettingsError as exc:
        err.print(f"[red]Cannot start:[/red] {exc}")
        raise typer.Exit(2) from None


@app.callback()
def main(ctx: typer.Context) -> None:
    # Hand the one way of reading the settings down to every sub-command (the schedule and outbox ones too).
    # (A comment, not a docstring: typer would show a docstring as the help of `loyalbot` itself.)
    ctx.obj = settings_or_exit


def _logging(settings: Settings) -> None:
    configure_logging(settings)


DbOption = Annotated[str | None, typer.Option("--database-url", metavar="URL",
                                              help="Overrides LOYALBOT_DATABASE_URL.")]
FrameworkOption = Annotated[str | None, typer.Option("--framework", metavar="NAME",
                                                     help="aiogram (default) or ptb.")]


@app.command()
def migrate(database_url: DbOption = None) -> None:
    """Create or upgrade the database schema.

    Safe to run again: it changes nothing when the schema is up to date.
    """
    from loyalbot.storage.db import redact_url
    from loyalbot.storage.migrate import head_revision, upgrade

    settings = settings_or_exit(database_url=database_url)
    try:
        upgrade(settings.database_url)
    except Exception as exc:  # the URL is right but the server is not: say so without a traceback
        err.print(f"[red]Migration failed[/red] on {redact_url(settings.database_url)}: {type(exc).__name__}: {exc}")
        raise typer.Exit(1) from None
    console.print(f"Schema at revision {head_revision()} on {redact_url(settings.database_url)}")


@app.command("seed-demo")
def seed_demo(
    members: Annotated[int, typer.Option("--members", min=0, max=10_000_000, help="How many synthetic members.")] = 1000,
    seed: Annotated[int, typer.Option(help="Random seed, for repeatable data.")] = 7,
    database_url: DbOption = None,
) -> None:
    """Load synthetic members, for trying out the console.

    The programme and N members with two years of purchase history.
    """
    from loyalbot.bot.seed import seed_members

    settings = settings_or_exit(database_url=database_url)
    asyncio.run(seed_members(settings, members, seed=seed, console=console))


@app.command()
def run(framework: FrameworkOption = None,
        delete_webhook: Annotated[bool, typer.Option(
            "--delete-webhook", help="Polling: delete the bot's webhook first (switching a webhook deployment to "
            "polling); without it a webhook that is set stops polling with a message.")] = False) -> None:
    """Run the bot against Telegram.

    With LOYALBOT_BOT_TOKEN; polling (one consumer per bot), or a webhook when LOYALBOT_WEBHOOK_URL is set
    (several replicas behind nginx: see nginx-config). SIGTERM drains and exits 0.
    """
    from loyalbot.bot.commands import run as run_bot

    run_bot(framework=framework, delete_webhook=delete_webhook)


@app.command()
def demo(
    framework: FrameworkOption = None,
    port: Annotated[int, typer.Option(metavar="PORT", min=1, max=65535,
                                      help="The chat page and local Bot API server.")] = 8080,
    console_port: Annotated[int | None, typer.Option(
        metavar="PORT", min=-1, max=65535, envvar="LOYALBOT_CONSOLE_PORT", show_default="--port + 1",
        help="The operator console and shop API; -1 runs without them.")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log every update (quiet by default).")] = False,
    show: Annotated[bool, typer.Option("--show", help="Print the running demo's addresses and password, "
                                       "then exit.")] = False,
) -> None:
    """Try loyalbot in one process: bot, chat page, console.

    A local Bot API server with a chat page at http://127.0.0.1:8080 (as members or staff), the bot,
    the scheduler and the operator console, all on a SQLite file in this folder, loyalbot-demo.db.
    Chats and identities are kept there across restarts, and the console password beside it.
    """
    from loyalbot.bot.commands import demo as run_demo

    run_demo(framework=framework, port=port, console_port=console_port, verbose=verbose, show=show)


@staff_app.command("add")
def staff_add(
    telegram_id: Annotated[int, typer.Argument(help="The person's numeric Telegram user id.")],
    role: Annotated[str, typer.Option(help="agent | operator | admin")] = "agent",
    name: Annotated[str | None, typer.Option(help="A name to show colleagues.")] = None,
    database_url: DbOption = None,
) -> None:
    """Allow a Telegram user to act as staff."""
    from loyalbot.loyalty.errors import Refusal

    async def go() -> None:
        async with _services(database_url) as loyalty:
            await loyalty.add_staff(telegram_id, role, name=name, actor="cli")

    try:
        asyncio.run(go())
    except Refusal as exc:
        err.print(f"[red]{exc.detail}[/red]")
        raise typer.Exit(2) from None
    console.print(f"{telegram_id} is now {role}.")


@staff_app.command("list")
def staff_list(database_url: DbOption = None) -> None:
    """Show everyone in the staff table."""

    async def go() -> list:
        async with _services(database_url) as loyalty:
            return await loyalty.list_staff()

    rows = asyncio.run(go())
    table = Table("Telegram id", "Role", "Name", "Added")
    for staff in rows:
        table.add_row(str(staff.telegram_id), staff.role, staff.name or "", f"{staff.added_at:%Y-%m-%d}")
    console.print(table if rows else "No staff yet: add someone with `loyalbot staff add TELEGRAM_ID --role agent`.")


@staff_app.command("remove")
def staff_remove(telegram_id: int, database_url: DbOption = None) -> None:
    """Take away someone's staff rights."""

    async def go() -> bool:
        async with _services(database_url) as loyalty:
            return await loyalty.remove_staff(telegram_id, actor="cli")

    if not asyncio.run(go()):
        err.print(f"{telegram_id} is not in the staff table.")
        raise typer.Exit(1)
    console.print(f"{telegram_id} is no longer staff.")


@apikey_app.command("create")
def apikey_create(name: Annotated[str, typer.Argument(help="Which shop system the key is for.")],
                  database_url: DbOption = None) -> None:
    """Make a key for a shop system. It is shown once; only its hash is stored."""
    from loyalbot.console.api import create_api_key

    async def go() -> str:
        async with _services(database_url) as loyalty:
            return await create_api_key(loyalty.db, name)

    console.print(f"API key for {name} (store it now, it is not shown again):\n{asyncio.run(go())}")


@apikey_app.command("list")
def apikey_list(database_url: DbOption = None) -> None:
    """Show every key: name, prefix, created, last used, revoked.

    The prefix is what `apikey revoke` takes.
    """
    from loyalbot.console.api import list_api_keys

    async def go() -> list:
        async with _services(database_url) as loyalty:
            return await list_api_keys(loyalty.db)

    rows = asyncio.run(go())
    table = Table("Name", "Prefix", "Created", "Last used", "Revoked")
    for key in rows:
        table.add_row(key.name, key.prefix, f"{key.created_at:%Y-%m-%d %H:%M}",
                      f"{key.last_used_at:%Y-%m-%d %H:%M}" if key.last_used_at else "never",
                      f"{key.revoked_at:%Y-%m-%d %H:%M}" if key.revoked_at else "")
    console.print(table if rows else "No API keys yet: make one with `loyalbot apikey create NAME`.")


@apikey_app.command("revoke")
def apikey_revoke(prefix: Annotated[str, typer.Argument(help="The key's first 10 characters.")],
                  database_url: DbOption = None) -> None:
    """Revoke a key: calls made with it are refused from now on."""
    from loyalbot.console.api import revoke_api_key

    async def go() -> int:
        async with _services(database_url) as loyalty:
            return await revoke_api_key(loyalty.db, prefix)

    count = asyncio.run(go())
    if not count:
        err.print(f"No active key starts with {prefix!r}.")
        raise typer.Exit(1)
    console.print(f"Revoked {count} key(s).")


PasswordStdin = Annotated[bool, typer.Option("--password-stdin", help="Read the password from the first line "
                                              "of standard input (for scripts).")]
GeneratePassword = Annotated[bool, typer.Option("--generate", help="Make a random password and print it once.")]


def _account_error(exc: Exception) -> typer.Exit:
    from loyalbot.console.accounts import UnknownOperator

    err.print(f"[red]{exc}[/red]", soft_wrap=True)
    return typer.Exit(1 if isinstance(exc, UnknownOperator) else 2)


def _new_password(password_stdin: bool, generate: bool) -> tuple[str, bool]:
    """The password to set, and whether to print it (only a generated one is ever printed)."""
    import sys

    from loyalbot.console.accounts import AccountError, check_password, new_password

    if password_stdin and generate:
        err.print("[red]Give either --password-stdin or --generate, not both.[/red]")
        raise typer.Exit(2)
    if generate:
        return new_password(), True
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt="Repeat the password")
    try:
        return check_password(password), False
    except AccountError as exc:
        raise _account_error(exc) from None


@operator_app.command("add")
def operator_add(
    name: Annotated[str, typer.Argument(help="The name they sign in with.")],
    role: Annotated[str, typer.Option(help="operator | admin (admins also manage staff, operators, keys)")]
    = "operator",
    language: Annotated[str, typer.Option(help="en | zh_Hans | zh_Hant: the console's language for them.")] = "en",
    password_stdin: PasswordStdin = False,
    generate: GeneratePassword = False,
    database_url: DbOption = None,
) -> None:
    """Make a console account. Asks for the password twice (hidden) unless given another way."""
    from loyalbot.console.accounts import (
        AccountError,
        check_language,
        check_name,
        check_role,
        create_operator,
    )

    try:
        name = check_name(name)
        check_role(role), check_language(language)
    except AccountError as exc:
        raise _account_error(exc) from None
    password, show = _new_password(password_stdin, generate)

    async def go() -> None:
        async with _services(database_url) as loyalty:
            await create_operator(loyalty.db, name, password, role=role, language=language, actor="cli")

    try:
        asyncio.run(go())
    except AccountError as exc:
        raise _account_error(exc) from None
    console.print(f"{name} can now sign in to the console as {role}.")
    if show:
        console.print(f"Password (shown once, store it now): {password}", soft_wrap=True)


@operator_app.command("list")
def operator_list(database_url: DbOption = None) -> None:
    """Show every console account: role, language, last sign-in, locked."""
    from loyalbot.console.accounts import is_locked_now, list_operators

    async def go() -> list:
        async with _services(database_url) as loyalty:
            return await list_operators(loyalty.db)

    rows = asyncio.run(go())
    table = Table("Name", "Role", "Language", "Last sign-in", "Locked")
    for operator in rows:
        table.add_row(operator.name, operator.role, operator.language,
                      f"{operator.last_signin_at:%Y-%m-%d %H:%M}" if operator.last_signin_at else "never",
                      f"until {operator.locked_until:%H:%M} UTC" if is_locked_now(operator) else "")
    console.print(table if rows else "No console accounts yet: add one with "
                  "`loyalbot operator add NAME --role admin`.")


@operator_app.command("remove")
def operator_remove(name: Annotated[str, typer.Argument(help="The account's name.")],
                    database_url: DbOption = None) -> None:
    """Delete a console account; they are signed out everywhere at once."""
    from loyalbot.console.accounts import AccountError, remove_operator

    async def go() -> None:
        async with _services(database_url) as loyalty:
            await remove_operator(loyalty.db, name, actor="cli")

    try:
        asyncio.run(go())
    except AccountError as exc:
        raise _account_error(exc) from None
    console.print(f"{name} can no longer sign in to the console.")


@operator_app.command("password")
def operator_password(
    name: Annotated[str, typer.Argument(help="The account's name.")],
    password_stdin: PasswordStdin = False,
    generate: GeneratePassword = False,
    database_url: DbOption = None,
) -> None:
    """Set a new password (and lift a lockout); their open sessions end."""
    from loyalbot.console.accounts import AccountError, set_password

    password, show = _new_password(password_stdin, generate)

    async def go() -> None:
        async with _services(database_url) as loyalty:
            await set_password(loyalty.db, name, password, actor="cli")

    try:
        asyncio.run(go())
    except AccountError as exc:
        raise _account_error(exc) from None
    console.print(f"{name} has a new password; their sessions were closed.")
    if show:
        console.print(f"Password (shown once, store it now): {password}", soft_wrap=True)


@app.command()
def api(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    database_url: DbOption = None,
) -> None:
    """Serve the HTTP API for shop systems.

    Purchases, refunds, member look-up, /healthz, /metrics, and the operator console at /console
    (accounts from `loyalbot operator add`; LOYALBOT_CONSOLE_PASSWORD makes a first admin, operator).
    """
    from loyalbot.console.service import serve_api

    settings = settings_or_exit(database_url=database_url)
    _logging(settings)
    asyncio.run(serve_api(settings, host, port))


@app.command()
def doctor(database_url: DbOption = None) -> None:
    """Check this deployment's settings and services: one line each, OK, WARN or FAIL with the fix.

    Settings, programme file, time zone, database (reachable, migrated), Redis, the bot token (getMe),
    the webhook at Telegram, the console password and who plans. Exits 1 when any check fails.
    Secrets are never printed.
    """
    from loyalbot.bot.doctor import doctor as run_doctor

    raise typer.Exit(run_doctor(typer.echo, database_url=database_url))


@app.command("nginx-config")
def nginx_config(
    replicas: Annotated[int, typer.Option("--replicas", min=1, max=64,
                                          help="How many replicas on --host, on consecutive ports.")] = 2,
    host: Annotated[str, typer.Option(help="Where the replicas listen (with --replicas).")] = "127.0.0.1",
    webhook_port: Annotated[int, typer.Option(min=1, max=65535, help="The first replica's webhook port; "
                                              "the next ones count up.")] = 8443,
    console_port: Annotated[int, typer.Option(min=-1, max=65535, help="The first replica's console (HTTP) "
                                              "port; the next ones count up; -1: no HTTP side.")] = 8081,
    replica: Annotated[list[str] | None, typer.Option(
        "--replica", metavar="HOST:WEBHOOK_PORT[:CONSOLE_PORT]",
        help="A replica elsewhere; repeat for each (instead of --replicas).")] = None,
    listen: Annotated[str, typer.Option(metavar="[HOST:]PORT", help="Where nginx listens.")] = "8080",
    server_name: Annotated[str, typer.Option(help="nginx server_name (the public host name).")] = "_",
    webhook_path: Annotated[str | None, typer.Option(
        metavar="PATH", show_default="the path of LOYALBOT_WEBHOOK_URL, else /telegram/webhook",
        help="Where Telegram posts updates.")] = None,
    tls_cert: Annotated[Path | None, typer.Option(metavar="FILE", help="TLS certificate (with --tls-key): "
                                                  "nginx serves https, as Telegram requires.")] = None,
    tls_key: Annotated[Path | None, typer.Option(metavar="FILE", help="TLS private key.")] = None,
    site: Annotated[bool, typer.Option("--site", help="Only the http-level part, for /etc/nginx/conf.d/ "
                                       "(default: a whole nginx.conf run with nginx -p DIR -c DIR/nginx.conf).")] = False,
    user: Annotated[str | None, typer.Option(help="The user nginx's workers run as when it starts as root.")] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", metavar="FILE",
                                                help="Write here (default: print).")] = None,
) -> None:
    """Write an nginx configuration for N webhook replicas.

    nginx spreads Telegram's update POSTs over the replicas' webhook ports (a failed POST goes on to
    the next replica: the shared inbox makes a repeat harmless) and the shop API, /console, /healthz,
    /readyz and /metrics over their console ports. The file's head lists the settings of each replica.
    """
    from urllib.parse import urlsplit

    from loyalbot.bot.nginx import (
        DEFAULT_WEBHOOK_PATH,
        NginxConfigError,
        NginxPlan,
        parse_replica,
        replicas_on,
    )
    from loyalbot.bot.nginx import render as render_nginx
    from loyalbot.bot.nginx import write as write_nginx

    settings = settings_or_exit()
    try:
        behind = ([parse_replica(r) for r in replica] if replica else
                  replicas_on(host, replicas, webhook_port=webhook_port,
                              console_port=None if console_port < 0 else console_port))
        path = webhook_path or (urlsplit(settings.webhook_url).path if settings.webhook_url else "") \
            or DEFAULT_WEBHOOK_PATH
        plan = NginxPlan(behind, listen=listen, server_name=server_name, webhook_path=path, tls_certificate=tls_cert,
                         tls_key=tls_key, standalone=not site, user=user,
                         http_max_body_bytes=settings.http_max_body_bytes)
        if output is None:
            typer.echo(render_nginx(plan), nl=False)
            return
        write_nginx(plan, output)
    except NginxConfigError as exc:
        err.print(f"[red]Cannot write the configuration:[/red] {exc}")
        raise typer.Exit(2) from None
    where = output.resolve()
    run_it = f"nginx -p {where.parent} -c {where}" if not site else "nginx -t && nginx -s reload"
    console.print(f"Wrote {where} for {len(behind)} replica(s); start nginx with: {run_it}", soft_wrap=True)


class _services:
    """Open the store (migrated) and the programme's services for one CLI command."""

    def __init__(self, database_url: str | None) -> None:
        self.settings = settings_or_exit(database_url=database_url)

    async def __aenter__(self) -> Loyalty:
        from loyalbot.loyalty import Loyalty
        from loyalbot.storage import Db
        from loyalbot.storage.migrate import upgrade_async

        await upgrade_async(self.settings.database_url)
        self.db = Db(self.settings.database_url)
        return Loyalty(self.db, self.settings.load_programme())

    async def __aexit__(self, *exc: object) -> None:
        await self.db.dispose()


app.add_typer(schedule_app, name="schedule", help="Care messages and reminders: list, add, preview, run now.")
app.add_typer(campaign_app, name="campaign", help="Campaigns: score members, segments, built-in plays.")
app.add_typer(outbox_app, name="outbox", help="Messages planned and sent.")
app.add_typer(campaign_app, name="campaign", help="Campaigns: results per variant against the control group.")
app.add_typer(programme_app, name="programme")


if __name__ == "__main__":
    app()
