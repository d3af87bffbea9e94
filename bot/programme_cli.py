"""`loyalbot programme import|export|history`: the programme file as import and export of the store's versions.

Once the store has a version, the programme in force is the newest stored version (edited in the console or
imported here); LOYALBOT_PROGRAMME is read only to make version 1 of an empty store.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from loyalbot.bot.settings import Settings
    from loyalbot.loyalty import Loyalty
    from loyalbot.storage import Db
    from loyalbot.storage.models import ProgrammeVersion

console = Console()
err = Console(stderr=True)

programme_app = typer.Typer(help="The programme's versions: import a TOML file, export the one in force, history.",
                            no_args_is_help=True)

DbOption = Annotated[str | None, typer.Option("--database-url", metavar="URL", help="Overrides LOYALBOT_DATABASE_URL.")]


def _settings(ctx: typer.Context, database_url: str | None) -> Settings:
    load = ctx.obj
    settings: Settings = load(database_url=database_url)
    return settings


async def _open(settings: Settings) -> tuple[Db, Loyalty]:
    from loyalbot.loyalty import Loyalty
    from loyalbot.storage import Db
    from loyalbot.storage.migrate import upgrade_async

    await upgrade_async(settings.database_url)
    db = Db(settings.database_url)
    loyalty = Loyalty(db, settings.load_programme())
    await loyalty.sync_programme()
    return db, loyalty


@programme_app.command("import")
def programme_import(ctx: typer.Context, file: Annotated[Path, typer.Argument(help="A programme file (TOML).")],
                     database_url: DbOption = None) -> None:
    """Check FILE and store it as the next version of the programme (audited); running bots take it within
    seconds."""
    from loyalbot.loyalty.errors import Refusal
    from loyalbot.loyalty.programme import ProgrammeError, load_programme

    try:
        programme = load_programme(file)
    except ProgrammeError as exc:
        err.print(f"[red]Not imported:[/red] {exc}")
        raise typer.Exit(2) from None
    settings = _settings(ctx, database_url)

    async def go() -> str:
        db, loyalty = await _open(settings)
        try:
            based_on = loyalty.in_force.version
            row = await loyalty.save_programme(programme, author="cli:import", based_on=based_on,
                                               action="programme_import")
            return f"Stored as version {row.version} ({len(row.summary)} changes)."
        except Refusal as exc:
            if exc.code == "programme_unchanged":
                return f"The file is the same as version {loyalty.in_force.version}; nothing stored."
            raise
        finally:
            await db.dispose()

    try:
        console.print(asyncio.run(go()))
    except (Refusal, ProgrammeError) as exc:
        err.print(f"[red]Not imported:[/red] {getattr(exc, 'detail', exc)}")
        raise typer.Exit(2) from None


@programme_app.command("export")
def programme_export(ctx: typer.Context,
                     file: Annotated[Path | None, typer.Argument(help="Where to write (default: standard output).")]
                     = None, database_url: DbOption = None) -> None:
    """Write the programme in force (the newest stored version) as a TOML file that `import` reads back."""
    from loyalbot.loyalty.programme import programme_toml

    settings = _settings(ctx, database_url)

    async def go() -> str:
        db, loyalty = await _open(settings)
        try:
            version = loyalty.in_force.version
            row = await loyalty.programmes.get(version) if version else None
            header = (f"loyalbot programme, version {version}"
                      + (f", saved by {row.author} at {row.created_at:%Y-%m-%d %H:%M} UTC" if row else ""))
            return programme_toml(loyalty.programme, header=header)
        finally:
            await db.dispose()

    text = asyncio.run(go())
    if file is None:
        typer.echo(text, nl=False)
    else:
        file.write_text(text, encoding="utf-8")
        console.print(f"Wrote {file}.")


@programme_app.command("history")
def programme_history(ctx: typer.Context, database_url: DbOption = None) -> None:
    """The stored versions, newest first: who saved each, when, and what changed."""
    settings = _settings(ctx, database_url)

    async def go() -> list[ProgrammeVersion]:
        db, loyalty = await _open(settings)
        try:
            return await loyalty.programmes.history()
        finally:
            await db.dispose()

    table = Table("version", "saved (UTC)", "by", "changes")
    for row in asyncio.run(go()):
        more = f" (+{len(row.summary) - 3})" if len(row.summary) > 3 else ""
        table.add_row(str(row.version), f"{row.created_at:%Y-%m-%d %H:%M}", row.author,
                      "; ".join(row.summary[:3]) + more)
    console.print(table)
