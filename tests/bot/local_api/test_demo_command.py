"""`loyalbot demo` and `loyalbot --help` as a person meets them in a terminal (subprocesses, 80 columns)."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import typer

ROOT = Path(__file__).resolve().parents[3]


def env(**extra: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("LOYALBOT_")}
    return base | {"PYTHONPATH": str(ROOT), "COLUMNS": "80", "NO_COLOR": "1", "TERM": "dumb"} | extra


def loyalbot(*args: str, cwd: Path, timeout: float = 60, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "loyalbot.bot.cli", *args], cwd=cwd, env=env(**extra), capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture
def taken() -> Iterator[int]:
    """A port something else listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    return lines[0]


def test_a_taken_page_port_is_one_line_naming_it_and_the_option(tmp_path, taken):
    line = one_line_error(loyalbot("demo", "--port", str(taken), cwd=tmp_path))
    assert f"port {taken}" in line and "--port" in line
    assert not (tmp_path / "loyalbot-demo.db").exists(), "nothing was started"


def test_a_taken_console_port_is_one_line_naming_it_and_the_option(tmp_path, taken):
    # The console's port is --port + 1 unless given: the collision from the bug report.
    line = one_line_error(loyalbot("demo", "--port", str(taken - 1), cwd=tmp_path))
    assert f"port {taken}" in line and "--console-port" in line and "LOYALBOT_CONSOLE_PORT" in line
    page = free_port()
    line = one_line_error(loyalbot("demo", "--port", str(page), "--console-port", str(taken), cwd=tmp_path))
    assert f"port {taken}" in line and "--console-port" in line
    line = one_line_error(loyalbot("demo", "--port", str(page), cwd=tmp_path, LOYALBOT_CONSOLE_PORT=str(taken)))
    assert f"port {taken}" in line, "LOYALBOT_CONSOLE_PORT is the console's port"


def test_demo_help_says_where_the_console_listens(tmp_path):
    result = loyalbot("demo", "--help", cwd=tmp_path)
    assert result.returncode == 0
    text = " ".join(result.stdout.split())
    for words in ("--console-port", "LOYALBOT_CONSOLE_PORT", "--port + 1", "--verbose", "--show"):
        assert words in text, words


class Demo:
    def __init__(self, folder: Path) -> None:
        self.folder, self.port, self.console_port = folder, free_port(), free_port()
        self.process: subprocess.Popen[str] | None = None
        self.out = folder / "out.txt"

    def start(self, *extra: str) -> str:
        with self.out.open("w") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "loyalbot.bot.cli", "demo", "--port", str(self.port), "--console-port",
                 str(self.console_port), *extra], cwd=self.folder, env=env(COLUMNS="250"), stdout=out,
                stderr=subprocess.STDOUT, text=True)
        deadline = time.monotonic() + 90
        while "is running" not in self.out.read_text() or "Data is kept" not in self.out.read_text():
            assert self.process.poll() is None, self.out.read_text()
            assert time.monotonic() < deadline, self.out.read_text()
            time.sleep(0.2)
        return self.out.read_text()

    def stop(self) -> str:
        assert self.process is not None
        self.process.send_signal(signal.SIGINT)
        self.process.wait(timeout=30)
        return self.out.read_text()


def password_in(text: str) -> str:
    found = re.search(r"sign in as: operator \(admin\)\s+password: (\S+)", text)
    assert found, text
    return found.group(1)


def test_the_demo_is_quiet_keeps_its_password_and_shows_it_again(tmp_path):
    demo = Demo(tmp_path)
    first = demo.start()
    try:
        url = f"http://127.0.0.1:{demo.port}"
        for _ in range(3):  # a few clicks' worth of updates
            sent = httpx.post(f"{url}/control/messages", json={"user_id": 1001, "text": "/start"}, timeout=10).json()
            waited = httpx.get(f"{url}/control/wait", params={"chat_id": 1001, "after_id": sent["message_id"]},
                               timeout=20).json()
            assert waited["message"] is not None
        shown = loyalbot("demo", "--show", cwd=tmp_path)
        assert shown.returncode == 0, shown.stderr
        assert "is running" in shown.stdout and password_in(" ".join(shown.stdout.split())) == password_in(first)
        assert f"127.0.0.1:{demo.console_port}/console" in shown.stdout.replace("\n", "")
        # The admin account is made at start-up, before anyone signs in, and the printed password signs in to it.
        with sqlite3.connect(tmp_path / "loyalbot-demo.db") as store:
            assert store.execute("SELECT name, role, last_signin_at FROM operators").fetchall() == [
                ("operator", "admin", None)]
        with httpx.Client(base_url=f"http://127.0.0.1:{demo.console_port}", timeout=30) as web:
            signed = web.post("/console/signin", data={"name": "operator", "password": password_in(first)})
            assert signed.status_code == 303, signed.text
            operators = web.get("/console/operators")
            assert operators.status_code == 200 and re.search(r'<td data-label="Name">operator\b', operators.text)
    finally:
        log = demo.stop()
    assert " INFO " not in log and "Traceback" not in log, log
    # The password printed at start is still the last thing about the console on screen.
    assert log.strip().splitlines()[-1].startswith("Data is kept in"), log
    info = tmp_path / "loyalbot-demo.console.json"
    assert info.stat().st_mode & 0o077 == 0, "the password file is its owner's only"
    assert json.loads(info.read_text())["password"] == password_in(first)

    again = demo.start("--verbose")
    try:
        assert password_in(again) == password_in(first), "an open console tab keeps signing in"
        assert " INFO " in demo.out.read_text(), "--verbose shows the log"
    finally:
        demo.stop()


def test_show_without_a_demo_says_so(tmp_path):
    result = loyalbot("demo", "--show", cwd=tmp_path)
    assert result.returncode == 1 and "No demo has run in this folder" in result.stderr


def all_commands(group: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    """Every (sub)command under a click-style group (typer brings its own click)."""
    ctx = group.context_class(group)
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        assert command is not None
        yield (*path, name), command
        if hasattr(command, "list_commands"):
            yield from all_commands(command, (*path, name))


def test_every_help_reads_at_80_columns(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from loyalbot.bot.cli import app

    result = loyalbot("--help", cwd=tmp_path)  # once as a person runs it
    assert result.returncode == 0 and "<bool>" not in result.stdout, result.stdout
    monkeypatch.setenv("COLUMNS", "80")
    root = typer.main.get_command(app)
    runner = CliRunner()
    for path, command in [((), root), *all_commands(root)]:
        shown = runner.invoke(app, [*path, "--help"], terminal_width=80)
        assert shown.exit_code == 0, (path, shown.output)
        text = shown.output
        wide = [line for line in text.splitlines() if len(line) > 80]
        assert not wide, (path, wide)
        assert "<bool>" not in text and "…" not in text, (path, text)
        for param in command.params:
            for name in [*param.opts, *param.secondary_opts]:
                if name.startswith("-"):
                    assert re.search(rf"(^|[\s,/]){re.escape(name)}($|[\s,=/])", text, re.M), (path, name, text)
