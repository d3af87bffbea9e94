"""Migrations, settings and the programme file: what an operator meets when setting loyalbot up."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from loyalbot.bot.settings import SettingsError, load_settings
from loyalbot.loyalty.programme import ProgrammeError, load_programme
from loyalbot.storage.migrate import (
    EXPRESSION_INDEXES,
    current_revision,
    expression_indexes,
    head_revision,
    schema_drift,
    upgrade_async,
)

ROOT = Path(__file__).resolve().parents[2]


async def test_models_and_migrations_do_not_drift(store_url):
    assert await current_revision(store_url) == head_revision()
    assert await schema_drift(store_url) == []
    # The expression indexes alembic cannot compare are PostgreSQL's alone, and there after migrating.
    expected = EXPRESSION_INDEXES if store_url.startswith("postgresql") else set()
    assert await expression_indexes(store_url) == expected


async def test_migrating_twice_changes_nothing(store_url):
    await upgrade_async(store_url)
    assert await current_revision(store_url) == head_revision()
    assert await schema_drift(store_url) == []


def cli(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("LOYALBOT_")} | (env or {})
    return subprocess.run([sys.executable, "-m", "loyalbot.bot.cli", *args], capture_output=True, text=True,
                          env=full_env | {"PYTHONPATH": str(ROOT)}, cwd=cwd or ROOT, timeout=120)


def test_migrate_on_an_empty_sqlite_file_and_again(tmp_path):
    env = {"LOYALBOT_DATABASE_URL": f"sqlite:///{tmp_path / 'fresh.db'}"}
    first = cli("migrate", env=env, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    second = cli("migrate", env=env, cwd=tmp_path)
    assert second.returncode == 0 and f"revision {head_revision()}" in second.stdout


@pytest.mark.parametrize(
    ("variable", "value", "named"),
    [
        ("LOYALBOT_DATABASE_URL", "mysql://x/y", "LOYALBOT_DATABASE_URL"),
        ("LOYALBOT_FRAMEWORK", "flask", "LOYALBOT_FRAMEWORK"),
        ("LOYALBOT_TIMEZONE", "Mars/Olympus", "LOYALBOT_TIMEZONE"),
        ("LOYALBOT_PROGRAMME", "/no/such/programme.toml", "LOYALBOT_PROGRAMME"),
    ],
)
def test_a_bad_setting_stops_start_up_naming_it(tmp_path, variable, value, named):
    result = cli("migrate", env={variable: value}, cwd=tmp_path)
    assert result.returncode == 2
    assert named in result.stderr


def test_staff_are_managed_from_the_command_line(tmp_path):
    env = {"LOYALBOT_DATABASE_URL": f"sqlite:///{tmp_path / 'staff.db'}"}
    assert cli("staff", "add", "5001", "--role", "operator", "--name", "Mia", env=env).returncode == 0
    listed = cli("staff", "list", env=env)
    assert "5001" in listed.stdout and "operator" in listed.stdout
    assert cli("staff", "add", "5002", "--role", "wizard", env=env).returncode == 2
    assert cli("staff", "remove", "5001", env=env).returncode == 0
    assert cli("staff", "remove", "5001", env=env).returncode == 1
    assert "5001" not in cli("staff", "list", env=env).stdout


def test_help_reads_well():
    result = cli("--help")
    assert result.returncode == 0
    for command in ("migrate", "seed-demo", "run", "demo", "staff"):
        assert command in result.stdout


def test_settings_error_names_the_setting():
    with pytest.raises(SettingsError, match="LOYALBOT_LOCALE"):
        load_settings(locale="fr")


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("[tiers\nlevels = 1", "not valid TOML"),
        ('[[tiers.levels]]\ncode="a"\nthreshold=0\n[[tiers.levels]]\ncode="b"\nthreshold=0\n', "overlap"),
        ('[[tiers.levels]]\ncode="a"\nthreshold=10\n', "first tier"),
        ('[[tiers.levels]]\ncode="a"\nthreshold=0\n[[rewards]]\ncode="r"\ncost=-1\ntitles={en="x"}\n', "cost"),
        ('[[tiers.levels]]\ncode="a"\nthreshold=0\n[[rewards]]\ncode="r"\ncost=5\nmin_tier="zz"\n'
         'titles={en="x"}\n', "unknown tier"),
    ],
)
def test_a_broken_programme_file_is_explained(tmp_path, text, problem):
    path = tmp_path / "programme.toml"
    path.write_text(text)
    with pytest.raises(ProgrammeError, match=problem):
        load_programme(path)


def test_seed_demo_writes_consistent_members(tmp_path):
    env = {"LOYALBOT_DATABASE_URL": f"sqlite:///{tmp_path / 'seed.db'}"}
    result = cli("seed-demo", "--members", "300", env=env)
    assert result.returncode == 0, result.stderr
    assert "Seeded 300 members" in result.stdout
    import sqlite3

    conn = sqlite3.connect(tmp_path / "seed.db")
    mismatched = conn.execute(
        "SELECT COUNT(*) FROM members m WHERE m.balance != "
        "(SELECT COALESCE(SUM(delta), 0) FROM ledger_entries l WHERE l.member_id = m.id) OR m.balance != "
        "(SELECT COALESCE(SUM(remaining), 0) FROM ledger_entries l WHERE l.member_id = m.id)"
    ).fetchone()[0]
    languages = {row[0] for row in conn.execute("SELECT DISTINCT language FROM members")}
    assert mismatched == 0 and languages == {"en", "zh_Hans", "zh_Hant"}
