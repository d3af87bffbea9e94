"""A standalone outbox dispatcher process: `python -m loyalbot.scheduler.dispatch`.

Runs only the dispatcher (no jobs, no updates) against a Bot API server, e.g. to add sending
capacity next to the bot on PostgreSQL, or in the crash test. Settings come from the environment
like the bot's: LOYALBOT_DATABASE_URL, LOYALBOT_BOT_TOKEN (never logged), LOYALBOT_TELEGRAM_API_URL,
LOYALBOT_SEND_RATE, LOYALBOT_PAID_BROADCAST; options override them. SIGTERM/SIGINT stop it after the
messages in flight are recorded.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal

from loyalbot.scheduler.dispatcher import Dispatcher
from loyalbot.storage import Db
from loyalbot.storage.db import DEFAULT_URL, redact_url

log = logging.getLogger("loyalbot.dispatch")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    env = os.environ.get
    parser = argparse.ArgumentParser(prog="python -m loyalbot.scheduler.dispatch", description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default=env("LOYALBOT_DATABASE_URL", DEFAULT_URL))
    parser.add_argument("--api-url", default=env("LOYALBOT_TELEGRAM_API_URL", "https://api.telegram.org"))
    parser.add_argument("--rate", type=float, default=float(env("LOYALBOT_SEND_RATE", "30")))
    parser.add_argument("--paid-broadcast", action="store_true",
                        default=env("LOYALBOT_PAID_BROADCAST", "").lower() in ("1", "true", "yes"))
    parser.add_argument("--stale-after", type=float, default=120.0,
                        help="seconds after which another dispatcher's unfinished claim is recovered")
    parser.add_argument("--worker-id", default=None)
    parser.add_argument("--log-level", default=env("LOYALBOT_LOG_LEVEL", "INFO"))
    return parser.parse_args(argv)


async def main(args: argparse.Namespace) -> None:
    # The runtimes' sender lives in bot/; imported here, at run time, so the scheduler room never
    # depends on bot/ when it is imported.
    from loyalbot.bot.senders import AiogramSender, make_aiogram_bot

    token = os.environ.get("LOYALBOT_BOT_TOKEN", "").strip()
    if not token:
        raise SystemExit("LOYALBOT_BOT_TOKEN is not set")
    rate = min(args.rate, 1000.0 if args.paid_broadcast else 30.0)
    db = Db(args.database_url)
    bot = make_aiogram_bot(token, args.api_url)
    dispatcher = Dispatcher(db, AiogramSender(bot), rate=rate, stale_after=args.stale_after,
                            recover_every=max(1.0, min(30.0, args.stale_after)), worker_id=args.worker_id)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, dispatcher.stop)
    log.info("dispatcher %s on %s at %g/s", dispatcher.worker_id, redact_url(args.database_url), rate)
    try:
        await dispatcher.run()
    finally:
        await bot.session.close()
        await db.dispose()
        log.info("dispatcher stopped: %s", dispatcher.stats)


if __name__ == "__main__":
    arguments = parse_args()
    logging.basicConfig(level=arguments.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(main(arguments))
