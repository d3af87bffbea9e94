"""`loyalbot nginx-config` writes what Debian's nginx accepts and does what it says: update POSTs fail over from
a replica that refuses them or is gone, a shop's POST that reached a replica is never sent to a second one,
member numbers stay out of the log, and the client's address reaches the replicas. The shipped example is
what the command writes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from aiohttp import web

from loyalbot.bot.nginx import NginxConfigError, NginxPlan, Replica, render
from loyalbot.bot.webhook import client_of, trusted_networks
from tests.bot.conftest import free_port
from tests.replicas.conftest import HOOK_PATH, ROOT, nginx_binary, tail, until

EXAMPLE = ROOT / "docs" / "nginx.conf.example"


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOYALBOT_")} | {"PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "loyalbot.bot.cli", "nginx-config", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


def need_nginx() -> str:
    binary = nginx_binary()
    if binary is None:
        if os.environ.get("CI") == "true":
            pytest.fail("nginx is not installed (apt-get install nginx); CI needs it")
        pytest.skip("nginx is not installed: apt-get install nginx")
    return binary


def foreground_nginx(binary: str, prefix: Path, conf: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([binary, "-p", str(prefix), "-c", str(conf), "-e", str(prefix / "error.log"),
                             "-g", "daemon off;"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def test_the_shipped_example_is_what_the_command_writes() -> None:
    first, _, shipped = EXAMPLE.read_text(encoding="utf-8").partition("\n")
    command = first.split("`")[1]
    assert command.startswith("loyalbot nginx-config ")
    written = cli(*command.split()[2:])
    assert written.returncode == 0, written.stderr
    assert written.stdout == shipped


def test_the_site_part_and_the_standalone_file_pass_nginx_t(tmp_path: Path) -> None:
    binary = need_nginx()
    site = cli("--site", "--replicas", "3", "--server-name", "bot.example.com")
    assert site.returncode == 0, site.stderr
    (tmp_path / "loyalbot.conf").write_text(site.stdout)
    (tmp_path / "main.conf").write_text(f"pid {tmp_path}/nginx.pid;\nevents {{}}\nhttp {{\n"
                                        f"    access_log off;\n    include {tmp_path}/loyalbot.conf;\n}}\n")
    for conf in ("main.conf", "standalone/nginx.conf"):
        if conf.startswith("standalone"):
            assert cli("--replicas", "2", "-o", str(tmp_path / conf)).returncode == 0
        checked = subprocess.run([binary, "-t", "-p", str((tmp_path / conf).parent), "-c", str(tmp_path / conf),
                                  "-e", str(tmp_path / "error.log")], capture_output=True, text=True, timeout=60)
        assert checked.returncode == 0, checked.stderr


def test_options_that_cannot_work_are_refused_naming_the_option() -> None:
    for args, named in ((["--replica", "nowhere"], "--replica"), (["--listen", "port 80"], "--listen"),
                        (["--tls-cert", "/etc/cert.pem"], "--tls-key"), (["--webhook-path", "hook"], "--webhook-path"),
                        (["--server-name", "bad;name"], "--server-name")):
        refused = cli(*args)
        assert refused.returncode == 2 and named in refused.stderr, (args, refused.stderr)
    with pytest.raises(NginxConfigError, match="spaces"):
        render(NginxPlan([Replica("127.0.0.1", 8443, 8081)], access_log="/var/log/a b.log"))


def test_the_webhook_believes_x_forwarded_for_only_from_a_trusted_proxy() -> None:
    proxies = trusted_networks("127.0.0.1, ::1, 10.0.0.0/8")
    assert client_of("127.0.0.1", "203.0.113.9", proxies) == "203.0.113.9"
    assert client_of("127.0.0.1", "198.51.100.1, 203.0.113.9, 10.1.2.3", proxies) == "203.0.113.9"
    assert client_of("203.0.113.50", "127.0.0.1", proxies) == "203.0.113.50", "a forged header from outside"
    assert client_of("127.0.0.1", None, proxies) == "127.0.0.1"


async def test_nginx_fails_update_posts_over_and_sends_a_shop_post_to_one_replica_only(tmp_path: Path) -> None:
    """Two stand-in replicas: one answers 503 to everything (as a draining one does), one 200; a third is gone."""
    binary = need_nginx()
    seen: dict[str, list[tuple[str, str, str | None]]] = {"draining": [], "serving": []}

    def stand_in(name: str, status: int) -> web.Application:
        async def answer(request: web.Request) -> web.Response:
            await request.read()
            seen[name].append((request.method, request.path, request.headers.get("X-Forwarded-For")))
            return web.Response(status=status, text=name)

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", answer)
        return app

    runners, ports = [], {}
    for name, status in (("draining", 503), ("serving", 200)):
        runner = web.AppRunner(stand_in(name, status))
        await runner.setup()
        ports[name] = free_port()
        await web.TCPSite(runner, "127.0.0.1", ports[name]).start()
        runners.append(runner)
    gone = free_port()
    listen = free_port()
    conf = tmp_path / "nginx.conf"
    args = ["--listen", f"127.0.0.1:{listen}", "--webhook-path", HOOK_PATH, "-o", str(conf)]
    for port in (gone, ports["draining"], ports["serving"]):
        args += ["--replica", f"127.0.0.1:{port}:{port}"]
    if os.geteuid() == 0:
        args += ["--user", "root"]
    assert cli(*args).returncode == 0
    nginx = foreground_nginx(binary, tmp_path, conf)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{listen}", timeout=30) as client:
            async def listening() -> bool:
                try:
                    await client.get("/nothing")
                except httpx.TransportError:
                    return nginx.poll() is not None
                return True

            await until(listening, what="nginx listening")
            assert nginx.poll() is None, tail(tmp_path / "error.log")
            hooks = [await client.post(HOOK_PATH, json={"update_id": n}) for n in range(6)]
            shop = [await client.post("/api/v1/purchases", json={"external_id": f"p{n}"}) for n in range(6)]
            lookup = await client.get("/api/v1/members/123456789")
            too_big = await client.post(HOOK_PATH, content=b"x" * (2 * 1024 * 1024))
            wrong_method = await client.get(HOOK_PATH)
    finally:
        nginx.send_signal(signal.SIGQUIT)
        nginx.wait(timeout=30)
        for runner in runners:
            await runner.cleanup()
    assert [r.status_code for r in hooks] == [200] * 6, "every update POST reaches the replica that takes it"
    assert any(path == HOOK_PATH for _, path, _ in seen["draining"]), "tried on the draining one, then passed on"
    shop_posts = [p for p in seen["draining"] + seen["serving"] if p[1] == "/api/v1/purchases"]
    assert len(shop_posts) == 6, "a shop's POST that reached a replica is never sent to a second one"
    assert {r.status_code for r in shop} <= {200, 503}
    assert (too_big.status_code, wrong_method.status_code) == (413, 403)
    assert lookup.status_code in (200, 503)
    assert all(forwarded == "127.0.0.1" for _, _, forwarded in seen["serving"]), "X-Forwarded-For is set"
    log = (tmp_path / "access.log").read_text()
    assert "123456789" not in log and "/api/v1/members/-" in log, "no member number in nginx's log"
