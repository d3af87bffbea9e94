"""The nginx configuration for N `loyalbot run` webhook replicas behind one address (`loyalbot nginx-config`).

nginx is the one address Telegram's setWebhook and the shop systems know. It spreads Telegram's
update POSTs over the replicas' webhook ports and everything else (shop API, /console, /healthz,
/readyz, /metrics) over their console ports, adds X-Forwarded-For, bounds bodies and waits, and
keeps no personal data in its log (member numbers in look-up paths are masked).

Failover is passive (`max_fails`, `proxy_next_upstream`): a replica that refuses the connection,
times out, or answers 502/503/504 (503 is what a replica answers while it drains after SIGTERM) is
skipped for `fail_timeout`, and the request goes to the next one. For update POSTs that is safe even
when the first replica may have recorded the update: the shared inbox recognises a redelivered
update and changes nothing. Other POSTs (purchases, refunds) are tried elsewhere only when they were
never sent; a shop system's own retry, idempotent on its ids, covers the rest.

`standalone` writes a whole nginx.conf that runs unprivileged from a prefix of its own
(`nginx -p DIR -c DIR/nginx.conf`: pid, logs and temporary files inside DIR); otherwise the
http-level part only, for /etc/nginx/conf.d/ of a system nginx.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from loyalbot.bot.webhook import MAX_UPDATE_BYTES

DEFAULT_WEBHOOK_PATH = "/telegram/webhook"
_HOST = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]{1,253})$")
_PATH = re.compile(r"^/[A-Za-z0-9._~/-]{0,200}$")
_NAME = re.compile(r"^[A-Za-z0-9._*-]{1,253}$")


class NginxConfigError(ValueError):
    """The options cannot make a working configuration; the message names the option."""


@dataclass(frozen=True)
class Replica:
    """One `loyalbot run` process as nginx reaches it: its webhook port and its console (HTTP) port."""

    host: str
    webhook_port: int
    console_port: int | None = None  # None: this replica serves no HTTP side

    @property
    def webhook(self) -> str:
        return f"{self.host}:{self.webhook_port}"

    @property
    def console(self) -> str:
        return f"{self.host}:{self.console_port}"


def replicas_on(host: str, count: int, *, webhook_port: int = 8443, console_port: int | None = 8081) -> list[Replica]:
    """`count` replicas on one host, on consecutive webhook ports (and console ports) from the given ones."""
    if count < 1:
        raise NginxConfigError("--replicas: at least 1")
    return [Replica(host, webhook_port + i, None if console_port is None else console_port + i)
            for i in range(count)]


def parse_replica(text: str) -> Replica:
    """'HOST:WEBHOOK_PORT[:CONSOLE_PORT]' -> Replica (IPv6 hosts in brackets)."""
    match = re.fullmatch(r"(\[[^\]]+\]|[^:]+):(\d{1,5})(?::(\d{1,5}))?", text.strip())
    if not match:
        raise NginxConfigError(f"--replica: expected HOST:WEBHOOK_PORT[:CONSOLE_PORT], got {text!r}")
    host, hook, web = match.group(1), int(match.group(2)), match.group(3)
    return Replica(host, hook, int(web) if web is not None else None)


@dataclass(frozen=True)
class NginxPlan:
    """What `loyalbot nginx-config` writes: where nginx listens and which replicas stand behind it."""

    replicas: list[Replica]
    listen: str = "8080"  # a port, or host:port
    server_name: str = "_"
    webhook_path: str = DEFAULT_WEBHOOK_PATH
    tls_certificate: Path | None = None
    tls_key: Path | None = None
    standalone: bool = True
    user: str | None = None  # only when nginx starts as root: whom its workers run as
    http_max_body_bytes: int = 1024 * 1024  # LOYALBOT_HTTP_MAX_BODY_BYTES: the replicas refuse more themselves
    metrics_allow: list[str] = field(default_factory=lambda: ["127.0.0.1", "::1"])
    access_log: str | None = None  # default: access.log in the prefix (standalone), nginx's log folder otherwise

    def check(self) -> None:
        if not self.replicas:
            raise NginxConfigError("--replicas: at least 1")
        for replica in self.replicas:
            if not _HOST.match(replica.host):
                raise NginxConfigError(f"--replica: {replica.host!r} is not a host name or address")
            for port in (replica.webhook_port, replica.console_port):
                if port is not None and not 1 <= port <= 65535:
                    raise NginxConfigError(f"--replica: port {port} is not between 1 and 65535")
        if not re.fullmatch(r"((\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):)?\d{1,5}", self.listen):
            raise NginxConfigError(f"--listen: expected PORT or HOST:PORT, got {self.listen!r}")
        if not _PATH.match(self.webhook_path) or "//" in self.webhook_path:
            raise NginxConfigError(f"--webhook-path: a path like {DEFAULT_WEBHOOK_PATH}, not {self.webhook_path!r}")
        if not all(_NAME.match(name) for name in self.server_name.split()):
            raise NginxConfigError(f"--server-name: {self.server_name!r} is not a list of host names")
        if (self.tls_certificate is None) != (self.tls_key is None):
            raise NginxConfigError("--tls-cert and --tls-key go together")
        if self.user is not None and not re.fullmatch(r"[a-z_][a-z0-9_-]{0,31}", self.user):
            raise NginxConfigError(f"--user: {self.user!r} is not a user name")


def _quote(value: str | Path) -> str:
    text = str(value)
    if re.search(r"[\s;{}\"'\\$]", text):
        raise NginxConfigError(f"a path with spaces, quotes, braces or $ cannot go into nginx.conf: {text!r}")
    return text


def render(plan: NginxPlan) -> str:
    """The configuration text for `plan` (raises NginxConfigError when an option cannot work)."""
    plan.check()
    tries = len(plan.replicas)
    hooks = "\n".join(f"        server {r.webhook} max_fails=1 fail_timeout=10s;" for r in plan.replicas)
    consoles = [r for r in plan.replicas if r.console_port is not None]
    webs = "\n".join(f"        server {r.console} max_fails=1 fail_timeout=10s;" for r in consoles)
    access_log = plan.access_log or ("access.log" if plan.standalone else "/var/log/nginx/loyalbot.access.log")
    if plan.tls_certificate is not None and plan.tls_key is not None:
        listen = (f"        listen {plan.listen} ssl;\n"
                  f"        ssl_certificate {_quote(plan.tls_certificate)};\n"
                  f"        ssl_certificate_key {_quote(plan.tls_key)};\n"
                  "        ssl_protocols TLSv1.2 TLSv1.3;")
    else:
        listen = f"        listen {plan.listen};"
    environment = "\n".join(
        f"#   replica {n}: LOYALBOT_INSTANCE=replica-{n} LOYALBOT_WEBHOOK_LISTEN={r.webhook}"
        + (f" LOYALBOT_CONSOLE_HOST={r.host.strip('[]')} LOYALBOT_CONSOLE_PORT={r.console_port}"
           if r.console_port is not None else " LOYALBOT_CONSOLE_PORT=-1")
        for n, r in enumerate(plan.replicas, 1))
    allow = "\n".join(f"            allow {_quote(a)};" for a in plan.metrics_allow)
    http_side = f"""
    # Everything else: the shop API, /console, /healthz, /readyz. A request is tried on the next replica
    # only when it was never sent (refused, or no answer to a GET), so a purchase is never posted twice here.
    upstream loyalbot_http {{
{webs}
        keepalive 16;
    }}
