"""A standalone outbox dispatcher process: `python -m loyalbot.bot.dispatch`.

Runs only the dispatcher (no jobs, no updates) against a Bot API server, e.g. to add sending
capacity next to the bot on PostgreSQL, or in the crash test. Settings are the bot's (`Settings`,
from the environment): LOYALBOT_DATABASE_URL, LOYALBOT_BOT_TOKEN (never logged),
LOYALBOT_TELEGRAM_API_URL, LOYALBOT_SEND_RATE, LOYALBOT_PAID_BROADCAST, LOYALBOT_LOG_LEVEL; options
override them. SIGTERM/SIGINT stop it after the messages in flight are recorded. The programme's
frequency caps are those of the newest stored programme version (else LOYALBOT_PROGRAMME's), followed
as they change.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal

from loyalbot.bot.logs import configure_logging
from loyalbot.bot.senders import AiogramSender, make_aiogram_bot
from loyalbot.bot.settings import Settings, SettingsError, bot_id_of, load_settings
from loyalbot.loyalty.programme import ProgrammeError, ProgrammeInForce
from loyalbot.loyalty.versions import ProgrammeVersions
from loyalbot.scheduler.caps import caps_of
from loyalbot.scheduler.dispatcher import Dispatcher
from loyalbot.storage import Db
from loyalbot.storage.db import redact_url
from loyalbot.storage.rates import make_send_limits

log = logging.getLogger("loyalbot.dispatch")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The options; each one left out is taken from the settings."""
    parser = argparse.ArgumentParser(prog="python -m loyalbot.bot.dispatch", description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--api-url", default=None)
    parser.add_argument("--rate", type=float, default=None)
    parser.add_argument("--paid-broadcast", action="store_true", default=None)
    parser.add_argument("--stale-after", type=float, default=120.0,
                        help="seconds after which another dispatcher's unfinished claim is recovered")
    parser.add_argument("--worker-id", default=None)
    parser.add_argument("--log-level", default=None)
    return parser.parse_args(argv)


def settings_of(args: argparse.Namespace) -> Settings:
    """The settings with the options laid over them; a bad one stops the process with its name."""
    overrides = {"database_url": args.database_url, "telegram_api_url": args.api_url, "send_rate": args.rate,
                 "paid_broadcast": args.paid_broadcast, "log_level": args.log_level}
    try:
        return load_settings(**{name: value for name, value in overrides.items() if value is not None})
    except SettingsError as exc:
        raise SystemExit(f"Cannot start: {exc}") from None


async def main(args: argparse.Namespace, settings: Settings) -> None:
    try:
        token = settings.token()
        in_force = ProgrammeInForce(settings.load_programme())
    except (SettingsError, ProgrammeError) as exc:
        raise SystemExit(str(exc)) from None
    rate = settings.bot_rate()
    db = Db(settings.database_url)
    bot = make_aiogram_bot(token, settings.telegram_api_url)
    # Telegram's limits shared with the bot and every other dispatcher: Redis when LOYALBOT_REDIS_URL is
    # set, else PostgreSQL's rate_limits table, else (SQLite, one process) this process's memory.
    limits = make_send_limits(db, settings.redis_url, scope=str(bot_id_of(token)))
    # Read only: the newest stored version when there is one (the bot stores the first), followed as it changes.
    versions = ProgrammeVersions(db, in_force)
    await versions.refresh()
    following = asyncio.create_task(versions.watch(), name="programme-versions")
    dispatcher = Dispatcher(db, AiogramSender(bot), rate=rate, stale_after=args.stale_after,
                            recover_every=max(1.0, min(30.0, args.stale_after)), worker_id=args.worker_id,
                            limits=limits, caps=lambda: caps_of(in_force.programme))
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, dispatcher.stop)
    log.info("dispatcher %s on %s at %g/s, limits shared through %s", dispatcher.worker_id,
             redact_url(settings.database_url), rate, type(limits).__name__)
    try:
        await dispatcher.run()
    finally:
        following.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await following
        await bot.session.close()
        await limits.close()
        await db.dispose()
        log.info("dispatcher stopped: %s; limits: %s", dispatcher.stats, limits.stats)


if __name__ == "__main__":
    arguments = parse_args()
    loaded = settings_of(arguments)
    configure_logging(loaded)
    asyncio.run(main(arguments, loaded))
