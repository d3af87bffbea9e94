"""`loyalbot doctor`: checks a deployment's settings and the services it needs, and says what is wrong.

One line per check, `OK`, `WARN` or `FAIL`, with what was found and, when it is not OK, the fix. The
checks run in order and each says what it could see; one that depends on an earlier failure (the
database's schema when the database cannot be reached) is skipped with the reason. The exit status
is 1 when any check FAILed, else 0. Secrets (the bot token, the webhook secret, the console password,
database and Redis passwords) are never printed: URLs are shown redacted, errors by their kind.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy.engine import make_url

from loyalbot.bot.settings import Settings, SettingsError, read_settings
from loyalbot.bot.webhook import WebhookConfigError, check_webhook_settings
from loyalbot.storage.clock import find_zone
from loyalbot.storage.db import Db, redact_url

OK, WARN, FAIL = "OK", "WARN", "FAIL"
TIMEOUT = 5.0  # seconds per network check: a doctor that hangs helps nobody


@dataclass(frozen=True)
class Finding:
    """One check's result: its status, what it checked, what was found, and the fix when not OK."""

    status: str
    check: str
    found: str
    fix: str = ""

    def line(self) -> str:
        text = f"{self.status:<4}  {self.check:<10} {self.found}"
        return f"{text} -- fix: {self.fix}" if self.fix and self.status != OK else text


def _kind(exc: BaseException) -> str:
    """What went wrong, without the exception's text (an httpx error quotes its URL, which holds the token)."""
    return type(exc).__name__


