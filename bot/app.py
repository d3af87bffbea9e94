"""The assembly: from `Settings` to a running bot (store, programme, services, router, runtime, extras).

`App.start()` migrates the store, mirrors the programme into it, builds the services and the chosen
Telegram runtime, registers the command menu per language, starts any added services (scheduler,
console...), then starts receiving updates. `App.stop()` undoes it in reverse order; `App.run()`
does both around SIGINT/SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from loyalbot.bot.runtime import Connection, RouterLike, Runtime, quiet_http_loggers
from loyalbot.bot.settings import Settings, SettingsError, bot_id_of
from loyalbot.chat.i18n import Translator
from loyalbot.chat.limits import CHAT_SPACING, COMMAND_DESCRIPTION_LIMIT
from loyalbot.chat.metrics import Metrics
from loyalbot.chat.outbound import ChatSender, SendError
from loyalbot.chat.pacing import PacedSender
from loyalbot.console.health import Readiness, ping_redis
from loyalbot.handlers.config import ChatConfig
from loyalbot.handlers.context import Context, Services
from loyalbot.handlers.router import Router, build_router
from loyalbot.handlers.state import RedisStateStore, SqlStateStore, StateStore
from loyalbot.handlers.support.config import SupportConfig
from loyalbot.handlers.turn import Command
from loyalbot.loyalty.programme import Programme
from loyalbot.loyalty.service import Loyalty
from loyalbot.storage import Db, utcnow
from loyalbot.storage.db import redact_url
from loyalbot.storage.inbox import Inbox, SqlInbox
from loyalbot.storage.migrate import upgrade_async
from loyalbot.storage.rates import SendLimits, make_send_limits
from loyalbot.storage.throttle import FailureLimit, Throttle, make_throttle

log = logging.getLogger("loyalbot.app")

FRAMEWORKS = ("aiogram", "ptb")
# Telegram keys command lists by two-letter language code; zh_Hant members see the zh list too.
COMMAND_LANGUAGES = {"en": "en", "zh": "zh_Hans"}


@dataclass
class Service:
    """Something started with the bot and stopped before it (the scheduler, the console...)."""

    name: str
    start: Callable[[App], Awaitable[None]]
    stop: Callable[[], Awaitable[None]]


def make_runtime(framework: str, connection: Connection, router: RouterLike | None = None, *,
                 concurrency: int = 64, inbox: Inbox | None = None) -> Runtime:
    """The runtime for `framework` ("aiogram" or "ptb"); without `inbox`, updates wait in memory only."""
    if framework == "aiogram":
        from loyalbot.bot.aiogram_runtime import AiogramRuntime

        return AiogramRuntime(connection, router, concurrency=concurrency, inbox=inbox)
    if framework == "ptb":
        from loyalbot.bot.ptb_runtime import PtbRuntime

        return PtbRuntime(connection, router, concurrency=concurrency, inbox=inbox)
    raise SettingsError(f"LOYALBOT_FRAMEWORK: must be one of {', '.join(FRAMEWORKS)}, not {framework!r}")


def worker_name(settings: Settings) -> str:
    """This process's name in the inbox: LOYALBOT_INSTANCE, or the host's name (with the webhook's port
    in webhook mode, so replicas on one host differ). It must stay the same across restarts (so a
    restarted process takes back at once what it held when it died) and differ between replicas: a
    drain gives back every claim held under its name."""
    if settings.instance:
        return settings.instance
    host = socket.gethostname() or "loyalbot"
    if settings.webhook_url:
        return f"{host}:{settings.webhook_listen.rpartition(':')[2]}"
    return host


def connection_from(settings: Settings, *, polling_timeout: int = 10, delete_webhook: bool = False) -> Connection:
    """Where the bot connects, from the settings (raises SettingsError without a token)."""
    return Connection(
        token=settings.token(),
        api_url=settings.telegram_api_url,
        webhook_url=settings.webhook_url,
        webhook_secret=settings.webhook_secret.get_secret_value() if settings.webhook_secret else None,
        webhook_listen=settings.webhook_listen,
        polling_timeout=polling_timeout,
        delete_webhook=delete_webhook,
        trusted_proxies=tuple(p.strip() for p in settings.trusted_proxies.split(",") if p.strip()),
    )


def command_lists(commands: Sequence[Command], default_language: str) -> dict[str | None, list[tuple[str, str]]]:
    """The command menu per Telegram language code (None: everyone else): the member commands that
    declare a /help line, described by it, texts from the chat catalogues."""

    def listing(lang: str) -> list[tuple[str, str]]:
        tr = Translator(lang)
        return [(command.name, tr.t(command.help)[:COMMAND_DESCRIPTION_LIMIT] or command.name)
                for command in commands if command.help and not command.staff]

    lists: dict[str | None, list[tuple[str, str]]] = {None: listing(default_language)}
    for code, lang in COMMAND_LANGUAGES.items():
        lists[code] = listing(lang)
    return lists


async def register_commands(sender: ChatSender, commands: Sequence[Command], default_language: str) -> None:
    """setMyCommands for each language; a failure is logged, the bot still starts."""
    try:
        lists = command_lists(commands, default_language)
    except Exception as exc:  # a catalogue problem must not keep the bot from answering
        log.warning("command menu not registered: %s", type(exc).__name__)
        return
    for code, listed in lists.items():
        try:
            await sender.set_commands(listed, language=code)
        except SendError as exc:
            log.warning("setMyCommands(%s) failed: %s", code or "default", exc.description)


def _relay_pending(services: Services) -> int:
    """Posts waiting in the staff-group relay (0 without support, or before anything was queued)."""
    relay = getattr(services.handoff, "relay", None)
    return int(getattr(relay, "pending", 0) or 0)


class App:
    """loyalbot in one process: store, programme, services, router, one Telegram runtime, extras."""

    def __init__(self, settings: Settings, *, framework: str | None = None, connection: Connection | None = None,
                 clock: Callable[[], datetime] = utcnow, concurrency: int = 64,
                 chat_config: ChatConfig | None = None, programme: Programme | None = None,
                 services: Services | None = None, console_password: str | None = None,
                 console_port: int | None = None, chat_spacing: float = CHAT_SPACING) -> None:
        self.settings = settings
        # Seconds from Telegram's answer to one message into a private chat to the next (its limit: a second).
        # Only the tests shorten it: their members answer within milliseconds, no person does.
        self.chat_spacing = chat_spacing
        self.programme = programme
        self.seed_services = services or Services()  # e.g. Services(support_config=SupportConfig(...))
        self.console_password = console_password  # else the settings' (the demo keeps its own)
        self.console_port = console_port if console_port is not None else settings.console_port
        self.framework = framework or settings.framework
        if self.framework not in FRAMEWORKS:
            raise SettingsError(f"--framework: must be one of {', '.join(FRAMEWORKS)}, not {self.framework!r}")
        self.connection = connection or connection_from(settings)
        self.clock = clock
        self.concurrency = concurrency
        self.chat_config = chat_config
        self.services: list[Service] = []
        self._started: list[Service] = []
        self.db: Db | None = None
        self.loyalty: Loyalty | None = None
        self.states: StateStore | None = None
        self.context: Context | None = None
        self.runtime: Runtime | None = None
        self.router: Router | None = None
        self.inbox: SqlInbox | None = None
        self._throttle: Throttle | None = None
        self._send_limits: SendLimits | None = None
        self._stop_requested = asyncio.Event()
        # This process's metrics (served at /metrics by the console): the pipeline, the dispatcher and
        # the planner count into it.
        self.metrics = Metrics()
        self.readiness = Readiness()  # what /readyz checks; filled in by start()
        self.readiness.phase = "starting"
        self.fatal: BaseException | None = None  # why receiving stopped on its own (e.g. 409 Conflict)
        self._programme_watch: asyncio.Task[None] | None = None

    def add_service(self, start: Callable[[App], Awaitable[None]], stop: Callable[[], Awaitable[None]], *,
                    name: str = "service") -> None:
        """Start `start(app)` after the bot is assembled (before updates flow); `stop()` before it closes."""
        self.services.append(Service(name, start, stop))

    def attach_rooms(self) -> None:
        """Add the scheduler (planner, notices, dispatcher) and the HTTP side (shop API, console) to this process."""
        from loyalbot.console.service import attach as attach_console
        from loyalbot.scheduler.service import attach as attach_scheduler

        attach_scheduler(self)
        attach_console(self)

    @property
    def sender(self) -> ChatSender:
        assert self.runtime is not None, "App.start() first"
        return self.runtime.sender

    async def start(self) -> None:
        """Assemble everything and start receiving updates; on failure, undo what was started and raise."""
        quiet_http_loggers()
        try:
            await self._start()
        except BaseException:
            await self.stop()
            raise
        log.info("loyalbot is running")

    async def _start(self) -> None:
        settings = self.settings
        log.info("starting loyalbot on %s with %s", redact_url(settings.database_url), self.framework)
        await upgrade_async(settings.database_url)
        self.db = Db(settings.database_url)
        programme = self.programme or settings.load_programme()
        self.loyalty = Loyalty(self.db, programme)
        await self.loyalty.sync_programme()  # the store's newest version, or this programme as version 1
        programme = self.loyalty.programme
        self._programme_watch = asyncio.create_task(self.loyalty.programmes.watch(), name="programme-watch")
        states: StateStore = RedisStateStore(settings.redis_url) if settings.redis_url else SqlStateStore(self.db)
        self.states = states
        config = self.chat_config or ChatConfig(
            bot_name=programme.programme.name, staff_group_id=settings.staff_group_id,
            support_timezone=settings.timezone)
        services = replace(self.seed_services)
        self.context = Context(loyalty=self.loyalty, states=states, config=config, clock=self.clock,
                               services=services)
        # One throttle for the process, shared with every replica (Redis, else the store): counter
        # look-ups, the console's sign-ins and API keys, and wrong webhook secrets all count in it.
        if services.throttle is None:
            self._throttle = services.throttle = make_throttle(self.db, settings.redis_url)
        # Telegram's limits (the bot's rate, a second per chat, 20 a minute per group), shared by every
        # replica and dispatcher of this bot: Redis when configured, else PostgreSQL, else this process.
        if services.send_limits is None:
            self._send_limits = services.send_limits = make_send_limits(
                self.db, settings.redis_url, scope=str(bot_id_of(self.connection.token)))
        throttle = services.throttle
        # Updates are recorded in the store before Telegram is told they arrived (see storage/inbox.py).
        self.inbox = SqlInbox(self.db, bot_id=bot_id_of(self.connection.token), worker=worker_name(settings),
                              lease=timedelta(seconds=settings.inbox_lease))
        self.runtime = make_runtime(self.framework, self.connection, concurrency=self.concurrency,
                                    inbox=self.inbox)
        self.runtime.pipeline.metrics = self.metrics
        # Replies keep a second per chat and the group's budget, shared with the dispatcher and the relay.
        assert services.send_limits is not None
        relay = services.support_config or SupportConfig.from_chat_config(config)
        self.runtime.pipeline.pace(services.send_limits, group_per_minute=relay.relay_per_minute,
                                   group_burst=relay.relay_burst, bot_rate=settings.bot_rate(),
                                   spacing=self.chat_spacing)
        self.metrics.follow_relay(lambda: _relay_pending(services))
        self.runtime.webhook_guard = FailureLimit(throttle, "webhook_secret", settings.auth_failure_limit,
                                                  settings.auth_failure_window)
        self.runtime.on_fatal = self._fatal
        self.runtime.pipeline.drain_within = settings.drain_seconds
        # Leases of updates in hand are renewed well before they run out.
        self.runtime.pipeline.heartbeat = min(self.runtime.pipeline.heartbeat, settings.inbox_lease / 3)
        self._checks(self.db, states, self.runtime)
        await self.runtime.open()
        # What handlers send beside their replies (support's notices and copies to members) keeps a second
        # per chat too; into the staff group the relay takes the group's budget itself.
        self.context.sender = PacedSender(self.runtime.sender, services.send_limits, groups=False,
                                          bot_rate=settings.bot_rate(), spacing=self.chat_spacing)
        if self.context.config.bot_username is None:  # for the members' referral links
            self.context.config = replace(self.context.config, bot_username=self.runtime.username)
        self.router = build_router(self.context)
        self.runtime.pipeline.router = self.router
        await register_commands(self.runtime.sender, self.router.declared, programme.programme.default_language)
        if (support := services.handoff) is not None:
            await support.start()  # re-relays member messages a crash left unrelayed
        for service in self.services:
            await service.start(self)
            self._started.append(service)
        await self.runtime.start()
        self.readiness.phase = "serving"

    def _checks(self, db: Db, states: StateStore, runtime: Runtime) -> None:
        """What /readyz checks: the store, Redis when configured, the Bot API (getMe)."""
        self.readiness.phase = "starting"
        self.readiness.add("database", db.ping)
        if isinstance(states, RedisStateStore):
            redis = states.redis
            self.readiness.add("redis", lambda: ping_redis(redis))
        self.readiness.add("bot_api", runtime.reachable)

    def _fatal(self, exc: BaseException) -> None:
        """Receiving cannot go on (polling got 409 Conflict): stop, and let `run` raise it."""
        if self.fatal is None:
            self.fatal = exc
        self.request_stop()

    async def stop(self) -> None:
        """Drain and stop: take no more updates (the webhook answers 503, polling stops), finish the ones
        in hand and give the rest back to the inbox, stop the services (the dispatcher after its current
        sends), close the store. Safe to call twice."""
        self.readiness.phase = "draining"
        if self.runtime is not None:
            try:
                await self.runtime.pause()
            except Exception as exc:
                log.warning("runtime pause failed: %s", type(exc).__name__)
        support = self.context.services.handoff if self.context is not None else None
        if support is not None and self.runtime is not None:
            try:
                await support.stop()  # drain the staff-group relay while the bot can still send
            except Exception as exc:
                log.warning("support stop failed: %s", type(exc).__name__)
        if self.runtime is not None:
            runtime, self.runtime = self.runtime, None
            try:
                await runtime.stop()
            except Exception as exc:  # keep shutting the rest down
                log.warning("runtime stop failed: %s", type(exc).__name__)
        for service in reversed(self._started):
            try:
                await service.stop()
            except Exception as exc:
                log.warning("service %s stop failed: %s", service.name, type(exc).__name__)
        self._started.clear()
        if self._programme_watch is not None:
            self._programme_watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._programme_watch
            self._programme_watch = None
        if isinstance(self.states, RedisStateStore):
            await self.states.close()
        self.states = None
        if self._send_limits is not None:
            limits, self._send_limits = self._send_limits, None
            with contextlib.suppress(Exception):
                await limits.close()
        if self._throttle is not None:
            close = getattr(self._throttle, "close", None)
            self._throttle = None
            if close is not None:
                await close()
        if self.db is not None:
            db, self.db = self.db, None
            await db.dispose()
        log.info("loyalbot stopped")

    def request_stop(self) -> None:
        """Ask `run` to stop (signal handlers call this)."""
        self._stop_requested.set()

    async def run(self, *, ready: Callable[[App], Awaitable[None]] | None = None) -> None:
        """Start, wait for SIGINT/SIGTERM (or `request_stop`), stop."""
        loop = asyncio.get_running_loop()
        installed = []
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self.request_stop)
                installed.append(sig)
        try:
            await self.start()
            if ready is not None:
                await ready(self)
            await self._stop_requested.wait()
        finally:
            for sig in installed:
                loop.remove_signal_handler(sig)
            await self.stop()
        if self.fatal is not None:
            raise self.fatal


__all__ = ["App", "FRAMEWORKS", "Service", "bot_id_of", "command_lists", "connection_from",
           "make_runtime", "register_commands", "worker_name"]
