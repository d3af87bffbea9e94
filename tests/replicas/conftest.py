"""Real processes for the replica tests: `loyalbot run` replicas on one PostgreSQL (and Redis), Debian's nginx
in front of them, written by `loyalbot nginx-config`, and the local Bot API server playing Telegram.

The PostgreSQL runs are skipped, with the reason, only when LOYALBOT_TEST_DATABASE_URL is unset (CI sets
it); nginx missing is a failure, not a skip, under CI=true. Waits poll real state (the server's call
log, the inbox's rows, the processes) with generous deadlines and never assert a duration.
"""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
import sqlalchemy as sa

from loyalbot.bot.local_api import LocalApiControl, LocalBotApi
from loyalbot.storage import Db
from loyalbot.storage.models import InboxUpdate
from tests.bot.conftest import free_port
from tests.conftest import NO_PG, truncate_all

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "737373:replicas-test-token"
SECRET = "replicas-Secret_1"
HOOK_PATH = "/telegram/webhook"
REDIS_ENV = "LOYALBOT_TEST_REDIS_URL"


def nginx_binary() -> str | None:
    return shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if os.access(p, os.X_OK)), None)


@pytest.fixture
def pg_url(pg_database: str | None) -> str:
    """This session's PostgreSQL database, emptied for the test."""
    if pg_database is None:
        pytest.skip(NO_PG)
    asyncio.run(truncate_all(pg_database))
    return pg_database


@pytest.fixture
def redis_url() -> str | None:
    """Conversation state of the replicas in Redis when LOYALBOT_TEST_REDIS_URL is set (nothing is flushed:
    each test's members have ids of their own)."""
    return os.environ.get(REDIS_ENV) or None


@pytest.fixture
def member_ids() -> Callable[[int], list[int]]:
    """Telegram ids no earlier run used, so state left in a shared Redis cannot meet them."""
    base = random.randrange(10_000_000, 2_000_000_000 - 100_000)
    return lambda count: [base + i for i in range(count)]


@pytest_asyncio.fixture
async def telegram() -> AsyncIterator[tuple[LocalBotApi, LocalApiControl]]:
    """The local Bot API server with the bot created; webhook retries quick, the call log long."""
    api = LocalBotApi(serve_page=False, call_log_size=100_000, webhook_retry_delay=0.05, webhook_retry_max=0.5)
    await api.start()
    tg = LocalApiControl(api.url)
    await tg.create_bot(TOKEN, first_name="Replica Bot", username="replica_bot")
    try:
        yield api, tg
    finally:
        await tg.aclose()
        await api.stop()


def tail(path: Path, size: int = 3000) -> str:
    return path.read_text(errors="replace")[-size:] if path.exists() else ""


async def until(check: Callable[[], Awaitable[bool]], *, what: str, limit: float = 90.0,
                alive: Callable[[], str | None] | None = None) -> None:
    """Poll `check()` until it holds; fail naming `what` (and why a process died, from `alive`)."""
    deadline = time.monotonic() + limit
    while not await check():
        if alive is not None and (died := alive()) is not None:
            raise AssertionError(f"{died} before {what}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}" + (f"\n{alive_logs(alive)}" if alive else ""))
        await asyncio.sleep(0.05)


def alive_logs(alive: Callable[[], str | None]) -> str:
    return getattr(alive, "logs", lambda: "")()


@dataclass
class Replica:
    """One `loyalbot run` process in webhook mode."""

    name: str
    framework: str
    webhook_port: int
    console_port: int
    env: dict[str, str]
    log: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def console(self) -> str:
        return f"http://127.0.0.1:{self.console_port}"

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen([sys.executable, "-m", "loyalbot.bot.cli", "run"], cwd=ROOT, env=self.env,
                                            stdout=out, stderr=subprocess.STDOUT)

    def died(self) -> str | None:
        if self.process is not None and self.process.poll() is not None:
            return f"replica {self.name} exited ({self.process.returncode}):\n{tail(self.log)}"
        return None

    async def ready(self) -> bool:
        try:
            async with httpx.AsyncClient(timeout=5) as client:
                return (await client.get(f"{self.console}/readyz")).status_code == 200
        except httpx.HTTPError:
            return False

    def signal(self, sig: int) -> None:
        assert self.process is not None
        self.process.send_signal(sig)

    async def wait(self, limit: float = 90.0) -> int:
        assert self.process is not None
        deadline = time.monotonic() + limit
        while self.process.poll() is None:
            if time.monotonic() > deadline:
                raise AssertionError(f"replica {self.name} did not exit:\n{tail(self.log)}")
            await asyncio.sleep(0.05)
        return self.process.returncode

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@dataclass
class Fleet:
    """Replicas, nginx before them, and the store they share."""

    replicas: list[Replica]
    nginx_port: int
    nginx_dir: Path
    db: Db
    nginx: subprocess.Popen[bytes] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.nginx_port}"

    def alive(self) -> Callable[[], str | None]:
        def check() -> str | None:
            if self.nginx is not None and self.nginx.poll() is not None:
                return f"nginx exited ({self.nginx.returncode}):\n{tail(self.nginx_dir / 'error.log')}"
            for replica in self.replicas:
                if replica.process is not None and replica.process.returncode is None and (died := replica.died()):
                    return died
            return None

        check.logs = lambda: "\n".join(f"--- {r.name}\n{tail(r.log, 1500)}" for r in self.replicas)  # type: ignore[attr-defined]
        return check

    def upstreams_of_webhook_posts(self) -> dict[str, int]:
        """How many update POSTs nginx passed to each upstream address (from its access log)."""
        counts: dict[str, int] = {}
        log = self.nginx_dir / "access.log"
        for line in log.read_text(errors="replace").splitlines() if log.exists() else []:
            if f'"POST {HOOK_PATH}"' in line and "upstream=" in line:
                for address in line.split("upstream=", 1)[1].split()[0].split(","):
                    counts[address.strip()] = counts.get(address.strip(), 0) + 1
        return counts

    async def pending_claimed_by(self, name: str) -> int:
        async with self.db.read() as s:
            return int((await s.execute(sa.select(sa.func.count()).select_from(InboxUpdate).where(
                InboxUpdate.status == "pending", InboxUpdate.claimed_by == name))).scalar_one())

    async def pending(self) -> int:
        async with self.db.read() as s:
            return int((await s.execute(sa.select(sa.func.count()).select_from(InboxUpdate).where(
                InboxUpdate.status == "pending"))).scalar_one())


