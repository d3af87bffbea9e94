"""`loyalbot api` as operators start it, on SQLite and PostgreSQL: one event loop for the pool, the console
password honoured, and a 100 MB request refused without the process's memory rising."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from loyalbot.console.api import create_api_key

ROOT = Path(__file__).resolve().parents[2]
MB = 1024 * 1024


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def start_api(store_url: str, cwd: Path, **settings: str):
    """Start `loyalbot api` on `store_url` with a console password and these LOYALBOT_* settings."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOYALBOT_")} | {
        "PYTHONPATH": str(ROOT), "LOYALBOT_DATABASE_URL": store_url, "LOYALBOT_CONSOLE_PASSWORD": "s3cret-pass",
        "LOYALBOT_API_MAX_BODY_BYTES": "16384"} | {f"LOYALBOT_{k.upper()}": v for k, v in settings.items()}
    output = (cwd / f"api-{port}.log").open("w")  # a file, not a pipe: a full pipe would stall the server
    process = subprocess.Popen([sys.executable, "-m", "loyalbot.bot.cli", "api", "--port", str(port)], env=env, cwd=cwd,
                               stdout=output, stderr=subprocess.STDOUT, text=True)
    process.log_path = Path(output.name)  # type: ignore[attr-defined]
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:  # poll until it listens (or died)
            if process.poll() is not None:
                raise AssertionError(f"loyalbot api exited: {process.log_path.read_text()}")
            try:
                if httpx.get(f"{base}/healthz", timeout=2).status_code in (200, 503):
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError("loyalbot api did not start")
            time.sleep(0.2)
        return base, process
    except BaseException:
        stop_api(process)
        raise


def stop_api(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()


@pytest.fixture
def api_process(store_url, tmp_path):
    """`loyalbot api` on this test's store; yields (base_url, process)."""
    base, process = start_api(store_url, tmp_path)
    try:
        yield base, process
    finally:
        stop_api(process)


async def test_loyalbot_api_serves_the_store_and_the_console(api_process, db, loyalty):
    base, _ = api_process
    ann = await loyalty.register_member(telegram_id=1, terms_accepted=True)
    key = await create_api_key(db, "till")
    async with httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=30) as client:
        assert (await client.get("/healthz")).json() == {"status": "ok"}
        body = {"member_no": ann.member_no, "external_id": "till-1", "amount": "40.00"}
        first = await client.post("/api/v1/purchases", json=body)
        again = await client.post("/api/v1/purchases", json=body)
        looked_up = await client.get(f"/api/v1/members/{ann.member_no}")
        await client.post("/console/signin", data={"name": "operator", "password": "s3cret-pass"})
        console = await client.get("/console")
    assert (first.status_code, first.json()["points"], again.status_code) == (201, 40, 200)
    assert looked_up.json()["points"] == 40 and (await loyalty.member(ann.id)).balance == 40
    assert console.status_code == 200 and "Lumen" in console.text


def _send_big(base: str, head: bytes, total: int, chunked: bool) -> bytes:
    """Send `head` then up to `total` bytes of body on a raw socket; return what the server answered."""
    host, port = base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(head)
        piece = b"x" * (64 * 1024)
        frame = b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece
        sent = 0
        answer = b""
        sock.setblocking(False)
        try:
            while sent < total:
                try:
                    answer += sock.recv(65536)
                    if answer:
                        break  # the server has answered: it is not reading the rest
                except BlockingIOError:
                    pass
                try:
                    sent += sock.send(frame)
                except BlockingIOError:
                    time.sleep(0.001)
        except (BrokenPipeError, ConnectionResetError):
            pass
        sock.setblocking(True)
        try:
            while b"\r\n\r\n" not in answer:
                more = sock.recv(65536)
                if not more:
                    break
                answer += more
        except (ConnectionResetError, TimeoutError):
            pass
        return answer


async def test_a_100_mb_request_is_refused_before_the_memory_rises(api_process, db):
    base, process = api_process
    key = await create_api_key(db, "till")
    before = rss_mb(process.pid)
    no_key = _send_big(base, b"POST /api/v1/purchases HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                             b"Transfer-Encoding: chunked\r\n\r\n", 100 * MB, chunked=True)
    declared = _send_big(base, b"POST /api/v1/purchases HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
                               b"Content-Length: %d\r\n\r\n" % (key.encode(), 100 * MB), 100 * MB, chunked=False)
    chunked = _send_big(base, b"POST /api/v1/purchases HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
                              b"Transfer-Encoding: chunked\r\n\r\n" % key.encode(), 100 * MB, chunked=True)
    after = rss_mb(process.pid)
    assert no_key.startswith(b"HTTP/1.1 401"), no_key[:200]
    assert declared.startswith(b"HTTP/1.1 413"), declared[:200]
    assert chunked.startswith(b"HTTP/1.1 413"), chunked[:200]
    print(f"RSS of loyalbot api: {before:.1f} MB before, {after:.1f} MB after three 100 MB requests")
    assert after - before < 20  # main rose ~350 MB for one such request
    async with httpx.AsyncClient(base_url=base) as client:  # and it still serves
        assert (await client.get("/healthz")).status_code == 200


async def test_the_console_inside_the_bot_shares_its_loop_throttle_and_settings(db, loyalty):
    """What `loyalbot run` starts: the same app, on the bot's own Db, its throttle shared with the handlers."""
    from types import SimpleNamespace

    from loyalbot.bot.settings import load_settings
    from loyalbot.console.service import ConsoleService
    from loyalbot.handlers.context import Services
    from loyalbot.storage.throttle import SqlThrottle

    settings = load_settings(database_url=db.url, console_password="s3cret-pass", lookup_limit=2)
    bot = SimpleNamespace(settings=settings, db=db, loyalty=loyalty, console_password=None,
                          context=SimpleNamespace(services=Services()))
    service = ConsoleService("127.0.0.1", 0)
    await service.start(bot)
    try:
        assert isinstance(bot.context.services.throttle, SqlThrottle)  # what the counter handlers read
        ann = await loyalty.register_member(telegram_id=1, terms_accepted=True)
        key = await create_api_key(db, "till")
        async with httpx.AsyncClient(base_url=service.url, headers={"Authorization": f"Bearer {key}"}) as client:
            body = {"member_no": ann.member_no, "external_id": "till-1", "amount": "40.00"}
            assert (await client.post("/api/v1/purchases", json=body)).status_code == 201
            looks = [(await client.get(f"/api/v1/members/{ann.member_no}")).status_code for _ in range(3)]
            await client.post("/console/signin", data={"name": "operator", "password": "s3cret-pass"})
            assert (await client.get("/console")).status_code == 200
    finally:
        await service.stop()
    assert looks == [200, 200, 429]  # LOYALBOT_LOOKUP_LIMIT applies
