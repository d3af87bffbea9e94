"""`loyalbot operator add|list|password|remove` as an admin runs them (typer's CliRunner), on both stores: the
password asked twice and hidden, read from stdin or generated and printed once; clear errors with exit code 2."""

from __future__ import annotations

import asyncio
import logging

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from loyalbot.bot.cli import app
from loyalbot.console.accounts import Sessions, list_operators, sign_in
from loyalbot.storage import Db
from loyalbot.storage.models import AuditLog, ConsoleSession

PASSWORD = "a long enough secret"


@pytest.fixture
def run(store_url, monkeypatch):
    for name in ("LOYALBOT_DATABASE_URL", "LOYALBOT_CONSOLE_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    runner = CliRunner()

    def invoke(*args: str, input: str | None = None):
        return runner.invoke(app, ["operator", *args, "--database-url", store_url], input=input, terminal_width=120)

    return invoke


def in_store(store_url: str, work):
    async def go():
        db = Db(store_url)
        try:
            return await work(db)
        finally:
            await db.dispose()

    return asyncio.run(go())


def signs_in(store_url: str, name: str, password: str) -> bool:
    return in_store(store_url, lambda db: sign_in(db, name, password)) is not None


def test_add_asks_for_the_password_twice_and_never_shows_it(run, store_url, caplog):
    caplog.set_level(logging.DEBUG)
    result = run("add", "ada", "--role", "admin", "--language", "zh_Hant", input=f"{PASSWORD}\n{PASSWORD}\n")
    assert result.exit_code == 0, result.output
    assert "ada can now sign in to the console as admin" in result.output
    assert PASSWORD not in result.output and PASSWORD not in caplog.text
    listed = run("list")
    assert listed.exit_code == 0 and "ada" in listed.output and "admin" in listed.output and "never" in listed.output
    assert signs_in(store_url, "ada", PASSWORD)
    (ada,) = in_store(store_url, list_operators)
    assert (ada.role, ada.language) == ("admin", "zh_Hant")
    assert "never" not in run("list").output, "the last sign-in is shown"


def test_mismatched_repeats_are_asked_again(run, store_url):
    result = run("add", "ada", input=f"{PASSWORD}\nsomething else entirely\n{PASSWORD}\n{PASSWORD}\n")
    assert result.exit_code == 0, result.output
    assert signs_in(store_url, "ada", PASSWORD)


def test_password_from_stdin_and_a_generated_one_printed_once(run, store_url):
    assert run("add", "mia", "--password-stdin", input=f"{PASSWORD}\n").exit_code == 0
    assert signs_in(store_url, "mia", PASSWORD)
    made = run("add", "bo", "--generate")
    assert made.exit_code == 0
    generated = made.output.split("store it now): ")[1].split()[0]
    assert len(generated) >= 16 and signs_in(store_url, "bo", generated)


@pytest.mark.parametrize(("args", "stdin", "says"), [
    (("add", "ada", "--password-stdin"), "short\n", "at least 10 characters"),
    (("add", "ada", "--role", "root", "--password-stdin"), f"{PASSWORD}\n", "the role is one of operator, admin"),
    (("add", "ada", "--language", "fr", "--password-stdin"), f"{PASSWORD}\n", "the language is one of"),
    (("add", "a b", "--password-stdin"), f"{PASSWORD}\n", "1-64 letters"),
    (("add", "ada", "--password-stdin", "--generate"), "", "not both"),
])
def test_clear_errors_exit_with_code_2_and_change_nothing(run, store_url, args, stdin, says):
    result = run(*args, input=stdin)
    assert result.exit_code == 2, result.output
    assert says in " ".join(result.output.split())
    assert "Traceback" not in result.output
    assert in_store(store_url, list_operators) == []


def test_a_taken_name_is_refused(run, store_url):
    assert run("add", "ada", "--password-stdin", input=f"{PASSWORD}\n").exit_code == 0
    again = run("add", "ada", "--password-stdin", input="another long password\n")
    assert again.exit_code == 2 and "already exists" in again.output
    assert signs_in(store_url, "ada", PASSWORD), "the first password still works"


def open_session(store_url: str, name: str) -> str:
    async def go(db: Db) -> str:
        operator = await sign_in(db, name, PASSWORD)
        assert operator is not None
        cookie, _ = await Sessions(db, "k" * 32).open(operator)
        return cookie

    return in_store(store_url, go)


def live_sessions(store_url: str) -> int:
    async def go(db: Db) -> int:
        async with db.read() as s:
            return (await s.execute(sa.select(sa.func.count()).select_from(ConsoleSession)
                                    .where(ConsoleSession.revoked_at.is_(None)))).scalar_one()

    return in_store(store_url, go)


def test_a_new_password_signs_them_out_everywhere(run, store_url):
    run("add", "mia", "--password-stdin", input=f"{PASSWORD}\n")
    open_session(store_url, "mia")
    assert live_sessions(store_url) == 1
    changed = run("password", "mia", "--password-stdin", input="a brand new password\n")
    assert changed.exit_code == 0, changed.output
    assert live_sessions(store_url) == 0
    assert not signs_in(store_url, "mia", PASSWORD) and signs_in(store_url, "mia", "a brand new password")
    assert run("password", "nobody", "--generate").exit_code == 1


def test_remove_signs_them_out_and_keeps_the_last_admin(run, store_url):
    run("add", "ada", "--role", "admin", "--password-stdin", input=f"{PASSWORD}\n")
    run("add", "mia", "--password-stdin", input=f"{PASSWORD}\n")
    open_session(store_url, "mia")
    last = run("remove", "ada")
    assert last.exit_code == 2 and "last admin" in last.output
    removed = run("remove", "mia")
    assert removed.exit_code == 0 and "mia can no longer sign in" in removed.output
    assert live_sessions(store_url) == 0
    assert [o.name for o in in_store(store_url, list_operators)] == ["ada"]
    assert run("remove", "mia").exit_code == 1

    async def actions(db: Db) -> list[tuple[str, str]]:
        async with db.read() as s:
            return [(r.action, r.actor) for r in (await s.execute(sa.select(AuditLog).order_by(AuditLog.id))).scalars()]

    assert in_store(store_url, actions) == [("operator_add", "cli"), ("operator_add", "cli"),
                                             ("operator_remove", "cli")]