def replica_env(name: str, framework: str, *, store_url: str, api_url: str, hook_url: str, webhook_port: int,
                console_port: int, redis_url: str | None, **settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOYALBOT_")}
    env.update({"PYTHONPATH": str(ROOT), "LOYALBOT_DATABASE_URL": store_url, "LOYALBOT_BOT_TOKEN": TOKEN,
                "LOYALBOT_TELEGRAM_API_URL": api_url, "LOYALBOT_FRAMEWORK": framework,
                "LOYALBOT_WEBHOOK_URL": hook_url, "LOYALBOT_WEBHOOK_SECRET": SECRET,
                "LOYALBOT_WEBHOOK_LISTEN": f"127.0.0.1:{webhook_port}", "LOYALBOT_CONSOLE_PORT": str(console_port),
                "LOYALBOT_INSTANCE": name, "LOYALBOT_LOG_LEVEL": "INFO", "LOYALBOT_NOTICE_DELAY": "3600"})
    if redis_url:
        env["LOYALBOT_REDIS_URL"] = redis_url
    env.update({f"LOYALBOT_{k.upper()}": v for k, v in settings.items()})
    return env


def start_nginx(fleet: Fleet) -> None:
    """`loyalbot nginx-config` for the fleet, then nginx from its own prefix, in the foreground."""
    binary = nginx_binary()
    if binary is None:
        if os.environ.get("CI") == "true":
            pytest.fail("nginx is not installed (apt-get install nginx); CI needs it")
        pytest.skip("nginx is not installed: apt-get install nginx")
    conf = fleet.nginx_dir / "nginx.conf"
    args = [sys.executable, "-m", "loyalbot.bot.cli", "nginx-config", "--listen", f"127.0.0.1:{fleet.nginx_port}",
            "--webhook-path", HOOK_PATH, "-o", str(conf)]
    for replica in fleet.replicas:
        args += ["--replica", f"127.0.0.1:{replica.webhook_port}:{replica.console_port}"]
    if os.geteuid() == 0:  # root's nginx would hand its workers to nobody, who cannot enter pytest's tmp folder
        args += ["--user", "root"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOYALBOT_")} | {"PYTHONPATH": str(ROOT)}
    written = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert written.returncode == 0, written.stderr
    command = [binary, "-p", str(fleet.nginx_dir), "-c", str(conf), "-e", str(fleet.nginx_dir / "error.log"),
               "-g", "daemon off;"]
    checked = subprocess.run([*command[:-2], "-t"], capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0, checked.stderr
    with (fleet.nginx_dir / "nginx.out").open("ab") as out:
        fleet.nginx = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)


@pytest_asyncio.fixture
async def fleet_factory(tmp_path: Path, pg_url: str, redis_url: str | None,
                        telegram: tuple[LocalBotApi, LocalApiControl]) -> AsyncIterator[Callable[..., Awaitable[Fleet]]]:
    """Start nginx and replicas of the given frameworks with the given settings; stop them all at the end."""
    api, _ = telegram
    made: list[Fleet] = []

    async def make(frameworks: list[str], **settings: str) -> Fleet:
        nginx_port = free_port()
        hook_url = f"http://127.0.0.1:{nginx_port}{HOOK_PATH}"
        replicas = []
        for n, framework in enumerate(frameworks, 1):
            name = f"replica-{n}"
            hook, web = free_port(), free_port()
            replicas.append(Replica(name, framework, hook, web, replica_env(
                name, framework, store_url=pg_url, api_url=api.url, hook_url=hook_url, webhook_port=hook,
                console_port=web, redis_url=redis_url, **settings), tmp_path / f"{name}.log"))
        nginx_dir = tmp_path / "nginx"
        nginx_dir.mkdir(exist_ok=True)
        fleet = Fleet(replicas, nginx_port, nginx_dir, Db(pg_url))
        made.append(fleet)
        start_nginx(fleet)
        for replica in replicas:
            replica.start()
        for replica in replicas:
            await until(replica.ready, what=f"{replica.name} ready (/readyz 200)", alive=fleet.alive())
        return fleet

    try:
        yield make
    finally:
        for fleet in made:
            for replica in fleet.replicas:
                replica.kill()
            if fleet.nginx is not None and fleet.nginx.poll() is None:
                fleet.nginx.send_signal(signal.SIGQUIT)
                try:
                    fleet.nginx.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    fleet.nginx.kill()
            await fleet.db.dispose()
