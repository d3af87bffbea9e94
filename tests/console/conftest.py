"""Fixtures for the HTTP side: the app with a shop's key, on both stores."""

from __future__ import annotations

import httpx
import pytest

from loyalbot.console.api import HttpLimits, create_api_key, create_app
from loyalbot.storage.throttle import SqlThrottle


@pytest.fixture
def limits() -> HttpLimits:
    return HttpLimits(api_max_body=4096, auth_failures=3, auth_window=300, lookups=5, lookup_window=60)


@pytest.fixture
async def web(db, loyalty, limits):
    """The app (throttled in the store, as across replicas) and a client holding a valid key in `.key`."""
    key = await create_api_key(db, "till")
    app = create_app(db, loyalty, console_password="s3cret-pass", throttle=SqlThrottle(db), limits=limits)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app, client=("203.0.113.7", 5000)),
                                 base_url="http://shop", headers={"Authorization": f"Bearer {key}"}) as client:
        client.key = key  # type: ignore[attr-defined]
        client.app = app  # type: ignore[attr-defined]
        yield client


@pytest.fixture
async def ann(loyalty):
    return await loyalty.register_member(telegram_id=1, first_name="Ann", terms_accepted=True)
