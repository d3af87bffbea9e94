"""The demo chat page: ``/`` and its three static files from ``page/``; it talks only to the control API."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from aiohttp import web

__all__ = ["PAGE_DIR", "add_page_routes"]

PAGE_DIR = Path(str(resources.files("loyalbot.bot.local_api"))) / "page"  # package data
STATIC_FILES = ("app.js", "i18n.js", "style.css")


async def index(request: web.Request) -> web.StreamResponse:
    """The page itself, never cached (it changes with the server)."""
    return web.FileResponse(PAGE_DIR / "index.html", headers={"Cache-Control": "no-store"})


async def static(request: web.Request) -> web.StreamResponse:
    """One of the page's scripts or its style sheet."""
    name = request.match_info["name"]
    if name not in STATIC_FILES:
        raise web.HTTPNotFound()
    return web.FileResponse(PAGE_DIR / name, headers={"Cache-Control": "no-store"})


def add_page_routes(app: web.Application) -> None:
    """Serve the demo page on ``app``."""
    app.router.add_get("/", index)
    app.router.add_get("/static/{name}", static)
