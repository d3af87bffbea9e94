"""Run the local Bot API server standalone: ``python -m loyalbot.bot.local_api --port 8080``."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
from pathlib import Path
from typing import Any

from .server import LocalBotApi


async def _serve(args: argparse.Namespace, demo_config: dict[str, Any] | None) -> None:
    server = LocalBotApi(call_log_size=args.call_log_size, webhook_retry_delay=args.webhook_retry_delay,
                         webhook_retry_max=args.webhook_retry_max)
    await server.start(args.host, args.port)
    for token in args.token or []:
        server.world.bot_for_token(token)
    if demo_config is not None:
        server.set_demo_config(demo_config)
    print(f"Local Telegram Bot API listening on {server.url}", flush=True)
    print(f"  bots:     {server.url}/bot<token>/<method>", flush=True)
    print(f"  control:  {server.url}/control/health", flush=True)
    print(f"  demo:     {server.url}/", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await server.stop()


def main() -> None:
    """Parse arguments and serve until interrupted."""
    parser = argparse.ArgumentParser(prog="python -m loyalbot.bot.local_api", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--token", action="append", help="pre-register a bot token (repeatable)")
    parser.add_argument("--demo-config", help="JSON file with {identities, staff_group} for the demo page")
    parser.add_argument("--verbose", action="store_true")
    parser.add_argument("--call-log-size", type=int, default=10_000, help="calls kept for /control/calls")
    parser.add_argument("--webhook-retry-delay", type=float, default=0.2, help="first back-off after a failed post")
    parser.add_argument("--webhook-retry-max", type=float, default=5.0, help="longest back-off between posts")
    args = parser.parse_args()
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO)
    demo_config = None
    if args.demo_config:
        demo_config = json.loads(Path(args.demo_config).read_text(encoding="utf-8"))
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(args, demo_config))


if __name__ == "__main__":
    main()
