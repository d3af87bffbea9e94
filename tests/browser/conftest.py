"""Browser tests: Debian's Chromium driven by Playwright, against `loyalbot demo` run as a subprocess.

Outside CI the tests skip, with the reason, when no Chromium is found; with CI=true they fail instead
(.ci/run installs Chromium, so a missing one there is a broken CI, not a reason to skip).
LOYALBOT_CHROMIUM names the browser to use (and, when set, the only one looked for).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


def find_chromium(env: dict[str, str] | os._Environ[str] = os.environ) -> str | None:
    """The Chromium to drive, or None."""
    if env.get("LOYALBOT_CHROMIUM"):
        return env["LOYALBOT_CHROMIUM"] if Path(env["LOYALBOT_CHROMIUM"]).is_file() else None
    for candidate in ("/usr/bin/chromium", "/usr/bin/chromium-browser", shutil.which("chromium"),
                      shutil.which("chromium-browser"), shutil.which("google-chrome")):
        if candidate and Path(candidate).is_file():
            return candidate
    return None


def in_ci(env: dict[str, str] | os._Environ[str] = os.environ) -> bool:
    return env.get("CI", "").strip().lower() in ("1", "true", "yes")


@pytest.fixture(scope="session")
def chromium() -> str:
    """The browser's path; skips (outside CI) or fails (CI=true) when there is none, or no Playwright."""
    path = find_chromium()
    problem = None
    if path is None:
        problem = ("no Chromium found (apt-get install chromium, or point LOYALBOT_CHROMIUM at one)"
                   if not os.environ.get("LOYALBOT_CHROMIUM")
                   else f"LOYALBOT_CHROMIUM={os.environ['LOYALBOT_CHROMIUM']} is not a file")
    else:
        try:
            import playwright.async_api  # noqa: F401
        except ImportError:
            problem = "Playwright is not installed (pip install -e '.[dev]')"
    if problem:
        if in_ci():
            pytest.fail(f"browser tests must run in CI (CI=true): {problem}")
        pytest.skip(f"browser tests skipped: {problem}; with CI=true this fails instead")
    assert path is not None
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class DemoProcess:
    """`loyalbot demo` in a folder, as a newcomer runs it; start() and stop() again for a restart."""

    def __init__(self, folder: Path, env: dict[str, str] | None = None) -> None:
        self.folder = folder
        self.port = free_port()
        self.console_port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("LOYALBOT_")} | {
            "PYTHONPATH": str(ROOT), "COLUMNS": "250", "NO_COLOR": "1"} | (env or {})
        self.process: subprocess.Popen[bytes] | None = None
        self.runs = 0

    @property
    def log_path(self) -> Path:
        return self.folder / f"demo-{self.runs}.log"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def start(self) -> None:
        self.runs += 1
        with self.log_path.open("w") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "loyalbot.bot.cli", "demo", "--port", str(self.port),
                 "--console-port", str(self.console_port)],
                cwd=self.folder, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"demo exited: {self.log()[-3000:]}")
            try:
                if httpx.get(self.url + "/control/health", timeout=1).status_code == 200 and "is running" in self.log():
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise AssertionError(f"the demo did not come up within 90 s: {self.log()[-3000:]}")

    def stop(self) -> None:
        """Ctrl-C, as a person stops it."""
        if self.process is None:
            return
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(f"the demo did not stop on Ctrl-C: {self.log()[-3000:]}") from None
        code, self.process = self.process.returncode, None
        assert code in (0, -2, 130), self.log()[-3000:]
        assert "Traceback" not in self.log(), self.log()[-3000:]


@pytest.fixture
def demo_process(tmp_path: Path, chromium: str) -> Iterator[DemoProcess]:
    demo = DemoProcess(tmp_path)
    yield demo
    demo.stop()


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    """Where the tests save a screenshot of each page state they check."""
    folder = tmp_path / "screenshots"
    folder.mkdir()
    return folder