""" if consoles else ""
    http_locations = f"""
        # Prometheus scrapes /metrics from inside; add your scraper's address.
        location = /metrics {{
{allow}
            deny all;
            proxy_pass http://loyalbot_http;
        }}

        location / {{
            proxy_pass http://loyalbot_http;
            proxy_next_upstream error timeout http_502 http_504;
            proxy_next_upstream_tries 2;
        }}
""" if consoles else """
        location / {
            return 404;
        }
"""
    body = f"""
    # No personal data in the log: member numbers in look-up paths are masked, no query strings, no agents.
    map $uri $loyalbot_logged_path {{
        ~^/api/v1/members/ /api/v1/members/-;
        default $uri;
    }}
    log_format loyalbot '$remote_addr [$time_iso8601] "$request_method $loyalbot_logged_path" $status '
                        '$body_bytes_sent $request_time upstream=$upstream_addr $upstream_status';

    # Telegram's update POSTs. A replica answers 200 only once the update is in the shared inbox, and the
    # inbox recognises a redelivered update, so a POST that failed on one replica (refused, timed out, 502,
    # 503 while it drains after SIGTERM) is safely tried on the next one.
    upstream loyalbot_webhook {{
{hooks}
        keepalive 16;
    }}
{http_side}
    server {{
{listen}
        server_name {plan.server_name};
        server_tokens off;
        access_log {_quote(access_log)} loyalbot;

        client_header_timeout 10s;
        client_body_timeout 10s;
        send_timeout 15s;
        client_max_body_size {max(1, plan.http_max_body_bytes // 1024)}k;

        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_set_header Host $host;
        proxy_set_header X-Real-IP $remote_addr;
        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        proxy_set_header X-Forwarded-Proto $scheme;
        proxy_connect_timeout 2s;
        proxy_send_timeout 10s;
        proxy_read_timeout 30s;

        location = {plan.webhook_path} {{
            limit_except POST {{
                deny all;
            }}
            client_max_body_size {MAX_UPDATE_BYTES // 1024}k;
            proxy_pass http://loyalbot_webhook;
            proxy_read_timeout 15s;
            proxy_next_upstream error timeout http_502 http_503 http_504 non_idempotent;
            proxy_next_upstream_tries {tries};
            proxy_next_upstream_timeout 30s;
        }}
{http_locations}    }}
"""
    head = f"""# loyalbot behind nginx, written by `loyalbot nginx-config` for {tries} replica(s).
# Start each replica with `loyalbot run` and these settings (and the same LOYALBOT_DATABASE_URL,
# LOYALBOT_REDIS_URL, LOYALBOT_BOT_TOKEN, LOYALBOT_WEBHOOK_URL and LOYALBOT_WEBHOOK_SECRET for all):
{environment}
"""
    if not plan.standalone:
        return head + "# Include it in nginx's http block (e.g. as /etc/nginx/conf.d/loyalbot.conf).\n" + body
    user = f"user {plan.user};\n" if plan.user else ""
    return f"""{head}# Run it as is from a folder of its own: nginx -p DIR -c DIR/nginx.conf (pid, logs, temporary files in DIR).
{user}worker_processes auto;
pid nginx.pid;
error_log error.log warn;

events {{
    worker_connections 1024;
}}

http {{
    client_body_temp_path tmp/client_body;
    proxy_temp_path tmp/proxy;
    fastcgi_temp_path tmp/fastcgi;
    uwsgi_temp_path tmp/uwsgi;
    scgi_temp_path tmp/scgi;
    default_type application/octet-stream;
{body}}}
"""


def write(plan: NginxPlan, path: Path) -> None:
    """Write the configuration; standalone, also make the prefix's tmp/ folder nginx expects."""
    text = render(plan)
    path.parent.mkdir(parents=True, exist_ok=True)
    if plan.standalone:
        (path.parent / "tmp").mkdir(exist_ok=True)
    path.write_text(text, encoding="utf-8")


__all__ = ["DEFAULT_WEBHOOK_PATH", "NginxConfigError", "NginxPlan", "Replica", "parse_replica", "render",
           "replicas_on", "write"]