class Doctor:
    """Runs the checks for one set of settings; `findings` collects them."""

    def __init__(self, settings: Settings, *, say: Callable[[Finding], None] | None = None) -> None:
        self.settings = settings
        self.say = say
        self.findings: list[Finding] = []

    def add(self, status: str, check: str, found: str, fix: str = "") -> None:
        finding = Finding(status, check, found, fix)
        self.findings.append(finding)
        if self.say is not None:
            self.say(finding)

    async def run(self) -> list[Finding]:
        programme_zone = self.check_programme()
        self.check_timezone(programme_zone)
        db_ok = await self.check_database()
        await self.check_redis()
        me_ok = await self.check_bot_api()
        if me_ok:
            await self.check_webhook()
        self.check_console()
        if db_ok:
            await self.check_planner()
        return self.findings

    # --- the checks -------------------------------------------------------------------------------------

    def check_programme(self) -> str | None:
        settings = self.settings
        where = str(settings.programme) if settings.programme else "the built-in default"
        try:
            programme = settings.load_programme()
        except SettingsError as exc:
            self.add(FAIL, "programme", str(exc), "correct the field named, or point LOYALBOT_PROGRAMME at a "
                     "valid copy of loyalty/default_programme.toml")
            return None
        self.add(OK, "programme", f"{where}: {programme.programme.name!r}, {len(programme.tiers.levels)} tiers, "
                 f"{len(programme.rewards)} rewards")
        return settings.shop_timezone(programme)

    def check_timezone(self, shop_zone: str | None) -> None:
        zone = shop_zone or self.settings.timezone
        found = find_zone(zone)
        if found is None:
            self.add(FAIL, "time zone", f"unknown time zone {zone!r}", "set LOYALBOT_TIMEZONE (or the programme's "
                     "timezone) to an IANA name such as Europe/Amsterdam")
        else:
            self.add(OK, "time zone", f"{zone} (the shop's time is {datetime.now(found):%Y-%m-%d %H:%M} by this "
                     "machine's clock)")

    async def check_database(self) -> bool:
        from loyalbot.storage.migrate import current_revision, head_revision

        url = self.settings.database_url
        shown = redact_url(url)
        parsed = make_url(url)
        if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
            if not await asyncio.to_thread(Path(parsed.database).exists):  # SQLite would make an empty file
                self.add(FAIL, "database", f"{shown}: no database file there",
                         "run `loyalbot migrate` (it creates it), or correct LOYALBOT_DATABASE_URL")
                return False
        db = Db(url)
        try:
            await asyncio.wait_for(db.ping(), TIMEOUT)
        except Exception as exc:
            self.add(FAIL, "database", f"{shown} unreachable ({_kind(exc)})",
                     "check LOYALBOT_DATABASE_URL (host, port, user, password, database) and that the server runs")
            return False
        finally:
            await db.dispose()
        try:
            current = await asyncio.wait_for(current_revision(url), TIMEOUT)
        except Exception as exc:
            self.add(FAIL, "database", f"{shown} reachable, but its schema cannot be read ({_kind(exc)})",
                     "run `loyalbot migrate`")
            return False
        head = head_revision()
        if current is None:
            self.add(FAIL, "database", f"{shown} reachable, but not migrated (no schema)", "run `loyalbot migrate`")
            return False
        if current != head:
            self.add(FAIL, "database", f"{shown} at migration {current}, the code needs {head}",
                     "run `loyalbot migrate` before starting this version")
            return False
        self.add(OK, "database", f"{shown} reachable, migrated to head ({head})")
        return True

    async def check_redis(self) -> None:
        url = self.settings.redis_url
        several = bool(self.settings.webhook_url)  # webhook mode is how several replicas run
        if not url:
            if several:
                self.add(WARN, "redis", "not configured, in webhook mode", "fine for one replica; several need "
                         "LOYALBOT_REDIS_URL (conversation state and shared limits)")
            else:
                self.add(OK, "redis", "not configured (one process polling: not needed)")
            return
        import redis.asyncio as aioredis

        shown = redact_url(url)
        client = aioredis.from_url(url, socket_connect_timeout=TIMEOUT, socket_timeout=TIMEOUT)
        try:
            await asyncio.wait_for(client.ping(), TIMEOUT)
        except Exception as exc:
            self.add(FAIL, "redis", f"{shown} unreachable ({_kind(exc)})",
                     "check LOYALBOT_REDIS_URL and that Redis runs, or unset it for a single process")
            return
        finally:
            await client.aclose()
        self.add(OK, "redis", f"{shown} reachable")

    async def _bot_call(self, method: str) -> tuple[int, dict[str, Any]]:
        token = self.settings.token()
        async with httpx.AsyncClient(timeout=TIMEOUT) as client:
            answer = await client.get(f"{self.settings.telegram_api_url}/bot{token}/{method}")
        try:
            body = answer.json()
        except ValueError:
            body = {}
        return answer.status_code, body if isinstance(body, dict) else {}

    async def check_bot_api(self) -> bool:
        api = self.settings.telegram_api_url
        try:
            self.settings.token()
        except SettingsError as exc:
            self.add(FAIL, "bot token", str(exc), "set LOYALBOT_BOT_TOKEN to the token @BotFather gave you")
            return False
        try:
            status, body = await self._bot_call("getMe")
        except Exception as exc:
            self.add(FAIL, "bot api", f"{api} unreachable ({_kind(exc)})",
                     "check LOYALBOT_TELEGRAM_API_URL and this machine's way out to it")
            return False
        if status in (401, 404):
            self.add(FAIL, "bot token", f"{api} refused the token (HTTP {status})",
                     "set LOYALBOT_BOT_TOKEN to the bot's current token (@BotFather, /token)")
            return False
        if status != 200 or not body.get("ok"):
            self.add(FAIL, "bot api", f"{api} answered getMe with HTTP {status}", "try again; check the Bot API "
                     "server's status")
            return False
        username = (body.get("result") or {}).get("username") or "?"
        self.add(OK, "bot token", f"valid: the bot is @{username} ({api})")
        return True

    async def check_webhook(self) -> None:
        settings = self.settings
        secret = settings.webhook_secret.get_secret_value() if settings.webhook_secret else None
        try:
            status, body = await self._bot_call("getWebhookInfo")
        except Exception as exc:
            self.add(FAIL, "webhook", f"getWebhookInfo failed ({_kind(exc)})", "try again")
            return
        at_telegram = str((body.get("result") or {}).get("url") or "") if status == 200 else ""
        if not settings.webhook_url:
            if at_telegram:
                self.add(WARN, "webhook", "polling is configured, but a webhook is set at Telegram: getUpdates "
                         "is refused while it is", "set LOYALBOT_WEBHOOK_URL to it, or let `loyalbot run` poll "
                         "(it deletes the webhook at start)")
            else:
                self.add(OK, "webhook", "none (polling)")
            return
        try:
            check_webhook_settings(settings.webhook_url, secret)
        except WebhookConfigError as exc:
            self.add(FAIL, "webhook", str(exc), "fix the setting named")
            return
        if at_telegram != settings.webhook_url:
            self.add(FAIL, "webhook", "the URL set at Telegram is " + (f"{at_telegram!r}" if at_telegram else "empty")
                     + f", not LOYALBOT_WEBHOOK_URL {settings.webhook_url!r}",
                     "start `loyalbot run` once (it calls setWebhook), or check that no other deployment "
                     "uses this token")
            return
        self.add(OK, "webhook", f"{settings.webhook_url} set at Telegram; secret set")

    def check_console(self) -> None:
        settings = self.settings
        if settings.console_port is not None and settings.console_port < 0:
            self.add(OK, "console", "off (LOYALBOT_CONSOLE_PORT=-1)")
        elif settings.console_password is None or not settings.console_password.get_secret_value():
            self.add(WARN, "console", "no password: the dashboard is off (the shop API and /metrics still serve)",
                     "set LOYALBOT_CONSOLE_PASSWORD to turn the operator dashboard on")
        elif len(settings.console_password.get_secret_value()) < 12:
            self.add(WARN, "console", "the password is shorter than 12 characters", "choose a longer "
                     "LOYALBOT_CONSOLE_PASSWORD")
        else:
            self.add(OK, "console", f"password set; on {settings.console_host}:{settings.console_port}")

    async def check_planner(self) -> None:
        from loyalbot.storage.leases import PLANNER, LeaseStore

        db = Db(self.settings.database_url)
        try:
            holding = await LeaseStore(db).holding(PLANNER)
        except Exception as exc:
            self.add(FAIL, "planner", f"the lease cannot be read ({_kind(exc)})", "run `loyalbot migrate`")
            return
        finally:
            await db.dispose()
        if holding is None:
            self.add(WARN, "planner", "no replica has planned yet", "start `loyalbot run`: one replica plans")
            return
        left = holding.expires_at - time.time()
        name = holding.holder.rsplit(":", 1)[0]
        if left > 0:
            self.add(OK, "planner", f"planned by {name} (lease renewed, {left:.0f} s left)")
        else:
            self.add(WARN, "planner", f"no replica plans now: the lease of {name} ran out {-left:.0f} s ago",
                     "start `loyalbot run` (scheduled messages are planned once it runs)")


async def diagnose(settings: Settings, *, say: Callable[[Finding], None] | None = None) -> list[Finding]:
    return await Doctor(settings, say=say).run()


def doctor(say: Callable[[str], None] = print, **overrides: object) -> int:
    """Run every check, print one line each; returns the exit status (1 when anything FAILed)."""
    try:
        settings = read_settings(**{k: v for k, v in overrides.items() if v is not None})
    except SettingsError as exc:
        say(Finding(FAIL, "settings", str(exc), "correct the LOYALBOT_* variable named (environment or .env)").line())
        return 1
    say(Finding(OK, "settings", "LOYALBOT_* settings parse").line())
    findings = asyncio.run(diagnose(settings, say=lambda f: say(f.line())))
    return 1 if any(f.status == FAIL for f in findings) else 0


__all__ = ["FAIL", "OK", "WARN", "Doctor", "Finding", "diagnose", "doctor"]
